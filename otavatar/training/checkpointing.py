"""Training checkpoints: atomic writes, keeping the last M, the newest that loads, resume checks, release export.

A checkpoint holds generator, controller, both EMAs, optimiser states, the iteration, RNG states
and the resolved config it was trained with. Files are written to a temporary name in the same
directory and renamed, so a killed save leaves the previous checkpoint intact. They are read with
``weights_only=True`` (:func:`otavatar.files.load_torch_file`), to the CPU.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from otavatar.checkpoints import CHECKPOINT_FORMAT, MODEL_FORMAT, checkpoint_motion_space
from otavatar.errors import FileFormatError
from otavatar.files import atomic_write, load_torch_file

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d{9})\.pt$")


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint_{iteration:09d}.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save(obj, handle))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run directory, oldest first (temporary files are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(state: dict, run_dir: Path, iteration: int, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``iteration`` and delete all but the newest ``keep``."""
    path = Path(run_dir) / checkpoint_name(iteration)
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "iteration": iteration, **state}, path)
    for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint written by :func:`save_checkpoint` to the CPU (weights_only), with a clear error otherwise."""
    path = Path(path)
    state = load_torch_file(path, "a training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise FileFormatError(f"{path}: expected format {CHECKPOINT_FORMAT!r}, found {found!r}; not a training checkpoint of scripts/train.py")
    return state


def newest_loadable_checkpoint(run_dir: Path, say: Callable[[str], None]) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``run_dir`` that loads, with its state; each newer one that does not is
    named through ``say`` with the reason. None when the folder holds no checkpoint.

    Raises:
        FileFormatError: checkpoints are there but none loads (starting afresh would rotate them away).
    """
    checkpoints = list_checkpoints(run_dir)
    for _, path in reversed(checkpoints):
        try:
            return path, load_checkpoint(path)
        except FileFormatError as error:
            say(f"not resuming from {error}")
    if checkpoints:
        raise FileFormatError(
            f"{run_dir}: none of its {len(checkpoints)} checkpoints loads (reasons above); "
            "move them aside to start afresh, or pass resume=PATH"
        )
    return None


def export_model(checkpoint: Path, out: Path) -> Path:
    """The EMA generator and controller of a training checkpoint with its model config and motion space, for
    inference (a fraction of the checkpoint's size: no optimiser states, no live weights, no RNG)."""
    state = load_checkpoint(checkpoint)
    model = {
        "format": MODEL_FORMAT,
        "motion_space": checkpoint_motion_space(state, checkpoint),
        "generator_ema": state["generator_ema"],
        "controller_ema": state["controller_ema"],
        "config": {"model": state["config"]["model"]},
        "source": {"checkpoint": Path(checkpoint).name, "iteration": state["iteration"], "trainer": state["config"].get("trainer")},
    }
    atomic_torch_save(model, Path(out))
    return Path(out)


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Keys whose values differ between two nested config containers, as ``key: saved != current``."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        differences = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                differences.append(f"{name}: absent in the checkpoint, {current[key]!r} now")
            elif key not in current:
                differences.append(f"{name}: {saved[key]!r} in the checkpoint, absent now")
            else:
                differences.extend(config_differences(saved[key], current[key], name))
        return differences
    return [] if saved == current else [f"{prefix}: {saved!r} in the checkpoint, {current!r} now"]


def export_release_checkpoint(state: Mapping, path: Path, epoch: int = 0) -> Path:
    """Write our checkpoint in the release's structure so its inference script can read it.

    ``net_Warp``/``net_G`` carry the DDP ``module.`` prefix the release saves; the release never
    saves generator optimiser states (``opt_G``/``sch_G`` are None).
    """
    iteration = int(state["iteration"])
    prefixed = lambda weights: {f"module.{k}": v for k, v in weights.items()}  # noqa: E731
    release = {
        "net_Warp": prefixed(state["controller"]),
        "net_Warp_ema": dict(state["controller_ema"]),
        "opt_Warp": state["optimizers"]["controller"],
        "sch_Warp": None,
        "net_G": prefixed(state["generator"]),
        "net_G_ema": dict(state["generator_ema"]),
        "opt_G": None,
        "sch_G": None,
        "current_epoch": epoch,
        "current_iteration": iteration,
    }
    path = Path(path)
    if path.suffix != ".pt":
        path = path / f"epoch_{epoch:05d}_iteration_{iteration:09d}_checkpoint.pt"
    atomic_torch_save(release, path)
    return path
