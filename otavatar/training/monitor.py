"""Training logs on the main process: progress bar, TensorBoard scalars and image grids, a plain-text log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import torch
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from otavatar.files import atomic_write, atomic_write_text


class TrainingMonitor:
    """Everything a run writes besides checkpoints. Inactive (writes nothing) on non-main processes."""

    def __init__(self, run_dir: Path, total_iterations: int, start_iteration: int, active: bool = True) -> None:
        self.active = active
        self.run_dir = Path(run_dir)
        self._last_time = time.perf_counter()
        self._last_iteration = start_iteration
        if not active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "images").mkdir(exist_ok=True)
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_iteration)
        self.text_log = open(self.run_dir / "log.txt", "a", encoding="utf-8")
        self.progress = tqdm(total=total_iterations, initial=start_iteration, desc="train", dynamic_ncols=True)

    def log_scalars(self, iteration: int, scalars: Mapping[str, float], batch_size: int) -> None:
        if not self.active:
            return
        now = time.perf_counter()
        iterations = max(iteration - self._last_iteration, 1)
        seconds_per_iteration = (now - self._last_time) / iterations
        self._last_time, self._last_iteration = now, iteration
        scalars = dict(scalars)
        scalars["throughput/iterations_per_second"] = 1 / seconds_per_iteration
        scalars["throughput/samples_per_second"] = batch_size / seconds_per_iteration
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, iteration)
        summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items()))
        self.text_log.write(f"iteration {iteration} {summary}\n")
        self.text_log.flush()
        losses = {k.split("/")[-1]: v for k, v in scalars.items() if k.startswith("refine/")}
        self.progress.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)

    def advance(self, iterations: int = 1) -> None:
        if self.active:
            self.progress.update(iterations)

    def log_images(self, iteration: int, rows: Mapping[str, torch.Tensor]) -> Path | None:
        """One grid row per entry (all ``(N, 3, H, W)`` in [−1, 1], resized to the first row's size)."""
        if not self.active:
            return None
        size = next(iter(rows.values())).shape[-2:]
        images = [torch.nn.functional.interpolate(row.float(), size=size, mode="nearest") for row in rows.values()]
        count = images[0].shape[0]
        grid = make_grid(torch.cat(images).clamp(-1, 1), nrow=count, normalize=True, value_range=(-1, 1))
        self.writer.add_image("samples/" + "|".join(rows), grid, iteration)
        path = self.run_dir / "images" / f"iteration_{iteration:09d}.png"
        atomic_write(path, lambda handle: save_image(grid, handle, format="png"))
        return path

    def record_config(self, config: Mapping) -> None:
        """The run's resolved config as ``config.yaml``, written once the run has been accepted (resume checked)."""
        if self.active:
            atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(dict(config))))

    def message(self, text: str) -> None:
        if self.active:
            tqdm.write(text)
            self.text_log.write(text + "\n")
            self.text_log.flush()

    def close(self) -> None:
        if self.active:
            self.progress.close()
            self.writer.close()
            self.text_log.close()
