"""Reading media for preprocessing: video files (through imageio-ffmpeg), image files, folders of frames.

Frames are streamed (a long video never sits in memory as pixels) as uint8 ``(H, W, 3)`` RGB
arrays. A video keeps its frame rate and its path, so its audio can be muxed into outputs later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import imageio_ffmpeg
import numpy as np
from PIL import Image, UnidentifiedImageError

from otavatar.errors import InputError
from otavatar.videos import has_audio

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"}
FOLDER_FPS = 25.0  # frame rate given to folders of frames (HDTF's rate)


class MediaReadError(InputError):
    """A file or folder that cannot be read as images or video: names the path and the reason."""


@dataclass(frozen=True)
class Media:
    """A readable source of frames.

    Attributes:
        path: the file or folder.
        name: the video name used in datasets (file stem or folder name).
        kind: ``'video'``, ``'image'`` or ``'folder'``.
        fps: frame rate (videos: from the container; folders: :data:`FOLDER_FPS`; images: 0).
        size: ``(width, height)`` of the frames.
        frame_count: number of frames (an estimate for videos, from ffmpeg's count when cheap).
        has_audio: whether the file carries an audio stream to mux into outputs.
    """

    path: Path
    name: str
    kind: str
    fps: float
    size: tuple[int, int]
    frame_count: int
    has_audio: bool

    def frames(self) -> Iterator[np.ndarray]:
        """Stream the frames as uint8 ``(H, W, 3)`` RGB."""
        if self.kind == "image":
            yield read_image(self.path)
        elif self.kind == "folder":
            for file in _folder_images(self.path):
                frame = read_image(file)
                if frame.shape[1::-1] != self.size:
                    raise MediaReadError(f"{file}: frame size {frame.shape[1::-1]} differs from the folder's first frame {self.size}")
                yield frame
        else:
            yield from _video_frames(self.path)


def read_image(path: str | Path) -> np.ndarray:
    """An image file → uint8 ``(H, W, 3)`` RGB (grey and RGBA are converted)."""
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise MediaReadError(f"{path}: not a readable image ({error})") from None


def _folder_images(path: Path) -> list[Path]:
    return sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        width, height = meta["size"]
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def open_media(path: str | Path) -> Media:
    """Probe a video file, image file or folder of frames; raise :class:`MediaReadError` if it has no frames."""
    path = Path(path)
    if path.is_dir():
        files = _folder_images(path)
        if not files:
            raise MediaReadError(f"{path}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = read_image(files[0])
        return Media(path, path.name, "folder", FOLDER_FPS, first.shape[1::-1], len(files), False)
    if not path.is_file():
        raise MediaReadError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        image = read_image(path)
        return Media(path, path.stem, "image", 0.0, image.shape[1::-1], 1, False)
    if suffix not in VIDEO_SUFFIXES:
        raise MediaReadError(f"{path}: unknown media type '{suffix}' (images: {sorted(IMAGE_SUFFIXES)}, videos: {sorted(VIDEO_SUFFIXES)})")
    return _probe_video(path)


def _probe_video(path: Path) -> Media:
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        first = next(reader, None)
    except (RuntimeError, OSError, StopIteration) as error:
        raise MediaReadError(f"{path}: not a readable video ({str(error).strip().splitlines()[-1] if str(error).strip() else 'ffmpeg failed'})") from None
    finally:
        reader.close()
    if first is None:
        raise MediaReadError(f"{path}: the video has no frames")
    count = _count_frames(path, meta)
    return Media(path, path.stem, "video", float(meta["fps"]), tuple(meta["size"]), count, has_audio(path))


def _count_frames(path: Path, meta: dict) -> int:
    duration, fps = meta.get("duration") or 0.0, meta.get("fps") or 0.0
    if duration and fps:
        return max(1, round(duration * fps))
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
