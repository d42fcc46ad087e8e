"""Evaluation protocols: which avatar is driven by which motion from which camera, and the ground truth.

- ``self``: frame 0 of every test video is the source; the whole video drives it; its frames are
  the ground truth (the paper's same-identity reconstruction);
- ``cross_id``: frame 0 of every test video driven by ``driving_video`` (the paper: HDTF test videos
  driven by WRA_EricCantor_000); real data has no ground truth, so only identity, expression and
  pose metrics apply. The driver's own video is not an episode (it would be self-reenactment)
  unless ``include_driver``: the release drives every test video, the driver included;
- ``multiview``: like ``self``, seen from a stored extra view (the paper's Multiface protocol, over a
  capture converted by ``scripts/preprocess.py multiface``);
- ``synthetic_cross_id``: on synthetic heads, every held-out identity driven by the next held-out
  identity's video; the renderer draws the source identity with the driver's expression and pose,
  so cross-identity reenactment has exact ground truth;
- ``synthetic_multiview``: ``multiview`` on synthetic heads (every stored view).

Every episode inverts its source frame (:func:`otavatar.inversion.invert`), then renders the avatar
with the driving motion. Two baselines render the same avatar without it: ``static`` keeps the
source's own motion x but follows the episode's cameras (so it isolates what the controller adds),
``still`` keeps the source's motion and camera (the portrait, unmoving). On synthetic protocols a
third, ``ground_truth_static``, is the renderer's own head with the source's expression from the
episode's cameras: the best any static method can score, so its gap to the ground truth is all the
PSNR that transferring the expression can add.

Episodes with ground truth carry its 68 landmarks where they are known (stored for ``self``;
projected from the true head on synthetic protocols), for region PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.datasets import FrameSource
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, HeadModel, project_points
from otavatar.data.synthetic_video import render_fixed_expression, render_video
from otavatar.inversion import FrameLoss, InversionSettings, invert
from otavatar.models.animator import Animator
from otavatar.motion import ANGLES, TRANSLATION
from otavatar.reenactment import reenact

PROTOCOLS = ("self", "cross_id", "multiview", "synthetic_cross_id", "synthetic_multiview")


@dataclass
class Episode:
    """One reenactment: ``name``, source video (frame 0 is the portrait), driving motion windows x
    ``(N, 70, 27)``, cameras p ``(N, 25)``, ground truth ``(N, 3, H, W)`` in [−1, 1] or None, the
    portrait's own camera ``(25,)`` (for the still baseline), on synthetic protocols the true
    head with the source's expression from the same cameras (``ground_truth_static``), and the ground
    truth's landmarks ``(N, 68, 2)`` in its pixels when known."""

    name: str
    source_video: str
    driving_video: str
    windows: torch.Tensor
    cameras: torch.Tensor
    target: torch.Tensor | None
    source_camera: torch.Tensor
    static_target: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None


def _expression(source: FrameSource, video: str) -> torch.Tensor:
    """The stored expression parameters of ``video``: ``(F, E)``."""
    return torch.from_numpy(source.database.array(video, "expression_params")).view(-1, len(EXPRESSION_PARAMETERS))


