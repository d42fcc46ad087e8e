"""Building a training run from the Hydra config tree (configs/train.yaml)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from otavatar.checkpoints import load_strict, read_generator_state, UNUSED_GENERATOR_KEYS
from otavatar.config import build_animator
from otavatar.data.datasets import FrameSource, TrainingPairs
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.losses.animation import AnimationLoss
from otavatar.models.animator import Animator
from otavatar.speed import CudaSettings, configure_cuda
from otavatar.training.distributed import DistributedContext, init_distributed, main_process_first, shutdown_distributed
from otavatar.training.loop import RunSettings, train
from otavatar.training.trainer import TrainerSettings


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    values = OmegaConf.to_container(cfg, resolve=True)
    for key in ("controller_betas", "generator_betas"):
        values[key] = tuple(values[key])
    return TrainerSettings(**values)


def build_training_animator(cfg: DictConfig) -> Animator:
    """The model preset, with the generator initialised from ``generator_checkpoint`` when given."""
    animator = build_animator(cfg.model)
    if cfg.generator_checkpoint:
        path = Path(cfg.generator_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"generator_checkpoint {path} does not exist; see pretrained/README.md for where the EG3D weights come from"
            )
        state = read_generator_state(path)["state_dict"]
        load_strict(animator.generator, {k: v for k, v in state.items() if k not in UNUSED_GENERATOR_KEYS}, path, "generator")
    return animator


def frame_source(data_cfg: DictConfig, image_size: int, generate: bool = True) -> FrameSource:
    """The dataset of ``data_cfg``; a synthetic one is generated first when absent."""
    root = Path(data_cfg.root)
    if not root.exists():
        if not (generate and data_cfg.get("generate")):
            raise FileNotFoundError(f"dataset {root} does not exist (data={data_cfg.name}); see README.md for how to obtain or build it")
        spec = data_cfg.generate
        write_synthetic_dataset(root, spec.identities, spec.videos, spec.frames, data_cfg.resolution, spec.seed)
    return FrameSource(
        VideoLmdb(root, data_cfg.resolution), data_cfg.camera_source, data_cfg.camera_smoothing, data_cfg.image_size or image_size
    )


def train_from_config(cfg: DictConfig) -> Path:
    """Run (or resume) the training that ``cfg`` describes; returns the last checkpoint."""
    context: DistributedContext = init_distributed(cfg.device)
    configure_cuda(CudaSettings(**cfg.cuda))
    try:
        animator = build_training_animator(cfg)
        loss = AnimationLoss.from_config(cfg.loss)
        source = main_process_first(
            context, lambda main: frame_source(cfg.data, cfg.model.generator.img_resolution, generate=main),
            timedelta(seconds=cfg.dataset_wait_seconds),
        )
        dataset = TrainingPairs(source, "train", frames=2, repeat=cfg.data.repeat)
        run = RunSettings(
            run_dir=Path(cfg.run_dir), iterations=cfg.iterations, batch_size=cfg.batch_size, seed=cfg.seed,
            checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints, log_every=cfg.log_every,
            image_every=cfg.image_every, num_workers=cfg.num_workers, resume=cfg.resume,
        )
        config = OmegaConf.to_container(cfg, resolve=True)
        return train(animator, loss.to(context.device), dataset, trainer_settings(cfg.trainer), run, config, context)
    finally:
        shutdown_distributed()
