"""CSIM: cosine similarity of identity embeddings of the source portrait and each generated frame.

The paper's embedding is ArcFace with the identity loss's alignment (release issue #27): five
points from the 68 landmarks, similarity transform to the ArcFace template, 128² grey crop. Without
``arcface_resnet18.pth`` the offline fallback is dlib's 128-D face descriptor (face-recognition-
models); its cosines are compressed compared with ArcFace, so the column is named ``csim_dlib`` and
is not comparable with the paper's CSIM.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from otavatar.losses.identity import ResNetArcFace, arcface_embedding
from otavatar.preprocess.landmarks import face_recognition_models_dir
from otavatar.videos import to_uint8_frames

DLIB_DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class ArcFaceEmbedder:
    """Images ``(B, 3, H, W)`` in [−1, 1] + landmarks ``(B, 68, 2)`` → unit embeddings ``(B, 512)``."""

    metric = "csim"

    def __init__(self, arcface: ResNetArcFace, device: torch.device | str = "cpu") -> None:
        self.arcface = arcface.to(device)
        self.device = torch.device(device)
        self.name = "ArcFace ResNet-18 (arcface_resnet18.pth), identity-loss alignment"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        embedding = arcface_embedding(self.arcface, images.to(self.device), landmarks.to(self.device))
        return F.normalize(embedding, dim=1).cpu()


class DlibEmbedder:
    """The offline fallback: dlib's face descriptor on the 68-landmark shape, unit ``(B, 128)``."""

    metric = "csim_dlib"

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self.network = dlib.face_recognition_model_v1(str(face_recognition_models_dir() / DLIB_DESCRIPTOR_FILE))
        self.name = f"dlib {DLIB_DESCRIPTOR_FILE} (face-recognition-models 0.3.0), not comparable with ArcFace CSIM"

    def __call__(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        dlib = self._dlib
        embeddings = []
        for frame, points in zip(to_uint8_frames(images), landmarks.numpy()):
            x0, y0 = np.floor(points.min(0)).astype(int)
            x1, y1 = np.ceil(points.max(0)).astype(int)
            shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), [dlib.point(int(round(x)), int(round(y))) for x, y in points])
            embeddings.append(np.asarray(self.network.compute_face_descriptor(np.ascontiguousarray(frame), shape)))
        return F.normalize(torch.tensor(np.stack(embeddings), dtype=torch.float32), dim=1)


def cosine_similarity(source: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Cosine of one source embedding ``(1, D)`` with each frame's ``(B, D)`` → ``(B,)``."""
    return F.cosine_similarity(source.expand_as(frames), frames, dim=1)
