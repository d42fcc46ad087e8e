"""Head pose from 68 landmarks: perspective-n-point against the synthetic head's 3D landmarks.

Without Deep3DFaceRecon (whose weights cannot be fetched offline) the pose of a face is fitted to
its dlib landmarks. The rigid ones (the top of the jaw line, the nose, the eye corners: expressions
leave them in place) of the synthetic head's neutral mean face (:mod:`otavatar.data.synthetic`) are
projected with the cameras the data uses (normalised focal 4.2647 on the crop, principal point at
its centre), and the rotation and translation minimising the reprojection error are found with
scipy's Levenberg–Marquardt. The result is the reference data's tracker ``condition`` (angles,
translation, focal), so :func:`otavatar.camera.condition_to_camera` and the synthetic heads'
renderer see the face where the crop shows it.

The rigid points are taken where dlib puts them, not where the head model defines them: dlib reads
the top of the jaw line about 0.075 units higher, level with the eyes as on a real face, which
otherwise tilts every pose by about 23° of pitch (on synthetic renders and on a real face alike).
:data:`DLIB_RIGID_POINTS` were triangulated from dlib's landmarks on synthetic renders with known
cameras (``scripts/calibrate_landmark_motion.py`` prints them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from otavatar.camera import FFHQ_FOCAL, TRACKER_FOCAL, angles_from_rotation, condition_from_view
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, IDENTITY_PARAMETERS, HeadModel

# The jaw line's top (0, 1, 15, 16: its depth behind the face makes yaw and pitch observable), the
# nose 27–35, the eye corners 36, 39, 42, 45.
RIGID_LANDMARKS = (0, 1, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
DLIB_RIGID_POINTS = np.array([[-0.1493, 0.0570, 0.0236], [-0.1469, 0.0102, 0.0364], [0.1469, 0.0102, 0.0364], [0.1493, 0.0570, 0.0236], [0.0000, 0.0429, 0.1719], [0.0000, 0.0218, 0.1876], [0.0000, 0.0008, 0.2043], [0.0000, -0.0206, 0.2208], [-0.0235, -0.0458, 0.1864], [-0.0124, -0.0492, 0.1955], [0.0000, -0.0531, 0.1997], [0.0124, -0.0492, 0.1955], [0.0235, -0.0458, 0.1864], [-0.0894, 0.0392, 0.1305], [-0.0401, 0.0337, 0.1427], [0.0401, 0.0337, 0.1427], [0.0894, 0.0392, 0.1305]])
_FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes ↔ the tracker's (otavatar.camera)
FRONTAL_DISTANCE = 2.7  # depth of the head centre seen by the synthetic data's frontal camera (world units)


def geometric_template() -> np.ndarray:
    """The synthetic head's own 68 landmarks ``(68, 3)`` in world units: mean identity, neutral expression."""
    head = HeadModel(torch.zeros(len(IDENTITY_PARAMETERS)), torch.zeros(1, len(EXPRESSION_PARAMETERS)))
    return head.landmarks[0].double().numpy()


@functools.cache
def landmark_template() -> np.ndarray:
    """The 68-point template ``(68, 3)`` of the fit: :func:`geometric_template` with the rigid points where dlib reads them."""
    template = geometric_template()
    template[list(RIGID_LANDMARKS)] = DLIB_RIGID_POINTS
    return template


def solve_pnp(object_points: np.ndarray, image_points: np.ndarray, focal: float, centre: tuple[float, float],
              initial: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation ``(3, 3)`` and translation ``(3,)`` (world → OpenCV camera) minimising the reprojection error
    of ``object_points (K, 3)`` onto ``image_points (K, 2)`` (pixels, continuous coordinates), and the RMS
    error in pixels. ``initial``: a starting pose (default: the face seen from the front, at the depth its size gives)."""
    if initial is None:
        spread = np.linalg.norm(image_points - image_points.mean(0), axis=1).mean()
        size = np.linalg.norm(object_points[:, :2] - object_points[:, :2].mean(0), axis=1).mean()
        depth = focal * size / max(spread, 1e-6)
        offset = (image_points.mean(0) - np.asarray(centre)) / focal * depth
        initial = (_FLIP, np.array([offset[0], offset[1], depth]) - _FLIP @ object_points.mean(0))
    start = np.concatenate([Rotation.from_matrix(initial[0]).as_rotvec(), initial[1]])

    def residuals(parameters: np.ndarray) -> np.ndarray:
        camera = object_points @ Rotation.from_rotvec(parameters[:3]).as_matrix().T + parameters[3:]
        projected = focal * camera[:, :2] / camera[:, 2:3] + np.asarray(centre)
        return (projected - image_points).ravel()

    solution = least_squares(residuals, start, method="lm", x_scale="jac")
    rms = float(np.sqrt(np.mean(solution.fun.reshape(-1, 2) ** 2) * 2))
    return Rotation.from_rotvec(solution.x[:3]).as_matrix(), solution.x[3:], rms


def condition_from_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """A world → camera pose (OpenCV axes, world units) → the tracker's ``condition (7,)`` = angles, translation, focal."""
    cam2world = rotation.T
    angles = angles_from_rotation(torch.from_numpy(cam2world @ _FLIP)[None]) * torch.tensor([-1.0, -1.0, 1.0])
    return condition_from_view(angles, torch.from_numpy(translation)[None], TRACKER_FOCAL)[0].numpy()


@dataclass
class HeadPose:
    """Per frame: world → camera ``rotation (N, 3, 3)`` and ``translation (N, 3)`` (OpenCV axes, world units:
    the head centre in the camera) and the reprojection error ``rms (N,)`` in pixels of the crop."""

    rotation: np.ndarray
    translation: np.ndarray
    rms: np.ndarray

    def condition(self) -> np.ndarray:
        """The tracker's ``condition (N, 7)``: angles, translation, focal."""
        return np.stack([condition_from_pose(r, t) for r, t in zip(self.rotation, self.translation)]).astype(np.float32)

    def at_distance(self, depth: float | np.ndarray) -> HeadPose:
        """The same views with the head moved along its lines of sight to ``depth`` (the median depth
        when given one number per video): the crop shows it at the same place, at the size the data's
        framing gives. The distance of a face of unknown size is not observable; its apparent size is."""
        scale = np.asarray(depth, dtype=np.float64)
        scale = scale / np.median(self.translation[:, 2]) if scale.ndim == 0 else scale / self.translation[:, 2]
        return HeadPose(self.rotation, self.translation * np.reshape(scale, (-1, 1)), self.rms)


def head_pose(keypoints: np.ndarray, crop_size: int) -> HeadPose:
    """PnP head pose of every frame of ``keypoints (N, 68, 2)`` (dlib pixel indices in a ``crop_size``² crop).

    Each frame starts from the previous frame's pose, so a video is tracked.
    """
    template = landmark_template()[list(RIGID_LANDMARKS)]
    focal, centre = FFHQ_FOCAL * crop_size, (crop_size / 2, crop_size / 2)
    points = np.asarray(keypoints, dtype=np.float64)[:, list(RIGID_LANDMARKS)] + 0.5  # pixel index → continuous coordinate
    rotations, translations, errors = [], [], []
    previous = None
    for frame in points:
        rotation, translation, rms = solve_pnp(template, frame, focal, centre, previous)
        previous = (rotation, translation)
        rotations.append(rotation)
        translations.append(translation)
        errors.append(rms)
    return HeadPose(np.stack(rotations), np.stack(translations), np.array(errors))
