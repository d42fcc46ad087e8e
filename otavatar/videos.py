"""Writing frames to H.264 mp4 through imageio-ffmpeg, with the driving video's audio muxed in."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

import imageio_ffmpeg
import numpy as np
import torch

from otavatar.errors import InputError, MissingInputError


def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [−1, 1] → ``(N, H, W, 3)`` uint8 (values clamped, as the release does)."""
    images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def has_audio(path: Path) -> bool:
    """Whether a media file carries an audio stream (ffmpeg's stream listing mentions 'Audio:')."""
    completed = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return "Audio:" in completed.stderr


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float, audio_source: Path | None = None) -> Path:
    """Write uint8 ``(H, W, 3)`` frames to an H.264 mp4, atomically.

    Args:
        frames: an iterable of frames of one size; consumed once, so a generator streams.
        path: output ``.mp4``; written under a temporary name and renamed when complete.
        fps: frame rate (the driving video's).
        audio_source: a media file whose audio track is muxed in (AAC) when it has one.

    Returns:
        ``path``.
    """
    path = Path(path)
    if not path.parent.exists():
        raise MissingInputError(f"output video {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"output video {path}: folder {path.parent} is not writable")
    audio = Path(audio_source) if audio_source is not None and has_audio(Path(audio_source)) else None
    temporaries = [_temporary(path), _temporary(path) if audio else None]
    writer = None
    count = 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = imageio_ffmpeg.write_frames(
                    temporaries[0], (width, height), fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
                )
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
            count += 1
        if writer is None:
            raise InputError(f"output video {path}: no frames to write")
        writer.close()
        if audio:
            # A second pass muxes the audio cut to the video's length: every frame stays, even when the
            # audio is shorter (ffmpeg's -shortest would drop the last frames then).
            subprocess.run(
                [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", temporaries[0], "-i", str(audio),
                 "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-t", f"{count / fps:.6f}", temporaries[1]],
                check=True, capture_output=True,
            )
        os.replace(temporaries[-1] or temporaries[0], path)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    finally:
        for temporary in temporaries:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
    return path


def _temporary(path: Path) -> str:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(handle)
    return temporary
