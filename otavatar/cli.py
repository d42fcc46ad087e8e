"""Shared pieces of the user-facing scripts: loading the model, motion files and camera paths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from otavatar.camera import look_at_camera
from otavatar.checkpoints import file_sha256, load_animator
from otavatar.models.animator import Animator
from otavatar.motion import motion_from_coeffs


def load_model(checkpoint: str | Path, device: str) -> tuple[Animator, dict, str]:
    """Animator on ``device``, its model config and the checkpoint's sha256 (the avatar's model identity)."""
    animator, model_config = load_animator(checkpoint)
    return animator.to(device), model_config, file_sha256(checkpoint)


def read_coefficients(path: str | Path) -> torch.Tensor:
    """A motion file: ``(N, 257)``, ``(N, 260)`` or ``(N, 70)`` values in .npy, .txt/.csv or .mat (key ``coeff``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coefficient file {path}: does not exist")
    if path.suffix == ".npy":
        values = np.load(path)
    elif path.suffix == ".mat":
        from scipy.io import loadmat

        content = loadmat(path)
        keys = [k for k in ("coeff", "coeffs", "coeff_3dmm") if k in content]
        if not keys:
            raise KeyError(f"coefficient file {path}: no 'coeff' array (found {sorted(k for k in content if not k.startswith('__'))})")
        values = content[keys[0]]
    else:
        values = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if values.dim() == 1:
        values = values[None]
    if values.dim() != 2 or values.shape[1] not in (70, 257, 260):
        raise ValueError(f"coefficient file {path}: expected (N, 257), (N, 260) or (N, 70) values, found shape {tuple(values.shape)}")
    return motion_from_coeffs(values)


def camera_path(mode: str, count: int, driving: torch.Tensor | None, source: torch.Tensor) -> torch.Tensor:
    """Cameras ``(N, 25)``: ``driving`` (the driving frames' own), ``source`` (the portrait's, fixed),
    ``orbit`` (the release's --rotate path around the source camera's focal), or ``yaw,pitch`` in radians."""
    if mode == "driving":
        if driving is None:
            raise ValueError("--camera driving: the driving motion has no cameras (a coefficient file); use source, orbit or yaw,pitch")
        return driving
    if mode == "source":
        return source.reshape(1, 25).expand(count, -1).clone()
    if mode == "orbit":
        t = torch.arange(count, dtype=torch.float32)
        return look_at_camera(0.5 * torch.sin(2 * math.pi * t / 100), -0.05 + 0.5 * torch.cos(2 * math.pi * t / 100), focal=float(source.reshape(25)[16]))
    try:
        yaw, pitch = (float(v) for v in mode.split(","))
    except ValueError:
        raise ValueError(f"--camera {mode!r}: expected driving, source, orbit or 'yaw,pitch' in radians") from None
    return look_at_camera(torch.full((count,), yaw), torch.full((count,), pitch), focal=float(source.reshape(25)[16]))

