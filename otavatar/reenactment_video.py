"""What a reenactment writes: the mp4 (optionally beside the driving frames, with the driver's audio), every
frame as PNG, and the depth maps as a second mp4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from otavatar.files import atomic_write
from otavatar.videos import to_uint8_frames, write_video


@dataclass
class ReenactmentOutputs:
    """``video``: the mp4; ``beside``: frames ``(N, 3, H, W)`` in [−1, 1] put left of the result (None: the result
    alone); ``audio``: the file whose audio is kept; ``frames_dir``: also every frame as PNG; ``depth``: also the
    depth maps as an mp4, black at ``depth_range[0]``, white at ``depth_range[1]``."""

    video: Path
    fps: float
    beside: torch.Tensor | None = None
    audio: Path | None = None
    frames_dir: Path | None = None
    depth: Path | None = None
    depth_range: tuple[float, float] = (0.0, 1.0)


def _depth_frames(depth: torch.Tensor, size: tuple[int, int], depth_range: tuple[float, float]) -> np.ndarray:
    """Depth ``(b, 1, h, w)`` → grey uint8 frames at ``size``, normalised to ``depth_range``."""
    near, far = depth_range
    depth = F.interpolate(depth, size=size, mode="nearest")
    return to_uint8_frames(((depth - near) / (far - near) * 2 - 1).repeat(1, 3, 1, 1))


def write_reenactment(batches: Iterable[dict[str, torch.Tensor]], outputs: ReenactmentOutputs,
                      on_frames: Callable[[int], None] | None = None) -> int:
    """Write the frames of ``batches`` (dicts with ``image`` and ``image_depth``, as
    :meth:`otavatar.pipeline.Pipeline.drive` yields) as ``outputs`` asks; returns the number of frames.
    ``on_frames(n)`` is called after each batch of ``n`` frames."""
    depth_frames: list[np.ndarray] = []
    count = 0
    if outputs.frames_dir:
        outputs.frames_dir.mkdir(parents=True, exist_ok=True)

    def frames() -> Iterator[np.ndarray]:
        nonlocal count
        for batch in batches:
            images = batch["image"].cpu()
            if outputs.depth:
                depth_frames.append(_depth_frames(batch["image_depth"].cpu(), images.shape[-2:], outputs.depth_range))
            if outputs.beside is not None:
                images = torch.cat([outputs.beside[count : count + images.shape[0]], images], dim=3)
            for offset, image in enumerate(images):
                if outputs.frames_dir:
                    atomic_write(outputs.frames_dir / f"{count + offset:06d}.png",
                                 lambda handle: save_image(image, handle, format="png", normalize=True, value_range=(-1, 1)))
            count += images.shape[0]
            if on_frames:
                on_frames(images.shape[0])
            yield from to_uint8_frames(images)

    write_video(frames(), outputs.video, outputs.fps, audio_source=outputs.audio)
    if outputs.depth:
        write_video((frame for batch in depth_frames for frame in batch), outputs.depth, outputs.fps)
    return count
