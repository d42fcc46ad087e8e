"""Loading released weights: NVIDIA's EG3D ``.pkl``, ``.pth`` state dicts, OTAvatar's training checkpoint.

NVIDIA's pickles carry the source code of their classes and normally execute it when loaded. The
restricted unpickler here rebuilds only tensors, plain containers and the records of persistent
objects, never imports or runs the embedded source, and refuses any other global.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from otavatar.errors import FileFormatError, MissingInputError
from otavatar.files import load_state_dict_checked, load_torch_bytes, load_torch_file, state_dict_mismatches
from otavatar.models.animator import Animator
from otavatar.models.controller import MotionController
from otavatar.models.eg3d import TriPlaneGenerator
from otavatar.motion import MOTION_SPACES

UNUSED_GENERATOR_KEYS = ("dataset_label_std",)
# The ``format`` of otavatar's own files: written by otavatar.training.checkpointing, read here.
CHECKPOINT_FORMAT = "otavatar-train-v1"
MODEL_FORMAT = "otavatar-model-v1"  # inference only: EMA weights and the model config


class CheckpointError(FileFormatError):
    """A checkpoint file that cannot be used: names the file and what was expected and found."""


# -- the restricted unpickler ------------------------------------------------------------------


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class PersistentRecord(dict):
    """What a persistent EG3D object becomes: its class name and pickled state, nothing executed."""


class ModulePlaceholder:
    """A non-persistent class of the pickle (e.g. ``training.triplane.OSGDecoder``): keeps its state only."""

    qualified_name = ""

    def __setstate__(self, state: dict) -> None:
        self.state = state


class EasyDict(dict):
    def __setstate__(self, state: dict) -> None:
        self.update(state)


def _reconstruct_persistent_obj(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError(f"unexpected persistent object record {type(meta).__name__}")
    return PersistentRecord(class_name=meta.get("class_name"), version=meta.get("version"), state=meta.get("state", {}))




def _numpy_scalar(dtype, data):
    return np.frombuffer(data, dtype=dtype)[0]


def _placeholder(module: str, name: str) -> type:
    return type(name, (ModulePlaceholder,), {"qualified_name": f"{module}.{name}"})


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch.storage", "_load_from_bytes"): load_torch_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Allows the globals of an EG3D network pickle and nothing else."""

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.startswith("training.") or module.startswith("torch.nn.modules."):
            return _placeholder(module, name)
        raise RefusedGlobalError(
            f"{self.source}: refusing to load global {module}.{name}; an EG3D network pickle holds only tensors, "
            "containers and network records"
        )


def _module_state(obj: Any) -> dict:
    if isinstance(obj, PersistentRecord):
        return obj["state"]
    if isinstance(obj, ModulePlaceholder):
        return obj.state
    raise CheckpointError(f"unexpected object {type(obj).__name__} where a network module was expected")


def _collect_state_dict(obj: Any, prefix: str, out: dict) -> None:
    """Rebuild ``state_dict()`` order: parameters, persistent buffers, then children, recursively."""
    state = _module_state(obj)
    for name, value in state.get("_parameters", {}).items():
        if value is not None:
            out[prefix + name] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    skipped = set(state.get("_non_persistent_buffers_set", ()))
    for name, value in state.get("_buffers", {}).items():
        if value is not None and name not in skipped:
            out[prefix + name] = value
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            _collect_state_dict(child, f"{prefix}{name}.", out)


