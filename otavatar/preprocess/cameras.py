"""Per-frame camera ``condition`` (angles, translation, focal) from regressed Deep3DFaceRecon poses.

The release turns a ``condition`` into an EG3D camera with the conversion EG3D itself applies to
Deep3DFaceRecon poses when it builds FFHQ (:func:`otavatar.camera.condition_to_camera`): R from the
angles, camera centre from −R·(t − 10·ẑ) scaled into EG3D's world (a Deep3DFaceRecon unit is 0.18225
world units), intrinsics 4.2647·focal/1050. A pose regressed on our crops is re-expressed in that form:

- angles: the release negates the first two stored angles before building R, so they are stored
  negated and the roll as is; the camera's rotation is then Deep3DFaceRecon's;
- focal: fixed at 1100, the value of the release tracker on its 512² crops;
- translation: Deep3DFaceRecon's translation lives in its 224² aligned image (focal 1015 px, camera
  at depth 10). Its head centre (the world origin) appears at crop pixel ``t + 1015·(t_x, t_y)/(d·s)``
  (alignment scale ``s`` and offset ``t``, ``d = 10 − t_z``, y up) with a size of ``1015/(d·s)`` pixels
  per unit. The stored translation is the one whose camera sees the origin at that pixel with that
  size (:func:`otavatar.camera.condition_from_view`), so renders line up with the crops.

Then angles and translation are averaged over ``±smoothing_radius`` frames.
"""

from __future__ import annotations

import numpy as np
import torch

from otavatar.camera import FFHQ_FOCAL, TRACKER_FOCAL, WORLD_UNITS_PER_TRACKER_UNIT, condition_from_view
from otavatar.motion import ANGLES, CROP, TRANSLATION

DEEP3D_FOCAL = 1015.0  # Deep3DFaceRecon's focal in its 224² image
DEEP3D_DEPTH = 10.0  # its camera's distance from the origin
RELEASE_FOCAL = 1100.0  # the release tracker's fixed focal on 512² crops


def head_pixel(coefficients: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the fitted head centre appears in the crop, ``(N, 2)`` pixels (y down), and its pixels per unit ``(N,)``."""
    crop = coefficients[:, CROP]
    scale, offset = crop[:, 0], crop[:, 1:]
    translation = coefficients[:, TRANSLATION]
    pixels_per_unit = DEEP3D_FOCAL / (scale * (DEEP3D_DEPTH - translation[:, 2]))
    centre = offset + pixels_per_unit[:, None] * translation[:, :2]
    centre[:, 1] = crop_size - 1 - centre[:, 1]
    return centre, pixels_per_unit


def condition_from_coefficients(
    coefficients: np.ndarray, crop_size: int = 512, focal: float = RELEASE_FOCAL, smoothing_radius: int = 2
) -> np.ndarray:
    """Reference-layout coefficients ``(N, 260)`` regressed on ``crop_size``² crops → ``condition (N, 7)``."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if coefficients.ndim != 2 or coefficients.shape[1] != 260:
        raise ValueError(f"coefficients: expected shape (N, 260) with the crop columns, found {coefficients.shape}")
    centre, pixels_per_unit = head_pixel(coefficients, crop_size)
    focal_px = crop_size * FFHQ_FOCAL * focal / TRACKER_FOCAL
    depth = focal_px * WORLD_UNITS_PER_TRACKER_UNIT / pixels_per_unit
    # Pixel centres: pixel k covers [k, k+1), the principal point is at crop_size / 2.
    offsets = (centre + 0.5 - crop_size / 2) / focal_px * depth[:, None]
    head = torch.from_numpy(np.concatenate([offsets, depth[:, None]], axis=1))
    angles = coefficients[:, ANGLES] * np.array([-1.0, -1.0, 1.0])
    condition = condition_from_view(torch.from_numpy(angles), head, focal).double().numpy()
    return smooth(condition, smoothing_radius).astype(np.float32)


def smooth(values: np.ndarray, radius: int) -> np.ndarray:
    """Moving average over ``±radius`` frames along the first axis, edges replicated; ``radius=0`` keeps the values."""
    if radius <= 0 or len(values) < 2:
        return values
    padded = np.pad(values, ((radius, radius),) + ((0, 0),) * (values.ndim - 1), mode="edge")
    window = 2 * radius + 1
    cumulative = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    return (cumulative[window:] - cumulative[:-window]) / window
