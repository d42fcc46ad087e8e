"""EG3D camera labels p (25 values), look-at poses, and the reference's conversion from tracker poses.

A label is the row-major cam2world matrix (OpenCV camera axes: +x right, +y down, +z forward) and
the row-major intrinsics normalised by the image size. World frame: +y up, the face looks toward +z.

The reference data stores per frame a ``condition`` = [angles (3), translation (3), focal (1)] from
a face tracker; :func:`condition_to_camera` converts it exactly as the release does, and
:func:`camera_to_condition` inverts that conversion (for writing synthetic data). Its 68 landmarks
are stored in pixels of a :data:`LANDMARK_REFERENCE_SIZE`² image whatever the image size: a user scales
them by ``size / LANDMARK_REFERENCE_SIZE``.
"""

from __future__ import annotations

import math

import torch

FFHQ_FOCAL = 4.2647  # 2985.29 / 700: Deep3DFaceRecon's focal on a 1024 crop, normalised
DEFAULT_RADIUS = 2.7
DEFAULT_PIVOT = (0.0, 0.0, 0.2)
TRACKER_FOCAL = 1050.0  # the tracker focal that maps to FFHQ_FOCAL
LANDMARK_REFERENCE_SIZE = 512  # stored landmarks are in pixels of a 512² image, the reference data's crops
# Constants of the release's conversion (OTAvatar data/utils.py::process_camera_inv).
_DEPTH_OFFSET = 10.0
_SCALE = 0.27
_CENTRE_SHIFT = (0.0, 0.015, 0.161)
_RADIUS_SCALE = 2.7 / 4
_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def camera_label(cam2world: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)`` cam2world and ``(B, 3, 3)`` normalised intrinsics → p ``(B, 25)``."""
    return torch.cat([cam2world.reshape(-1, 16), intrinsics.reshape(-1, 9)], dim=1)


def intrinsics_matrix(focal: torch.Tensor | float = FFHQ_FOCAL, batch: int = 1) -> torch.Tensor:
    """Normalised pinhole intrinsics ``(B, 3, 3)``: fx = fy = focal, principal point (0.5, 0.5).

    ``focal`` is one value (repeated ``batch`` times) or one per camera.
    """
    focal = torch.as_tensor(focal, dtype=torch.float32).reshape(-1)
    if focal.numel() == 1:
        focal = focal.expand(batch)
    intrinsics = torch.zeros(focal.shape[0], 3, 3)
    intrinsics[:, 0, 0] = focal
    intrinsics[:, 1, 1] = focal
    intrinsics[:, 0, 2] = 0.5
    intrinsics[:, 1, 2] = 0.5
    intrinsics[:, 2, 2] = 1.0
    return intrinsics


def look_at_cam2world(centre: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """cam2world ``(B, 4, 4)`` of cameras at ``centre (B, 3)`` looking at ``target (B, 3)``, world up +y."""
    forward = torch.nn.functional.normalize(target - centre, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(forward)
    right = -torch.nn.functional.normalize(torch.cross(up, forward, dim=-1), dim=-1)
    up = torch.nn.functional.normalize(torch.cross(forward, right, dim=-1), dim=-1)
    cam2world = torch.eye(4).repeat(centre.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, up, forward], dim=-1)
    cam2world[:, :3, 3] = centre
    return cam2world


def look_at_camera(
    yaw: torch.Tensor, pitch: torch.Tensor, radius: float = DEFAULT_RADIUS, pivot=DEFAULT_PIVOT, focal: float = FFHQ_FOCAL
) -> torch.Tensor:
    """EG3D's LookAtPoseSampler convention: p ``(B, 25)`` for yaw/pitch offsets ``(B,)`` from the frontal view.

    yaw 0, pitch 0 is the frontal camera at (0, 0, radius); positive yaw moves the camera toward
    +x, positive pitch moves it down. (EG3D's angles are these plus π/2.)
    """
    yaw, pitch = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1), torch.as_tensor(pitch, dtype=torch.float32).reshape(-1)
    theta = yaw + math.pi / 2
    v = (pitch + math.pi / 2).clamp(1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * v / math.pi)
    centre = radius * torch.stack([phi.sin() * (math.pi - theta).cos(), phi.cos(), phi.sin() * (math.pi - theta).sin()], -1)
    target = torch.tensor(pivot, dtype=torch.float32).expand_as(centre)
    return camera_label(look_at_cam2world(centre, target), intrinsics_matrix(focal, centre.shape[0]))


def frontal_camera(batch: int = 1) -> torch.Tensor:
    """EG3D's frontal camera p ``(batch, 25)``: at (0, 0, :data:`DEFAULT_RADIUS`) looking down −z, focal
    :data:`FFHQ_FOCAL`. :func:`look_at_camera` (0, 0) is the same view up to float rounding (≈ 1e-7); this one is exact."""
    cam2world = torch.eye(4).repeat(batch, 1, 1)
    cam2world[:, :3, :3] = _FLIP
    cam2world[:, 2, 3] = DEFAULT_RADIUS
    return camera_label(cam2world, intrinsics_matrix(FFHQ_FOCAL, batch))


def rotation_from_angles(angles: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon's ``compute_rotation``: angles ``(N, 3)`` (x, y, z) → ``(Rz · Ry · Rx)ᵀ``, ``(N, 3, 3)``."""
    x, y, z = angles[:, 0], angles[:, 1], angles[:, 2]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], 1).view(-1, 3, 3)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1).view(-1, 3, 3)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def angles_from_rotation(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rotation_from_angles` (for |y| < π/2)."""
    m = rotation.transpose(1, 2)  # Rz · Ry · Rx
    y = -torch.asin(m[:, 2, 0].clamp(-1, 1))
    x = torch.atan2(m[:, 2, 1], m[:, 2, 2])
    z = torch.atan2(m[:, 1, 0], m[:, 0, 0])
    return torch.stack([x, y, z], 1)


def _smooth(values: torch.Tensor, release_last_frame: bool) -> torch.Tensor:
    """Mean over frames [i−1, i+1] (clipped); the release's upper bound skips the last frame."""
    count = values.shape[0]
    end_limit = count - 1 if release_last_frame else count
    out = torch.empty_like(values)
    for index in range(count):
        start, end = max(index - 1, 0), min(index + 2, end_limit)
        if end <= start:
            raise ValueError(f"camera smoothing: no frame to average for frame {index} of {count}")
        out[index] = values[start:end].mean(0)
    return out


def condition_to_camera(condition: torch.Tensor, smoothing: str = "release") -> torch.Tensor:
    """The release's conversion of tracker poses ``(N, 7)`` = [angles, translation, focal] → p ``(N, 25)``.

    Args:
        smoothing: ``'release'`` averages R and t over frames i−1..i+1 with the release's upper bound,
            which never uses the last frame (so the last camera repeats the previous window, and a
            1-frame sequence cannot be converted); ``'fixed'`` includes the last frame; ``'none'``
            converts every frame on its own.
    """
    if condition.dim() != 2 or condition.shape[1] != 7:
        raise ValueError(f"condition: expected shape (N, 7) = angles, translation, focal; found {tuple(condition.shape)}")
    if smoothing not in ("release", "fixed", "none"):
        raise ValueError(f"camera smoothing: expected 'release', 'fixed' or 'none', found {smoothing!r}")
    condition = condition.float()
    angles = condition[:, :3] * torch.tensor([-1.0, -1.0, 1.0])
    rotation = rotation_from_angles(angles)
    translation = condition[:, 3:6]
    if smoothing != "none":
        rotation = _smooth(rotation, smoothing == "release")
        translation = _smooth(translation, smoothing == "release")
    translation = translation - torch.tensor([0.0, 0.0, _DEPTH_OFFSET])
    centre = -(rotation @ translation.unsqueeze(-1)).squeeze(-1) * _SCALE + torch.tensor(_CENTRE_SHIFT)
    cam2world = torch.eye(4).repeat(condition.shape[0], 1, 1)
    cam2world[:, :3, :3] = rotation @ _FLIP
    cam2world[:, :3, 3] = centre * _RADIUS_SCALE
    focal = FFHQ_FOCAL * condition[:, 6] / TRACKER_FOCAL
    return camera_label(cam2world, intrinsics_matrix(focal))


def camera_to_condition(camera: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`condition_to_camera` without smoothing: p ``(N, 25)`` → condition ``(N, 7)``."""
    cam2world = camera[:, :16].view(-1, 4, 4)
    rotation = cam2world[:, :3, :3] @ _FLIP
    centre = (cam2world[:, :3, 3] / _RADIUS_SCALE - torch.tensor(_CENTRE_SHIFT)) / _SCALE
    translation = -(rotation.transpose(1, 2) @ centre.unsqueeze(-1)).squeeze(-1) + torch.tensor([0.0, 0.0, _DEPTH_OFFSET])
    angles = angles_from_rotation(rotation) * torch.tensor([-1.0, -1.0, 1.0])
    focal = camera[:, 16] * TRACKER_FOCAL / FFHQ_FOCAL
    return torch.cat([angles, translation, focal[:, None]], dim=1)


def head_pose_camera(angles: torch.Tensor, translation: torch.Tensor, focal: float = TRACKER_FOCAL) -> torch.Tensor:
    """Camera p ``(N, 25)`` that sees a canonical head under pose (angles, translation) as the reference data does."""
    condition = torch.cat([angles, translation, torch.full((angles.shape[0], 1), float(focal))], dim=1)
    return condition_to_camera(condition, smoothing="none")


FRONTAL_TRANSLATION_Z = _DEPTH_OFFSET - (DEFAULT_RADIUS / _RADIUS_SCALE - _CENTRE_SHIFT[2]) / _SCALE
"""Tracker depth that puts a frontal camera at distance 2.7 through the release's conversion (≈ −4.22)."""


WORLD_UNITS_PER_TRACKER_UNIT = _SCALE * _RADIUS_SCALE
"""Length scale of the release's conversion: a tracker (Deep3DFaceRecon) unit is 0.18225 EG3D world units."""


def condition_from_view(angles: torch.Tensor, head_in_camera: torch.Tensor, focal: torch.Tensor | float = TRACKER_FOCAL) -> torch.Tensor:
    """The ``condition (N, 7)`` whose camera (:func:`condition_to_camera` without smoothing) has the stored
    ``angles (N, 3)`` and sees the world origin at ``head_in_camera (N, 3)`` (OpenCV camera axes, world units)."""
    angles = angles.float()
    rotation = rotation_from_angles(angles * torch.tensor([-1.0, -1.0, 1.0]))
    centre = -(rotation @ _FLIP @ head_in_camera.float().unsqueeze(-1)).squeeze(-1)
    offset = (torch.tensor(_CENTRE_SHIFT) - centre / _RADIUS_SCALE) / _SCALE
    translation = (rotation.transpose(1, 2) @ offset.unsqueeze(-1)).squeeze(-1) + torch.tensor([0.0, 0.0, _DEPTH_OFFSET])
    focal = torch.as_tensor(focal, dtype=torch.float32).expand(angles.shape[0])
    return torch.cat([angles, translation, focal[:, None]], dim=1)
