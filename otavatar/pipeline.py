"""The inference pipeline: a loaded model with an inversion schedule, a speed mode and a device; an inversion
target in, an avatar out (paper §3.3); an avatar, motion windows x and cameras p in, frames out (§3.1).

scripts/invert.py, reenact.py and demo.py run through one :class:`Pipeline`, so an avatar is built and
driven the same way everywhere. :class:`PipelineSettings` holds every default of inference; the scripts'
options are generated from it (:mod:`otavatar.cli`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from otavatar.assets import REPO_ROOT, MissingAssetError
from otavatar.avatar_file import load_avatar
from otavatar.checkpoints import file_sha256, load_animator
from otavatar.config import load_inversion_preset, load_loss_preset
from otavatar.errors import MissingInputError
from otavatar.inversion import CAMERA_FIT_STEPS, InversionSettings, chosen_identity, fit_camera
from otavatar.losses.animation import AnimationLoss
from otavatar.metrics.lpips import load_lpips
from otavatar.models.animator import Animator
from otavatar.one_shot import PivotalTuningSettings, avatar_animator, build_avatar
from otavatar.reenactment import reenact
from otavatar.speed import CudaSettings, SpeedMode, configure_cuda, speed_mode, speed_mode_by_name

DEFAULT_CHECKPOINT = REPO_ROOT / "pretrained" / "otavatar_tiny.pt"

StepCallback = Callable[[str, int, torch.Tensor], None]


@dataclass
class PipelineSettings:
    """Every choice of inference; the defaults are the inference scripts' (the embedded model, the fast schedule,
    the exact speed mode on the CPU).

    ``schedule`` is a preset of configs/inversion; ``w_steps``, ``w_plus_steps`` and ``lr`` override it when
    set. ``loss`` is a preset of configs/loss. ``pti``: pivotal tuning after inversion (None: off)."""

    checkpoint: str = str(DEFAULT_CHECKPOINT)
    schedule: str = "fast"
    w_steps: int | None = None
    w_plus_steps: int | None = None
    lr: float | None = None
    loss: str = "offline_l1"
    speed: str = "exact"
    tf32: bool = CudaSettings.tf32
    device: str = "cpu"
    seed: int = 0
    pti: PivotalTuningSettings | None = None

    def inversion(self) -> InversionSettings:
        """The ``schedule`` preset with the overrides that are set."""
        overrides = {"w_steps": self.w_steps, "w_plus_steps": self.w_plus_steps, "lr": self.lr}
        return replace(load_inversion_preset(self.schedule), **{key: value for key, value in overrides.items() if value is not None})


def load_model(checkpoint: str | Path, device: str) -> tuple[Animator, dict, str]:
    """Animator on ``device``, its model config and the checkpoint's sha256 (the avatar's model identity)."""
    if Path(checkpoint) == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_file():
        raise MissingInputError(
            f"no --checkpoint given and the embedded tiny model {DEFAULT_CHECKPOINT} is not there; pass --checkpoint "
            "with a checkpoint from scripts/train.py (runs/<name>/checkpoint_*.pt) or the release's (see pretrained/README.md)"
        )
    animator, model_config = load_animator(checkpoint)
    return animator.to(device), model_config, file_sha256(checkpoint)


def pivotal_tuning_lpips(settings: PivotalTuningSettings, device: str, log: Callable[[str], None] = print) -> torch.nn.Module | None:
    """The LPIPS network of pivotal tuning's early stop; None, said in the log, when its AlexNet file is missing."""
    try:
        return load_lpips().to(device)
    except MissingAssetError as error:
        log(f"--pti: the early stop at LPIPS ≤ {settings.lpips_threshold} is off ({error.path} is missing, see "
            f"pretrained/README.md): all {settings.steps} steps run")
        return None


