"""The training run: resume, iterate, log, checkpoint; one model across all torchrun processes."""

from __future__ import annotations

import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from otavatar.errors import InputError, check_integer
from otavatar.inversion import correct_intrinsics
from otavatar.models.animator import Animator
from otavatar.training import checkpointing
from otavatar.training.batches import training_batches
from otavatar.training.distributed import DistributedContext, broadcast_parameters
from otavatar.training.monitor import TrainingMonitor
from otavatar.training.trainer import DecouplingTrainer, FrameLoss, NonFiniteLossError, host_scalars
from otavatar.training.trainer_settings import TrainerSettings


@dataclass
class RunSettings:
    run_dir: Path
    iterations: int
    batch_size: int
    frames_per_item: int = 2  # frames of one video per item, sharing its w_id (the release: 2)
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    image_every: int = 100
    num_workers: int = 0
    resume: str | None = None

    def __post_init__(self) -> None:
        least = {"iterations": 0, "batch_size": 1, "frames_per_item": 1, "checkpoint_every": 1, "keep_checkpoints": 0, "log_every": 1, "image_every": 0, "num_workers": 0}
        for key, minimum in least.items():
            check_integer(key, getattr(self, key), minimum)


TRAINER_DEFAULTS = {f.name: f.default for f in fields(TrainerSettings) if f.default is not MISSING and not isinstance(f.default, tuple)}


class ConfigMismatchError(InputError):
    """The checkpoint was trained with a different model or trainer configuration."""


def _all_rng_states(context: DistributedContext) -> list:
    state = checkpointing.rng_state()
    if not context.enabled:
        return [state]
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _resume(
    trainer: DecouplingTrainer, run: RunSettings, config: Mapping[str, Any], context: DistributedContext, monitor_message: Callable[[str], None]
) -> tuple[int, Path | None]:
    """Load ``run.resume``, else the newest checkpoint of the run directory that loads; nothing is written here.
    Returns the iteration reached and the checkpoint (None: a fresh start).

    Checkpoints are read to the CPU (load_torch_file): RNG states must stay CPU byte tensors (torch.set_rng_state
    refuses others), and load_state_dict moves weights and optimiser states to the networks' device."""
    if run.resume:
        path, state = Path(run.resume), checkpointing.load_checkpoint(Path(run.resume))
    else:
        found = checkpointing.newest_loadable_checkpoint(run.run_dir, monitor_message)
        if found is None:
            return 0, None
        path, state = found
    saved = {k: state["config"].get(k) for k in ("model", "trainer")}
    current = {k: config.get(k) for k in ("model", "trainer")}
    if isinstance(saved["trainer"], Mapping) and isinstance(current["trainer"], Mapping):
        # Trainer settings added after the checkpoint was written count as their defaults, the behaviour it was trained with.
        added = {k: TRAINER_DEFAULTS[k] for k in current["trainer"] if k in TRAINER_DEFAULTS and k not in saved["trainer"]}
        saved["trainer"] = {**saved["trainer"], **added}
    differences = checkpointing.config_differences(saved, current)
    if differences:
        raise ConfigMismatchError(f"checkpoint {path} does not match the configuration:\n  " + "\n  ".join(differences))
    trainer.load_state_dict(state)
    rng_states = state["rng"]
    checkpointing.restore_rng_state(rng_states[context.rank] if context.rank < len(rng_states) else rng_states[0])
    monitor_message(f"resumed from {path} at iteration {state['iteration']}")
    return int(state["iteration"]), path


LONG_CPU_RUN_SECONDS = 3 * 3600


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def pace_line(first_iteration_seconds: float, remaining: int, device: torch.device) -> str:
    """What the first iteration's time says of the whole run; on a CPU, a run of hours or more also says how to pick a small one."""
    line = (f"the first iteration took {first_iteration_seconds:.1f} s: at this pace the {remaining} iterations of this run take "
            f"≈ {_duration(first_iteration_seconds * remaining)} on {device.type}")
    if device.type == "cpu" and first_iteration_seconds * remaining > LONG_CPU_RUN_SECONDS:
        line += ("; this schedule is meant for GPUs. On a CPU, `python scripts/train.py experiment=tiny_synthetic` (the embedded "
                 "model's recipe: 100 iterations of 5 + 8 rendering sub-steps) takes ≈ 80 min on 2 cores; trainer=cpu or "
                 "iterations=N shrink any run")
    return line


