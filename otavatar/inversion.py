"""One-shot avatar construction: inverting portraits to the identity code w_id (paper §3.3).

The identity code starts from w_avg, in W ``(B, 1, 512)`` or W+ ``(B, num_ws, 512)``; a learned
correction of the normalised intrinsics absorbs the crop and focal mismatch of real data.
"""

from __future__ import annotations

import torch

from otavatar.models.eg3d import TriPlaneGenerator


def initial_identity_code(generator: TriPlaneGenerator, batch_size: int, space: str = "w") -> torch.Tensor:
    """w_avg repeated: ``(B, 1, 512)`` for W or ``(B, num_ws, 512)`` for W+ (a fresh leaf tensor)."""
    layers = {"w": 1, "w_plus": generator.num_ws}
    if space not in layers:
        raise ValueError(f"identity space: expected 'w' or 'w_plus', found {space!r}")
    return generator.w_avg.detach().reshape(1, 1, -1).repeat(batch_size, layers[space], 1).clone()


def correct_intrinsics(camera_label: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    """Apply the release's learned intrinsics correction: K ← K · (1 + tanh s) + t on all 9 entries.

    Args:
        camera_label: p ``(B, 25)``.
        correction: ``(B, 18)`` = s (9) ++ t (9); zeros leave the camera unchanged.
    """
    if correction.shape != (camera_label.shape[0], 18):
        raise ValueError(f"intrinsics correction: expected shape ({camera_label.shape[0]}, 18), found {tuple(correction.shape)}")
    intrinsics = camera_label[:, 16:] * (1 + torch.tanh(correction[:, :9])) + correction[:, 9:]
    return torch.cat([camera_label[:, :16], intrinsics], dim=1)
