"""L1 on eye and mouth regions cut with RoI-align from 68-landmark boxes (reference §5)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

# name: (68-landmark indices (iBUG order), padding in pixels of a 512² image)
LANDMARK_GROUPS = {
    "mouth": (range(48, 68), 10),
    "left_eye": (range(36, 42), 20),
    "right_eye": (range(42, 48), 20),
    "nose": (range(27, 36), 10),
}
# The regions the loss compares, with the side of their RoI-aligned crops.
CROP_SIZES = {"mouth": 120, "left_eye": 80, "right_eye": 80}


def landmark_boxes(keypoints: torch.Tensor, indices: Sequence[int], padding_at_512: int, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Boxes ``(B, 4)`` = (x1, y1, x2, y2) around landmarks ``(B, 68, 2)`` given in pixels of the image.

    As in the release: min/max of the points truncated to whole pixels, padded by
    ``int(padding · H / 512)``. Then clipped to the image (pixel centres 0 … size − 1).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    points = keypoints[:, list(indices)]
    padding = int(padding_at_512 / 512 * height)
    low = points.min(dim=1).values.trunc() - padding
    high = points.max(dim=1).values.trunc() + padding
    boxes = torch.cat([low, high], dim=1)
    # Clamped column by column with Python numbers: no limit tensor copied to the device on every call.
    limits = (width - 1, height - 1)
    return torch.stack([boxes[:, column].clamp(0, limits[column % 2]) for column in range(4)], dim=1)


def region_box(keypoints: torch.Tensor, region: str, image_size: int | tuple[int, int]) -> torch.Tensor:
    """The box ``(B, 4)`` of a named region (``mouth``, ``left_eye``, ``right_eye``, ``nose``)."""
    if region not in LANDMARK_GROUPS:
        raise KeyError(f"unknown face region {region!r}; known: {sorted(LANDMARK_GROUPS)}")
    indices, padding = LANDMARK_GROUPS[region]
    return landmark_boxes(keypoints, indices, padding, image_size)


class RegionLoss(nn.Module):
    """Σ over mouth and eyes of L1 between RoI-aligned crops (mouth 120², eyes 80²) of prediction and target.

    Args:
        release_eye_bug: reproduce the release, whose eye terms crop the target twice (always 0),
            so only the mouth counts; off by default.
    """

    def __init__(self, release_eye_bug: bool = False) -> None:
        super().__init__()
        self.release_eye_bug = release_eye_bug

    def target_crops(self, target: torch.Tensor, keypoints: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per region, the RoI boxes ``(B, 5)`` and the target's crops: pass them as ``target_crops`` to skip recomputing them.

        ``target`` is at the prediction's size and ``keypoints`` ``(B, 68, 2)`` in its pixels.
        """
        size = tuple(target.shape[-2:])
        batch_index = torch.arange(target.shape[0], device=target.device, dtype=target.dtype)[:, None]
        crops = {}
        for name, crop in CROP_SIZES.items():
            boxes = torch.cat([batch_index, region_box(keypoints.to(target.dtype), name, size)], dim=1)
            crops[name] = (boxes, roi_align(target, boxes, output_size=(crop, crop), spatial_scale=1.0))
        return crops

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor,
        target_crops: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """prediction and target ``(B, 3, H, W)`` (the target is area-resized if needed); keypoints ``(B, 68, 2)`` in pixels of the prediction."""
        size = tuple(prediction.shape[-2:])
        if tuple(target.shape[-2:]) != size:
            target = F.interpolate(target, size=size, mode="area")
        if target_crops is None:
            target_crops = self.target_crops(target, keypoints)
        loss = prediction.new_zeros(())
        for name, crop in CROP_SIZES.items():
            boxes, wanted = target_crops[name]
            source = target if self.release_eye_bug and name != "mouth" else prediction
            loss = loss + F.l1_loss(roi_align(source, boxes, output_size=(crop, crop), spatial_scale=1.0), wanted)
        return loss
