"""Multiface captures (the paper's multi-view protocol, Table 1 left): reading the public layout and
converting it to the reference layout, where the ``multiview`` protocol runs over it.

A capture folder, as Multiface's public loader reads it:

- ``KRT``: per camera a name line, 3 lines of intrinsics (3 × 3, pixels), 1 line of distortion,
  3 lines of extrinsics (3 × 4, world → camera), then a blank line;
- ``images/<sentence>/<camera>/<frame>.png`` (2048 × 1334 in the release);
- ``tracked_mesh/<sentence>/<frame>_transform.txt``: the tracked head pose, 3 × 4, head → world;
- audio per sentence (not needed here).

Intrinsics are taken in OpenCV's convention (pixel centres at integer coordinates); the distortion
line is read and kept, not applied, as Multiface's own loader does not apply it.

EG3D labels are relative to the head. Multiface's head coordinates (millimetres, axes of its own)
are mapped to EG3D's world (+y up, the face toward +z, head at the origin, cameras ≈ 2.7 away) by a
:class:`HeadFrame`; :meth:`HeadFrame.from_cameras` derives one from the capture rig: the head centre
is the point closest to every camera's optical axis (a capture dome aims at the head), the face
looks at the frontal camera, whose image "up" is the head's up, and the scale puts the median
camera at EG3D's radius 2.7, all at a reference frame. Each frame is cropped where a training camera
would see the head: a square centred on the head centre's projection whose side gives the crop the
training labels' normalised focal (FFHQ's 4.2647 by default), so the head fills the crop as in the
training data; the crop's label is then exact (extrinsics from KRT and the head pose, intrinsics
from K and the crop box).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from otavatar.assets import MissingAssetError
from otavatar.camera import DEFAULT_RADIUS, FFHQ_FOCAL, LANDMARK_REFERENCE_SIZE
from otavatar.data.lmdb import VideoLmdbWriter, encode_image
from otavatar.errors import FileFormatError, InputError, MissingInputError
from otavatar.motion import ANGLES, EXPRESSION, TRANSLATION
from otavatar.preprocess.crop import crop_image
from otavatar.preprocess.detection import track_largest_face
from otavatar.preprocess.landmarks import five_from_68
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings

# (crops (N, S, S, 3) uint8 of the frontal camera, name) → coefficients (N, 257|260|70), landmarks (N, 68, 2) in crop pixels.
Annotator = Callable[[list[np.ndarray], str], tuple[np.ndarray, np.ndarray]]


class MultifaceLayoutError(FileFormatError):
    """A capture does not have Multiface's layout: names the file and what was expected."""


@dataclass(frozen=True)
class KrtCamera:
    """One camera of a KRT file: ``intrinsics`` (3, 3) in pixels, ``distortion`` (k,), ``extrinsics`` (3, 4) world → camera."""

    name: str
    intrinsics: np.ndarray
    distortion: np.ndarray
    extrinsics: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """The camera centre in world coordinates."""
        rotation, translation = self.extrinsics[:, :3], self.extrinsics[:, 3]
        return -rotation.T @ translation


