"""From a photo or a dataset frame to an avatar: the target of inversion, inversion, optional pivotal tuning.

Shared by scripts/invert.py and scripts/reenact.py --portrait, so both build avatars the same way.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from otavatar.camera import condition_to_camera
from otavatar.inversion import FrameLoss, InversionSettings, correct_intrinsics, invert
from otavatar.losses.animation import pixel_loss
from otavatar.models.animator import Animator
from otavatar.motion import motion_from_coeffs, motion_window, read_coefficient_rows
from otavatar.preprocess.cameras import condition_from_coefficients
from otavatar.preprocess.crop import crop_increase
from otavatar.preprocess.landmark_motion import read_landmark_motion
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings, align_portrait

@dataclass
class PortraitTarget:
    """What inversion fits: ``target`` (image ``(1, 3, H, W)`` in [−1, 1], keypoints ``(1, 68, 2)``,
    motion x ``(1, 70, 27)``, camera p ``(1, 25)``) and where motion and camera came from."""

    target: dict[str, torch.Tensor]
    motion_source: str
    camera_source: str


def portrait_target(path: str | Path, model_config: Mapping[str, Any], coefficients_file: str | Path | None = None) -> PortraitTarget:
    """Detect, align and crop a photo as the model's training data was cropped, at the model's resolution.

    Motion and camera come from ``coefficients_file`` (257, 260 or 70 values; a 260-column row also
    gives the camera). Otherwise, for a model that reads the synthetic heads' parameters
    (``model_config['motion_space']``), from the landmark reader (a photo has no rest to read an
    expression against: the rest expression, and the PnP head pose); for a 3DMM model, from the
    Deep3DFaceRecon regressor when its weights are installed, else a neutral expression (with a
    warning) and the PnP head pose from the landmarks.
    """
    size = model_config["generator"]["img_resolution"]
    rows = read_coefficient_rows(coefficients_file)[:1] if coefficients_file is not None else None  # checked before the photo
    synthetic = model_config.get("motion_space", "3dmm") == "synthetic"
    settings = PreprocessSettings(size=512, increase=crop_increase(model_config))
    portrait = align_portrait(path, settings, Extractors(settings, coefficients=not synthetic and rows is None))
    image = np.array(Image.fromarray(portrait.image).resize((size, size), Image.Resampling.LANCZOS))
    landmarks = read_landmark_motion(portrait.keypoints[None], np.ones(1, bool), settings.size)
    pose_camera, pose_source = condition_to_camera(torch.from_numpy(landmarks.condition), smoothing="none"), "PnP head pose (landmarks)"
    if rows is not None:
        motion = motion_from_coeffs(rows)
        camera, camera_source = pose_camera, pose_source
        if rows.shape[1] == 260:
            condition = condition_from_coefficients(rows[0].numpy()[None], 512, smoothing_radius=0)
            camera, camera_source = condition_to_camera(torch.from_numpy(condition), smoothing="none"), "regressed pose"
        motion_source = str(coefficients_file)
    elif synthetic:
        motion, motion_source = landmarks.motion(), "landmarks (rest expression, PnP head pose)"
        camera, camera_source = pose_camera, pose_source
    elif portrait.coefficients is not None:
        motion, motion_source = motion_from_coeffs(torch.from_numpy(portrait.coefficients)[None]), "Deep3DFaceRecon"
        condition = condition_from_coefficients(portrait.coefficients[None], 512, smoothing_radius=0)
        camera, camera_source = condition_to_camera(torch.from_numpy(condition), smoothing="none"), "regressed pose"
    else:
        warnings.warn(
            f"{path}: no 3DMM coefficients ({portrait.missing}); using a neutral expression and the head pose fitted to its "
            "landmarks. Pass --coeffs FILE or install the Deep3DFaceRecon weights for the portrait's own expression and pose.",
            stacklevel=2,
        )
        motion, motion_source = torch.zeros(1, 70), "neutral default"
        camera, camera_source = pose_camera, pose_source
    target = {
        "image": torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1,
        "keypoints": torch.from_numpy(portrait.keypoints[None] * (size / 512)).float(),
        "motion": motion_window(motion, 0)[None],
        "camera": camera,
    }
    return PortraitTarget(target, motion_source, camera_source)


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
