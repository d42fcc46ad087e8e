"""Calibrating and measuring the landmark motion reader on synthetic renders with known parameters.

Heads are rendered (:mod:`otavatar.data.synthetic`) and go through the same pipeline as a real
video (MTCNN, the fixed crop, dlib's 68 points), so what is measured is the reader as a user runs it.
Two uses:

- :func:`rigid_points`: where dlib puts the rigid landmarks on the synthetic head, triangulated from
  renders with known cameras (:data:`otavatar.data.head_pose.DLIB_RIGID_POINTS`);
- :func:`reader_errors`: the reader's mean absolute error per expression parameter and per angle
  (degrees) on talking sequences where, as the reader assumes of a person, the face rests most of
  the time (:func:`resting_talking_sequence`).

On a real clip, :func:`mouth_opening` measures the inner-lip gap independently of the reader (dlib's 68
points on every whole frame, no crop, no pose, no smoothing), to correlate the reader's jaw_open with.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.head_pose import RIGID_LANDMARKS
from otavatar.data.landmark_motion import INNER_LIP_PAIRS, REST_EXPRESSION, read_landmark_motion
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import render_video
from otavatar.preprocess.detection import FaceDetector
from otavatar.preprocess.landmarks import LandmarkPredictor
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings, ProcessedVideo, process_media
from otavatar.preprocess.reading import open_media

# iBUG mirror pairs among the rigid landmarks; 27–30 and 33 lie on the midline.
_MIRRORED = ((0, 16), (1, 15), (31, 35), (32, 34), (36, 45), (39, 42))
_MIDLINE = (27, 28, 29, 30, 33)


def _bursts(frames: int, generator: torch.Generator) -> torch.Tensor:
    """An envelope in [0, 1] that is 0 for most frames and rises in smooth bursts."""
    t = torch.arange(frames, dtype=torch.float32)
    frequency = 0.04 + 0.12 * torch.rand(1, generator=generator)
    phase = 2 * torch.pi * torch.rand(1, generator=generator)
    return (2 * torch.sin(frequency * t + phase) - 0.8).clamp(0, 1)


def resting_talking_sequence(frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`otavatar.data.synthetic.sample_talking_sequence` with smile, brows and pucker coming in bursts
    from rest (smiles widen the mouth only): the person's rest is then their most common face, as the reader assumes."""
    expression, angles, translation = sample_talking_sequence(frames, generator)
    names = list(EXPRESSION_PARAMETERS)
    expression[:, names.index("smile")] = expression[:, names.index("smile")].clamp(min=0) * _bursts(frames, generator)
    for name in ("brows", "lip_pucker"):
        expression[:, names.index(name)] *= _bursts(frames, generator)
    return expression, angles, translation


@dataclass
class RenderedLandmarks:
    """A rendered sequence's truth (``expression (N, 6)``, ``angles (N, 3)``, ``cameras (N, 25)``), its size,
    and what the preprocessing read from it (``processed``: crop box, landmarks, detections)."""

    expression: np.ndarray
    angles: np.ndarray
    cameras: np.ndarray
    resolution: int
    processed: ProcessedVideo


