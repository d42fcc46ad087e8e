"""3DMM coefficient layout and the motion signal x of the controller.

Deep3DFaceRecon regresses 257 values per frame; the reference LMDB appends the 3 crop values
(ratio s, t0, t1) for 260 columns. The controller reads the 70-value motion vector
x = [expression (64), angles (3), translation (3)] over a 27-frame window centred on the
target frame, with the sequence ends replicated.

A model's motion space says what x holds: ``3dmm``, Deep3DFaceRecon's 64 expression coefficients
(the paper's), or ``synthetic``, the synthetic heads' 6 expression parameters in the first expression
columns and zeros in the rest (what the synthetic dataset writes); pose is in the same columns in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat

from otavatar.errors import FileFormatError, MissingInputError

IDENTITY = slice(0, 80)
EXPRESSION = slice(80, 144)
TEXTURE = slice(144, 224)
ANGLES = slice(224, 227)
LIGHTING = slice(227, 254)
TRANSLATION = slice(254, 257)
CROP = slice(257, 260)

NUM_COEFFS = 257
NUM_COEFFS_WITH_CROP = 260
MOTION_DIM = 70
WINDOW_RADIUS = 13
WINDOW_LENGTH = 2 * WINDOW_RADIUS + 1
COEFFICIENT_SUFFIXES = (".npy", ".txt", ".csv", ".mat")
MOTION_SPACES = ("3dmm", "synthetic")


def synthetic_motion(expression: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """The synthetic heads' ``expression (N, E)``, ``angles (N, 3)`` and ``translation (N, 3)`` → motion x ``(N, 70)``."""
    motion = torch.zeros(expression.shape[0], MOTION_DIM)
    motion[:, : expression.shape[1]] = expression
    motion[:, 64:67] = angles
    motion[:, 67:70] = translation
    return motion


def motion_from_coeffs(coeffs: torch.Tensor) -> torch.Tensor:
    """Extract the motion vector x from 3DMM coefficients.

    Args:
        coeffs: ``(..., 257)`` or ``(..., 260)`` Deep3DFaceRecon coefficients, or ``(..., 70)``
            motion vectors (returned unchanged).

    Returns:
        ``(..., 70)``: expression 80:144, angles 224:227, translation 254:257, in that order.
    """
    width = coeffs.shape[-1]
    if width == MOTION_DIM:
        return coeffs
    if width not in (NUM_COEFFS, NUM_COEFFS_WITH_CROP):
        raise ValueError(
            f"3DMM coefficients: expected a last dimension of {NUM_COEFFS}, {NUM_COEFFS_WITH_CROP} "
            f"or {MOTION_DIM}, found shape {tuple(coeffs.shape)}"
        )
    return torch.cat([coeffs[..., EXPRESSION], coeffs[..., ANGLES], coeffs[..., TRANSLATION]], dim=-1)


def window_indices(num_frames: int, centre: torch.Tensor | int, radius: int = WINDOW_RADIUS) -> torch.Tensor:
    """Frame indices of the windows centred on ``centre``, clamped to ``[0, num_frames - 1]``.

    Returns ``(2 * radius + 1,)`` for an int centre, ``(N, 2 * radius + 1)`` for a tensor of N centres.
    """
    if num_frames < 1:
        raise ValueError(f"motion sequence: expected at least 1 frame, found {num_frames}")
    offsets = torch.arange(-radius, radius + 1)
    centre = torch.as_tensor(centre)
    return (centre.unsqueeze(-1) + offsets).clamp(0, num_frames - 1)


def motion_window(motion: torch.Tensor, frame: int, radius: int = WINDOW_RADIUS) -> torch.Tensor:
    """The controller input for one frame.

    Args:
        motion: ``(N, 70)`` motion vectors (or ``(N, 257/260)`` coefficients) of a sequence.
        frame: index of the target frame.

    Returns:
        ``(70, 27)`` channel-first window, edges replicated.
    """
    motion = _as_sequence(motion)
    if not 0 <= frame < motion.shape[0]:
        raise IndexError(f"motion window: frame {frame} outside a sequence of {motion.shape[0]} frames")
    return motion[window_indices(motion.shape[0], frame, radius)].transpose(0, 1)


def motion_windows(motion: torch.Tensor, radius: int = WINDOW_RADIUS) -> torch.Tensor:
    """Controller inputs for every frame of a sequence.

    Args:
        motion: ``(N, 70)`` motion vectors (or ``(N, 257/260)`` coefficients).

    Returns:
        ``(N, 70, 27)``: window t is centred on frame t, edges replicated.
    """
    motion = _as_sequence(motion)
    indices = window_indices(motion.shape[0], torch.arange(motion.shape[0]), radius)
    return motion[indices].transpose(1, 2)


def _as_sequence(motion: torch.Tensor) -> torch.Tensor:
    if motion.dim() != 2:
        raise ValueError(f"motion sequence: expected shape (N, 70), found {tuple(motion.shape)}")
    return motion_from_coeffs(motion)


def read_coefficient_rows(path: str | Path) -> torch.Tensor:
    """The rows of a coefficient file, checked: ``(N, 257)``, ``(N, 260)`` or ``(N, 70)`` finite values in
    .npy, .txt/.csv or .mat (key ``coeff``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"coefficient file {path}: does not exist")
    suffix = path.suffix.lower()
    if suffix not in COEFFICIENT_SUFFIXES:
        raise FileFormatError(f"coefficient file {path}: unknown type '{suffix}'; expected {', '.join(COEFFICIENT_SUFFIXES)}")
    try:
        values = torch.as_tensor(np.asarray(_read_table(path, suffix), dtype=np.float32))
    except Exception as error:
        reason = next(iter(str(error).splitlines()), "")[:200]
        raise FileFormatError(f"coefficient file {path}: not readable as numbers ({type(error).__name__}: {reason}); expected N rows of 257, 260 or 70 values") from error
    if values.dim() == 1:
        values = values[None]
    if values.dim() != 2 or values.shape[0] == 0 or values.shape[1] not in (70, 257, 260):
        raise FileFormatError(f"coefficient file {path}: expected (N, 257), (N, 260) or (N, 70) values, found shape {tuple(values.shape)}")
    bad = ~torch.isfinite(values)
    if bad.any():
        row, column = bad.nonzero()[0].tolist()
        raise FileFormatError(
            f"coefficient file {path}: {int(bad.sum())} NaN or infinite value(s), the first at row {row}, column {column}; expected finite numbers"
        )
    return values


def _read_table(path: Path, suffix: str) -> np.ndarray:
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".mat":
        content = loadmat(path)
        keys = [k for k in ("coeff", "coeffs", "coeff_3dmm") if k in content]
        if not keys:
            raise LookupError(f"no 'coeff' array, found {sorted(k for k in content if not k.startswith('__'))}")
        return content[keys[0]]
    return np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)


def read_coefficients(path: str | Path) -> torch.Tensor:
    """The motion x ``(N, 70)`` of a coefficient file (see :func:`read_coefficient_rows`)."""
    return motion_from_coeffs(read_coefficient_rows(path))


def repeat_last_detected(values: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Per-frame ``values (N, …)`` with each frame whose face was not detected replaced by the last one that was
    (frames before the first detection take the first)."""
    detected = np.asarray(detected, dtype=bool)
    index = np.maximum.accumulate(np.where(detected, np.arange(len(detected)), -1))
    index[index < 0] = int(np.argmax(detected))
    return values[index]
