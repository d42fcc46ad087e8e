"""Model presets from configs/ and building models from them.

The same YAML presets serve training, inversion, reenactment, evaluation and benchmarks: a
preset is ``configs/model/<name>.yaml`` with a ``generator`` block (the release's constructor
keywords) and a ``controller`` block.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from otavatar.errors import InputError, MissingInputError
from otavatar.inversion import InversionSettings
from otavatar.models.animator import Animator
from otavatar.models.controller import MotionController
from otavatar.models.eg3d import TriPlaneGenerator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
Settings = TypeVar("Settings")


def _names(folder: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / folder).glob("*.yaml"))


def _preset_file(folder: str, name_or_path: str | Path, kind: str, listed_as: str) -> Path:
    """``configs/<folder>/<name>.yaml``, or ``name_or_path`` itself when it is a YAML path; missing files named."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / folder / f"{name_or_path}.yaml"
    if not path.is_file():
        raise MissingInputError(f"{kind} {str(name_or_path)!r}: {path} does not exist; {listed_as}: {_names(folder)}")
    return path


def model_presets() -> list[str]:
    return _names("model")


def load_model_preset(name_or_path: str | Path) -> DictConfig:
    """A preset by name (``tiny``, ``eg3d_ffhq512``) or by YAML path."""
    path = _preset_file("model", name_or_path, "model preset", "presets")
    cfg = OmegaConf.load(path)
    for key in ("generator", "controller"):
        if key not in cfg:
            raise InputError(f"model preset {path}: missing the '{key}' block")
    return cfg


def typed_settings(cls: type[Settings], values: Mapping[str, Any], where: str = "", select: bool = False) -> Settings:
    """The dataclass ``cls`` from config ``values``, each checked against its field's type (OmegaConf's
    validation) and unknown keys refused (``select``: only ``cls``'s fields are read from ``values``), before
    any work; the error names the key. The one conversion of YAML to settings: lists become the tuples a field declares."""
    if select:
        values = {field.name: values[field.name] for field in fields(cls) if field.name in values}
    try:
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as error:
        key = ".".join(part for part in (where, str(error.full_key)) if part)
        raise InputError(f"{key}: {str(error.msg).splitlines()[0]}") from error
    tuples = {field.name: tuple(getattr(settings, field.name)) for field in fields(cls)
              if str(field.type).startswith("tuple") and isinstance(getattr(settings, field.name), list)}
    return replace(settings, **tuples)


def _plain(cfg: Mapping[str, Any] | DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_generator(generator_cfg: Mapping[str, Any] | DictConfig) -> TriPlaneGenerator:
    return TriPlaneGenerator(**_plain(generator_cfg))


def build_controller(controller_cfg: Mapping[str, Any] | DictConfig) -> MotionController:
    return MotionController(**_plain(controller_cfg))


def build_animator(model_cfg: DictConfig | Mapping[str, Any]) -> Animator:
    """Generator + controller of a model preset, with random weights."""
    return Animator(build_generator(model_cfg["generator"]), build_controller(model_cfg["controller"]))


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The Hydra config tree composed as scripts/train.py sees it (defaults lists resolved)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [])


def inversion_presets() -> list[str]:
    return _names("inversion")


def load_inversion_preset(name_or_path: str | Path) -> InversionSettings:
    """An inversion schedule of ``configs/inversion`` by name (``release``, ``fast``) or by YAML path."""
    path = _preset_file("inversion", name_or_path, "inversion schedule", "schedules")
    return typed_settings(InversionSettings, OmegaConf.load(path), str(path))


def load_loss_preset(name: str) -> DictConfig:
    """A loss preset of ``configs/loss`` (``offline``, ``release``), composed."""
    return compose_config([f"loss={name}"]).loss