def _to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value for key, value in batch.items()}


def _preview(trainer: DecouplingTrainer, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth | w_id + C(x) | w_id alone, raw and super-resolved, rendered by the EMA networks."""
    identity_code, correction = trainer.last_identity
    count = min(batch["image"].shape[0], 4)
    camera = correct_intrinsics(batch["camera"][:count, 0], correction[:count])
    motion = batch["motion"][:count, 0]
    with torch.no_grad():
        animated = trainer.ema.render(identity_code[:count], motion, camera, deterministic=True)
        still = trainer.ema.generator.synthesis(identity_code[:count].expand(-1, trainer.ema.generator.num_ws, -1), camera, deterministic=True)
    return {
        "ground_truth": batch["image"][:count, 0],
        "with_motion": animated["image"],
        "identity_only": still["image"],
        "with_motion_raw": animated["image_raw"],
        "identity_only_raw": still["image_raw"],
    }


def train(
    animator: Animator,
    frame_loss: FrameLoss,
    dataset: Dataset,
    trainer_settings: TrainerSettings,
    run: RunSettings,
    config: Mapping[str, Any],
    context: DistributedContext,
) -> Path:
    """Train until ``run.iterations``, resuming from ``run.resume`` or else the newest checkpoint of the run directory
    that loads. The run directory is written to only once the resume is accepted. Returns the last checkpoint."""
    torch.manual_seed(run.seed + context.rank)
    animator.to(context.device)
    broadcast_parameters(animator)
    trainer = DecouplingTrainer(animator, frame_loss, trainer_settings, world_size=context.world_size)
    start, last = _resume(trainer, run, config, context, print if context.is_main else (lambda _: None))
    monitor = TrainingMonitor(run.run_dir, run.iterations, start, active=context.is_main)
    monitor.record_config(config)
    batches = training_batches(
        dataset, run.batch_size, run.seed, start, run.iterations, context.rank, context.world_size, run.num_workers,
        pin_memory=context.device.type != "cpu",
    )

    def save(iteration: int) -> Path:
        rng = _all_rng_states(context)
        path = run.run_dir / checkpointing.checkpoint_name(iteration)
        if context.is_main:
            state = {**trainer.state_dict(), "rng": rng, "config": dict(config)}
            path = checkpointing.save_checkpoint(state, run.run_dir, iteration, run.keep_checkpoints)
        if context.enabled:
            dist.barrier()
        return path

    if start < run.iterations:
        monitor.message(f"iterations {start + 1}–{run.iterations}: {trainer_settings.identity_steps} + {trainer_settings.motion_steps} "
                        f"sub-steps per batch of {run.batch_size} × {run.frames_per_item} frames on {context.device.type} "
                        f"({context.world_size} process(es)); the first iteration's time gives the run's")
    try:
        for iteration, batch in enumerate(batches, start=start + 1):
            batch = _to_device(batch, context.device)
            started = time.perf_counter()
            try:
                logs = trainer.train_step(batch)
            except NonFiniteLossError as error:
                monitor.message(f"iteration {iteration}: {error}")
                raise
            if iteration == start + 1:
                if context.device.type == "cuda":
                    torch.cuda.synchronize(context.device)  # the step's kernels are queued, not done
                monitor.message(pace_line(time.perf_counter() - started, run.iterations - start, context.device))
            monitor.advance()
            if iteration % run.log_every == 0 or iteration == run.iterations:
                monitor.log_scalars(iteration, host_scalars(logs), run.batch_size * context.world_size)
            if context.is_main and run.image_every and iteration % run.image_every == 0:
                monitor.log_images(iteration, _preview(trainer, batch))
            if iteration % run.checkpoint_every == 0 or iteration == run.iterations:
                last = save(iteration)
    finally:
        monitor.close()
    return last or save(start)
