"""L1 on eye and mouth regions cut with RoI-align from 68-landmark boxes (reference §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

# name: (landmark indices, padding in pixels at 512², crop size)
REGIONS = {
    "mouth": (range(48, 68), 10, 120),
    "left_eye": (range(36, 42), 20, 80),
    "right_eye": (range(42, 48), 20, 80),
}


def landmark_boxes(keypoints: torch.Tensor, indices, padding_at_512: int, image_size: int) -> torch.Tensor:
    """Boxes ``(B, 4)`` = (x1, y1, x2, y2) around landmarks ``(B, 68, 2)`` given in pixels of ``image_size``.

    As in the release: min/max of the points truncated to whole pixels, padded by
    ``int(padding · size / 512)``; then clipped to the image.
    """
    points = keypoints[:, list(indices)]
    padding = int(padding_at_512 / 512 * image_size)
    low = points.min(dim=1).values.floor() - padding
    high = points.max(dim=1).values.floor() + padding
    return torch.cat([low, high], dim=1).clamp(0, image_size - 1)


class RegionLoss(nn.Module):
    """Σ over regions of L1 between RoI-aligned crops of the prediction and the target.

    Args:
        release_eye_bug: reproduce the release, whose eye terms crop the target twice (always 0),
            so only the mouth counts; off by default.
    """

    def __init__(self, release_eye_bug: bool = False) -> None:
        super().__init__()
        self.release_eye_bug = release_eye_bug

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """prediction and target ``(B, 3, H, H)``; keypoints ``(B, 68, 2)`` in pixels of H."""
        size = prediction.shape[-1]
        if target.shape[-1] != size:
            target = F.interpolate(target, size=prediction.shape[-2:], mode="area")
        batch_index = torch.arange(prediction.shape[0], device=prediction.device, dtype=prediction.dtype)[:, None]
        loss = prediction.new_zeros(())
        for name, (indices, padding, crop) in REGIONS.items():
            boxes = torch.cat([batch_index, landmark_boxes(keypoints.to(prediction.dtype), indices, padding, size)], dim=1)
            source = target if self.release_eye_bug and name != "mouth" else prediction
            predicted = roi_align(source, boxes, output_size=(crop, crop), spatial_scale=1.0)
            wanted = roi_align(target, boxes, output_size=(crop, crop), spatial_scale=1.0)
            loss = loss + F.l1_loss(predicted, wanted)
        return loss
