"""The embedded demo: one synthetic portrait in, an animated 3D avatar out, driven by someone else's motion.

A held-out synthetic identity (drawn with the demo's own seed, so neither pretraining nor training
saw it) is inverted from one frame; another identity's talking sequence drives it while the camera
swings around the head. The synthetic renderer draws the source identity with the driver's
expression and pose from the same cameras, so the result is scored against exact ground truth. Two
baselines show what the driving motion adds: ``static`` (the avatar with its own motion x, the same
cameras) and ``still`` (its own motion and head pose, only the camera swing); ``ground_truth_static``
(the true head with the source's expression, the same cameras) bounds what any static render can score.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.samples import SAMPLE_SEED, driving_windows, frame_target, sample_videos
from otavatar.data.synthetic_video import render_fixed_expression, render_video
from otavatar.evaluation.protocols import Avatar, render
from otavatar.files import atomic_write, atomic_write_text
from otavatar.inversion import FrameLoss, InversionSettings, invert
from otavatar.metrics.image import psnr
from otavatar.metrics.suite import MetricSuite
from otavatar.models.animator import Animator
from otavatar.pipeline import PipelineSettings
from otavatar.videos import to_uint8_frames, write_video


@dataclass
class DemoSettings:
    seed: int = SAMPLE_SEED
    frames: int = 48
    fps: float = 12.0
    camera_swing: float = 0.35  # yaw amplitude (radians) added to the driver's head pose
    sheet_rows: int = 6
    # The source portrait's schedule: the inference pipeline's default preset (scripts/demo.py passes its --schedule).
    inversion: InversionSettings = field(default_factory=lambda: PipelineSettings().inversion())


def run_demo(
    animator: Animator, frame_loss: FrameLoss, suites: Callable[[], MetricSuite], out: Path, settings: DemoSettings = DemoSettings(),
    log: Callable[[str], None] = print,
) -> dict:
    """Build the avatar, drive it, score it (``suites()`` gives a fresh :class:`MetricSuite`), write
    ``out``/demo.mp4, contact_sheet.png, metrics.json; return the metrics."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    resolution = animator.generator.img_resolution
    device = animator.generator.w_avg.device
    source_video, driver_video = sample_videos(resolution, settings.frames, settings.seed)
    target = {key: value.to(device) for key, value in frame_target(source_video).items()}
    schedule = settings.inversion
    log(f"inverting the source portrait ({schedule.w_steps} W + {schedule.w_plus_steps} W+ steps, lr {schedule.lr})")
    inversion_started = time.perf_counter()
    result = invert(animator, target, frame_loss, schedule)
    avatar = Avatar(result.identity, result.correction, target["motion"], time.perf_counter() - inversion_started)

    swing = settings.camera_swing * torch.sin(2 * math.pi * torch.arange(settings.frames) / settings.frames)
    angles = driver_video.angles.clone()
    angles[:, 1] += swing
    truth = render_video(source_video.identity, driver_video.expression, angles, driver_video.translation, resolution, extra_view_yaws=())
    windows = driving_windows(driver_video)
    log(f"driving it with another identity's {settings.frames} frames from a swinging camera")
    render_started = time.perf_counter()
    result_frames = render(animator, avatar, windows, truth.cameras)
    render_seconds = time.perf_counter() - render_started
    own_motion = avatar.motion.cpu().expand(settings.frames, -1, -1)
    static = render(animator, avatar, own_motion, truth.cameras)
    source_pose = source_video.angles[:1].repeat(settings.frames, 1)
    source_pose[:, 1] += swing
    still_cameras = render_video(
        source_video.identity, source_video.expression[:1].expand(settings.frames, -1), source_pose,
        source_video.translation[:1].expand(settings.frames, -1), resolution, extra_view_yaws=(),
    ).cameras
    still = render(animator, avatar, own_motion, still_cameras)
    ground_truth = truth.images * 2 - 1
    static_truth = render_fixed_expression(source_video.identity, source_video.expression[0], truth.cameras, resolution) * 2 - 1

    keypoints = truth.keypoints * (resolution / LANDMARK_REFERENCE_SIZE)  # the ground truth's landmarks, for region PSNR
    source_image = target["image"].cpu()
    scored = suites()
    shared: dict = {}  # the ground truth's features, computed once for the four scorings
    metrics = {
        "protocol": "demo: one held-out synthetic identity, cross-identity driving, swinging camera",
        "frames": settings.frames,
        "otavatar": scored.score_video(result_frames, source_image, ground_truth, True, shared, keypoints),
        "static_baseline": suites().score_video(static, source_image, ground_truth, True, shared, keypoints),
        "still_baseline": suites().score_video(still, source_image, ground_truth, True, shared, keypoints),
        "ground_truth_static": suites().score_video(static_truth, source_image, ground_truth, True, shared, keypoints),
        "reconstruction_psnr": psnr(result.reconstruction.cpu(), source_image).item(),
        "inversion": asdict(schedule),
        "seconds": {"inversion": avatar.seconds, "reenactment": render_seconds, "total": None},
        **scored.description(),
    }
    source = target["image"].cpu().expand(settings.frames, -1, -1, -1)
    driving = driver_video.images * 2 - 1
    panels = torch.cat([source, driving, result_frames, ground_truth], dim=3)
    write_video(to_uint8_frames(panels), out / "demo.mp4", settings.fps)
    rows = torch.linspace(0, settings.frames - 1, min(settings.sheet_rows, settings.frames)).round().long()
    sheet = contact_sheet(panels[rows], ("source", "driving", "result", "ground truth"))
    atomic_write(out / "contact_sheet.png", lambda handle: sheet.save(handle, format="PNG"))
    metrics["seconds"]["total"] = time.perf_counter() - started
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def contact_sheet(rows: torch.Tensor, labels: tuple[str, ...], header: int = 14) -> Image.Image:
    """Rows ``(R, 3, H, len(labels)·W)`` in [−1, 1] → one image with a label above each column."""
    grid = make_grid(rows, nrow=1, padding=2, value_range=(-1, 1), normalize=True)
    pixels = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    sheet = Image.new("RGB", (pixels.shape[1], pixels.shape[0] + header), "white")
    sheet.paste(Image.fromarray(pixels), (0, header))
    draw = ImageDraw.Draw(sheet)
    column = rows.shape[-1] // len(labels)
    for index, label in enumerate(labels):
        draw.text((index * column + 4, 1), label, fill="black")
    return sheet
