"""Writing a synthetic talking-head dataset in the reference LMDB layout, plus a contact sheet."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from otavatar.camera import TRACKER_FOCAL
from otavatar.data.lmdb import VideoLmdbWriter, encode_image, to_uint8
from otavatar.data.synthetic import sample_identity
from otavatar.data.synthetic_video import coefficients, make_video
from otavatar.errors import InputError


@dataclass
class SyntheticSummary:
    root: Path
    identities: int
    videos: int
    frames: int
    resolution: int
    seconds: float
    bytes: int
    contact_sheet: Path


def video_name(identity: int, video: int) -> str:
    return f"synth{identity:04d}#{video:02d}"


def identity_generator(seed: int, identity: int) -> torch.Generator:
    """The random stream of identity number ``identity`` of a dataset drawn with ``seed``: its parameters, then its videos."""
    return torch.Generator().manual_seed(seed * 1_000_003 + identity)


def held_out_identity_count(identities: int, test_identities: int | None = None) -> int:
    """How many identities, the last ones, form the test list (default: a tenth, at least one)."""
    return max(1, identities // 10) if test_identities is None else test_identities


def write_synthetic_dataset(
    out: str | Path,
    identities: int = 40,
    videos: int = 2,
    frames: int = 64,
    resolution: int = 128,
    seed: int = 0,
    test_identities: int | None = None,
    progress: bool = True,
) -> SyntheticSummary:
    """Generate and write the dataset; the folder appears only when complete.

    Identity i and its videos come from a generator seeded with (seed, i), so a dataset is the
    same whatever the number of identities around it. The last ``test_identities`` identities
    (default: a tenth, at least one) form the test list.
    """
    out = Path(out)
    if out.exists():
        raise InputError(f"synthetic dataset: {out} already exists; remove it or choose another --out")
    test_identities = held_out_identity_count(identities, test_identities)
    if not 0 <= test_identities < identities:
        raise InputError(f"synthetic dataset: {test_identities} test identities out of {identities}; expected fewer test identities than identities")
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writer = VideoLmdbWriter(staging, resolution)
        train, test, samples = [], [], []
        bar = tqdm(total=identities * videos, desc="synthetic videos", disable=not progress)
        for identity_index in range(identities):
            generator = identity_generator(seed, identity_index)
            identity = sample_identity(generator)
            for video_index in range(videos):
                video = make_video(identity, frames, resolution, generator)
                name = video_name(identity_index, video_index)
                condition = torch.cat([video.angles, video.translation, torch.full((frames, 1), TRACKER_FOCAL)], dim=1)
                writer.write_video(
                    name,
                    (encode_image(image) for image in to_uint8(video.images)),
                    {
                        "coeff_3dmm": coefficients(video),
                        "condition": condition,
                        "keypoint": video.keypoints,
                        "id": video.identity,
                        "camera": video.cameras,
                        "identity_params": video.identity,
                        "expression_params": video.expression,
                        "view_camera": video.view_cameras,
                    },
                    {f"view{v}": (encode_image(image) for image in to_uint8(video.view_images[v])) for v in range(video.view_images.shape[0])},
                )
                (test if identity_index >= identities - test_identities else train).append(name)
                if video_index == 0 and len(samples) < 8:
                    samples.append(video.images[:: max(frames // 8, 1)][:8])
                bar.update()
        bar.close()
        writer.finish(train, test)
        sheet = staging / "contact_sheet.png"
        save_image(torch.cat(samples), sheet, nrow=samples[0].shape[0])
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return SyntheticSummary(out, identities, identities * videos, identities * videos * frames, resolution,
                            time.perf_counter() - start, size, out / "contact_sheet.png")