def read_eg3d_pickle(path: str | Path, network: str = "G_ema") -> dict:
    """Read one network of NVIDIA's EG3D pickle without running its code.

    Returns:
        ``{'state_dict', 'init_kwargs', 'rendering_kwargs', 'neural_rendering_resolution'}``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: file does not exist (expected an EG3D network pickle)")
    try:
        with open(path, "rb") as handle:
            data = RestrictedUnpickler(handle, str(path)).load()
    except RefusedGlobalError as error:
        raise CheckpointError(str(error)) from error
    except (pickle.UnpicklingError, EOFError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a readable EG3D pickle ({type(error).__name__}: {error}); the file may be truncated") from error
    if not isinstance(data, dict) or network not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: expected a dict with key '{network}', found {found}")
    record = data[network]
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"{path}: '{network}' is not a persistent network record")
    state_dict: dict = {}
    _collect_state_dict(record, "", state_dict)
    state = record["state"]
    return {
        "state_dict": state_dict,
        "init_kwargs": _plain(state.get("_init_kwargs", {})),
        "rendering_kwargs": _plain(state.get("rendering_kwargs", {})),
        "neural_rendering_resolution": state.get("neural_rendering_resolution"),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- state dicts -------------------------------------------------------------------------------


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path, what: str) -> None:
    """Load ``state_dict`` into ``module``, every key and shape checked; a :class:`CheckpointError` lists the misfits."""
    load_state_dict_checked(module, state_dict, CheckpointError, f"{source}: the {what} weights do not fit the model")


def read_generator_state(path: str | Path) -> dict:
    """Generator weights from an EG3D ``.pkl``, a ``{'G_ema': ...}`` ``.pth`` (with the architecture when it
    records its model preset under ``'model'``, and the parameter ``'embedding'``'s state dict when it has
    one, as scripts/pretrain_generator.py writes them), or a bare state dict."""
    path = Path(path)
    if path.suffix == ".pkl":
        return {**read_eg3d_pickle(path), "embedding": None}
    data = load_torch_file(path, "generator weights", CheckpointError)
    init_kwargs = embedding = None
    if isinstance(data, Mapping) and "G_ema" in data:
        model = data.get("model")
        init_kwargs = dict(model["generator"]) if isinstance(model, Mapping) and "generator" in model else None
        embedding = data.get("embedding")
        data = data["G_ema"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a generator state dict or {{'G_ema': state_dict}}, found {type(data).__name__}")
    return {"state_dict": dict(data), "init_kwargs": init_kwargs, "rendering_kwargs": None, "neural_rendering_resolution": None, "embedding": embedding}


def load_generator(path: str | Path, generator_kwargs: Mapping[str, Any] | None = None) -> TriPlaneGenerator:
    """A TriPlaneGenerator with the file's weights, loaded strictly.

    Args:
        generator_kwargs: the architecture (a model preset's ``generator`` block). Optional for
            ``.pkl`` files, which record their own constructor arguments.
    """
    return generator_from_state(read_generator_state(path), path, generator_kwargs)


def generator_from_state(content: Mapping[str, Any], source: str | Path, generator_kwargs: Mapping[str, Any] | None = None) -> TriPlaneGenerator:
    """The generator of :func:`read_generator_state`'s ``content`` read from ``source`` (see :func:`load_generator`)."""
    kwargs = dict(generator_kwargs) if generator_kwargs is not None else None
    if kwargs is None:
        if content["init_kwargs"] is None:
            raise CheckpointError(f"{source}: a state dict does not record its architecture; pass the model preset's generator block")
        kwargs = dict(content["init_kwargs"])
        if content["neural_rendering_resolution"]:
            kwargs["neural_rendering_resolution"] = content["neural_rendering_resolution"]
    generator = TriPlaneGenerator(**kwargs)
    load_generator_weights(generator, content, source, kwargs if generator_kwargs is not None else None)
    return generator


def load_generator_weights(generator: TriPlaneGenerator, content: Mapping[str, Any], source: str | Path,
                           asked_kwargs: Mapping[str, Any] | None = None) -> None:
    """Load :func:`read_generator_state`'s ``content`` into ``generator`` strictly. When the file records an
    architecture that differs from ``asked_kwargs`` (the model preset's) and the weights do not fit, the
    error names the differing options instead of listing tensors."""
    state_dict = {k: v for k, v in content["state_dict"].items() if k not in UNUSED_GENERATOR_KEYS}
    recorded = content["init_kwargs"]
    if asked_kwargs is not None and recorded is not None and state_dict_mismatches(generator.state_dict(), state_dict):
        differences = architecture_differences(recorded, asked_kwargs)
        raise CheckpointError(
            f"{source}: trained with another generator architecture than the model preset asks for ({'; '.join(differences)}), "
            "so its weights do not fit; retrain it for this preset (scripts/pretrain_generator.py, pretrained/README.md) "
            "or use the preset it was trained with"
        )
    load_strict(generator, state_dict, source, "generator")


def architecture_differences(recorded: Mapping[str, Any], asked: Mapping[str, Any]) -> list[str]:
    """``key: recorded → asked`` for every generator option (``rendering_kwargs`` entries included) that differs."""
    def flat(options: Mapping[str, Any]) -> dict[str, Any]:
        rendering = options.get("rendering_kwargs") or {}
        return {**{k: v for k, v in options.items() if k != "rendering_kwargs"}, **{f"rendering_kwargs.{k}": v for k, v in rendering.items()}}

    before, after = flat(recorded), flat(asked)
    return [f"{key}: {before.get(key, 'unset')} → {after.get(key, 'unset')}" for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]


# -- OTAvatar's released training checkpoint ---------------------------------------------------

RELEASE_KEYS = ("net_Warp", "net_Warp_ema", "net_G", "net_G_ema", "current_iteration")


def _strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def load_release_animator(
    path: str | Path,
    generator_kwargs: Mapping[str, Any],
    controller_kwargs: Mapping[str, Any],
    use_ema: bool = True,
) -> Animator:
    """The animator of the release's ``epoch_XXXXX_iteration_XXXXXXXXX_checkpoint.pt``.

    Args:
        generator_kwargs: the generator architecture (``eg3d_ffhq512`` preset for the released model).
        controller_kwargs: our ``MotionController`` keywords (a preset's ``controller`` block).
        use_ema: the EMA weights (``net_Warp_ema``/``net_G_ema``, what the release's inference uses)
            or the live ones (``net_Warp``/``net_G``, saved with a DDP ``module.`` prefix).
    """
    return _release_animator(load_torch_file(path, "a checkpoint", CheckpointError), Path(path), generator_kwargs, controller_kwargs, use_ema)


def _release_animator(
    data: Any, path: Path, generator_kwargs: Mapping[str, Any], controller_kwargs: Mapping[str, Any], use_ema: bool
) -> Animator:
    missing = [key for key in RELEASE_KEYS if not isinstance(data, Mapping) or key not in data]
    if missing:
        raise CheckpointError(f"{path}: not an OTAvatar training checkpoint; missing keys {missing}")
    suffix = "_ema" if use_ema else ""
    generator = TriPlaneGenerator(**generator_kwargs)
    load_strict(generator, {k: v for k, v in _strip_module_prefix(data["net_G" + suffix]).items() if k not in UNUSED_GENERATOR_KEYS}, path, f"net_G{suffix}")
    controller = MotionController(**controller_kwargs)
    load_strict(controller, _strip_module_prefix(data["net_Warp" + suffix]), path, f"net_Warp{suffix}")
    return Animator(generator, controller)


# -- any checkpoint, for inference -------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Before exported models recorded their motion space, only the tiny preset was trained on the synthetic
# heads (the embedded pretrained/otavatar_tiny.pt, experiment tiny_synthetic); every other preset on 3DMM data.
_LEGACY_SYNTHETIC_PRESETS = ("tiny",)


def checkpoint_motion_space(state: Mapping[str, Any], path: str | Path) -> str:
    """What the controller of an otavatar checkpoint or exported model reads (:data:`otavatar.motion.MOTION_SPACES`).

    Recorded as the exported model's ``motion_space`` or the training config's ``data.motion_space``; a training
    config without it is read from its data's name; a file with neither, from its model preset's name.
    """
    config = state.get("config") or {}
    data = config.get("data") or {}
    recorded = state.get("motion_space", data.get("motion_space"))
    if recorded is not None:
        if recorded not in MOTION_SPACES:
            raise CheckpointError(f"{path}: motion_space {recorded!r}; expected one of {MOTION_SPACES}")
        return recorded
    if "name" in data:
        return "synthetic" if data["name"] == "synthetic" else "3dmm"
    return "synthetic" if (config.get("model") or {}).get("name") in _LEGACY_SYNTHETIC_PRESETS else "3dmm"


def load_animator(path: str | Path, model_preset: Mapping[str, Any] | None = None, use_ema: bool = True) -> tuple[Animator, dict]:
    """The animator of an otavatar training checkpoint or exported model (its recorded model config
    is used) or of the release's training checkpoint (architecture from ``model_preset``, default
    ``eg3d_ffhq512``).

    Returns:
        the animator in eval mode and its model config (a plain dict) with ``motion_space``, what its
        controller reads (:func:`checkpoint_motion_space`; the release's: ``3dmm``).
    """
    from omegaconf import OmegaConf

    from otavatar.config import build_animator, load_model_preset

    path = Path(path)
    state = load_torch_file(path, "a checkpoint", CheckpointError)
    found = state.get("format") if isinstance(state, Mapping) else None
    if found == MODEL_FORMAT and not use_ema:
        raise CheckpointError(f"{path}: an exported model holds only the EMA weights; use the training checkpoint for the live ones")
    if found in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        model_config = state["config"]["model"]
        animator = build_animator(model_config)
        suffix = "_ema" if use_ema else ""
        load_strict(animator.generator, state["generator" + suffix], path, "generator" + suffix)
        load_strict(animator.controller, state["controller" + suffix], path, "controller" + suffix)
        return animator.eval(), {**model_config, "motion_space": checkpoint_motion_space(state, path)}
    preset = model_preset if model_preset is not None else load_model_preset("eg3d_ffhq512")
    model_config = OmegaConf.to_container(preset, resolve=True) if not isinstance(preset, dict) else dict(preset)
    animator = _release_animator(state, path, model_config["generator"], model_config["controller"], use_ema)
    return animator.eval(), {**model_config, "motion_space": "3dmm"}
