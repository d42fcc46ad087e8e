"""The embedded sample: a held-out synthetic portrait and another identity's talking sequence.

Drawn from a fixed seed (neither the dataset nor pretraining draws these identities), so the
scripts and the demo work with no input at all.
"""

from __future__ import annotations

import torch

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.synthetic import sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import SyntheticVideo, coefficients, render_video
from otavatar.motion import motion_from_coeffs, motion_window, motion_windows

SAMPLE_SEED = 2023
SOURCE_FRAMES = 27  # one motion window x


def _sample_sequences(driving_frames: int, seed: int) -> tuple[tuple, tuple]:
    """The source's and the driver's (identity, expression, angles, translation), drawn in that order from ``seed``
    (drawing renders nothing, so either video can be rendered alone)."""
    generator = torch.Generator().manual_seed(seed)
    source = (sample_identity(generator), *sample_talking_sequence(SOURCE_FRAMES, generator))
    driver = (sample_identity(generator), *sample_talking_sequence(driving_frames, generator))
    return source, driver


def sample_source(resolution: int, seed: int = SAMPLE_SEED) -> SyntheticVideo:
    """The source identity's 27-frame video (frame 0 is the portrait)."""
    return render_video(*_sample_sequences(1, seed)[0], resolution, extra_view_yaws=())


def sample_driver(resolution: int, frames: int = 48, seed: int = SAMPLE_SEED) -> SyntheticVideo:
    """Another identity talking for ``frames`` frames."""
    return render_video(*_sample_sequences(frames, seed)[1], resolution, extra_view_yaws=())


def sample_videos(resolution: int, driving_frames: int = 48, seed: int = SAMPLE_SEED) -> tuple[SyntheticVideo, SyntheticVideo]:
    """The source identity's 27-frame video and a driver's ``driving_frames``-frame video."""
    return sample_source(resolution, seed), sample_driver(resolution, driving_frames, seed)


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
