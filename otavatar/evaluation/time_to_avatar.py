"""Time-to-avatar: one-shot inversion with the release's per-step work versus otavatar's.

Both run the same steps and losses on the same synthetic portrait; the release-equivalent run
recomputes C(x), the target's VGG/ArcFace features and the super-resolution output on every step
(:attr:`otavatar.inversion.InversionSettings.reuse_static_work`), as the release's inversion does.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from otavatar.benchmarking import device_name, synchronize
from otavatar.data.samples import frame_target, sample_videos
from otavatar.inversion import FrameLoss, InversionSettings, invert
from otavatar.models.animator import Animator


def time_to_avatar(animator: Animator, frame_loss: FrameLoss, settings: InversionSettings, seed: int = 0) -> list[dict]:
    """Rows for the release-equivalent and otavatar runs: seconds, seconds per step, final loss, speed-up."""
    device = animator.generator.w_avg.device
    source, _ = sample_videos(animator.generator.img_resolution, driving_frames=1, seed=seed)
    target = {key: value.to(device) for key, value in frame_target(source).items()}
    rows = []
    for name, reuse in (("release-equivalent", False), ("otavatar", True)):
        torch.manual_seed(seed)
        started = time.perf_counter()
        result = invert(animator, target, frame_loss, replace(settings, reuse_static_work=reuse))
        synchronize(device)
        seconds = time.perf_counter() - started
        steps = settings.w_steps + settings.w_plus_steps
        rows.append({"run": name, "seconds": seconds, "seconds_per_step": seconds / steps, "steps": steps,
                     "final_loss": result.loss_curve[-1], "device": device_name(device), "threads": torch.get_num_threads()})
    for row in rows:
        row["speed_up"] = rows[0]["seconds"] / row["seconds"]
    return rows
