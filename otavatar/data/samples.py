"""The embedded sample: a held-out synthetic portrait and another identity's talking sequence.

Drawn from a fixed seed (neither the dataset nor pretraining draws these identities), so the
scripts and the demo work with no input at all.
"""

from __future__ import annotations

import torch

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.synthetic import sample_identity
from otavatar.data.synthetic_video import SyntheticVideo, coefficients, make_video
from otavatar.motion import motion_from_coeffs, motion_window, motion_windows

SAMPLE_SEED = 2023


def sample_videos(resolution: int, driving_frames: int = 48, seed: int = SAMPLE_SEED) -> tuple[SyntheticVideo, SyntheticVideo]:
    """The source identity's 27-frame video (frame 0 is the portrait) and a driver's ``driving_frames``-frame video."""
    generator = torch.Generator().manual_seed(seed)
    source = make_video(sample_identity(generator), 27, resolution, generator, extra_view_yaws=())
    driver = make_video(sample_identity(generator), driving_frames, resolution, generator, extra_view_yaws=())
    return source, driver


def frame_target(video: SyntheticVideo, frame: int = 0) -> dict[str, torch.Tensor]:
    """A frame as an inversion target, batch 1: ``image`` in [−1, 1], ``keypoints`` in its pixels, ``motion`` x, ``camera`` p."""
    resolution = video.images.shape[-1]
    return {
        "image": video.images[frame : frame + 1] * 2 - 1,
        "keypoints": video.keypoints[frame : frame + 1] * (resolution / LANDMARK_REFERENCE_SIZE),
        "motion": motion_window(motion_from_coeffs(coefficients(video)), frame)[None],
        "camera": video.cameras[frame : frame + 1],
    }


def driving_windows(video: SyntheticVideo) -> torch.Tensor:
    """Motion windows x ``(N, 70, 27)`` of every frame."""
    return motion_windows(motion_from_coeffs(coefficients(video)))