def read_krt(path: str | Path) -> dict[str, KrtCamera]:
    """The cameras of a KRT file, by name (see the module docstring for the layout)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"Multiface KRT file {path}: does not exist (expected the capture's camera calibration, or give --krt)")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise MultifaceLayoutError(f"Multiface KRT file {path}: not a text file; expected per camera a name line and 7 lines of numbers") from None
    cameras: dict[str, KrtCamera] = {}
    index = 0

    def numbers(line_index: int, count: int) -> np.ndarray:
        try:
            values = np.array([float(v) for v in lines[line_index].split()])
        except (IndexError, ValueError):
            values = np.zeros(0)
        if count and values.size != count:
            found = lines[line_index] if line_index < len(lines) else "the end of the file"
            raise MultifaceLayoutError(f"Multiface KRT file {path}, line {line_index + 1}: expected {count} numbers, found {found!r}")
        if not np.isfinite(values).all():
            raise MultifaceLayoutError(f"Multiface KRT file {path}, line {line_index + 1}: NaN or infinite values; expected finite numbers")
        return values

    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        name = lines[index].strip()
        intrinsics = np.stack([numbers(index + 1 + row, 3) for row in range(3)])
        distortion = numbers(index + 4, 0)
        extrinsics = np.stack([numbers(index + 5 + row, 4) for row in range(3)])
        if name in cameras:
            raise MultifaceLayoutError(f"Multiface KRT file {path}, line {index + 1}: camera {name!r} appears twice")
        cameras[name] = KrtCamera(name, intrinsics, distortion, extrinsics)
        index += 8
    if not cameras:
        raise MultifaceLayoutError(f"Multiface KRT file {path}: no camera found")
    return cameras


class MultifaceCapture:
    """Read access to one capture folder.

    Args:
        root: the capture folder (``images/``, ``tracked_mesh/``).
        krt: the KRT file (default: ``root/KRT``).
    """

    def __init__(self, root: str | Path, krt: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingInputError(f"Multiface capture {self.root}: no such folder (expected images/, tracked_mesh/, KRT)")
        for required in ("images", "tracked_mesh"):
            if not (self.root / required).is_dir():
                raise MultifaceLayoutError(f"Multiface capture {self.root}: missing the folder {required}/ (expected images/, tracked_mesh/, KRT)")
        self.cameras = read_krt(krt or self.root / "KRT")

    @property
    def name(self) -> str:
        return self.root.name

    def sentences(self) -> list[str]:
        return sorted(path.name for path in (self.root / "images").iterdir() if path.is_dir())

    def frames(self, sentence: str, cameras: Sequence[str]) -> list[str]:
        """Frame ids seen by every camera of ``cameras`` and with a tracked head pose, in order."""
        found = {path.name[: -len("_transform.txt")] for path in (self.root / "tracked_mesh" / sentence).glob("*_transform.txt")}
        for camera in cameras:
            found &= {path.stem for path in (self.root / "images" / sentence / camera).glob("*.png")}
        return sorted(found)

    def image(self, sentence: str, camera: str, frame: str) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB."""
        path = self.root / "images" / sentence / camera / f"{frame}.png"
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError) as error:  # PIL's errors for unreadable or truncated images
            raise MultifaceLayoutError(f"Multiface image {path}: cannot be read ({type(error).__name__}: {error}); expected a PNG frame") from error

    def head_pose(self, sentence: str, frame: str) -> np.ndarray:
        """The tracked head pose ``(3, 4)``: head coordinates → world."""
        path = self.root / "tracked_mesh" / sentence / f"{frame}_transform.txt"
        try:
            pose = np.loadtxt(path, ndmin=2)
        except (ValueError, UnicodeDecodeError) as error:
            raise MultifaceLayoutError(f"Multiface head pose {path}: not readable as numbers ({type(error).__name__}); expected 3 × 4 numbers") from error
        if pose.shape != (3, 4):
            raise MultifaceLayoutError(f"Multiface head pose {path}: expected 3 × 4 numbers, found shape {pose.shape}")
        if not np.isfinite(pose).all():
            raise MultifaceLayoutError(f"Multiface head pose {path}: NaN or infinite values; expected finite numbers")
        return pose


