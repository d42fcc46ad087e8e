"""Reenactment: an avatar's identity code + a motion sequence + a camera path → frames.

Frames are rendered in batches; motion windows repeated inside a batch (a still pose seen from a
moving camera) share one tri-plane, so free-view rendering does not rerun the synthesis network.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from PIL import Image

from otavatar.assets import MissingAssetError, asset_path
from otavatar.camera import condition_to_camera
from otavatar.inversion import correct_intrinsics
from otavatar.models.animator import Animator
from otavatar.motion import motion_from_coeffs, motion_windows
from otavatar.preprocess.cameras import condition_from_coefficients
from otavatar.preprocess.crop import crop_increase
from otavatar.preprocess.landmark_motion import read_landmark_motion
from otavatar.preprocess.pipeline import REFERENCE_SIZE, Extractors, PreprocessSettings, process_media, repeat_last_detected
from otavatar.preprocess.reading import open_media


@dataclass
class DrivingVideo:
    """A driving video after preprocessing: motion windows x ``(N, 70, 27)`` (in the model's motion space),
    cameras p ``(N, 25)``, its face crops ``(N, 3, S, S)`` in [−1, 1] at the model's size, its frame rate,
    ``keypoints`` ``(N, 68, 2)`` in pixels of the crops, ``reused``: how many frames had no detected face
    and repeat the last reading that had one, and ``reader``: what read the motion and cameras."""

    windows: torch.Tensor
    cameras: torch.Tensor
    images: torch.Tensor
    fps: float
    keypoints: torch.Tensor
    reused: int
    reader: str


LANDMARK_READER = "landmarks (MTCNN + dlib 68 points; PnP head pose)"
DEEP3D_READER = "Deep3DFaceRecon"


def driving_video(path: str | Path, size: int, model_config: Mapping[str, Any], device: str = "cpu") -> DrivingVideo:
    """Preprocess a driving video (crops as the model's data) and read its motion as the model's controller
    reads it (``model_config['motion_space']``): 3DMM coefficients and their cameras (fixed smoothing) from
    Deep3DFaceRecon, or the synthetic heads' parameters and PnP cameras from landmarks
    (:mod:`otavatar.preprocess.landmark_motion`)."""
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
        torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)))
        for data in video.images
    ]).permute(0, 3, 1, 2).float() / 127.5 - 1
    keypoints = torch.from_numpy(video.keypoints) * (size / 512)  # stored in 512-pixel coordinates
    if synthetic:
        read = read_landmark_motion(video.keypoints, video.detected, REFERENCE_SIZE)
        motion, condition, smoothing, reader = read.motion(), read.condition, "none", LANDMARK_READER  # the reader smooths
    else:
        coefficients = repeat_last_detected(video.coefficients, video.detected)
        condition = condition_from_coefficients(coefficients, settings.size, smoothing_radius=settings.camera_smoothing)
        motion, smoothing, reader = motion_from_coeffs(torch.from_numpy(coefficients)), "fixed", DEEP3D_READER
    cameras = condition_to_camera(torch.from_numpy(condition), smoothing if len(video.images) > 1 else "none")
    return DrivingVideo(motion_windows(motion), cameras, images, video.fps, keypoints, video.missing_faces, reader)


@torch.no_grad()
def reenact(
    animator: Animator,
    identity_code: torch.Tensor,
    motion_windows: torch.Tensor,
    cameras: torch.Tensor,
    correction: torch.Tensor | None = None,
    batch_size: int = 8,
    super_resolve: bool = True,
    clamp: bool = False,
    deterministic: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Render w_id + C(x_t) from p_t for every frame t, one batch at a time.

    Args:
        identity_code: w_id ``(1, 1, 512)`` or ``(1, num_ws, 512)``.
        motion_windows: x ``(N, 70, 27)``.
        cameras: p ``(N, 25)``.
        correction: the avatar's intrinsics correction ``(1, 18)``, applied to every camera.
        clamp: clamp ws to w_avg ± 5 (the release's final render does not).
        deterministic: fixed depth samples, so a still avatar does not flicker.

    Yields:
        dicts with ``image`` ``(b, 3, H, W)`` (when ``super_resolve``), ``image_raw``, ``image_depth``.
    """
    if motion_windows.shape[0] != cameras.shape[0]:
        raise ValueError(f"reenactment: {motion_windows.shape[0]} motion windows but {cameras.shape[0]} cameras")
    if identity_code.shape[0] != 1:
        raise ValueError(f"reenactment: expected one identity code (1, L, 512), found {tuple(identity_code.shape)}")
    device = identity_code.device
    for start in range(0, motion_windows.shape[0], batch_size):
        windows = motion_windows[start : start + batch_size].to(device)
        camera = cameras[start : start + batch_size].to(device)
        if correction is not None:
            camera = correct_intrinsics(camera, correction.to(device).expand(camera.shape[0], -1))
        unique_windows, inverse = torch.unique(windows.flatten(1), dim=0, return_inverse=True)
        ws, planes = animator.planes(
            identity_code.expand(unique_windows.shape[0], -1, -1), unique_windows.view(-1, *windows.shape[1:]), clamp
        )
        out = animator.render(
            None, None, camera, deterministic=deterministic, super_resolve=super_resolve, planes=(ws[inverse], planes[inverse])
        )
        yield {key: out[key] for key in ("image", "image_raw", "image_depth") if key in out}
