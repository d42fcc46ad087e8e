"""From an inversion target to an avatar: inversion, optional pivotal tuning, the avatar file's content
(the targets: :mod:`otavatar.portraits`; the inference scripts run this through :mod:`otavatar.pipeline`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.inversion import FrameLoss, InversionSettings, correct_intrinsics, invert
from otavatar.losses.animation import pixel_loss
from otavatar.models.animator import Animator


@dataclass
class PivotalTuningSettings:
    """Generator finetuning around the inverted code, as the release's ``--pti`` (``net_G_optimize``):
    Adam lr 3e-4 on all of G, at most 50 steps, SmoothL1 on the raw image only, stopping once the
    AlexNet LPIPS of the raw image (nearest-upsampled to the portrait's size) is ≤ 0.06."""

    steps: int = 50
    lr: float = 3e-4
    lpips_threshold: float = 0.06


@dataclass
class PivotalTuningResult:
    """The tuned animator, the loss of every update, the LPIPS measured before each update (empty
    without the LPIPS network) and whether the threshold stopped it early."""

    animator: Animator
    loss_curve: list[float]
    lpips_curve: list[float]
    stopped_early: bool


def pivotal_tuning(
    animator: Animator,
    identity: torch.Tensor,
    correction: torch.Tensor,
    target: Mapping[str, torch.Tensor],
    settings: PivotalTuningSettings = PivotalTuningSettings(),
    lpips: nn.Module | None = None,
    on_step: Callable[[str, int, torch.Tensor], None] | None = None,
) -> PivotalTuningResult:
    """Finetune a copy of G_eg so that G(w_id + C(x)) reproduces the portrait; w_id, C and the camera stay fixed.

    As the release: the loss is SmoothL1 between the raw (neural-rendering-resolution) image and the
    portrait area-resized to it; super-resolution never enters (the release's step count never reaches
    its super-resolved steps), so its weights do not change. Each step's render is scored by ``lpips``
    (AlexNet LPIPS, nearest-upsampled to the portrait's size) before its update, and tuning stops once
    that is ≤ ``settings.lpips_threshold`` (a device read per step, as the release's); with ``lpips`` None
    every step runs, and the losses are read once at the end. The original animator is untouched.
    """
    tuned = copy.deepcopy(animator)
    tuned.requires_grad_(False)
    tuned.generator.requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.generator.parameters(), lr=settings.lr)
    camera = correct_intrinsics(target["camera"], correction)
    image = target["image"]
    curve: list[torch.Tensor] = []
    distances: list[float] = []
    stopped = False
    for step in range(settings.steps):
        raw = tuned.render(identity, target["motion"], camera, clamp=True, super_resolve=False)["image_raw"]
        if lpips is not None:
            with torch.no_grad():
                distances.append(float(lpips(F.interpolate(raw, size=image.shape[-2:], mode="nearest"), image).mean()))
            if distances[-1] <= settings.lpips_threshold:
                stopped = True
                break
        loss = pixel_loss(raw, image)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        curve.append(loss.detach())
        if on_step:
            on_step("PTI", step, curve[-1])
    return PivotalTuningResult(tuned.requires_grad_(False).eval(), torch.stack(curve).tolist() if curve else [], distances, stopped)


def build_avatar(
    animator: Animator,
    model: Mapping[str, Any],
    target: Mapping[str, torch.Tensor],
    frame_loss: FrameLoss,
    settings: InversionSettings,
    pti: PivotalTuningSettings | None = None,
    on_step: Callable[[str, int, torch.Tensor], None] | None = None,
    lpips: nn.Module | None = None,
) -> dict[str, Any]:
    """Invert (W, then W+), optionally tune the generator (``lpips``: its early stop, see :func:`pivotal_tuning`),
    and return the avatar file's content.

    ``model`` is the model identity recorded in the file (checkpoint sha256 and config).
    """
    result = invert(animator, target, frame_loss, settings, on_step)
    identity = result.identity
    curve, reconstruction, generator_state, tuning = list(result.loss_curve), result.reconstruction, None, None
    if pti is not None and pti.steps > 0:
        tuned = pivotal_tuning(animator, identity, result.correction, target, pti, lpips, on_step)
        curve += tuned.loss_curve
        with torch.no_grad():
            camera = correct_intrinsics(target["camera"], result.correction)
            reconstruction = tuned.animator.render(identity, target["motion"], camera, clamp=True)["image"]
        generator_state = {key: value.cpu() for key, value in tuned.animator.generator.state_dict().items()}
        tuning = {"steps": len(tuned.loss_curve), "lpips": tuned.lpips_curve, "stopped_early": tuned.stopped_early}
    return {
        "identity_w": result.identity_w.cpu(),
        "identity_w_plus": result.identity_w_plus.cpu() if result.identity_w_plus is not None else None,
        "correction": result.correction.cpu(),
        "camera": target["camera"].cpu(),
        "motion": target["motion"].cpu(),
        "source_image": target["image"].cpu(),
        "keypoints": target["keypoints"].cpu(),
        "reconstruction": reconstruction.cpu(),
        "loss_curve": torch.tensor(curve),
        "generator": generator_state,
        "pti": tuning,
        "model": dict(model),
    }


def avatar_animator(animator: Animator, avatar: Mapping[str, Any]) -> Animator:
    """The animator to drive an avatar with: the loaded one, or a copy with the avatar's tuned generator (PTI)."""
    if avatar.get("generator") is None:
        return animator
    tuned = copy.deepcopy(animator)
    tuned.generator.load_state_dict(avatar["generator"])
    return tuned
