"""Evaluation runs: inversion + reenactment per protocol (or frames rendered elsewhere), scored by the metric suite."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

from otavatar.benchmarking import device_name, synchronize
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.errors import InputError, MissingInputError
from otavatar.evaluation.protocols import Episode, baseline_frames, episodes, invert_source, render
from otavatar.inversion import FrameLoss, InversionSettings
from otavatar.metrics.suite import MetricSuite
from otavatar.models.animator import Animator
from otavatar.reenactment import reenact
from otavatar.videos import to_uint8_frames


@dataclass
class EvaluationSettings:
    protocol: str
    driving_video: str | None = None
    frames: int | None = None  # per episode (None: the whole driving video)
    max_episodes: int | None = None
    baselines: tuple[str, ...] = ("static", "still")  # ground_truth_static only exists on synthetic protocols
    inversion: InversionSettings = field(default_factory=InversionSettings)
    include_driver: bool = False  # cross_id: also drive the driver's own first frame, as the release does


def only_resolution(dataset: Path) -> int:
    """The single LMDB resolution of ``dataset`` (when no model says which one)."""
    found = sorted(int(p.name) for p in dataset.iterdir() if p.is_dir() and p.name.isdigit())
    if len(found) != 1:
        raise InputError(f"--dataset {dataset}: holds resolutions {found}; choose one with --resolution")
    return found[0]


def protocol_source(dataset: Path, protocol: str, model_config: Mapping[str, Any] | None, resolution: int | None = None,
                    camera_source: str | None = None) -> FrameSource:
    """The frames a protocol reads from ``dataset``: at ``resolution`` (default: the model's, else the dataset's only one),
    cameras from ``camera_source`` (default: ground truth for synthetic protocols and for multiview on a dataset that
    stores exact cameras, the tracker's condition otherwise), motion in the model's motion space."""
    size = model_config["generator"]["img_resolution"] if model_config else None
    database = VideoLmdb(dataset, resolution or size or only_resolution(dataset))
    test_videos = database.splits["test"]
    exact = protocol == "multiview" and bool(test_videos) and database.has(test_videos[0], "camera")
    camera_source = camera_source or ("ground_truth" if protocol.startswith("synthetic") or exact else "condition")
    return FrameSource(database, camera_source, image_size=size, motion_space=model_config["motion_space"] if model_config else None)


def episode_folder(name: str) -> str:
    """A file-system-safe folder name for an episode (``a#00->b#01`` → ``a#00__to__b#01``)."""
    return re.sub(r"[^A-Za-z0-9#._-]", "_", name.replace("->", "__to__"))


def save_frames(frames: torch.Tensor, folder: Path) -> None:
    """``(N, 3, H, W)`` in [−1, 1] → ``folder/00000.png`` …, written to a temporary folder first."""
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(to_uint8_frames(frames)):
        Image.fromarray(frame).save(partial / f"{index:05d}.png")
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
        folder.rmdir()
    partial.rename(folder)


def load_frames(folder: Path, count: int, size: int) -> torch.Tensor:
    """The first ``count`` PNG frames of ``folder`` as ``(count, 3, size, size)`` in [−1, 1]."""
    files = sorted(folder.glob("*.png"))
    if len(files) < count:
        raise MissingInputError(f"--renders: {folder} holds {len(files)} PNG frames, the episode needs {count}")
    frames = []
    for file in files[:count]:
        image = np.asarray(Image.open(file).convert("RGB"))
        if image.shape[:2] != (size, size):
            raise InputError(f"--renders: {file} is {image.shape[1]}×{image.shape[0]}, expected {size}×{size}")
        frames.append(torch.from_numpy(image.copy()).permute(2, 0, 1))
    return torch.stack(frames).float() / 127.5 - 1


def reference_frames(source: FrameSource, episode: Episode) -> tuple[torch.Tensor, bool]:
    """The ground truth when the protocol has it, else the driving frames; and whether it is ground truth."""
    if episode.target is not None:
        return episode.target, True
    return torch.stack([source.image(episode.driving_video, f) for f in range(len(episode.windows))]), False


def run_evaluation(
    animator: Animator | None,
    source: FrameSource,
    settings: EvaluationSettings,
    suites: dict[str, MetricSuite],
    frame_loss: FrameLoss | None = None,
    renders_in: Path | None = None,
    renders_out: Path | None = None,
    log: Callable[[str], None] = print,
    avatars: dict | None = None,
) -> dict[str, dict[str, dict]]:
    """Score every episode with ``suites['otavatar']`` and, per baseline of ``settings.baselines``, ``suites[baseline]``.

    With ``renders_in`` the frames are read from ``renders_in/<episode>/*.png`` (no model needed);
    ``renders_out`` saves the rendered frames in that layout; ``avatars`` (source video → avatar) lets
    several protocols share their inversions. Returns per-video values per method.
    """
    per_video: dict[str, dict[str, dict]] = {name: {} for name in suites}
    avatars = {} if avatars is None else avatars
    for index, episode in enumerate(episodes(source, settings.protocol, settings.driving_video, settings.frames, settings.include_driver)):
        if settings.max_episodes is not None and index >= settings.max_episodes:
            break
        started = time.perf_counter()
        reference, ground_truth = reference_frames(source, episode)
        portrait = source.image(episode.source_video, 0)[None]
        predictions: dict[str, torch.Tensor] = {}
        if renders_in is not None:
            predictions["otavatar"] = load_frames(renders_in / episode_folder(episode.name), len(episode.windows), reference.shape[-1])
        else:
            if episode.source_video not in avatars:
                avatars[episode.source_video] = invert_source(animator, source, episode.source_video, frame_loss, settings.inversion)
            avatar = avatars[episode.source_video]
            predictions["otavatar"] = render(animator, avatar, episode.windows, episode.cameras)
            for baseline in settings.baselines:
                predictions[baseline] = baseline_frames(baseline, animator, avatar, episode)
            if renders_out is not None:
                save_frames(predictions["otavatar"], renders_out / episode_folder(episode.name))
        shared: dict = {}  # the suites share their extractors: the reference's features are computed once
        for method, frames in predictions.items():
            per_video[method][episode.name] = suites[method].score_video(frames, portrait, reference, ground_truth, shared, episode.keypoints)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in per_video["otavatar"][episode.name].items() if isinstance(v, float))
        log(f"[{index + 1}] {episode.name}: {shown} ({time.perf_counter() - started:.1f} s)")
    return per_video


@torch.no_grad()
def animation_fps(animator: Animator, source: FrameSource, video: str, frames: int = 20, warmup: int = 3) -> dict[str, object]:
    """Table 2's measurement: frames per second of the animation path (controller → G_eg → super-resolution),
    one frame at a time, from w_id = w_avg (speed does not depend on the code's value)."""
    device = animator.generator.w_avg.device
    data = source.video(video)
    order = torch.arange(warmup + frames) % len(data["motion"])  # short videos are cycled
    windows, cameras = data["motion"][order].to(device), data["camera"][order].to(device)
    identity = animator.generator.w_avg.reshape(1, 1, -1).expand(1, animator.generator.num_ws, -1)

    def frame(i: int) -> None:
        next(reenact(animator, identity, windows[i : i + 1], cameras[i : i + 1], batch_size=1))

    for i in range(warmup):
        frame(i)
    synchronize(device)
    started = time.perf_counter()
    for i in range(warmup, warmup + frames):
        frame(i)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"fps": frames / seconds, "seconds_per_frame": seconds / frames, "frames": frames, "device": device_name(device)}
