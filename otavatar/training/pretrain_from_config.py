"""Generator pretraining from the Hydra config (configs/pretrain.yaml): resume, log, export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from otavatar.config import build_generator, typed_settings
from otavatar.errors import FileFormatError
from otavatar.files import load_torch_file
from otavatar.speed import CudaSettings, configure_cuda, flush_denormals
from otavatar.training.checkpointing import atomic_torch_save, newest_loadable_checkpoint, save_checkpoint
from otavatar.training.pretrain import GeneratorPretrainer, PretrainSettings, pretrain


def load_pretrained_generator(path: Path) -> dict:
    """A file written by this recipe, on the CPU: ``G_ema`` (and, from newer runs, the parameter ``embedding``)."""
    state = load_torch_file(path, "a generator written by scripts/pretrain_generator.py")
    if not isinstance(state, dict) or "G_ema" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise FileFormatError(f"init_generator: {path} has no 'G_ema' (found {found}); expected a file written by scripts/pretrain_generator.py")
    return state


def resume_pretraining(trainer: GeneratorPretrainer, run_dir: Path, say: Callable[[str], None] = print) -> Path | None:
    """Continue ``trainer`` from the run directory's newest checkpoint that loads, if any; returns its path.
    Each newer checkpoint that does not load is named through ``say`` with the reason.

    Read to the CPU (:func:`otavatar.files.load_torch_file`): RNG states must stay CPU byte tensors, and
    ``load_state_dict`` moves weights and optimiser states to the trainer's device.
    """
    found = newest_loadable_checkpoint(run_dir, say)
    if found is None:
        return None
    path, state = found
    trainer.load_state_dict(state["pretrainer"])
    return path


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pretrain_from_config(cfg: DictConfig) -> Path:
    """Train (resuming from the run directory's newest loadable checkpoint) and write the generator to ``cfg.out``."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    flush_denormals()
    device = _device(cfg.device)
    configure_cuda(typed_settings(CudaSettings, cfg.cuda, "cuda"))
    generator = build_generator(cfg.model.generator).to(device).train()
    settings = typed_settings(PretrainSettings, cfg, select=True)
    trainer = GeneratorPretrainer(generator, settings, cfg.seed)
    run_dir = Path(cfg.run_dir)
    resume = resume_pretraining(trainer, run_dir)
    if resume is not None:
        print(f"resumed from {resume} (iteration {trainer.iteration})")
    elif cfg.init_generator:
        trainer.initialise_from(load_pretrained_generator(Path(cfg.init_generator)))
        print(f"started from {cfg.init_generator}")
    log_file = run_dir / "log.txt"
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(iteration: int, terms: dict[str, float], seconds: float) -> None:
        if iteration % cfg.log_every == 0:
            line = f"iteration {iteration}: " + " ".join(f"{k} {v:.4f}" for k, v in terms.items()) + f" ({seconds:.0f} s)"
            print(line, flush=True)
            with log_file.open("a") as handle:
                handle.write(line + "\n")

    def checkpoint(current: GeneratorPretrainer) -> None:
        save_checkpoint({"pretrainer": current.state_dict()}, run_dir, current.iteration, cfg.keep_checkpoints)

    pretrain(trainer, checkpoint, cfg.checkpoint_every, log)
    trainer.finish(cfg.seed)
    out = Path(cfg.out)
    atomic_torch_save({
        "G_ema": {key: value.cpu() for key, value in generator.state_dict().items()},
        "embedding": {key: value.cpu() for key, value in trainer.embedding.state_dict().items()},
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "recipe": OmegaConf.to_container(cfg, resolve=True),
    }, out)
    return out
