"""The synthetic heads' motion read from 68 landmarks: what drives the embedded model with a real video offline.

Per frame, the head pose comes from PnP (:mod:`otavatar.data.head_pose`); the landmarks are
then frontalised (each is moved along its line of sight to the template's depth, in the head's own
frame), so the measures below are in the synthetic head's units whatever the view:

- ``jaw_open``: the inner-lip gap (landmarks 61–67, 62–66, 63–65);
- ``smile`` and ``lip_pucker``: the mouth width (48–54), wider than at rest (the head model's
  width ∝ 1 + 0.3·smile) or narrower (∝ 1 − 0.4·pucker: rounded lips);
- ``right_eyelid``/``left_eyelid``: the lid opening (37–41, 38–40 and 43–47, 44–46);
- ``brows``: the brows' height above the eye corners.

The gains are the head model's own (:class:`otavatar.data.synthetic.HeadModel`: a jaw_open of 1 opens
the lips by 1.6 × 0.045 units, and so on). Each measure is read against the person's own rest, a
percentile of the video (:data:`REST_PERCENTILES`: the mouth's most closed frames; a low percentile of
its width, so a clip that smiles for most of its length keeps its neutral mouth as rest; the median
eye and brow), which is given the head model's rest values (:data:`REST_EXPRESSION`). A single photo
has no such reference and reads the rest values. Readings are clamped to the ranges the synthetic
talking sequences cover, then smoothed with a centred Savitzky–Golay filter (no lag).
Frames without a detected face repeat the last frame that had one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import savgol_filter

from otavatar.camera import FFHQ_FOCAL, LANDMARK_REFERENCE_SIZE
from otavatar.data.head_pose import FRONTAL_DISTANCE, HeadPose, head_pose, landmark_template
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, HEAD_SCALE
from otavatar.motion import repeat_last_detected, synthetic_motion

# The head model's units per unit of each parameter (otavatar.data.synthetic, before HEAD_SCALE).
_GAP_PER_JAW = 1.6 * 0.045
_LID_PER_CLOSURE = 0.85 * 0.75 * 0.034
_BROW_PER_RAISE = 0.022
_WIDTH_PER_SMILE, _WIDTH_PER_PUCKER = 0.3, 0.4

REST_EXPRESSION = {"jaw_open": 0.0, "smile": 0.0, "right_eyelid": 0.1, "left_eyelid": 0.1, "brows": 0.0, "lip_pucker": 0.0}
"""A face at rest in the synthetic talking sequences (open eyes have a lid at 0.1)."""
EXPRESSION_RANGES = {"jaw_open": (0.0, 1.0), "smile": (-0.8, 1.0), "right_eyelid": (0.0, 1.0), "left_eyelid": (0.0, 1.0),
                     "brows": (-1.0, 1.0), "lip_pucker": (0.0, 0.8)}
"""What :func:`otavatar.data.synthetic.sample_talking_sequence` draws: the controller has seen nothing else."""
REST_PERCENTILES = {"gap": 5, "width": 10, "right_lid": 50, "left_lid": 50, "brow": 50}
SMOOTHING_FRAMES = 5  # Savitzky–Golay window (quadratic); 1 turns smoothing off
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper and lower inner-lip landmarks facing each other


@dataclass
class LandmarkMotion:
    """A video's motion read from landmarks: ``expression (N, 6)`` (``EXPRESSION_PARAMETERS``), the tracker's
    ``condition (N, 7)`` (angles, translation, focal) and ``detected (N,)`` (False: the reading repeats the
    last frame with a face)."""

    expression: np.ndarray
    condition: np.ndarray
    detected: np.ndarray

    @property
    def reused(self) -> int:
        """Frames without a face."""
        return int((~self.detected).sum())

    def motion(self) -> torch.Tensor:
        """The motion x ``(N, 70)`` in the coefficient layout (:func:`otavatar.motion.synthetic_motion`)."""
        condition = torch.from_numpy(self.condition)
        return synthetic_motion(torch.from_numpy(self.expression).float(), condition[:, :3], condition[:, 3:6])


def frontalise(keypoints: np.ndarray, pose: HeadPose, crop_size: int) -> np.ndarray:
    """Landmarks ``(N, 68, 2)`` (dlib pixel indices) → their (x, y) in the head's frame ``(N, 68, 2)``, world units,
    each at the template's depth along its line of sight."""
    depth = landmark_template()[:, 2]
    focal, centre = FFHQ_FOCAL * crop_size, crop_size / 2
    points = np.asarray(keypoints, dtype=np.float64) + 0.5
    rays = np.concatenate([(points - centre) / focal, np.ones(points.shape[:2] + (1,))], axis=-1)
    origin = -np.einsum("nji,nj->ni", pose.rotation, pose.translation)  # the camera centre in the head's frame
    directions = np.einsum("nji,nkj->nki", pose.rotation, rays)
    reach = (depth[None] - origin[:, None, 2]) / directions[..., 2]
    return (origin[:, None] + reach[..., None] * directions)[..., :2]


