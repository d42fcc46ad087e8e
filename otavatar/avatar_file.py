"""The avatar file: everything one-shot construction produced, loadable with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from otavatar.errors import FileFormatError, InputError, MissingInputError
from otavatar.files import atomic_write, load_torch_file

AVATAR_FORMAT = "otavatar-avatar-v1"
CODES = ("identity_w", "identity_w_plus", "correction", "camera")  # what driving an avatar reads


def save_avatar(path: str | Path, avatar: Mapping[str, Any]) -> Path:
    """Write ``avatar`` (tensors, numbers, strings, lists, dicts of those) atomically."""
    path = Path(path)
    if not path.parent.exists():
        raise MissingInputError(f"avatar {path}: folder {path.parent} does not exist")
    atomic_write(path, lambda handle: torch.save({"format": AVATAR_FORMAT, **avatar}, handle))
    return path


def load_avatar(path: str | Path, model_sha256: str | None = None) -> dict:
    """Read an avatar; refuse one made by a different model than ``model_sha256`` (when given) or holding
    non-finite codes."""
    path = Path(path)
    avatar = load_torch_file(path, "an avatar file of scripts/invert.py")
    if not isinstance(avatar, dict) or avatar.get("format") != AVATAR_FORMAT:
        found = avatar.get("format") if isinstance(avatar, dict) else type(avatar).__name__
        raise FileFormatError(f"avatar {path}: expected format {AVATAR_FORMAT!r}, found {found!r}")
    for key in CODES:
        value = avatar.get(key)
        if value is not None and not (isinstance(value, torch.Tensor) and torch.isfinite(value).all()):
            raise FileFormatError(f"avatar {path}: '{key}' holds NaN or infinite values (or is not a tensor); invert the portrait again")
    made_by = avatar["model"]["checkpoint_sha256"]
    if model_sha256 is not None and made_by != model_sha256:
        raise InputError(
            f"avatar {path} was made with the model whose checkpoint has sha256 {made_by[:12]}…, but the loaded "
            f"checkpoint is {model_sha256[:12]}…; invert the portrait again with this checkpoint"
        )
    return avatar
