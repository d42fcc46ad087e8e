"""Expression and pose of synthetic heads from pixels: the synthetic data's Deep3DFaceRecon.

AED/APD compare the expression and pose an extractor reads from generated and ground-truth
frames. On synthetic heads the generating parameters are known, so a small CNN learns to read
them: 6 expression parameters, 3 pose angles and 3 translations per frame. It trains on the main-view
frames of the dataset's training split plus frames of freshly drawn identities (the dataset's 32
training identities alone let it learn identities rather than subtle expressions such as smile and
brows). Values are standardised with the training set's mean and spread, stored with the weights,
so the network returns parameters in their own units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.assets import AssetFormatError, MissingAssetError
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.synthetic import sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import render_video
from otavatar.files import load_torch_file
from otavatar.motion import ANGLES, TRANSLATION

INPUT_SIZE = 64
OUTPUTS = ("expression", 6), ("angles", 3), ("translation", 3)
NUM_OUTPUTS = sum(size for _, size in OUTPUTS)


class SyntheticMotionRegressor(nn.Module):
    """Images ``(B, 3, H, W)`` in [−1, 1] → ``(B, 12)`` = expression (6), angles (3, radians), translation (3)."""

    name = "synthetic expression/pose regressor (scripts/train_regressor.py)"

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels * 16, NUM_OUTPUTS)
        self.register_buffer("mean", torch.zeros(NUM_OUTPUTS))
        self.register_buffer("std", torch.ones(NUM_OUTPUTS))

    def normalised(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != INPUT_SIZE:
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
        return self.head(self.features(images).flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalised(images) * self.std + self.mean


class SyntheticMotionReader:
    """AED/APD's motion reader on synthetic heads (as :class:`otavatar.metrics.motion.Deep3DMotionReader` on real faces):
    6 expression parameters, angles, translation."""

    needs_landmarks = False

    def __init__(self, regressor: SyntheticMotionRegressor, device: torch.device | str = "cpu") -> None:
        self.regressor = regressor.to(device).eval()
        self.device = torch.device(device)
        self.name = SyntheticMotionRegressor.name

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        values = self.regressor(images.to(self.device)).cpu()
        return {"expression": values[:, :6], "angles": values[:, 6:9], "translation": values[:, 9:12]}


def video_targets(database: VideoLmdb, video: str) -> torch.Tensor:
    """Known parameters of a synthetic video's frames, ``(N, 12)``."""
    coefficients = torch.from_numpy(database.array(video, "coeff_3dmm"))
    expression = torch.from_numpy(database.array(video, "expression_params")).view(coefficients.shape[0], -1)
    return torch.cat([expression, coefficients[:, ANGLES], coefficients[:, TRANSLATION]], dim=1)


@dataclass
class RegressorTraining:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    extra_identities: int = 400  # freshly drawn, 16 frames each
    frames_per_identity: int = 16


def load_frames(database: VideoLmdb, videos: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """All main-view frames of ``videos`` as uint8 ``(N, 3, 64, 64)`` and their parameters ``(N, 12)``."""
    images, targets = [], []
    for video in videos:
        frames = torch.stack([database.image(video, f) for f in range(database.length(video))])
        images.append(_to_input(frames))
        targets.append(video_targets(database, video))
    return torch.cat(images), torch.cat(targets)


def _to_input(frames: torch.Tensor) -> torch.Tensor:
    """``(N, 3, R, R)`` in [−1, 1] → uint8 ``(N, 3, 64, 64)`` (area resize, as at evaluation)."""
    small = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return ((small + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def fresh_frames(identities: int, frames: int, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of ``identities`` newly drawn heads (seeded apart from the dataset's) and their parameters ``(N, 12)``."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    images, targets = [], []
    for _ in range(identities):
        identity = sample_identity(generator)
        expression, angles, translation = sample_talking_sequence(frames, generator)
        video = render_video(identity, expression, angles, translation, resolution, extra_view_yaws=())
        images.append(_to_input(video.images * 2 - 1))
        targets.append(torch.cat([expression, angles, translation], dim=1))
    return torch.cat(images), torch.cat(targets)


def train_regressor(database: VideoLmdb, settings: RegressorTraining = RegressorTraining(), log=print) -> SyntheticMotionRegressor:
    """Fit the regressor on the training split and fresh heads (smooth L1 on standardised parameters, Adam, cosine decay)."""
    torch.manual_seed(settings.seed)
    images, targets = load_frames(database, database.splits["train"])
    if settings.extra_identities:
        extra_images, extra_targets = fresh_frames(settings.extra_identities, settings.frames_per_identity, database.resolution, settings.seed)
        images, targets = torch.cat([images, extra_images]), torch.cat([targets, extra_targets])
        log(f"regressor: {len(images)} training frames ({len(extra_images)} from {settings.extra_identities} fresh identities)")
    model = SyntheticMotionRegressor()
    model.mean.copy_(targets.mean(0))
    model.std.copy_(targets.std(0).clamp_min(1e-3))
    normalised = (targets - model.mean) / model.std
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
    generator = torch.Generator().manual_seed(settings.seed)
    started = time.perf_counter()
    model.train()
    for step in range(settings.steps):
        index = torch.randint(len(images), (settings.batch_size,), generator=generator)
        batch = images[index].float() / 127.5 - 1
        loss = F.smooth_l1_loss(model.normalised(batch), normalised[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            log(f"regressor step {step + 1}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
    return model.eval()


@torch.no_grad()
def regressor_error(model: SyntheticMotionRegressor, database: VideoLmdb, videos: list[str]) -> dict[str, float]:
    """Mean absolute error per group on held-out videos (the floor of AED/APD on synthetic data)."""
    images, targets = load_frames(database, videos)
    predicted = model(images.float() / 127.5 - 1)
    error = (predicted - targets).abs()
    return {"expression": error[:, :6].mean().item(), "pose": error[:, 6:].mean().item()}


def load_synthetic_regressor(path: str | Path) -> SyntheticMotionRegressor:
    """The regressor written by scripts/train_regressor.py (``{'state_dict', 'test_error', 'recipe'}``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError(
            f"the synthetic expression/pose regressor {path} is missing; it ships with the repository "
            f"(git checkout {path}) or is rebuilt by `python scripts/train_regressor.py --out {path}`",
            path,
        )
    checkpoint = load_torch_file(path, "a synthetic regressor file", AssetFormatError)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise AssetFormatError(f"{path}: expected a dict with 'state_dict' (written by scripts/train_regressor.py)")
    model = SyntheticMotionRegressor()
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False)
