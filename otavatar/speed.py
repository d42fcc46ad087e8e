"""Speed modes of the animation path: the exact computation, or a documented faster approximation.

``exact`` (the default everywhere) renders as the preset says, in fp32 (the release's precision).
``fast`` does less work: half the depth samples per ray (24 + 24 instead of 48 + 48 for
FFHQ-512), and the synthesis and super-resolution convolutions under bf16 autocast where the
device has native bf16 (AVX512-BF16 or AMX CPUs, Ampere and later GPUs), fp16 autocast on older
GPUs (there the tri-plane backbone stays fp32, as EG3D trained it, and the super-resolution is
clamped to ±256); the tri-plane skip accumulation, the volume renderer and the density samples
stay fp32. Its quality cost (PSNR against ``exact``) is measured by
``scripts/benchmark.py --quality`` and listed in the README's Performance section.

Apply a mode around any call into the generator (``synthesis``, ``Animator.render``,
``reenact``)::

    with speed_mode(generator, SPEED_MODES["fast"]):
        out = generator.synthesis(ws, camera)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from dataclasses import asdict, dataclass, replace
from typing import Iterator

import torch
from torch import nn

PRECISIONS = ("float32", "bfloat16", "float16", "auto")


@dataclass(frozen=True)
class SpeedMode:
    """How the animation path runs.

    Args:
        name: label in tables.
        sample_scale: multiplies the preset's coarse (``depth_resolution``) and importance
            (``depth_resolution_importance``) samples per ray.
        neural_rendering_resolution: rays per side r; None keeps the preset's (super-resolution
            resizes its input to a fixed size, so a lower r only makes rendering cheaper).
        precision: autocast dtype of the convolutions: ``float32`` (no autocast), ``bfloat16``,
            ``float16``, or ``auto`` (:func:`native_low_precision`).
        compile: run ``synthesis`` through ``torch.compile`` (applied by the benchmark).
    """

    name: str
    sample_scale: float = 1.0
    neural_rendering_resolution: int | None = None
    precision: str = "float32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"speed mode {self.name!r}: precision must be one of {PRECISIONS}, found {self.precision!r}")
        if not 0 < self.sample_scale <= 1:
            raise ValueError(f"speed mode {self.name!r}: sample_scale must be in (0, 1], found {self.sample_scale}")
        if self.neural_rendering_resolution is not None and self.neural_rendering_resolution < 2:
            raise ValueError(
                f"speed mode {self.name!r}: neural_rendering_resolution must be >= 2, found {self.neural_rendering_resolution}"
            )

    def resolved(self, device: torch.device | str) -> SpeedMode:
        """This mode with ``precision='auto'`` replaced by what ``device`` computes natively."""
        if self.precision != "auto":
            return self
        return replace(self, precision=native_low_precision(torch.device(device)))

    def samples(self, generator: nn.Module) -> tuple[int, int]:
        """Coarse and importance samples per ray of ``generator`` in this mode (call it outside
        :func:`speed_mode`, which changes the generator's settings)."""
        coarse = generator.rendering_kwargs["depth_resolution"]
        fine = generator.rendering_kwargs["depth_resolution_importance"]
        if self.sample_scale == 1:
            return coarse, fine
        return max(2, round(coarse * self.sample_scale)), round(fine * self.sample_scale)

    def settings(self, generator: nn.Module) -> dict:
        """The effective settings on ``generator``, for tables."""
        coarse, fine = self.samples(generator)
        return {
            "coarse_samples": coarse,
            "fine_samples": fine,
            "neural_rendering_resolution": self.neural_rendering_resolution or generator.neural_rendering_resolution,
            "precision": self.precision,
            "compile": self.compile,
        }

    def as_dict(self) -> dict:
        return asdict(self)


SPEED_MODES = {
    "exact": SpeedMode("exact"),
    "fast": SpeedMode("fast", sample_scale=0.5, precision="auto"),
}


def speed_mode_by_name(name: str) -> SpeedMode:
    if name not in SPEED_MODES:
        raise ValueError(f"speed mode {name!r}: expected one of {sorted(SPEED_MODES)}")
    return SPEED_MODES[name]


def native_low_precision(device: torch.device) -> str:
    """The reduced precision ``device`` computes natively: bf16 on GPUs that have it (Ampere and
    later: A100, H100, RTX 30xx+), fp16 on older GPUs, bf16 on CPUs with AVX512-BF16 or AMX
    (elsewhere oneDNN emulates bf16, slower than fp32), else fp32.

    bf16 has fp32's range; fp16 overflows past ±65504, so under fp16 the tri-plane backbone stays
    fp32 and unclamped layers are clamped (:meth:`TriPlaneGenerator.synthesize_planes`,
    :func:`otavatar.models.stylegan2.activation_clamp`).
    """
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bfloat16"
    return "float32"


@contextlib.contextmanager
def speed_mode(generator: nn.Module, mode: SpeedMode, device: torch.device | str | None = None) -> Iterator[SpeedMode]:
    """Run ``generator`` (a TriPlaneGenerator) in ``mode`` inside the block; restores it afterwards.

    Yields the mode with its precision resolved for the device (default: the generator's).
    """
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    mode = mode.resolved(device)
    saved_kwargs = dict(generator.rendering_kwargs)
    saved_resolution = generator.neural_rendering_resolution
    saved_dtype = generator.autocast_dtype
    coarse, fine = mode.samples(generator)
    generator.rendering_kwargs["depth_resolution"] = coarse
    generator.rendering_kwargs["depth_resolution_importance"] = fine
    if mode.neural_rendering_resolution is not None:
        generator.neural_rendering_resolution = mode.neural_rendering_resolution
    # The generator's own convolutions only: other networks in the block (controller, losses, metric
    # extractors) keep their precision.
    generator.autocast_dtype = getattr(torch, mode.precision) if mode.precision != "float32" else None
    try:
        yield mode
    finally:
        generator.rendering_kwargs.clear()
        generator.rendering_kwargs.update(saved_kwargs)
        generator.neural_rendering_resolution = saved_resolution
        generator.autocast_dtype = saved_dtype


@dataclass(frozen=True)
class CudaSettings:
    """Process-wide CUDA backend switches, applied by :func:`configure_cuda` (harmless without a GPU).

    Args:
        cudnn_benchmark: cuDNN times its convolution algorithms on the first call of each input shape
            and keeps the fastest. Shapes are fixed by the preset, the batch size and the rendering
            resolution, so only the first calls pay (benchmarks warm up past them).
        tf32: TF32 tensor cores for fp32 matrix products and convolutions (Ampere and later): faster,
            with a 10-bit mantissa. Off by default because parity with the release (the exact mode)
            holds only in full fp32; PyTorch's own default turns it on for cuDNN convolutions.
    """

    cudnn_benchmark: bool = True
    tf32: bool = False


def configure_cuda(settings: CudaSettings = CudaSettings()) -> None:
    """Apply ``settings`` to this process's CUDA backends."""
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    precision = "tf32" if settings.tf32 else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


def flush_denormals() -> None:
    """Flush denormal floats to zero on the CPU for this process (training).

    A trained generator's empty space drives densities toward zero and their gradients into denormal
    floats, which run 10-20× slower on x86 CPUs; flushing them changes nothing that matters.
    """
    torch.set_flush_denormal(True)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS (Linux only).

    Every frame allocates and frees a few hundred MB in tensors of 25-135 MB; by default glibc
    maps each with mmap and unmaps it on free, so the next frame page-faults all of it in again
    (≈ 15 % of the CPU time of a frame here). Process-wide and harmless for correctness; returns
    False where unavailable. Only the benchmark calls it, in the process it measures
    (:func:`otavatar.benchmarking.benchmark_animation_path`'s ``allocator_keeps_memory``, on by default in
    scripts/benchmark.py); the inference scripts leave the allocator as it is.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**30))
