"""Datasets over the reference layout: its frames and the training pairs.

Every frame gives ``image`` ``(3, H, W)`` in [−1, 1], the motion window x ``(70, 27)``, the camera
p ``(25,)`` and 68 ``keypoints`` ``(68, 2)`` in pixels of H.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from otavatar.camera import LANDMARK_REFERENCE_SIZE, condition_to_camera
from otavatar.data.landmark_motion import read_landmark_motion
from otavatar.data.lmdb import VideoLmdb, person_id
from otavatar.motion import EXPRESSION, motion_from_coeffs, motion_windows

CAMERA_SOURCES = ("condition", "ground_truth")


class FrameSource:
    """Frames of a :class:`VideoLmdb` with their motion windows, cameras and landmarks.

    Args:
        camera_source: ``'condition'`` converts the tracker poses as the release does;
            ``'ground_truth'`` reads the exact cameras that synthetic data stores.
        camera_smoothing: ``'release'``, ``'fixed'`` or ``'none'`` (see :func:`condition_to_camera`).
        image_size: frames are area-resized to this size (default: the LMDB's).
        motion_space: the motion the model reads (:data:`otavatar.motion.MOTION_SPACES`); ``'synthetic'`` on a
            dataset of real videos reads it from their stored landmarks (:mod:`otavatar.data.landmark_motion`),
            and their cameras too when the dataset has none. None: the stored coefficients as they are.
    """

    def __init__(self, database: VideoLmdb, camera_source: str = "condition", camera_smoothing: str = "release", image_size: int | None = None,
                 motion_space: str | None = None) -> None:
        if camera_source not in CAMERA_SOURCES:
            raise ValueError(f"camera_source: expected one of {CAMERA_SOURCES}, found {camera_source!r}")
        self.database = database
        self.camera_source = camera_source
        self.camera_smoothing = camera_smoothing
        self.image_size = image_size
        self.motion_space = motion_space
        self._video_cache = lru_cache(maxsize=64)(self._load_video)

    def _load_video(self, video: str) -> dict[str, torch.Tensor]:
        keypoints = self.database.array(video, "keypoint")
        if self.motion_space == "synthetic" and not self.database.has(video, "expression_params"):
            read = read_landmark_motion(keypoints, np.ones(len(keypoints), dtype=bool))
            motion, expression_norm = read.motion(), torch.from_numpy(read.expression).abs().sum(1)
            has_condition = self.database.has(video, "condition")
            condition = torch.from_numpy(self.database.array(video, "condition") if has_condition else read.condition)
        else:
            coeffs = torch.from_numpy(self.database.array(video, "coeff_3dmm"))
            motion, expression_norm = motion_from_coeffs(coeffs), coeffs[:, EXPRESSION].abs().sum(1)
            condition = None
        if self.camera_source == "ground_truth":
            cameras = torch.from_numpy(self.database.array(video, "camera"))
        else:
            if condition is None:
                condition = torch.from_numpy(self.database.array(video, "condition"))
            cameras = condition_to_camera(condition, self.camera_smoothing)
        return {
            "expression_norm": expression_norm,
            "motion": motion_windows(motion),
            "camera": cameras,
            "keypoint": torch.from_numpy(keypoints),
        }

    def video(self, video: str) -> dict[str, torch.Tensor]:
        return self._video_cache(video)

    def image(self, video: str, frame: int, view: int | None = None) -> torch.Tensor:
        image = self.database.image(video, frame, view)
        if self.image_size and image.shape[-1] != self.image_size:
            image = F.interpolate(image[None], size=(self.image_size, self.image_size), mode="area")[0]
        return image

    def frame(self, video: str, frame: int) -> dict[str, torch.Tensor]:
        data = self.video(video)
        image = self.image(video, frame)
        return {
            "image": image,
            "motion": data["motion"][frame],
            "camera": data["camera"][frame],
            "keypoints": data["keypoint"][frame] * (image.shape[-1] / LANDMARK_REFERENCE_SIZE),
        }


class TrainingPairs(Dataset):
    """Items are person ids (× ``repeat``); each gives ``frames`` frames (the release: 2) of a random video of
    that person, drawn with replacement with probability ∝ ‖expression‖₁ + 1e-3 (expressive frames more often),
    and ``person``: the person's index in ``persons`` (which identity code a warm-started inversion resumes)."""

    def __init__(self, source: FrameSource, split: str = "train", frames: int = 2, repeat: int = 100) -> None:
        self.source = source
        self.frames = frames
        videos = source.database.splits[split]
        if not videos:
            raise ValueError(f"dataset {source.database.root}: the {split} list is empty")
        self.videos_of: dict[str, list[str]] = {}
        for video in videos:
            self.videos_of.setdefault(person_id(video), []).append(video)
        self.persons = sorted(self.videos_of)
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.persons) * self.repeat

    def sample_frames(self, video: str) -> torch.Tensor:
        weights = self.source.video(video)["expression_norm"] + 1e-3
        return torch.multinomial(weights, self.frames, replacement=True)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        videos = self.videos_of[self.persons[index % len(self.persons)]]
        video = videos[int(torch.randint(len(videos), ()))]
        items = [self.source.frame(video, int(frame)) for frame in self.sample_frames(video)]
        stacked = {key: torch.stack([item[key] for item in items]) for key in items[0]}
        return stacked | {"person": torch.tensor(index % len(self.persons))}
