"""Building a training run from the Hydra config tree (configs/train.yaml)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from otavatar.checkpoints import load_generator_weights, read_generator_state
from otavatar.config import build_animator, typed_settings
from otavatar.data.datasets import FrameSource, TrainingPairs
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.errors import MissingInputError, check_positive
from otavatar.losses.animation import AnimationLoss
from otavatar.models.animator import Animator
from otavatar.speed import CudaSettings, configure_cuda, flush_denormals
from otavatar.training.distributed import DistributedContext, init_distributed, main_process_first, shutdown_distributed
from otavatar.training.loop import RunSettings, train
from otavatar.training.trainer_settings import TrainerSettings


def trainer_settings(cfg: DictConfig) -> TrainerSettings:
    return typed_settings(TrainerSettings, cfg, "trainer")


def run_settings(cfg: DictConfig) -> RunSettings:
    return typed_settings(RunSettings, cfg, select=True)


def build_training_animator(cfg: DictConfig) -> Animator:
    """The model preset, with the generator initialised from ``generator_checkpoint`` when given; the
    random weights (C, and G without a checkpoint) are drawn from ``seed``, so runs that differ only in
    ``seed`` start from different networks and a run's start does not depend on what its process did before."""
    torch.manual_seed(cfg.seed)
    animator = build_animator(cfg.model)
    if cfg.generator_checkpoint:
        path = Path(cfg.generator_checkpoint)
        if not path.is_file():
            raise MissingInputError(
                f"generator_checkpoint {path} does not exist; see pretrained/README.md for where the EG3D weights come from"
            )
        load_generator_weights(animator.generator, read_generator_state(path), path, OmegaConf.to_container(cfg.model.generator, resolve=True))
    return animator


def frame_source(data_cfg: DictConfig, image_size: int, generate: bool = True) -> FrameSource:
    """The dataset of ``data_cfg``; a synthetic one is generated first when absent."""
    root = Path(data_cfg.root)
    if not root.exists():
        if not (generate and data_cfg.get("generate")):
            raise MissingInputError(f"dataset {root} does not exist (data={data_cfg.name}); see README.md for how to obtain or build it")
        spec = data_cfg.generate
        write_synthetic_dataset(root, spec.identities, spec.videos, spec.frames, data_cfg.resolution, spec.seed)
    return FrameSource(
        VideoLmdb(root, data_cfg.resolution), data_cfg.camera_source, data_cfg.camera_smoothing, data_cfg.image_size or image_size
    )


def train_from_config(cfg: DictConfig) -> Path:
    """Run (or resume) the training that ``cfg`` describes; returns the last checkpoint.

    Settings and device are checked before anything is built or written."""
    run, settings = run_settings(cfg), trainer_settings(cfg.trainer)
    cuda = typed_settings(CudaSettings, cfg.cuda, "cuda")
    check_positive("dataset_wait_seconds", cfg.dataset_wait_seconds)
    context: DistributedContext = init_distributed(cfg.device)
    configure_cuda(cuda)
    flush_denormals()
    try:
        animator = build_training_animator(cfg)
        loss = AnimationLoss.from_config(cfg.loss)
        source = main_process_first(
            context, lambda main: frame_source(cfg.data, cfg.model.generator.img_resolution, generate=main),
            timedelta(seconds=cfg.dataset_wait_seconds),
        )
        dataset = TrainingPairs(source, "train", frames=run.frames_per_item, repeat=cfg.data.repeat)
        config = OmegaConf.to_container(cfg, resolve=True)
        return train(animator, loss.to(context.device), dataset, settings, run, config, context)
    finally:
        shutdown_distributed()
