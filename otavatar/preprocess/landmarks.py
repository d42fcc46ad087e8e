"""68-point facial landmarks (iBUG 300-W order) with dlib's shape predictor.

The predictor file ships in the ``face-recognition-models`` package (it works offline); dlib comes
from the ``dlib-bin`` wheel. That package's ``__init__`` imports ``pkg_resources`` (gone from recent
setuptools), so its ``models/`` folder is located through importlib without importing it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def face_recognition_models_dir() -> Path:
    """The ``models/`` folder of the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "68-point landmarks need the face-recognition-models package (dlib's predictor files): "
            "`pip install face-recognition-models==0.3.0 dlib-bin==20.0.1.post1` (make setup does this)"
        )
    return Path(spec.submodule_search_locations[0]) / "models"


class LandmarkPredictor:
    """dlib's 68-point predictor; ``predict(image, box)`` → ``(68, 2)`` pixel coordinates (x, y).

    Args:
        path: the predictor file; default: the one in face-recognition-models.
    """

    name = "dlib shape_predictor_68_face_landmarks (face-recognition-models 0.3.0)"

    def __init__(self, path: str | Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise ImportError("68-point landmarks need dlib: `pip install dlib-bin==20.0.1.post1` (make setup does this)") from None
        path = Path(path) if path is not None else face_recognition_models_dir() / PREDICTOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"dlib landmark predictor {path} is missing (it ships in face-recognition-models 0.3.0)")
        self._dlib = dlib
        self.predictor = _shape_predictor(str(path.resolve()))

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Landmarks of the face in ``box`` (x0, y0, x1, y1) of a uint8 ``(H, W, 3)`` RGB image: ``(68, 2)``."""
        rectangle = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(np.ascontiguousarray(image), rectangle)
        return np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float32)


@functools.cache
def _shape_predictor(path: str):
    """dlib's predictor read from ``path`` once per process (about a second each time; predicting does not change it)."""
    import dlib

    return dlib.shape_predictor(path)


def five_from_68(landmarks: np.ndarray) -> np.ndarray:
    """``(..., 68, 2)`` → ``(..., 5, 2)``: eye centres (mean of 36/39 and 42/45), nose tip 30, mouth corners 48, 54.

    This is the five-point set Deep3DFaceRecon aligns with (its ``extract_5p``).
    """
    return np.stack(
        [
            landmarks[..., [36, 39], :].mean(-2), landmarks[..., [42, 45], :].mean(-2),
            landmarks[..., 30, :], landmarks[..., 48, :], landmarks[..., 54, :],
        ],
        axis=-2,
    )
