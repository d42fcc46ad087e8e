"""The avatar file: everything one-shot construction produced, loadable with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from otavatar.files import atomic_write

AVATAR_FORMAT = "otavatar-avatar-v1"


def save_avatar(path: str | Path, avatar: Mapping[str, Any]) -> Path:
    """Write ``avatar`` (tensors, numbers, strings, lists, dicts of those) atomically."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"avatar {path}: folder {path.parent} does not exist")
    atomic_write(path, lambda handle: torch.save({"format": AVATAR_FORMAT, **avatar}, handle))
    return path


def load_avatar(path: str | Path, model_sha256: str | None = None) -> dict:
    """Read an avatar; refuse one made by a different model than ``model_sha256`` (when given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"avatar {path}: file does not exist")
    try:
        avatar = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"avatar {path}: cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(avatar, dict) or avatar.get("format") != AVATAR_FORMAT:
        raise ValueError(f"avatar {path}: expected format {AVATAR_FORMAT!r}, found {avatar.get('format') if isinstance(avatar, dict) else type(avatar).__name__!r}")
    made_by = avatar["model"]["checkpoint_sha256"]
    if model_sha256 is not None and made_by != model_sha256:
        raise ValueError(
            f"avatar {path} was made with the model whose checkpoint has sha256 {made_by[:12]}…, but the loaded "
            f"checkpoint is {model_sha256[:12]}…; invert the portrait again with this checkpoint"
        )
    return avatar
