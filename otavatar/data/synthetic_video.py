"""Videos of synthetic heads: a talking sequence rendered with everything known about it (parameters,
cameras, landmarks, extra views), the ground truth of any reenactment, and its coefficients in the
reference's 260-column layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from otavatar.camera import TRACKER_FOCAL, head_pose_camera
from otavatar.data.synthetic import HeadModel, project_points, render_heads, sample_talking_sequence


@dataclass
class SyntheticVideo:
    """One rendered video with everything known about it."""

    identity: torch.Tensor  # (10,)
    expression: torch.Tensor  # (F, 6)
    angles: torch.Tensor  # (F, 3)
    translation: torch.Tensor  # (F, 3)
    cameras: torch.Tensor  # (F, 25)
    images: torch.Tensor  # (F, 3, R, R) in [0, 1]
    labels: torch.Tensor  # (F, R, R)
    keypoints: torch.Tensor  # (F, 68, 2) in 512-pixel coordinates
    view_cameras: torch.Tensor  # (V, F, 25)
    view_images: torch.Tensor  # (V, F, 3, R, R)
    view_keypoints: torch.Tensor  # (V, F, 68, 2) in 512-pixel coordinates


EXTRA_VIEW_YAWS = (-0.45, 0.45)


def make_video(identity: torch.Tensor, frames: int, resolution: int, generator: torch.Generator,
               extra_view_yaws=EXTRA_VIEW_YAWS) -> SyntheticVideo:
    """Sample a talking sequence for ``identity`` and render it, plus extra views of every frame."""
    expression, angles, translation = sample_talking_sequence(frames, generator)
    return render_video(identity, expression, angles, translation, resolution, extra_view_yaws)


def render_video(identity: torch.Tensor, expression: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor,
                 resolution: int, extra_view_yaws=EXTRA_VIEW_YAWS) -> SyntheticVideo:
    """Render a given identity × expression × pose sequence: the ground truth of any reenactment."""
    head = HeadModel(identity, expression)
    cameras = head_pose_camera(angles, translation, TRACKER_FOCAL)
    images, labels = render_heads(head, cameras, resolution)
    keypoints = project_points(head.landmarks, cameras)
    view_cameras = torch.stack([head_pose_camera(angles + torch.tensor([0.0, yaw, 0.0]), translation, TRACKER_FOCAL) for yaw in extra_view_yaws]) if extra_view_yaws else torch.zeros(0, *cameras.shape)
    view_images = torch.stack([render_heads(head, c, resolution)[0] for c in view_cameras]) if extra_view_yaws else torch.zeros(0, *images.shape)
    view_keypoints = torch.stack([project_points(head.landmarks, c) for c in view_cameras]) if extra_view_yaws else torch.zeros(0, *keypoints.shape)
    return SyntheticVideo(identity, expression, angles, translation, cameras, images, labels, keypoints, view_cameras, view_images, view_keypoints)


def render_fixed_expression(identity: torch.Tensor, expression: torch.Tensor, cameras: torch.Tensor, resolution: int) -> torch.Tensor:
    """``identity (10,)`` holding one ``expression (6,)``, seen from cameras p ``(N, 25)``: ``(N, 3, R, R)`` in [0, 1]."""
    return render_heads(HeadModel(identity, expression.reshape(1, -1).expand(len(cameras), -1)), cameras, resolution)[0]


def coefficients(video: SyntheticVideo) -> torch.Tensor:
    """The reference's 260 columns: identity params in the identity slot, expression in the first
    expression entries, pose angles and translation in theirs, unit crop values."""
    frames = video.expression.shape[0]
    coeffs = torch.zeros(frames, 260)
    coeffs[:, : video.identity.shape[0]] = video.identity
    coeffs[:, 80 : 80 + video.expression.shape[1]] = video.expression
    coeffs[:, 224:227] = video.angles
    coeffs[:, 254:257] = video.translation
    coeffs[:, 257] = 1.0
    return coeffs
