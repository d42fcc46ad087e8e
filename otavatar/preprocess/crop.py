"""FOMM-style square crops: one box per video around the tracked face, resized to the dataset size.

The reference data (shared/notes/reference-otavatar.md §6) was cropped with First Order Motion
Model's ``crop-video.py``: the union of the face boxes over a video, enlarged by ``increase`` of its
size on every side and made square, then resized to 512². FOMM clamps the enlarged box to the frame,
which squashes faces near an edge; here the box stays square and the part outside the frame is
black, so faces keep their aspect ratio.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image

DEFAULT_CROP_INCREASE = 0.1  # FOMM's default margin, for model configs that do not record theirs


def crop_increase(model_config: Mapping[str, Any]) -> float:
    """The crop margin of a model's training data (``crop.increase`` of its preset)."""
    return float(model_config.get("crop", {}).get("increase", DEFAULT_CROP_INCREASE))


def crop_box(boxes: np.ndarray, increase: float) -> np.ndarray:
    """Square crop ``(x0, y0, x1, y1)`` around the union of face boxes ``(N, 4)``.

    Like FOMM's ``compute_bbox``: each side grows by ``increase`` of the box's size, and the shorter
    side grows further to match the longer one.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    left, top = boxes[:, 0].min(), boxes[:, 1].min()
    right, bottom = boxes[:, 2].max(), boxes[:, 3].max()
    side = max(right - left, bottom - top) * (1 + 2 * increase)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    return np.array([centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2])


def crop_image(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Cut the square ``box`` out of a uint8 ``(H, W, 3)`` image (black outside it) and resize to ``(size, size, 3)``.

    The box is resampled exactly (sub-pixel corners), bicubic, as FOMM's ffmpeg scaling does.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    scale = (x1 - x0) / size
    # PIL's affine transform maps output pixel (u, v) to input (a·u + b·v + c, d·u + e·v + f).
    transformed = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, (scale, 0.0, x0, 0.0, scale, y0), resample=Image.Resampling.BICUBIC
    )
    return np.asarray(transformed)


def to_crop_coordinates(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Image-pixel points ``(..., 2)`` → pixel coordinates in the ``size``² crop of ``box``."""
    scale = size / (box[2] - box[0])
    return ((np.asarray(points, dtype=np.float64) - box[:2]) * scale).astype(np.float32)
