"""The preprocessing pipeline: media → tracked face → square crops, 68 landmarks, 3DMM coefficients, cameras → dataset.

Per video, two streaming passes over the frames: the first detects faces (MTCNN, in batches) and
tracks the largest one; the crop box is fixed from the whole track; the second cuts the crops, finds
68 landmarks in them and regresses coefficients in batches. Only encoded crops are kept in memory.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from otavatar.assets import MissingAssetError
from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.data.lmdb import VideoLmdbWriter, encode_image
from otavatar.preprocess.cameras import condition_from_coefficients
from otavatar.preprocess.coefficients import CoefficientRegressor, load_reconnet
from otavatar.preprocess.crop import crop_box, crop_image, to_crop_coordinates
from otavatar.preprocess.detection import FaceDetector, NoFaceError, largest_face, track_largest_face
from otavatar.preprocess.landmarks import LandmarkPredictor, five_from_68
from otavatar.preprocess.reading import Media, MediaReadError, open_media

@dataclass(frozen=True)
class PreprocessSettings:
    """How crops are made and which extractors run.

    Attributes:
        size: crop size in pixels (512 in the reference data).
        increase: FOMM's margin: each side of the face box grows by this fraction.
        batch_size: frames per detection / regression batch.
        track_smoothing: ± frames over which face boxes are averaged.
        camera_smoothing: ± frames over which camera angles and translations are averaged.
        image_format: ``'JPEG'`` (the reference's) or ``'PNG'``.
        coefficient_weights: Deep3DFaceRecon checkpoint; default ``pretrained/deep3dfacerecon/epoch_20.pth``.
        device: where the networks run.
    """

    size: int = 512
    increase: float = 0.1
    batch_size: int = 16
    track_smoothing: int = 2
    camera_smoothing: int = 2
    image_format: str = "JPEG"
    coefficient_weights: str | None = None
    device: str = "cpu"


class Extractors:
    """The detector, the landmark predictor and, when its weights are installed, the coefficient regressor.

    ``regressor`` is None when the Deep3DFaceRecon file is missing; ``missing`` then says which file and
    where it comes from (the rest of the pipeline still runs). ``coefficients=False`` leaves it out
    (landmarks are all a landmark motion reader needs).
    """

    def __init__(self, settings: PreprocessSettings, coefficients: bool = True) -> None:
        self.detector = FaceDetector(settings.device)
        self.landmarks = LandmarkPredictor()
        self.regressor: CoefficientRegressor | None = None
        self.missing: str | None = None
        if not coefficients:
            return
        try:
            self.regressor = CoefficientRegressor(load_reconnet(settings.coefficient_weights), settings.device)
        except MissingAssetError as error:
            self.missing = str(error)


@dataclass
class ProcessedVideo:
    """One preprocessed video: encoded crops, ``keypoints (N, 68, 2)`` in 512-pixel coordinates,
    ``coefficients (N, 260)`` and ``condition (N, 7)`` (None without the regressor's weights), and
    ``detected (N,)``: the frames whose face was detected (the others were cut at interpolated boxes)."""

    name: str
    images: list[bytes]
    crops: list[np.ndarray] | None
    keypoints: np.ndarray
    coefficients: np.ndarray | None
    condition: np.ndarray | None
    fps: float
    box: np.ndarray
    detected: np.ndarray

    @property
    def missing_faces(self) -> int:
        return int((~self.detected).sum())


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def process_media(
    media: Media, extractors: Extractors, settings: PreprocessSettings, keep_crops: bool = False, progress: bool = True
) -> ProcessedVideo:
    """Run the whole pipeline on one video, image or folder (see the module docstring)."""
    bar = tqdm(total=2 * media.frame_count, desc=media.name, unit="frame", disable=not progress, leave=False)
    detections = []
    for batch in _batches(media.frames(), settings.batch_size):
        detections += extractors.detector.detect(batch)
        bar.update(len(batch))
    if media.kind == "image":
        faces = [largest_face(detections[0], str(media.path))]
        detections = [faces]
    track = track_largest_face(detections, str(media.path), settings.track_smoothing)
    box = crop_box(track.boxes, settings.increase)
    images, crops, keypoints, coefficients = [], [], [], []
    for start, batch in zip(range(0, 1 << 62, settings.batch_size), _batches(media.frames(), settings.batch_size)):
        batch_crops = [crop_image(frame, box, settings.size) for frame in batch]
        batch_landmarks = np.stack([
            extractors.landmarks.predict(crop, to_crop_coordinates(track.boxes[start + i].reshape(2, 2), box, settings.size).reshape(4))
            for i, crop in enumerate(batch_crops)
        ])
        if extractors.regressor is not None:
            coefficients.append(extractors.regressor(batch_crops, five_from_68(batch_landmarks))[0])
        images += [encode_image(crop, settings.image_format) for crop in batch_crops]
        keypoints.append(batch_landmarks * (LANDMARK_REFERENCE_SIZE / settings.size))
        if keep_crops:
            crops += batch_crops
        bar.update(len(batch))
    bar.close()
    coefficients = np.concatenate(coefficients) if coefficients else None
    condition = (
        condition_from_coefficients(coefficients, settings.size, smoothing_radius=settings.camera_smoothing)
        if coefficients is not None else None
    )
    return ProcessedVideo(
        media.name, images, crops if keep_crops else None, np.concatenate(keypoints).astype(np.float32),
        coefficients, condition, media.fps, box, track.detected,
    )


def is_test_person(person: str, test_fraction: float) -> bool:
    """Stable split by person id: a hash of the name, so re-runs and added videos never move a person."""
    return int(hashlib.sha1(person.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < test_fraction


@dataclass
class PreprocessSummary:
    """What a dataset run did."""

    root: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    missing_faces: int = 0
    missing_motion: str | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [
            f"{self.root}: {len(self.written)} videos written ({self.frames} frames, {self.missing_faces} without a detected face, "
            f"filled from neighbours), {len(self.skipped)} already there, {len(self.failed)} failed, {self.seconds:.1f} s"
            + (f", {self.seconds / self.frames:.3f} s/frame" if self.frames else "")
        ]
        lines += [f"  failed: {message}" for message in self.failed.values()]
        if self.missing_motion:
            lines.append(f"  no coefficients or cameras were written: {self.missing_motion}")
        return "\n".join(lines)


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_dataset(
    paths: Iterable[str | Path],
    root: str | Path,
    settings: PreprocessSettings = PreprocessSettings(),
    test_fraction: float = 0.1,
    test_persons: Iterable[str] = (),
    extractors: Extractors | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> PreprocessSummary:
    """Preprocess videos (files or folders of frames) into the reference LMDB layout under ``root``.

    Resumable: videos already complete in the dataset are skipped, and the train/test lists keep what
    they had. A file that cannot be read or has no face is reported and skipped; the rest goes on.
    A video's person id is the part of its name before ``#``; persons in ``test_persons`` or chosen by
    :func:`is_test_person` go to the test list.
    """
    started = time.perf_counter()
    root = Path(root)
    summary = PreprocessSummary(root)
    extractors = extractors or Extractors(settings)
    summary.missing_motion = extractors.missing
    if extractors.missing:
        log(f"warning: {extractors.missing}\n  continuing without coefficients and cameras; the dataset records that motion is missing")
    lists = {split: _read_list(root / f"{split}_list.txt") for split in ("train", "test")}
    writer = VideoLmdbWriter(root, settings.size)
    test_persons = set(test_persons)
    try:
        for path in paths:
            try:
                media = open_media(path)
            except MediaReadError as error:
                summary.failed[str(path)] = str(error)
                log(f"skipped: {error}")
                continue
            if writer.has_video(media.name):
                summary.skipped.append(media.name)
                continue
            try:
                video = process_media(media, extractors, settings, progress=progress)
            except (NoFaceError, MediaReadError) as error:
                summary.failed[str(path)] = str(error)
                log(f"skipped: {error}")
                continue
            arrays = {"keypoint": video.keypoints}
            if video.coefficients is not None:
                arrays |= {"coeff_3dmm": video.coefficients, "condition": video.condition}
            texts = {"fps": f"{video.fps:g}", "source": str(Path(path).resolve())}
            if extractors.missing:
                texts["missing"] = f"coeff_3dmm and condition not extracted: {extractors.missing}"
            writer.write_video(video.name, video.images, arrays, texts=texts)
            person = video.name.split("#", 1)[0]
            split = "test" if person in test_persons or is_test_person(person, test_fraction) else "train"
            for videos in lists.values():
                if video.name in videos:
                    videos.remove(video.name)
            lists[split].append(video.name)
            summary.written.append(video.name)
            summary.frames += len(video.images)
            summary.missing_faces += video.missing_faces
    finally:
        writer.finish(lists["train"], lists["test"])
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class Portrait:
    """One aligned portrait: ``image (S, S, 3)`` uint8 crop, ``keypoints (68, 2)`` in its pixels,
    ``coefficients (260,)`` and ``condition (7,)`` or None (regressor weights missing), the ``box``
    cut from the photo and a ``missing`` message when coefficients are absent."""

    image: np.ndarray
    keypoints: np.ndarray
    coefficients: np.ndarray | None
    condition: np.ndarray | None
    box: np.ndarray
    missing: str | None


def align_portrait(path: str | Path, settings: PreprocessSettings = PreprocessSettings(), extractors: Extractors | None = None) -> Portrait:
    """Detect the largest face of a photo (warning when there are several) and crop it as the videos are."""
    media = open_media(path)
    if media.kind != "image":
        raise MediaReadError(f"{path}: a portrait must be an image file, found a {media.kind}")
    extractors = extractors or Extractors(settings)
    if min(media.size) < extractors.detector.min_face_size:
        raise NoFaceError(
            f"{path}: {media.size[0]}×{media.size[1]} pixels is too small to hold a face "
            f"(the detector needs at least {extractors.detector.min_face_size}); give a larger photo"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        video = process_media(media, extractors, settings, keep_crops=True, progress=False)
    return Portrait(
        video.crops[0], video.keypoints[0] * (settings.size / LANDMARK_REFERENCE_SIZE),
        None if video.coefficients is None else video.coefficients[0],
        None if video.condition is None else video.condition[0], video.box, extractors.missing,
    )
