"""Camera paths of reenactment: the driving frames' own cameras, the portrait's, the release's orbit
(``--rotate``) or a fixed yaw and pitch."""

from __future__ import annotations

import math

import torch

from otavatar.camera import look_at_camera
from otavatar.errors import InputError

CAMERA_MODES = ("driving", "source", "orbit")  # or "yaw,pitch" in radians


def yaw_pitch(mode: str) -> tuple[float, float] | None:
    """``"yaw,pitch"`` in radians as two finite numbers; None when ``mode`` is not that."""
    try:
        yaw, pitch = (float(v) for v in mode.split(","))
    except ValueError:
        return None
    return (yaw, pitch) if math.isfinite(yaw) and math.isfinite(pitch) else None


def camera_path(mode: str, count: int, driving: torch.Tensor | None, source: torch.Tensor) -> torch.Tensor:
    """Cameras p ``(N, 25)``: ``driving`` (the driving frames' own), ``source`` (the portrait's, fixed),
    ``orbit`` (the release's --rotate path around the source camera's focal), or ``yaw,pitch`` in radians."""
    if mode == "driving":
        if driving is None:
            raise InputError("--camera driving: the driving motion has no cameras (a coefficient file); use source, orbit or yaw,pitch")
        return driving
    if mode == "source":
        return source.reshape(1, 25).expand(count, -1).clone()
    if mode == "orbit":
        t = torch.arange(count, dtype=torch.float32)
        return look_at_camera(0.5 * torch.sin(2 * math.pi * t / 100), -0.05 + 0.5 * torch.cos(2 * math.pi * t / 100), focal=float(source.reshape(25)[16]))
    angles = yaw_pitch(mode)
    if angles is None:
        raise InputError(f"--camera {mode!r}: expected driving, source, orbit or 'yaw,pitch' in radians")
    yaw, pitch = angles
    return look_at_camera(torch.full((count,), yaw), torch.full((count,), pitch), focal=float(source.reshape(25)[16]))