class Pipeline:
    """A model ready for inference with one set of :class:`PipelineSettings`.

    Args:
        animator: G_eg and C, on ``settings.device``.
        model_config: the checkpoint's model config (resolution, motion space).
        checkpoint_sha256: the model identity recorded in every avatar it builds.
        log: where it says how each task runs (speed mode, samples per ray, precision).
    """

    def __init__(self, animator: Animator, model_config: Mapping[str, Any], checkpoint_sha256: str, settings: PipelineSettings,
                 log: Callable[[str], None] = print) -> None:
        self.animator = animator
        self.model_config = dict(model_config)
        self.checkpoint_sha256 = checkpoint_sha256
        self.settings = settings
        self.log = log
        self.inversion = settings.inversion()  # the presets are read and checked before any work
        self.frame_loss = AnimationLoss.from_config(load_loss_preset(settings.loss), use_regularisers=False).to(settings.device)
        self.speed_mode = speed_mode_by_name(settings.speed)

    @classmethod
    def load(cls, settings: PipelineSettings, log: Callable[[str], None] = print) -> Pipeline:
        """Load ``settings.checkpoint`` onto ``settings.device``."""
        animator, model_config, sha256 = load_model(settings.checkpoint, settings.device)
        return cls(animator, model_config, sha256, settings, log)

    @property
    def resolution(self) -> int:
        return self.model_config["generator"]["img_resolution"]

    @property
    def inversion_steps(self) -> int:
        """Optimiser steps of :meth:`build_avatar` at most (for progress bars)."""
        pti = self.settings.pti.steps if self.settings.pti else 0
        return self.inversion.w_steps + self.inversion.w_plus_steps + pti

    @contextlib.contextmanager
    def speed(self, task: str, generator: torch.nn.Module | None = None) -> Iterator[SpeedMode]:
        """The CUDA switches and the speed mode around ``task`` on ``generator`` (default: the model's), said in one line."""
        generator = generator or self.animator.generator
        device = self.settings.device
        configure_cuda(replace(CudaSettings(), tf32=self.settings.tf32))
        samples = self.speed_mode.resolved(device).settings(generator)
        with speed_mode(generator, self.speed_mode, device) as resolved:
            self.log(
                f"{task}: speed {self.speed_mode.name}, {samples['coarse_samples']}+{samples['fine_samples']} samples/ray, "
                f"{resolved.precision}{', TF32' if self.settings.tf32 else ''} on {device}"
            )
            yield resolved

    def _on_device(self, target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.settings.device) for key, value in target.items()}

    def build_avatar(self, target: Mapping[str, torch.Tensor], on_step: StepCallback | None = None) -> dict[str, Any]:
        """Invert ``target`` (image, keypoints, motion x, camera p; see :mod:`otavatar.portraits`) to w_id in W, then
        W+, tune the generator when ``settings.pti``; returns the avatar file's content."""
        pti = self.settings.pti if self.settings.pti and self.settings.pti.steps > 0 else None
        lpips = pivotal_tuning_lpips(pti, self.settings.device, self.log) if pti else None
        model = {"checkpoint_sha256": self.checkpoint_sha256, "config": self.model_config}
        torch.manual_seed(self.settings.seed)  # the seed fixes the inversion's rendering jitter
        with self.speed("inversion"):
            return build_avatar(self.animator, model, self._on_device(target), self.frame_loss, self.inversion, pti, on_step, lpips)

    def load_avatar(self, path: str | Path) -> dict[str, Any]:
        """An avatar file, refused unless this model made it."""
        return load_avatar(path, self.checkpoint_sha256)

    def _identity_code(self, avatar: Mapping[str, Any], space: str) -> torch.Tensor:
        """The avatar's w_id (see :func:`otavatar.inversion.chosen_identity`) on the device."""
        return chosen_identity(avatar["identity_w"], avatar["identity_w_plus"], space).to(self.settings.device)

    def refit_camera(self, avatar: Mapping[str, Any], frame: Mapping[str, torch.Tensor], space: str = "w_plus",
                     on_step: StepCallback | None = None, steps: int = CAMERA_FIT_STEPS) -> torch.Tensor:
        """The release's ``--cam_optim``: the avatar's intrinsics correction refitted on ``frame`` in ``steps`` steps with w_id frozen."""
        animator = avatar_animator(self.animator, avatar)
        identity = self._identity_code(avatar, space)
        torch.manual_seed(self.settings.seed)
        with self.speed("camera refit", animator.generator):
            return fit_camera(animator, identity, self._on_device(frame), self.frame_loss, self.inversion, steps, on_step=on_step)

    def drive(self, avatar: Mapping[str, Any], windows: torch.Tensor, cameras: torch.Tensor, space: str = "w_plus",
              correction: torch.Tensor | None = None, batch_size: int = 8) -> Iterator[dict[str, torch.Tensor]]:
        """Render the avatar with motion windows x ``(N, 70, 27)`` from cameras p ``(N, 25)``, one batch at a time
        (see :func:`otavatar.reenactment.reenact`); ``correction`` replaces the avatar's intrinsics correction."""
        animator = avatar_animator(self.animator, avatar)
        identity = self._identity_code(avatar, space)
        correction = (avatar["correction"] if correction is None else correction).to(self.settings.device)
        with self.speed("reenactment", animator.generator):
            yield from reenact(animator, identity, windows, cameras, correction, batch_size)