def rendered_landmarks(identity: torch.Tensor, expression: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor,
                       resolution: int, extractors: Extractors, settings: PreprocessSettings) -> RenderedLandmarks:
    """Render a head sequence and run the video preprocessing (detection, fixed crop, 68 landmarks) on it."""
    video = render_video(identity, expression, angles, translation, resolution, extra_view_yaws=())
    frames = (video.images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    with tempfile.TemporaryDirectory() as folder:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(Path(folder) / f"{index:05d}.png")
        processed = process_media(open_media(folder), extractors, settings, progress=False)
    return RenderedLandmarks(expression.numpy(), angles.numpy(), video.cameras.double().numpy(), resolution, processed)


def sequences(count: int, frames: int, resolution: int, seed: int, extractors: Extractors, settings: PreprocessSettings,
              on_sequence: Callable[[], None] | None = None) -> Iterator[RenderedLandmarks]:
    """``count`` random identities, each with a :func:`resting_talking_sequence`, rendered and read."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        identity = sample_identity(generator)
        yield rendered_landmarks(identity, *resting_talking_sequence(frames, generator), resolution, extractors, settings)
        if on_sequence:
            on_sequence()


def rigid_points(rendered: list[RenderedLandmarks]) -> np.ndarray:
    """Where dlib puts :data:`RIGID_LANDMARKS` on the head ``(K, 3)``, world units: the least-squares
    intersection of their lines of sight over every detected frame (linear triangulation), mirrored
    about the face's midline and averaged, as the mean head is symmetric."""
    normal = np.zeros((68, 3, 3))
    right = np.zeros((68, 3))
    for sequence in rendered:
        box = sequence.processed.box
        scale = (box[2] - box[0]) / LANDMARK_REFERENCE_SIZE
        points = (sequence.processed.keypoints + 0.5) * scale + box[:2]  # render pixels, continuous
        for frame, camera in enumerate(sequence.cameras):
            if not sequence.processed.detected[frame]:
                continue
            cam2world = camera[:16].reshape(4, 4)
            intrinsics = camera[16:].reshape(3, 3) * np.array([[sequence.resolution], [sequence.resolution], [1.0]])
            world_to_camera = cam2world[:3, :3].T
            projection = intrinsics @ np.concatenate([world_to_camera, -world_to_camera @ cam2world[:3, 3:]], axis=1)
            for landmark in RIGID_LANDMARKS:
                u, v = points[frame, landmark]
                rows = np.stack([u * projection[2] - projection[0], v * projection[2] - projection[1]])
                normal[landmark] += rows[:, :3].T @ rows[:, :3]
                right[landmark] -= rows[:, :3].T @ rows[:, 3]
    solved = {k: np.linalg.solve(normal[k], right[k]) for k in RIGID_LANDMARKS}
    for a, b in _MIRRORED:
        mean = (solved[a] * [-1, 1, 1] + solved[b]) / 2
        solved[a], solved[b] = mean * [-1, 1, 1], mean
    for k in _MIDLINE:
        solved[k][0] = 0.0
    return np.stack([solved[k] for k in RIGID_LANDMARKS])


@dataclass
class ReaderErrors:
    """Mean absolute errors of the reader: per expression parameter ``(6,)`` and per angle ``(3,)`` in degrees
    (pitch, yaw, roll), over ``frames`` frames of which ``missed`` had no detected face; and, for scale, those
    of always reading the rest face seen from the front (``rest_expression``, ``frontal_degrees``)."""

    expression: np.ndarray
    angles_degrees: np.ndarray
    rest_expression: np.ndarray
    frontal_degrees: np.ndarray
    frames: int
    missed: int

    def table(self) -> str:
        """A markdown table: the reader's errors, then the resting frontal face's."""
        def row(name: str, expression: np.ndarray, angles: np.ndarray) -> str:
            return f"| {name} | " + " | ".join(f"{v:.3f}" for v in expression) + " | " + " | ".join(f"{v:.2f}" for v in angles) + " |"

        header = "| | " + " | ".join(EXPRESSION_PARAMETERS) + " | pitch ° | yaw ° | roll ° |"
        return "\n".join([header, "|---|" + "---|" * (len(EXPRESSION_PARAMETERS) + 3),
                          row("landmark reader", self.expression, self.angles_degrees),
                          row("always the rest face, frontal", self.rest_expression, self.frontal_degrees)])


def reader_errors(rendered: list[RenderedLandmarks]) -> ReaderErrors:
    """Run :func:`read_landmark_motion` on each sequence and compare with the truth."""
    expression, angles = [], []
    frames = missed = 0
    for sequence in rendered:
        motion = read_landmark_motion(sequence.processed.keypoints, sequence.processed.detected)
        expression.append(np.abs(motion.expression - sequence.expression))
        angles.append(np.degrees(np.abs(motion.condition[:, :3] - sequence.angles)))
        frames += len(sequence.expression)
        missed += motion.reused
    truth = np.concatenate([sequence.expression for sequence in rendered])
    rest = np.array([REST_EXPRESSION[name] for name in EXPRESSION_PARAMETERS])
    frontal = np.degrees(np.abs(np.concatenate([sequence.angles for sequence in rendered]))).mean(0)
    return ReaderErrors(np.concatenate(expression).mean(0), np.concatenate(angles).mean(0), np.abs(truth - rest).mean(0), frontal, frames, missed)


def mouth_opening(path: str | Path, detector: FaceDetector | None = None, landmarks: LandmarkPredictor | None = None) -> np.ndarray:
    """The inner-lip gap of the largest face of every frame ``(N,)``: landmarks 61–67, 62–66, 63–65 from dlib on the
    whole frame, over the distance between the eyes' outer corners; NaN where no face is detected."""
    detector = detector or FaceDetector()
    landmarks = landmarks or LandmarkPredictor()
    gaps = []
    for frame in open_media(path).frames():
        faces = detector.detect([frame])[0]
        if not faces:
            gaps.append(np.nan)
            continue
        points = landmarks.predict(frame, faces[0].box)
        gap = np.mean([np.linalg.norm(points[b] - points[t]) for t, b in INNER_LIP_PAIRS])
        gaps.append(gap / np.linalg.norm(points[45] - points[36]))
    return np.array(gaps)