def camera_to_head(camera: KrtCamera, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The camera in head coordinates at ``pose``: its rotation camera → head ``(3, 3)`` and its centre ``(3,)``."""
    head_to_camera = camera.extrinsics[:, :3] @ pose[:, :3]
    translation = camera.extrinsics[:, :3] @ pose[:, 3] + camera.extrinsics[:, 3]
    return head_to_camera.T, -head_to_camera.T @ translation


@dataclass(frozen=True)
class HeadFrame:
    """Head coordinates → EG3D world: ``scale · axes @ (p − centre)``; ``axes`` rows are EG3D's x, y, z in head coordinates."""

    axes: np.ndarray
    centre: np.ndarray
    scale: float

    @classmethod
    def from_cameras(cls, capture: MultifaceCapture, sentence: str, frame: str, frontal: str, cameras: Sequence[str]) -> HeadFrame:
        """The frame the capture rig implies at ``frame`` (see the module docstring): centre nearest to the
        optical axes of ``cameras``, +z toward the ``frontal`` camera, +y its image up, the median camera at 2.7."""
        pose = capture.head_pose(sentence, frame)
        placed = {name: camera_to_head(capture.cameras[name], pose) for name in cameras}
        # Least-squares point nearest to every optical axis: Σ (I − d dᵀ) p = Σ (I − d dᵀ) c.
        system, rhs = np.zeros((3, 3)), np.zeros(3)
        for rotation, centre in placed.values():
            direction = rotation[:, 2]
            projector = np.eye(3) - np.outer(direction, direction)
            system += projector
            rhs += projector @ centre
        if np.linalg.matrix_rank(system) < 3:
            raise MultifaceLayoutError(f"Multiface {capture.root}: the optical axes of {list(cameras)} are parallel; give a HeadFrame")
        head_centre = np.linalg.solve(system, rhs)
        rotation, centre = placed[frontal]
        forward = (centre - head_centre) / np.linalg.norm(centre - head_centre)
        up = -rotation[:, 1] - forward * (-rotation[:, 1] @ forward)
        up /= np.linalg.norm(up)
        distance = np.median([np.linalg.norm(c - head_centre) for _, c in placed.values()])
        return cls(np.stack([np.cross(up, forward), up, forward]), head_centre, DEFAULT_RADIUS / distance)


def default_frontal_camera(capture: MultifaceCapture, sentence: str, frame: str, cameras: Sequence[str]) -> str:
    """The camera nearest the rig's mean viewing direction (the centre of the dome), at ``frame``."""
    pose = capture.head_pose(sentence, frame)
    placed = {name: camera_to_head(capture.cameras[name], pose) for name in cameras}
    rays = {name: -rotation[:, 2] for name, (rotation, _) in placed.items()}  # from the head toward each camera
    mean = np.mean(list(rays.values()), axis=0)
    return max(rays, key=lambda name: rays[name] @ mean)


def crop_label(camera: KrtCamera, pose: np.ndarray, head: HeadFrame, focal: float = FFHQ_FOCAL) -> tuple[np.ndarray, np.ndarray]:
    """The square crop box ``(x0, y0, x1, y1)`` in image pixels (corner coordinates) and its EG3D label ``(25,)``.

    The box is centred on the head centre's projection; its side S = fx / ``focal``, so the crop's
    normalised focal is the training labels'. cam2world is the camera in EG3D's world with OpenCV axes.
    """
    rotation, centre = camera_to_head(camera, pose)
    cam2world = np.eye(4)
    cam2world[:3, :3] = head.axes @ rotation
    cam2world[:3, 3] = head.scale * head.axes @ (centre - head.centre)
    in_camera = rotation.T @ (head.centre - centre)
    if in_camera[2] <= 0:
        raise MultifaceLayoutError(f"Multiface camera {camera.name}: the head centre is behind it; leave this camera out (--views)")
    # OpenCV pixel coordinates put pixel centres at integers; crop boxes and labels use pixel corners (+0.5).
    projected = camera.intrinsics @ (in_camera / in_camera[2]) + np.array([0.5, 0.5, 0.0])
    side = camera.intrinsics[0, 0] / focal
    x0, y0 = projected[0] - side / 2, projected[1] - side / 2
    intrinsics = camera.intrinsics / side
    intrinsics[0, 2] = (camera.intrinsics[0, 2] + 0.5 - x0) / side
    intrinsics[1, 2] = (camera.intrinsics[1, 2] + 0.5 - y0) / side
    intrinsics[2] = (0.0, 0.0, 1.0)
    box = np.array([x0, y0, x0 + side, y0 + side])
    return box, np.concatenate([cam2world.reshape(16), intrinsics.reshape(9)]).astype(np.float32)


def extractor_annotator(device: str = "cpu", coefficient_weights: str | None = None) -> Annotator:
    """Coefficients and landmarks as the preprocessing makes them: MTCNN track, dlib's 68 points, Deep3DFaceRecon."""
    settings = PreprocessSettings(coefficient_weights=coefficient_weights, device=device)
    extractors = Extractors(settings)
    if extractors.regressor is None:
        raise MissingAssetError(f"Multiface: the motion of the frontal camera's frames needs 3DMM coefficients, and {extractors.missing}")

    def annotate(crops: list[np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
        batches = [crops[i : i + settings.batch_size] for i in range(0, len(crops), settings.batch_size)]
        track = track_largest_face([faces for batch in batches for faces in extractors.detector.detect(batch)], name, settings.track_smoothing)
        landmarks = np.stack([extractors.landmarks.predict(crop, box) for crop, box in zip(crops, track.boxes)])
        coefficients = np.concatenate([
            extractors.regressor(crops[i : i + settings.batch_size], five_from_68(landmarks[i : i + settings.batch_size]))[0]
            for i in range(0, len(crops), settings.batch_size)
        ])
        return coefficients, landmarks

    return annotate


def _as_260(coefficients: np.ndarray, name: str) -> np.ndarray:
    """Coefficients in the reference's 260 columns (70-d motion rows go to their slices, the rest zero)."""
    coefficients = np.asarray(coefficients, dtype=np.float32)
    if coefficients.ndim != 2 or coefficients.shape[1] not in (70, 257, 260):
        raise ValueError(f"Multiface {name}: coefficients must be (N, 257), (N, 260) or (N, 70), found {coefficients.shape}")
    out = np.zeros((coefficients.shape[0], 260), dtype=np.float32)
    if coefficients.shape[1] == 70:
        out[:, EXPRESSION], out[:, ANGLES], out[:, TRANSLATION] = coefficients[:, :64], coefficients[:, 64:67], coefficients[:, 67:70]
    else:
        out[:, : coefficients.shape[1]] = coefficients
    return out


def check_conversion(
    capture: MultifaceCapture,
    out: str | Path,
    frontal: str | None = None,
    views: Sequence[str] | None = None,
    sentences: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, a conversion of ``capture`` that :func:`write_multiface_dataset` cannot do:
    ``out`` exists, no or unknown sentences, cameras not in the KRT file, no tracked head pose to start from."""
    out = Path(out)
    if out.exists():
        raise InputError(f"Multiface dataset: {out} already exists; remove it or choose another --out")
    available = capture.sentences()
    sentences = list(sentences or available)
    if not sentences:
        raise MultifaceLayoutError(f"Multiface capture {capture.root}: no sentence folder under images/")
    absent = sorted(set(sentences) - set(available))
    if absent:
        raise InputError(f"Multiface capture {capture.root}: sentences {absent} are not under images/ (found {available})")
    unknown = sorted({*(views or ()), *([frontal] if frontal else [])} - set(capture.cameras))
    if unknown:
        raise InputError(f"Multiface capture {capture.root}: cameras {unknown} are not in its KRT file ({len(capture.cameras)} cameras)")
    if not capture.frames(sentences[0], ()):
        raise MultifaceLayoutError(f"Multiface capture {capture.root}: no tracked_mesh/{sentences[0]}/*_transform.txt")


def write_multiface_dataset(
    capture: MultifaceCapture,
    out: str | Path,
    annotate: Annotator,
    size: int = 512,
    frontal: str | None = None,
    views: Sequence[str] | None = None,
    sentences: Sequence[str] | None = None,
    max_frames: int | None = None,
    focal: float = FFHQ_FOCAL,
    head: HeadFrame | None = None,
) -> Path:
    """Convert a capture into the reference layout for the ``multiview`` protocol; the folder appears only when complete.

    Every sentence becomes a test video ``<capture>#<sentence>``: the ``frontal`` camera's crops (the
    source's frames, with ``coeff_3dmm`` and ``keypoint`` from ``annotate``) and, as its stored views,
    the crops of ``views`` (default: every other camera), each frame with its exact label (``camera``,
    ``view_camera``). ``head`` defaults to :meth:`HeadFrame.from_cameras` at the first frame of the
    first sentence; ``frontal`` to :func:`default_frontal_camera` there.
    """
    out = Path(out)
    check_conversion(capture, out, frontal, views, sentences)
    sentences = list(sentences or capture.sentences())
    everyone = sorted(capture.cameras)
    first = capture.frames(sentences[0], ())
    frontal = frontal or default_frontal_camera(capture, sentences[0], first[0], everyone)
    views = list(views or [name for name in everyone if name != frontal])
    head = head or HeadFrame.from_cameras(capture, sentences[0], first[0], frontal, everyone)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writer = VideoLmdbWriter(staging, size)
        names = []
        for sentence in sentences:
            frames = capture.frames(sentence, [frontal, *views])[:max_frames]
            if not frames:
                raise MultifaceLayoutError(f"Multiface capture {capture.root}: sentence {sentence} has no frame seen by {[frontal, *views]} with a head pose")
            poses = [capture.head_pose(sentence, frame) for frame in frames]
            crops, labels = {}, {}
            for camera in [frontal, *views]:
                boxes_labels = [crop_label(capture.cameras[camera], pose, head, focal) for pose in poses]
                crops[camera] = [crop_image(capture.image(sentence, camera, frame), box, size) for frame, (box, _) in zip(frames, boxes_labels)]
                labels[camera] = np.stack([label for _, label in boxes_labels])
            name = f"{capture.name}#{sentence}"
            coefficients, keypoints = annotate(crops[frontal], name)
            writer.write_video(
                name,
                (encode_image(crop) for crop in crops[frontal]),
                {
                    "coeff_3dmm": _as_260(coefficients, name),
                    "keypoint": np.asarray(keypoints, dtype=np.float32) * (LANDMARK_REFERENCE_SIZE / size),
                    "camera": labels[frontal],
                    "view_camera": np.stack([labels[camera] for camera in views]),
                },
                {f"view{v}": (encode_image(crop) for crop in crops[camera]) for v, camera in enumerate(views)},
                {"cameras": " ".join([frontal, *views])},
            )
            names.append(name)
        writer.finish([], names)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