def _pair_height(points: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.mean([points[:, top, 1] - points[:, bottom, 1] for top, bottom in pairs], axis=0)


def landmark_measures(points: np.ndarray) -> dict[str, np.ndarray]:
    """Frontalised landmarks ``(N, 68, 2)`` → the measures ``(N,)`` each parameter is read from (world units)."""
    return {
        "gap": _pair_height(points, INNER_LIP_PAIRS),
        "width": points[:, 54, 0] - points[:, 48, 0],
        "right_lid": _pair_height(points, ((37, 41), (38, 40))),
        "left_lid": _pair_height(points, ((43, 47), (44, 46))),
        "brow": points[:, 17:27, 1].mean(1) - points[:, [36, 39, 42, 45], 1].mean(1),
    }


def rest_measures(measures: dict[str, np.ndarray], detected: np.ndarray) -> dict[str, float]:
    """The person's rest: :data:`REST_PERCENTILES` of each measure over the frames with a face."""
    return {name: float(np.percentile(values[detected], REST_PERCENTILES[name])) for name, values in measures.items()}


def expression_from_measures(measures: dict[str, np.ndarray], rest: dict[str, float]) -> np.ndarray:
    """Measures ``(N,)`` each, read against ``rest`` → expression parameters ``(N, 6)``, clamped to :data:`EXPRESSION_RANGES`."""
    unit = HEAD_SCALE
    values = {
        "jaw_open": REST_EXPRESSION["jaw_open"] + (measures["gap"] - rest["gap"]) / (_GAP_PER_JAW * unit),
        "brows": REST_EXPRESSION["brows"] + (measures["brow"] - rest["brow"]) / (_BROW_PER_RAISE * unit),
    }
    for side in ("right", "left"):
        values[f"{side}_eyelid"] = REST_EXPRESSION[f"{side}_eyelid"] + (rest[f"{side}_lid"] - measures[f"{side}_lid"]) / (_LID_PER_CLOSURE * unit)
    widening = measures["width"] / rest["width"] - 1
    values["smile"] = REST_EXPRESSION["smile"] + np.clip(widening, 0, None) / _WIDTH_PER_SMILE
    values["lip_pucker"] = REST_EXPRESSION["lip_pucker"] + np.clip(-widening, 0, None) / _WIDTH_PER_PUCKER
    return np.stack([np.clip(values[name], *EXPRESSION_RANGES[name]) for name in EXPRESSION_PARAMETERS], axis=1)


def smooth(values: np.ndarray, frames: int = SMOOTHING_FRAMES) -> np.ndarray:
    """Centred Savitzky–Golay smoothing (quadratic) along the first axis: no lag; sequences shorter than the window are kept."""
    if frames <= 1 or len(values) < frames:
        return values
    return savgol_filter(values, frames, 2, axis=0, mode="nearest")


def read_landmark_motion(keypoints: np.ndarray, detected: np.ndarray, crop_size: int = LANDMARK_REFERENCE_SIZE,
                         smoothing_frames: int = SMOOTHING_FRAMES) -> LandmarkMotion:
    """The synthetic heads' motion of a video from its landmarks ``(N, 68, 2)`` (dlib pixel indices in ``crop_size``²
    crops cut as the model's data) and ``detected (N,)``; see the module docstring. A single frame reads the rest expression."""
    detected = np.asarray(detected, dtype=bool)
    if not detected.any():
        raise ValueError("landmark motion: no frame has a detected face")
    keypoints = repeat_last_detected(np.asarray(keypoints, dtype=np.float64), detected)
    pose = head_pose(keypoints, crop_size).at_distance(FRONTAL_DISTANCE)
    if len(keypoints) > 1:
        measures = landmark_measures(frontalise(keypoints, pose, crop_size))
        expression = expression_from_measures(measures, rest_measures(measures, detected))
    else:
        expression = np.array([[REST_EXPRESSION[name] for name in EXPRESSION_PARAMETERS]])
    condition = pose.condition()
    low, high = zip(*(EXPRESSION_RANGES[name] for name in EXPRESSION_PARAMETERS))
    expression = np.clip(smooth(expression, smoothing_frames), low, high)
    condition[:, :6] = smooth(condition[:, :6], smoothing_frames)
    return LandmarkMotion(expression.astype(np.float32), condition.astype(np.float32), detected)
