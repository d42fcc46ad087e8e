"""Timing of the animation path (ws → planes → render → super-resolution) for a model preset and speed mode.

Every row carries the settings it was measured with (device, precision, threads, samples per
ray, rendering resolution, compile, allocator setting) and the machine's load average, because
numbers on a shared CPU are only comparable with those.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from otavatar.camera import frontal_camera
from otavatar.config import build_generator, load_model_preset
from otavatar.errors import InputError
from otavatar.metrics.image import psnr
from otavatar.speed import SPEED_MODES, CudaSettings, SpeedMode, configure_cuda, keep_freed_memory, speed_mode, speed_mode_by_name


@dataclass(frozen=True)
class BenchmarkSettings:
    """Defaults of the benchmark (scripts/benchmark.py takes its options' defaults from here).

    ``warmup``: untimed runs first. cuDNN's algorithm search (``cudnn_benchmark``) runs on the first
    call, and CUDA graphs (``torch.compile(mode="reduce-overhead")``) warm up on the first call,
    record on the second and replay from the third: at least :data:`CUDA_GRAPH_WARMUP` runs.
    """

    runs: int = 5
    warmup: int = 3
    batch: int = 1
    seed: int = 0


CUDA_GRAPH_WARMUP = 3
BENCHMARK = BenchmarkSettings()


@dataclass
class BenchmarkResult:
    preset: str
    mode: str
    device: str
    precision: str
    threads: int
    batch: int
    runs: int
    coarse_samples: int
    fine_samples: int
    neural_rendering_resolution: int
    compile: bool
    compile_mode: str | None
    keep_freed_memory: bool
    warmup_seconds: float
    median_seconds_per_batch: float
    seconds_per_frame: float
    frames_per_second: float
    peak_memory_mb: float
    load_average: float | None
    psnr_vs_exact: float | None = None
    tf32: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif _CLEAR_REFS.exists():
        try:
            _CLEAR_REFS.write_text("5")  # Linux: reset the resident-set high-water mark (VmHWM).
        except OSError:
            pass


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory. CPU: peak resident memory of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def benchmark_animation_path(
    preset: str,
    mode: SpeedMode | str = "exact",
    batch: int = BENCHMARK.batch,
    runs: int = BENCHMARK.runs,
    warmup: int = BENCHMARK.warmup,
    device: str = "cpu",
    seed: int = BENCHMARK.seed,
    quality: bool = False,
    allocator_keeps_memory: bool = False,
    compile_mode: str | None = None,
    cuda: CudaSettings = CudaSettings(),
) -> BenchmarkResult:
    """Median wall time of ws → planes → render → super-resolution over ``runs`` after ``warmup`` runs.

    Weights are random, drawn from ``seed`` (timing does not depend on their values); ws are drawn around w_avg.
    ``quality`` adds the PSNR of the mode's deterministic output against the exact one (None for
    the exact mode itself).
    ``allocator_keeps_memory`` applies :func:`otavatar.speed.keep_freed_memory` to this process.
    ``compile_mode`` is passed to ``torch.compile`` when the mode compiles (e.g. ``reduce-overhead``
    for CUDA graphs; every shape in the path is static; it needs ``warmup`` ≥ 3).
    ``cuda``: the CUDA backend switches (cuDNN autotuning, TF32), applied to this process.
    """
    mode = speed_mode_by_name(mode) if isinstance(mode, str) else mode
    if mode.compile and compile_mode == "reduce-overhead" and warmup < CUDA_GRAPH_WARMUP:
        raise InputError(
            f"benchmark: CUDA graphs (compile mode reduce-overhead) record on the 2nd run and replay from the 3rd; "
            f"warmup {warmup} would time the recording: use --warmup {CUDA_GRAPH_WARMUP} or more"
        )
    configure_cuda(cuda)
    torch_device = torch.device(device)
    kept = keep_freed_memory() if allocator_keeps_memory else False
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the same random weights in every process, the caller's RNG untouched
        torch.manual_seed(seed)
        model = build_generator(load_model_preset(preset).generator).eval().to(torch_device)
    ws = (model.w_avg.cpu() + torch.randn(batch, model.num_ws, model.w_dim, generator=generator)).to(torch_device)
    camera = frontal_camera(batch).to(torch_device)
    resolved = mode.resolved(torch_device)
    settings = resolved.settings(model)
    synthesis = torch.compile(model.synthesis, dynamic=False, mode=compile_mode) if mode.compile else model.synthesis

    psnr_vs_exact = None
    # Dynamo cannot guard on tensors created under inference_mode; no_grad serves the compiled path.
    with torch.no_grad() if mode.compile else torch.inference_mode():
        if quality and resolved != SPEED_MODES["exact"]:
            reference = model.synthesis(ws, camera, noise_mode="const", deterministic=True)["image"]
            with speed_mode(model, resolved, torch_device):
                image = synthesis(ws, camera, noise_mode="const", deterministic=True)["image"]
            # The batch as one image: the PSNR of its whole MSE (a float; inf where identical).
            psnr_vs_exact = psnr(image.flatten(0, 1)[None], reference.flatten(0, 1)[None]).item()
            del reference, image
        _reset_peak_memory(torch_device)
        timings = []
        start_warmup = time.perf_counter()
        with speed_mode(model, resolved, torch_device):
            for index in range(warmup + runs):
                synchronize(torch_device)
                start = time.perf_counter()
                synthesis(ws, camera, noise_mode="const")
                synchronize(torch_device)
                if index == warmup - 1:
                    warmup_seconds = time.perf_counter() - start_warmup
                if index >= warmup:
                    timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    return BenchmarkResult(
        preset=preset,
        mode=mode.name,
        device=device_name(torch_device),
        precision=settings["precision"],
        threads=torch.get_num_threads(),
        batch=batch,
        runs=runs,
        coarse_samples=settings["coarse_samples"],
        fine_samples=settings["fine_samples"],
        neural_rendering_resolution=settings["neural_rendering_resolution"],
        compile=mode.compile,
        compile_mode=compile_mode if mode.compile else None,
        keep_freed_memory=kept,
        warmup_seconds=warmup_seconds if warmup else 0.0,
        median_seconds_per_batch=median,
        seconds_per_frame=median / batch,
        frames_per_second=batch / median,
        peak_memory_mb=_peak_memory_mb(torch_device),
        load_average=_load_average(),
        psnr_vs_exact=psnr_vs_exact,
        tf32=cuda.tf32,
    )


def _run_isolated(kwargs: dict, threads: int | None) -> BenchmarkResult:
    if threads:
        torch.set_num_threads(threads)
    return benchmark_animation_path(**kwargs)


def benchmark_in_subprocess(threads: int | None = None, **kwargs) -> BenchmarkResult:
    """:func:`benchmark_animation_path` in a fresh process, so each row's peak memory and allocator state are its own."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_run_isolated, (kwargs, threads))


