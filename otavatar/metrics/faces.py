"""68 landmarks of generated and real frames, for AKD, CSIM alignment and the 3DMM regressor.

MTCNN finds the largest face; dlib's 68-point predictor places the landmarks in its box. Frames
without a detected face get NaN landmarks: metrics skip them and report how many they skipped.
"""

from __future__ import annotations

import torch

from otavatar.preprocess.detection import FaceDetector
from otavatar.preprocess.landmarks import LandmarkPredictor
from otavatar.videos import to_uint8_frames


class FaceLandmarks:
    """Images ``(B, 3, H, W)`` in [−1, 1] → landmarks ``(B, 68, 2)`` in their pixels (NaN where no face)."""

    def __init__(self, detector: FaceDetector | None = None, predictor: LandmarkPredictor | None = None, min_face_fraction: float = 0.2) -> None:
        self.detector = detector
        self.predictor = predictor or LandmarkPredictor()
        self.min_face_fraction = min_face_fraction
        self.name = f"{FaceDetector.name} + {LandmarkPredictor.name}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        frames = to_uint8_frames(images)
        if self.detector is None:
            # Built on first use: the crops are small, so search down to a fifth of the frame.
            self.detector = FaceDetector(min_face_size=max(12, int(self.min_face_fraction * min(frames[0].shape[:2]))))
        landmarks = torch.full((len(frames), 68, 2), float("nan"))
        for index, (frame, faces) in enumerate(zip(frames, self.detector.detect(frames))):
            if faces:
                landmarks[index] = torch.from_numpy(self.predictor.predict(frame, faces[0].box))
        return landmarks
