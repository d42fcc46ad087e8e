"""Face detection with five landmarks (MTCNN from facenet-pytorch) and tracking of the largest face.

facenet-pytorch's wheel carries the MTCNN weights, so detection works offline. Its metadata pins
torch < 2.3, so it is installed with ``pip install --no-deps facenet-pytorch==2.6.0`` and imported
only when a detector is built.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from otavatar.errors import InputError


@dataclass(frozen=True)
class Face:
    """One detection in image pixels: ``box`` (x0, y0, x1, y1), ``score`` in [0, 1], ``points`` (5, 2)
    = left eye, right eye, nose, left and right mouth corners (as seen in the image)."""

    box: np.ndarray
    score: float
    points: np.ndarray

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class FaceDetector:
    """MTCNN on uint8 RGB frames; ``detect`` takes frames of one size and returns their faces, largest first.

    Args:
        device: torch device for the three networks.
        min_face_size: smallest face side in pixels that is searched for.
        threshold: minimum MTCNN score kept.
    """

    name = "MTCNN (facenet-pytorch 2.6.0)"

    def __init__(self, device: str = "cpu", min_face_size: int = 40, threshold: float = 0.9) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as error:
            raise ImportError(
                f"face detection needs facenet-pytorch ({error}); install it with "
                "`pip install --no-deps facenet-pytorch==2.6.0 requests` (make setup does this)"
            ) from None
        self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size)
        self.min_face_size = min_face_size
        self.threshold = threshold

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per frame (each list sorted by area, largest first; empty when none is found)."""
        if not len(frames):
            return []
        if min(frames[0].shape[:2]) < self.min_face_size:
            return [[] for _ in frames]  # smaller than the smallest face MTCNN looks for (its image pyramid would be empty)
        boxes, scores, points = self.mtcnn.detect(list(frames), landmarks=True)
        result = []
        for frame_boxes, frame_scores, frame_points in zip(boxes, scores, points):
            if frame_boxes is None:
                result.append([])
                continue
            # With numpy 2, facenet-pytorch returns object arrays.
            frame_boxes = np.asarray(np.asarray(frame_boxes).tolist(), dtype=np.float64)
            frame_scores = np.asarray(np.asarray(frame_scores).tolist(), dtype=np.float64)
            frame_points = np.asarray(np.asarray(frame_points).tolist(), dtype=np.float64)
            faces = [
                Face(box, float(score), pts)
                for box, score, pts in zip(frame_boxes, frame_scores, frame_points)
                if score >= self.threshold
            ]
            result.append(sorted(faces, key=lambda face: face.area, reverse=True))
        return result


def largest_face(faces: list[Face], source: str) -> Face:
    """The largest face, warning (with the source's name) when there are several."""
    if not faces:
        raise NoFaceError(f"{source}: no face found; give a photo with a clearly visible face")
    if len(faces) > 1:
        warnings.warn(f"{source}: {len(faces)} faces found; using the largest ({faces[0].box.round().astype(int).tolist()})", stacklevel=2)
    return faces[0]


class NoFaceError(InputError):
    """No face in an image or in any frame of a video."""


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


@dataclass(frozen=True)
class Track:
    """The tracked face of a video: per-frame ``boxes (N, 4)`` and ``points (N, 5, 2)`` (smoothed,
    gaps filled from the nearest detections) and ``detected (N,)`` marking frames with a detection."""

    boxes: np.ndarray
    points: np.ndarray
    detected: np.ndarray

    @property
    def missing(self) -> int:
        return int((~self.detected).sum())


def track_largest_face(detections: list[list[Face]], source: str, smoothing_radius: int = 2) -> Track:
    """Follow one face through a video.

    The track starts at the largest face of the first frame with a face and continues with the face
    that overlaps the previous box most (the largest when none overlaps), so another person walking
    by does not steal it. Frames without a detection take linearly interpolated values (held at the
    ends); then boxes and points are averaged over ``±smoothing_radius`` frames to remove jitter.
    """
    count = len(detections)
    boxes = np.full((count, 4), np.nan)
    points = np.full((count, 5, 2), np.nan)
    previous = None
    for index, faces in enumerate(detections):
        if not faces:
            continue
        if previous is None:
            face = faces[0]
        else:
            overlaps = [_overlap(previous, face.box) for face in faces]
            face = faces[int(np.argmax(overlaps))] if max(overlaps) > 0 else faces[0]
        boxes[index], points[index] = face.box, face.points
        previous = face.box
    detected = ~np.isnan(boxes[:, 0])
    if not detected.any():
        raise NoFaceError(f"{source}: no face found in any of its {count} frames")
    frames = np.arange(count)
    flat = np.concatenate([boxes, points.reshape(count, 10)], axis=1)
    for column in range(flat.shape[1]):
        flat[:, column] = np.interp(frames, frames[detected], flat[detected, column])
    if smoothing_radius > 0 and count > 1:
        padded = np.pad(flat, ((smoothing_radius, smoothing_radius), (0, 0)), mode="edge")
        kernel = np.ones(2 * smoothing_radius + 1) / (2 * smoothing_radius + 1)
        flat = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(flat.shape[1])], axis=1)
    return Track(flat[:, :4], flat[:, 4:].reshape(count, 5, 2), detected)
