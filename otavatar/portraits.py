"""What one-shot construction inverts: a photo (detected, aligned and cropped as the training data), a
dataset frame, or the embedded sample portrait, as an inversion target (image, keypoints, motion x, camera p)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from otavatar.camera import LANDMARK_REFERENCE_SIZE, condition_to_camera
from otavatar.data.datasets import FrameSource
from otavatar.data.landmark_motion import read_landmark_motion
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.samples import frame_target, sample_source
from otavatar.motion import motion_from_coeffs, motion_window, read_coefficient_rows
from otavatar.preprocess.cameras import condition_from_coefficients
from otavatar.preprocess.crop import crop_increase
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
    landmarks = read_landmark_motion(portrait.keypoints[None], np.ones(1, bool), LANDMARK_REFERENCE_SIZE)
    pose_camera, pose_source = condition_to_camera(torch.from_numpy(landmarks.condition), smoothing="none"), "PnP head pose (landmarks)"
    if rows is not None:
        motion = motion_from_coeffs(rows)
        camera, camera_source = pose_camera, pose_source
        if rows.shape[1] == 260:
            condition = condition_from_coefficients(rows[0].numpy()[None], settings.size, smoothing_radius=0)
            camera, camera_source = condition_to_camera(torch.from_numpy(condition), smoothing="none"), "regressed pose"
        motion_source = str(coefficients_file)
    elif synthetic:
        motion, motion_source = landmarks.motion(), "landmarks (rest expression, PnP head pose)"
        camera, camera_source = pose_camera, pose_source
    elif portrait.coefficients is not None:
        motion, motion_source = motion_from_coeffs(torch.from_numpy(portrait.coefficients)[None]), "Deep3DFaceRecon"
        condition = condition_from_coefficients(portrait.coefficients[None], settings.size, smoothing_radius=0)
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
        "keypoints": torch.from_numpy(portrait.keypoints[None] * (size / LANDMARK_REFERENCE_SIZE)).float(),
        "motion": motion_window(motion, 0)[None],
        "camera": camera,
    }
    return PortraitTarget(target, motion_source, camera_source)


def dataset_target(dataset: str | Path, video: str, frame: int, model_config: Mapping[str, Any], resolution: int | None = None,
                   camera_source: str = "ground_truth") -> dict[str, torch.Tensor]:
    """Frame ``frame`` of ``video`` in a dataset of the reference layout (LMDB sub-folder ``resolution``, default the model's)."""
    size = model_config["generator"]["img_resolution"]
    source = FrameSource(VideoLmdb(dataset, resolution or size), camera_source, image_size=size, motion_space=model_config["motion_space"])
    return {key: value[None] for key, value in source.frame(video, frame).items()}


def sample_target(model_config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The embedded sample portrait: a held-out synthetic head at the model's resolution."""
    return frame_target(sample_source(model_config["generator"]["img_resolution"]))
