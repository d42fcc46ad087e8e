"""What drives an avatar: motion windows x, cameras p and the frames to show beside the result, read from
a video (preprocessed as the model's data), a coefficient file, a dataset video or the embedded sample."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from otavatar.assets import MissingAssetError, asset_path
from otavatar.camera import LANDMARK_REFERENCE_SIZE, condition_to_camera
from otavatar.data.datasets import FrameSource
from otavatar.data.landmark_motion import read_landmark_motion
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.samples import driving_windows, frame_target, sample_driver
from otavatar.errors import InputError
from otavatar.motion import COEFFICIENT_SUFFIXES, motion_from_coeffs, motion_windows, read_coefficients, repeat_last_detected
from otavatar.preprocess.cameras import condition_from_coefficients
from otavatar.preprocess.crop import crop_increase
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings, process_media
from otavatar.preprocess.reading import VIDEO_SUFFIXES, open_media


@dataclass
class Driving:
    """A driving input: motion windows x ``(N, 70, 27)`` in the model's motion space, its cameras p ``(N, 25)``
    (None for a coefficient file), its frames ``(N, 3, S, S)`` in [−1, 1] (None for a coefficient file), its
    frame rate (None: unknown), its first frame as an inversion target (what ``--optimize-camera`` fits; None
    for a coefficient file), the file whose audio the result keeps, and a line saying where it came from."""

    windows: torch.Tensor
    cameras: torch.Tensor | None = None
    images: torch.Tensor | None = None
    fps: float | None = None
    first_frame: dict[str, torch.Tensor] | None = None
    audio: Path | None = None
    description: str = ""

    @property
    def default_camera(self) -> str:
        """The camera path when none is asked for: the driver's own cameras p when it has them, else the source's."""
        return "driving" if self.cameras is not None else "source"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def check_driving_file(path: str | Path) -> None:
    """Refuse a ``--driving`` file that is neither a video nor a coefficient file, before any work."""
    path = Path(path)
    if not is_video(path) and path.suffix.lower() not in COEFFICIENT_SUFFIXES:
        raise InputError(
            f"--driving {path}: a '{path.suffix}' file; expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
            f"or a coefficient file ({', '.join(COEFFICIENT_SUFFIXES)}); a photo to animate goes to --portrait"
        )


def coefficient_driving(path: str | Path) -> Driving:
    """A coefficient file (N × 257/260/70), read and checked (shape, finite values)."""
    windows = motion_windows(read_coefficients(path))
    return Driving(windows, description=f"{path}: {windows.shape[0]} frames of coefficients")


def coefficients_first(path: str | Path | None) -> Driving | None:
    """``path`` read and checked when it is a coefficient file (before any model work, so bad values cost nothing); None otherwise."""
    return coefficient_driving(path) if path and not is_video(path) else None


def read_driving(path: str | Path | None, model_config: Mapping[str, Any], device: str = "cpu", coefficients: Driving | None = None) -> Driving:
    """What drives the avatar: the video at ``path`` (preprocessed), its coefficients (``coefficients`` when already read by
    :func:`coefficients_first`), or with no ``path`` the embedded sample driver."""
    if coefficients is not None:
        return coefficients
    if not path:
        return sample_driving(model_config)
    return video_driving(path, model_config, device) if is_video(path) else coefficient_driving(path)


LANDMARK_READER = "landmarks (MTCNN + dlib 68 points; PnP head pose)"
DEEP3D_READER = "Deep3DFaceRecon"


def video_driving(path: str | Path, model_config: Mapping[str, Any], device: str = "cpu") -> Driving:
    """Preprocess a driving video (crops as the model's data) and read its motion as the model's controller
    reads it (``model_config['motion_space']``): 3DMM coefficients and their cameras (fixed smoothing) from
    Deep3DFaceRecon, or the synthetic heads' parameters and PnP cameras from landmarks
    (:mod:`otavatar.data.landmark_motion`). Its audio is kept."""
    started = time.perf_counter()
    size = model_config["generator"]["img_resolution"]
    media = open_media(path)  # an unreadable file is named before any network is loaded
    settings = PreprocessSettings(size=512, increase=crop_increase(model_config), device=device)
    synthetic = model_config.get("motion_space", "3dmm") == "synthetic"
    extractors = Extractors(settings, coefficients=not synthetic)
    if not synthetic and extractors.regressor is None:
        raise MissingAssetError(
            f"--driving {path}: this model reads 3DMM coefficients and Deep3DFaceRecon's weights "
            f"{asset_path('deep3dfacerecon', settings.coefficient_weights)} are not found (see pretrained/README.md), so a video "
            "cannot give its 3DMM coefficients; drive it with a coefficient file (--driving motion.npy) or a dataset video "
            "(--dataset DIR --video NAME), or use a model that reads the synthetic heads' parameters (the embedded default)"
        )
    video = process_media(media, extractors, settings)
    images = torch.stack([
        torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)))
        for data in video.images
    ]).permute(0, 3, 1, 2).float() / 127.5 - 1
    keypoints = torch.from_numpy(video.keypoints) * (size / LANDMARK_REFERENCE_SIZE)
    if synthetic:
        read = read_landmark_motion(video.keypoints, video.detected, LANDMARK_REFERENCE_SIZE)
        motion, condition, smoothing, reader = read.motion(), read.condition, "none", LANDMARK_READER  # the reader smooths
    else:
        coefficients = repeat_last_detected(video.coefficients, video.detected)
        condition = condition_from_coefficients(coefficients, settings.size, smoothing_radius=settings.camera_smoothing)
        motion, smoothing, reader = motion_from_coeffs(torch.from_numpy(coefficients)), "fixed", DEEP3D_READER
    cameras = condition_to_camera(torch.from_numpy(condition), smoothing if len(video.images) > 1 else "none")
    windows = motion_windows(motion)
    seconds, frames = time.perf_counter() - started, windows.shape[0]
    first_frame = {"image": images[:1], "keypoints": keypoints[:1], "motion": windows[:1], "camera": cameras[:1]}
    return Driving(
        windows, cameras, images, video.fps, first_frame, Path(path),
        f"driving: {frames} frames, motion and cameras read by {reader} in {seconds:.1f} s ({frames / seconds:.1f} FPS); "
        f"{video.missing_faces} without a detected face repeat the last reading that had one",
    )


def dataset_driving(dataset: str | Path, video: str, model_config: Mapping[str, Any], resolution: int | None = None) -> Driving:
    """A video of a dataset in the reference layout, with its ground-truth cameras and frames."""
    size = model_config["generator"]["img_resolution"]
    source = FrameSource(VideoLmdb(dataset, resolution or size), "ground_truth", image_size=size, motion_space=model_config["motion_space"])
    data = source.video(video)
    images = torch.stack([source.image(video, frame) for frame in range(data["motion"].shape[0])])
    first_frame = {key: value[None] for key, value in source.frame(video, 0).items()}
    return Driving(data["motion"], data["camera"], images, None, first_frame, description=f"{dataset} {video}: {images.shape[0]} frames")


def sample_driving(model_config: Mapping[str, Any]) -> Driving:
    """The embedded sample driver: another held-out synthetic identity talking."""
    driver = sample_driver(model_config["generator"]["img_resolution"])
    return Driving(driving_windows(driver), driver.cameras, driver.images * 2 - 1, None, frame_target(driver),
                   description="the embedded sample driver (another synthetic identity)")