def _compile_label(result: BenchmarkResult) -> str:
    if not result.compile:
        return "no"
    return "yes" if result.compile_mode in (None, "default") else result.compile_mode


def format_table(results: list[BenchmarkResult]) -> str:
    """A Markdown table, one row per result, with the settings of each number."""
    header = (
        "| preset | mode | device | precision | threads | batch | samples/ray | rays | compile | malloc keep "
        "| s/frame | FPS | peak MB | PSNR vs exact | load |"
    )
    rule = "|" + "---|" * (header.count("|") - 1)
    rows = []
    for r in results:
        quality = "—" if r.psnr_vs_exact is None else f"{r.psnr_vs_exact:.1f} dB"
        load = "—" if r.load_average is None else f"{r.load_average:.1f}"
        precision = f"{r.precision} +TF32" if r.tf32 else r.precision
        rows.append(
            f"| {r.preset} | {r.mode} | {r.device} | {precision} | {r.threads} | {r.batch} "
            f"| {r.coarse_samples}+{r.fine_samples} | {r.neural_rendering_resolution}² | {_compile_label(r)} "
            f"| {'yes' if r.keep_freed_memory else 'no'} | {r.seconds_per_frame:.3f} | {r.frames_per_second:.3f} "
            f"| {r.peak_memory_mb:.0f} | {quality} | {load} |"
        )
    return "\n".join([header, rule, *rows])
