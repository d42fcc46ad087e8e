"""The embedded demo: one synthetic portrait in, an animated 3D avatar out, driven by someone else's motion.

A held-out synthetic identity (drawn with the demo's own seed, so neither pretraining nor training
saw it) is inverted from one frame; another identity's talking sequence drives it while the camera
swings around the head. The synthetic renderer draws the source identity with the driver's
expression and pose from the same cameras, so the result is scored against exact ground truth; the
static baseline (the avatar with its own expression, same cameras) shows what the motion adds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torchvision.utils import save_image

from otavatar.data.synthetic import coefficients, make_video, render_video, sample_identity
from otavatar.evaluation.protocols import Avatar, render
from otavatar.evaluation.scoring import FrameScorer
from otavatar.inversion import FrameLoss, InversionSettings, invert
from otavatar.models.animator import Animator
from otavatar.motion import motion_from_coeffs, motion_window, motion_windows
from otavatar.videos import to_uint8_frames, write_video


@dataclass
class DemoSettings:
    seed: int = 2023
    frames: int = 48
    fps: float = 12.0
    camera_swing: float = 0.35  # yaw amplitude (radians) added to the driver's head pose
    w_steps: int = 100
    w_plus_steps: int = 100
    sheet_every: int = 8


def run_demo(
    animator: Animator, frame_loss: FrameLoss, scorer: FrameScorer, out: Path, settings: DemoSettings = DemoSettings(),
    log: Callable[[str], None] = print,
) -> dict:
    """Build the avatar, drive it, score it, write ``out``/demo.mp4, contact_sheet.png, metrics.json; return the metrics."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    resolution = animator.generator.img_resolution
    device = animator.generator.w_avg.device
    g = torch.Generator().manual_seed(settings.seed)
    source_video = make_video(sample_identity(g), 27, resolution, g, extra_view_yaws=())
    driver_video = make_video(sample_identity(g), settings.frames, resolution, g, extra_view_yaws=())

    target = {
        "image": source_video.images[:1] * 2 - 1,
        "keypoints": source_video.keypoints[:1] * (resolution / 512),
        "motion": motion_window(motion_from_coeffs(coefficients(source_video)), 0)[None],
        "camera": source_video.cameras[:1],
    }
    target = {key: value.to(device) for key, value in target.items()}
    log(f"inverting the source portrait ({settings.w_steps} W + {settings.w_plus_steps} W+ steps)")
    inversion_started = time.perf_counter()
    result = invert(animator, target, frame_loss, InversionSettings(w_steps=settings.w_steps, w_plus_steps=settings.w_plus_steps))
    avatar = Avatar(result.identity_w_plus if result.identity_w_plus is not None else result.identity_w,
                    result.correction, target["motion"], time.perf_counter() - inversion_started)

    swing = settings.camera_swing * torch.sin(2 * math.pi * torch.arange(settings.frames) / settings.frames)
    angles = driver_video.angles.clone()
    angles[:, 1] += swing
    truth = render_video(source_video.identity, driver_video.expression, angles, driver_video.translation, resolution, extra_view_yaws=())
    windows = motion_windows(motion_from_coeffs(coefficients(driver_video)))
    log(f"driving it with another identity's {settings.frames} frames from a swinging camera")
    render_started = time.perf_counter()
    result_frames = render(animator, avatar, windows, truth.cameras)
    render_seconds = time.perf_counter() - render_started
    static = render(animator, avatar, avatar.motion.cpu().expand(settings.frames, -1, -1), truth.cameras)
    ground_truth = truth.images * 2 - 1

    metrics = {
        "protocol": "demo: one held-out synthetic identity, cross-identity driving, swinging camera",
        "frames": settings.frames,
        "otavatar": scorer.score(result_frames, ground_truth),
        "static_baseline": scorer.score(static, ground_truth),
        "reconstruction_psnr": scorer.score(result.reconstruction.cpu(), target["image"].cpu())["psnr"],
        "seconds": {"inversion": avatar.seconds, "reenactment": render_seconds, "total": None},
        "extractors": scorer.extractors(),
    }
    source = target["image"].cpu().expand(settings.frames, -1, -1, -1)
    driving = driver_video.images * 2 - 1
    panels = torch.cat([source, driving, result_frames, ground_truth], dim=3)
    write_video(to_uint8_frames(panels), out / "demo.mp4", settings.fps)
    rows = panels[:: settings.sheet_every]
    save_image(rows, out / "contact_sheet.png", nrow=1, normalize=True, value_range=(-1, 1), padding=2)
    metrics["seconds"]["total"] = time.perf_counter() - started
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
