"""Timing of the animation path (ws → planes → render → super-resolution) for a model preset."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from otavatar.config import build_generator, load_model_preset


@dataclass
class BenchmarkResult:
    preset: str
    device: str
    dtype: str
    threads: int
    batch: int
    runs: int
    median_seconds_per_batch: float
    frames_per_second: float
    peak_memory_mb: float

    def as_dict(self) -> dict:
        return asdict(self)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is the process-wide resident peak in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark_animation_path(
    preset: str, batch: int = 1, runs: int = 5, warmup: int = 1, device: str = "cpu", seed: int = 0
) -> BenchmarkResult:
    """Median wall time of ws → planes → render → super-resolution over ``runs`` after ``warmup`` runs.

    Weights are random (timing does not depend on their values); ws are drawn around w_avg.
    """
    torch_device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = build_generator(load_model_preset(preset).generator).eval().to(torch_device)
    ws = torch.randn(batch, model.num_ws, model.w_dim, generator=generator).to(torch_device)
    camera = _frontal_camera(batch).to(torch_device)
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    timings = []
    with torch.inference_mode():
        for index in range(warmup + runs):
            _synchronize(torch_device)
            start = time.perf_counter()
            model.synthesis(ws, camera, noise_mode="const")
            _synchronize(torch_device)
            if index >= warmup:
                timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    return BenchmarkResult(
        preset=preset,
        device=device_name(torch_device),
        dtype="float32" if torch_device.type == "cpu" else "float32 (SR fp16)",
        threads=torch.get_num_threads(),
        batch=batch,
        runs=runs,
        median_seconds_per_batch=median,
        frames_per_second=batch / median,
        peak_memory_mb=_peak_memory_mb(torch_device),
    )


def _frontal_camera(batch: int) -> torch.Tensor:
    """EG3D's frontal camera: radius 2.7 on +z looking at the origin, FFHQ focal 4.2647."""
    cam2world = torch.tensor(
        [[1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, -1.0, 2.7], [0, 0, 0, 1.0]]
    )
    intrinsics = torch.tensor([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1.0]])
    return torch.cat([cam2world.flatten(), intrinsics.flatten()]).expand(batch, -1).clone()


def format_table(results: list[BenchmarkResult]) -> str:
    header = "| preset | device | dtype | threads | batch | median s/batch | FPS | peak MB |"
    rule = "|---|---|---|---|---|---|---|---|"
    rows = [
        f"| {r.preset} | {r.device} | {r.dtype} | {r.threads} | {r.batch} | {r.median_seconds_per_batch:.3f} "
        f"| {r.frames_per_second:.3f} | {r.peak_memory_mb:.0f} |"
        for r in results
    ]
    return "\n".join([header, rule, *rows])