def synthetic_ground_truth(source: FrameSource, source_video: str, driving_video: str, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The source identity rendered with the driver's expression and pose: ``(N, 3, H, W)`` in [−1, 1],
    cameras ``(N, 25)`` and landmarks ``(N, 68, 2)`` in pixels of H."""
    database = source.database
    identity = torch.from_numpy(database.array(source_video, "identity_params"))
    coefficients = torch.from_numpy(database.array(driving_video, "coeff_3dmm"))[:frames]
    expression = _expression(source, driving_video)[:frames]
    angles = coefficients[:, ANGLES]
    resolution = source.image_size or database.resolution
    video = render_video(identity, expression, angles, coefficients[:, TRANSLATION], resolution, extra_view_yaws=())
    return video.images * 2 - 1, video.cameras, video.keypoints * (resolution / LANDMARK_REFERENCE_SIZE)


def synthetic_keypoints(source: FrameSource, video: str, cameras: torch.Tensor) -> torch.Tensor:
    """The landmarks ``(N, 68, 2)`` of ``video``'s first N frames seen from ``cameras (N, 25)``, in pixels of the frames."""
    identity = torch.from_numpy(source.database.array(video, "identity_params"))
    head = HeadModel(identity, _expression(source, video)[: len(cameras)])
    return project_points(head.landmarks, cameras) * ((source.image_size or source.database.resolution) / LANDMARK_REFERENCE_SIZE)


def synthetic_static_truth(source: FrameSource, source_video: str, cameras: torch.Tensor) -> torch.Tensor:
    """The source identity with its frame-0 expression, seen from ``cameras (N, 25)``: ``(N, 3, H, W)`` in [−1, 1]."""
    database = source.database
    identity = torch.from_numpy(database.array(source_video, "identity_params"))
    expression = _expression(source, source_video)[0]
    return render_fixed_expression(identity, expression, cameras, source.image_size or database.resolution) * 2 - 1


def episodes(
    source: FrameSource, protocol: str, driving_video: str | None = None, frames: int | None = None, include_driver: bool = False
) -> Iterator[Episode]:
    """The protocol's episodes over the test split (see the module docstring); ``include_driver``: cross_id only."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, found {protocol!r}")
    videos = source.database.splits["test"]
    if not videos:
        raise ValueError(f"dataset {source.database.root}: the test list is empty")
    if protocol in ("self", "multiview", "synthetic_multiview"):
        for video in videos:
            count = min(frames or source.database.length(video), source.database.length(video))
            data = source.video(video)
            if protocol == "self":
                target = torch.stack([source.image(video, f) for f in range(count)])
                keypoints = data["keypoint"][:count] * (target.shape[-1] / LANDMARK_REFERENCE_SIZE)
                yield Episode(video, video, video, data["motion"][:count], data["camera"][:count], target, data["camera"][0], keypoints=keypoints)
                continue
            views = torch.from_numpy(source.database.array(video, "view_camera"))
            synthetic = protocol == "synthetic_multiview"
            for view in range(views.shape[0]):
                target = torch.stack([source.image(video, f, view) for f in range(count)])
                static = synthetic_static_truth(source, video, views[view, :count]) if synthetic else None
                keypoints = synthetic_keypoints(source, video, views[view, :count]) if synthetic else None
                yield Episode(f"{video}@view{view}", video, video, data["motion"][:count], views[view, :count], target, views[view, 0], static, keypoints)
    elif protocol == "cross_id":
        if driving_video is None:
            raise ValueError("cross_id protocol: give the driving video (the paper: WRA_EricCantor_000)")
        data = source.video(driving_video)
        count = min(frames or len(data["motion"]), len(data["motion"]))
        for video in videos:
            if include_driver or video != driving_video:
                yield Episode(
                    f"{driving_video}->{video}", video, driving_video, data["motion"][:count], data["camera"][:count], None,
                    source.video(video)["camera"][0],
                )
    else:
        for index, video in enumerate(videos):
            driver = driving_video or _next_identity(videos, index)
            data = source.video(driver)
            count = min(frames or len(data["motion"]), len(data["motion"]))
            target, cameras, keypoints = synthetic_ground_truth(source, video, driver, count)
            static = synthetic_static_truth(source, video, cameras)
            yield Episode(f"{driver}->{video}", video, driver, data["motion"][:count], cameras, target, source.video(video)["camera"][0], static, keypoints)


def _next_identity(videos: list[str], index: int) -> str:
    """The next test video of another person (cyclically)."""
    person = videos[index].split("#", 1)[0]
    for offset in range(1, len(videos)):
        candidate = videos[(index + offset) % len(videos)]
        if candidate.split("#", 1)[0] != person:
            return candidate
    raise ValueError("synthetic_cross_id: the test split needs at least two identities")


@dataclass
class Avatar:
    """An inverted source: w_id ``(1, L, 512)``, intrinsics correction ``(1, 18)``, its own motion window."""

    identity: torch.Tensor
    correction: torch.Tensor
    motion: torch.Tensor
    seconds: float


def invert_source(animator: Animator, source: FrameSource, video: str, frame_loss: FrameLoss, settings: InversionSettings) -> Avatar:
    """Invert frame 0 of ``video`` (W, then W+)."""
    import time

    device = animator.generator.w_avg.device
    target = {key: value[None].to(device) for key, value in source.frame(video, 0).items()}
    started = time.perf_counter()
    result = invert(animator, target, frame_loss, settings)
    return Avatar(result.identity, result.correction, target["motion"], time.perf_counter() - started)


def render(animator: Animator, avatar: Avatar, windows: torch.Tensor, cameras: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """The avatar driven by ``windows`` from ``cameras``: ``(N, 3, H, W)`` on the CPU."""
    device = avatar.identity.device
    frames = [
        batch["image"].cpu()
        for batch in reenact(animator, avatar.identity, windows.to(device), cameras.to(device), avatar.correction, batch_size)
    ]
    return torch.cat(frames)


BASELINES = {
    "static": "static baseline (source motion, driving cameras)",
    "still": "still baseline (source motion and camera)",
    "ground_truth_static": "ground-truth static (true head, source expression, driving cameras)",
}
SYNTHETIC_ONLY_BASELINES = ("ground_truth_static",)


def baseline_frames(baseline: str, animator: Animator, avatar: Avatar, episode: Episode) -> torch.Tensor:
    """What a baseline shows in place of the driven avatar (see the module docstring): ``(N, 3, H, W)``."""
    count = len(episode.windows)
    still_motion = avatar.motion.cpu().expand(count, -1, -1)
    if baseline == "static":
        return render(animator, avatar, still_motion, episode.cameras)
    if baseline == "still":
        return render(animator, avatar, still_motion, episode.source_camera.reshape(1, 25).expand(count, -1))
    if baseline == "ground_truth_static":
        if episode.static_target is None:
            raise ValueError(f"baseline {baseline!r} needs a synthetic protocol's renderer; episode {episode.name!r} has none")
        return episode.static_target
    raise ValueError(f"baseline: expected one of {tuple(BASELINES)}, found {baseline!r}")
