"""Reenactment: an avatar's identity code + a motion sequence + a camera path → frames.

Frames are rendered in batches; motion windows repeated inside a batch (a still pose seen from a
moving camera) share one tri-plane, so free-view rendering does not rerun the synthesis network.
"""

from __future__ import annotations

from typing import Iterator

import torch

from otavatar.inversion import correct_intrinsics
from otavatar.models.animator import Animator


@torch.no_grad()
def reenact(
    animator: Animator,
    identity_code: torch.Tensor,
    motion_windows: torch.Tensor,
    cameras: torch.Tensor,
    correction: torch.Tensor | None = None,
    batch_size: int = 8,
    super_resolve: bool = True,
    clamp: bool = False,
    deterministic: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Render w_id + C(x_t) from p_t for every frame t, one batch at a time.

    Args:
        identity_code: w_id ``(1, 1, 512)`` or ``(1, num_ws, 512)``.
        motion_windows: x ``(N, 70, 27)``.
        cameras: p ``(N, 25)``.
        correction: the avatar's intrinsics correction ``(1, 18)``, applied to every camera.
        clamp: clamp ws to w_avg ± 5 (the release's final render does not).
        deterministic: fixed depth samples, so a still avatar does not flicker.

    Yields:
        dicts with ``image`` ``(b, 3, H, W)`` (when ``super_resolve``), ``image_raw``, ``image_depth``.
    """
    if motion_windows.shape[0] != cameras.shape[0]:
        raise ValueError(f"reenactment: {motion_windows.shape[0]} motion windows but {cameras.shape[0]} cameras")
    if identity_code.shape[0] != 1:
        raise ValueError(f"reenactment: expected one identity code (1, L, 512), found {tuple(identity_code.shape)}")
    device = identity_code.device
    for start in range(0, motion_windows.shape[0], batch_size):
        windows = motion_windows[start : start + batch_size].to(device)
        camera = cameras[start : start + batch_size].to(device)
        if correction is not None:
            camera = correct_intrinsics(camera, correction.to(device).expand(camera.shape[0], -1))
        unique_windows, inverse = torch.unique(windows.flatten(1), dim=0, return_inverse=True)
        ws, planes = animator.planes(
            identity_code.expand(unique_windows.shape[0], -1, -1), unique_windows.view(-1, *windows.shape[1:]), clamp
        )
        out = animator.render(
            None, None, camera, deterministic=deterministic, super_resolve=super_resolve, planes=(ws[inverse], planes[inverse])
        )
        yield {key: out[key] for key in ("image", "image_raw", "image_depth") if key in out}
