"""Time-to-avatar: one-shot inversion with the release's per-step work versus otavatar's.

Both run the same steps and losses on the same synthetic portrait; the release-equivalent run
recomputes C(x), the target's VGG/ArcFace features and the super-resolution output on every step
(:attr:`otavatar.inversion.InversionSettings.reuse_static_work`), as the release's inversion does.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from otavatar.benchmarking import device_name
from otavatar.data.synthetic import coefficients, make_video, sample_identity
from otavatar.inversion import FrameLoss, InversionSettings, invert
from otavatar.models.animator import Animator
from otavatar.motion import motion_from_coeffs, motion_window


def synthetic_portrait(resolution: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic head's frame as an inversion target (image, keypoints, motion, camera), batch 1."""
    g = torch.Generator().manual_seed(seed)
    video = make_video(sample_identity(g), 27, resolution, g, extra_view_yaws=())
    return {
        "image": video.images[:1] * 2 - 1,
        "keypoints": video.keypoints[:1] * (resolution / 512),
        "motion": motion_window(motion_from_coeffs(coefficients(video)), 0)[None],
        "camera": video.cameras[:1],
    }


def time_to_avatar(animator: Animator, frame_loss: FrameLoss, settings: InversionSettings, seed: int = 0) -> list[dict]:
    """Rows for the release-equivalent and otavatar runs: seconds, seconds per step, final loss, speed-up."""
    device = animator.generator.w_avg.device
    target = {key: value.to(device) for key, value in synthetic_portrait(animator.generator.img_resolution, seed).items()}
    rows = []
    for name, reuse in (("release-equivalent", False), ("otavatar", True)):
        torch.manual_seed(seed)
        started = time.perf_counter()
        result = invert(animator, target, frame_loss, replace(settings, reuse_static_work=reuse))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        steps = settings.w_steps + settings.w_plus_steps
        rows.append({"run": name, "seconds": seconds, "seconds_per_step": seconds / steps, "steps": steps,
                     "final_loss": result.loss_curve[-1], "device": device_name(device), "threads": torch.get_num_threads()})
    for row in rows:
        row["speed_up"] = rows[0]["seconds"] / row["seconds"]
    return rows
