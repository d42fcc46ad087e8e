"""The reference LMDB layout (``hdtf_lmdb_inv``): reading and writing.

``<root>/train_list.txt`` and ``<root>/test_list.txt`` name the videos (person id = the part before
``#``); the LMDB environment is ``<root>/<resolution>``. Keys are ``'-'.join(parts)`` with frame
numbers zero-padded to 7 digits:

- ``{video}-{frame:07d}``: encoded image (JPEG in the release, PNG for synthetic data);
- ``{video}-length``: ASCII frame count (written last, so it marks a complete video);
- ``{video}-coeff_3dmm`` float32 (N, 260), ``{video}-condition`` float32 (N, 7),
  ``{video}-keypoint`` float32 (N, 68, 2) in 512-pixel coordinates, ``{video}-id`` float32;
- ``length``: the number of videos.

Preprocessed real videos add the texts ``{video}-fps``, ``{video}-source`` (the file, for its audio)
and, when an extractor's weights were missing, ``{video}-missing`` saying which arrays and why.

Synthetic data adds ``{video}-camera`` (N, 25), ``{video}-identity_params``,
``{video}-expression_params``, ``{video}-view_camera`` (V, N, 25) and ``{video}-view{v}-{frame:07d}``.
Converted Multiface captures (:mod:`otavatar.preprocess.multiface`) store ``camera``, ``view_camera`` and the
views too, and the text ``{video}-cameras``: the source camera's name, then each view's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Mapping

import lmdb
import numpy as np
import torch
from PIL import Image

from otavatar.errors import InputError
from otavatar.files import atomic_write_text

ARRAY_SHAPES = {"coeff_3dmm": (260,), "condition": (7,), "keypoint": (68, 2), "camera": (25,)}
MAP_SIZE = 1 << 40


def person_id(video: str) -> str:
    return video.split("#", 1)[0]


def key(*parts) -> bytes:
    return "-".join(f"{p:07d}" if isinstance(p, int) else str(p) for p in parts).encode("utf-8")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float in [0, 1] → ``(N, H, W, 3)`` uint8, in one pass over the batch."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def encode_image(image: torch.Tensor | np.ndarray, format: str = "PNG") -> bytes:
    """``(3, H, W)`` float in [0, 1] or ``(H, W, 3)`` uint8 → encoded bytes."""
    if torch.is_tensor(image):
        image = to_uint8(image[None])[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, **({"quality": 95} if format == "JPEG" else {}))
    return buffer.getvalue()


_READ_ENVIRONMENTS: dict[str, lmdb.Environment] = {}


def _open_readonly(path: Path) -> lmdb.Environment:
    """One read-only environment per path and process (LMDB refuses to open the same one twice)."""
    resolved = str(path.resolve())
    if resolved not in _READ_ENVIRONMENTS:
        _READ_ENVIRONMENTS[resolved] = lmdb.open(resolved, readonly=True, lock=False, readahead=False, meminit=False, max_readers=64)
    return _READ_ENVIRONMENTS[resolved]


class LmdbLayoutError(InputError, KeyError):
    """The dataset does not have the reference layout: names the path, video or key."""

    def __str__(self) -> str:
        return str(self.args[0])


class VideoLmdb:
    """Read access to a dataset in the reference layout.

    Args:
        root: the folder with the lists and the ``<resolution>`` LMDB.
        resolution: the LMDB sub-folder (512 in the release).
    """

    def __init__(self, root: str | Path, resolution: int = 512) -> None:
        self.root = Path(root)
        self.resolution = resolution
        path = self.root / str(resolution)
        for required in (self.root / "train_list.txt", self.root / "test_list.txt", path):
            if not required.exists():
                raise LmdbLayoutError(f"dataset {self.root}: missing {required.name} (expected the reference layout: train_list.txt, test_list.txt, {resolution}/)")
        self.env = _open_readonly(path)
        self.splits = {split: self._read_list(split) for split in ("train", "test")}
        self._lengths: dict[str, int] = {}

    def _read_list(self, split: str) -> list[str]:
        return [line.strip() for line in (self.root / f"{split}_list.txt").read_text().splitlines() if line.strip()]

    def __getstate__(self) -> dict:
        # LMDB handles do not survive pickling into DataLoader workers; reopen there.
        state = dict(self.__dict__)
        state["env"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.env = _open_readonly(self.root / str(self.resolution))

    def get(self, *parts) -> bytes:
        with self.env.begin(write=False) as txn:
            value = txn.get(key(*parts))
        if value is None:
            raise LmdbLayoutError(f"dataset {self.root}: key '{key(*parts).decode()}' is missing")
        return value

    def has(self, *parts) -> bool:
        with self.env.begin(write=False) as txn:
            return txn.get(key(*parts)) is not None

    def length(self, video: str) -> int:
        if video not in self._lengths:
            self._lengths[video] = int(self.get(video, "length").decode())
        return self._lengths[video]

    def array(self, video: str, name: str) -> np.ndarray:
        """A float32 per-video array, reshaped to ``(N, *shape)`` (``(V, N, 25)`` for ``view_camera``)."""
        data = np.frombuffer(self.get(video, name), dtype=np.float32)
        frames = self.length(video)
        if name in ARRAY_SHAPES:
            shape = (frames, *ARRAY_SHAPES[name])
        elif name == "view_camera":
            shape = (-1, frames, 25)
        else:
            return data.copy()
        if data.size % (frames * int(np.prod(shape[2:] if name == "view_camera" else shape[1:]))) != 0:
            raise LmdbLayoutError(f"dataset {self.root}: '{video}-{name}' holds {data.size} values, not a multiple of {shape}")
        return data.reshape(shape).copy()

    def image(self, video: str, frame: int, view: int | None = None) -> torch.Tensor:
        """``(3, H, W)`` in [−1, 1]."""
        parts = (video, frame) if view is None else (video, f"view{view}", frame)
        with Image.open(io.BytesIO(self.get(*parts))) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1

    def check_videos(self, videos: Iterable[str], names: Iterable[str] = ("coeff_3dmm", "condition", "keypoint")) -> None:
        """Raise naming the first missing video or key (and why, when preprocessing recorded it)."""
        for video in videos:
            for name in ("length", *names):
                if not self.has(video, name):
                    reason = f": {self.get(video, 'missing').decode()}" if self.has(video, "missing") else ""
                    raise LmdbLayoutError(f"dataset {self.root}: video '{video}' has no '{name}' key{reason}")


class VideoLmdbWriter:
    """Writes the reference layout. Each video is one transaction ending with its ``length`` key,
    so an interrupted write never leaves a video that looks complete; lists are written atomically."""

    def __init__(self, root: str | Path, resolution: int = 512) -> None:
        self.root = Path(root)
        (self.root / str(resolution)).mkdir(parents=True, exist_ok=True)
        # LMDB allows one environment per path and process: a reader opened earlier here must go.
        reader = _READ_ENVIRONMENTS.pop(str((self.root / str(resolution)).resolve()), None)
        if reader is not None:
            reader.close()
        self.env = lmdb.open(str(self.root / str(resolution)), map_size=MAP_SIZE)

    def has_video(self, video: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(key(video, "length")) is not None

    def write_video(
        self,
        video: str,
        images: Iterable[bytes],
        arrays: Mapping[str, np.ndarray | torch.Tensor],
        extra_images: Mapping[str, Iterable[bytes]] | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        """Write one video: encoded frames, float32 arrays (``coeff_3dmm``, ``condition``, ``keypoint``, ...)
        and UTF-8 texts (``fps``, ``source``, ``missing``)."""
        with self.env.begin(write=True) as txn:
            count = 0
            for frame, data in enumerate(images):
                txn.put(key(video, frame), data)
                count += 1
            for prefix, frames in (extra_images or {}).items():
                for frame, data in enumerate(frames):
                    txn.put(key(video, prefix, frame), data)
            for name, value in arrays.items():
                value = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
                if name in ARRAY_SHAPES and value.shape != (count, *ARRAY_SHAPES[name]):
                    raise ValueError(f"video {video}: '{name}' has shape {value.shape}, expected {(count, *ARRAY_SHAPES[name])}")
                txn.put(key(video, name), np.ascontiguousarray(value, dtype=np.float32).tobytes())
            for name, text in (texts or {}).items():
                txn.put(key(video, name), text.encode("utf-8"))
            txn.put(key(video, "length"), str(count).encode())

    def finish(self, train: list[str], test: list[str]) -> None:
        """Write the video lists and the global ``length``."""
        with self.env.begin(write=True) as txn:
            txn.put(b"length", str(len(train) + len(test)).encode())
        for split, videos in (("train", train), ("test", test)):
            atomic_write_text(self.root / f"{split}_list.txt", "".join(f"{v}\n" for v in videos))
        self.env.sync()
        self.env.close()
