"""Every metric over a stream of videos: per-video values, frame-weighted overall values, FID statistics.

A metric whose extractor cannot be loaded (weights missing) is not dropped: it stays a column whose
value is ``n/a (missing FILE)``. Region PSNR needs the ground truth's landmarks as well as the ground
truth (synthetic protocols know them exactly). Frames where a face-based extractor finds no face are skipped and
counted (``skipped``). Reference frames are the ground truth when the protocol has it, else the
driving frames (cross-identity: expression, pose and keypoints follow the driver).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from otavatar.assets import REPO_ROOT, AssetFormatError, MissingAssetError
from otavatar.metrics.faces import FaceLandmarks
from otavatar.metrics.fid import FeatureStatistics, frechet_distance
from otavatar.metrics.identity import cosine_similarity
from otavatar.metrics.image import psnr, region_psnr, ssim
from otavatar.metrics.motion import describe, keypoint_distance, motion_distances

IMAGE_METRICS = ("psnr", "region_psnr", "ssim", "lpips")
ORDER = ("psnr", "region_psnr", "ssim", "lpips", "fid", "csim", "csim_dlib", "aed", "apd", "apd_angles", "akd")


def unavailable(error: Exception) -> str:
    """``n/a (missing FILE)`` for a missing asset, else ``n/a (reason)``; FILE is relative to the
    repository when inside it, so tables written into the README hold no machine's absolute paths."""
    if isinstance(error, MissingAssetError) and error.path is not None:
        path = Path(error.path)
        return f"n/a (missing {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path})"
    return f"n/a ({type(error).__name__}: {error})"


def try_load(load: Callable[[], object]) -> tuple[object | None, str | None]:
    """``(extractor, None)`` or ``(None, 'n/a (…)')`` when its weights are missing or unusable."""
    try:
        return load(), None
    except (MissingAssetError, AssetFormatError, ImportError, FileNotFoundError) as error:
        return None, unavailable(error)


@dataclass
class Extractors:
    """The loaded extractors (None where unavailable) and why each missing one is missing."""

    lpips: torch.nn.Module | None = None
    fid: torch.nn.Module | None = None
    fid_source: str = ""
    identity: object | None = None  # ArcFaceEmbedder or DlibEmbedder
    motion: object | None = None  # Deep3DMotionReader or SyntheticMotionReader
    landmarks: FaceLandmarks | None = None
    missing: dict[str, str] = field(default_factory=dict)


class MetricSuite:
    """Scores videos and accumulates overall values.

    Args:
        extractors: what is available (see :func:`otavatar.evaluation.scoring.build_extractors`).
        reduction: ``mean`` or ``sum`` over coefficient dimensions for AED/APD.
        device: where LPIPS and Inception run.
        batch_size: frames per extractor call.
    """

    def __init__(self, extractors: Extractors, reduction: str = "mean", device: torch.device | str = "cpu", batch_size: int = 16) -> None:
        self.extractors = extractors
        self.reduction = reduction
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.identity_metric = getattr(extractors.identity, "metric", "csim")
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.generated = FeatureStatistics()
        self.real = FeatureStatistics()
        self.has_ground_truth = False

    def metrics(self) -> list[str]:
        """The columns, in table order; ``csim_dlib`` only when dlib's descriptor stands in for ArcFace."""
        return [name for name in ORDER if name != "csim_dlib" or self.identity_metric == "csim_dlib"]

    @staticmethod
    def _shared(shared: dict | None, key: tuple, compute: Callable[[], object]) -> object:
        """``compute()`` once per ``key`` when suites share ``shared``; every time otherwise."""
        if shared is None:
            return compute()
        if key not in shared:
            shared[key] = compute()
        return shared[key]

    @torch.no_grad()
    def frame_values(
        self, prediction: torch.Tensor, source: torch.Tensor, reference: torch.Tensor, ground_truth: bool, shared: dict | None = None,
        keypoints: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-frame values ``(N,)`` (NaN where skipped) of ``prediction (N, 3, H, W)`` against ``reference``; ``source (1, 3, H, W)``.

        ``shared``: one dict passed by every suite (with the same extractors) that scores the same
        episode, so the portrait's and the reference frames' features are computed once.
        ``keypoints``: the ground truth's 68 landmarks ``(N, 68, 2)`` in its pixels (region PSNR).
        """
        ex = self.extractors
        values: dict[str, list[torch.Tensor]] = {}

        def add(name: str, value: torch.Tensor) -> None:
            values.setdefault(name, []).append(value.detach().float().cpu().reshape(-1))

        needs_landmarks = ex.landmarks is not None
        source_embedding = self._shared(shared, ("source_embedding",), lambda: self._source_embedding(source))
        for start in range(0, len(prediction), self.batch_size):
            predicted, real = prediction[start : start + self.batch_size], reference[start : start + self.batch_size]
            if ground_truth:
                add("psnr", psnr(predicted, real))
                if keypoints is not None:
                    add("region_psnr", region_psnr(predicted, real, keypoints[start : start + self.batch_size]))
                add("ssim", ssim(predicted, real))
                if ex.lpips is not None:
                    add("lpips", ex.lpips(predicted.to(self.device), real.to(self.device)))
            if ex.fid is not None:
                self.generated.update(ex.fid(predicted.to(self.device)))
                self.real.update(self._shared(shared, ("inception", start), lambda: ex.fid(real.to(self.device))))
            predicted_landmarks = ex.landmarks(predicted) if needs_landmarks else None
            real_landmarks = self._shared(shared, ("landmarks", start), lambda: ex.landmarks(real)) if needs_landmarks else None
            if predicted_landmarks is not None:
                add("akd", keypoint_distance(predicted_landmarks, real_landmarks, prediction.shape[-1]))
            if ex.identity is not None and predicted_landmarks is not None:
                found = torch.isfinite(predicted_landmarks).flatten(1).all(1)
                similarity = torch.full((len(predicted),), math.nan)
                if source_embedding is not None and found.any():
                    similarity[found] = cosine_similarity(source_embedding, ex.identity(predicted[found], predicted_landmarks[found]))
                add(self.identity_metric, similarity)
            if ex.motion is not None:
                for name, value in self._motion(predicted, real, predicted_landmarks, real_landmarks, shared, start).items():
                    add(name, value)
        return {name: torch.cat(parts) for name, parts in values.items()}

    def _source_embedding(self, source: torch.Tensor) -> torch.Tensor | None:
        ex = self.extractors
        if ex.landmarks is None or ex.identity is None:
            return None
        source_landmarks = ex.landmarks(source)
        return ex.identity(source, source_landmarks) if torch.isfinite(source_landmarks).all() else None

    def _motion(self, predicted, real, predicted_landmarks, real_landmarks, shared: dict | None, start: int) -> dict[str, torch.Tensor]:
        reader = self.extractors.motion
        if not reader.needs_landmarks:
            return motion_distances(reader(predicted), self._shared(shared, ("motion", start), lambda: reader(real)), self.reduction)
        real_found = torch.isfinite(real_landmarks).flatten(1).all(1)
        # The reference is read on every frame with a face; each method then uses the frames where it has one too.
        real_values = self._shared(
            shared, ("motion", start), lambda: reader(real[real_found], real_landmarks[real_found]) if real_found.any() else None
        )
        found = torch.isfinite(predicted_landmarks).flatten(1).all(1) & real_found
        result = {name: torch.full((len(predicted),), math.nan) for name in ("aed", "apd", "apd_angles")}
        if found.any():
            wanted = {name: value[found[real_found]] for name, value in real_values.items()}
            distances = motion_distances(reader(predicted[found], predicted_landmarks[found]), wanted, self.reduction)
            for name, value in distances.items():
                result[name][found] = value
        return result

    def score_video(
        self, prediction: torch.Tensor, source: torch.Tensor, reference: torch.Tensor, ground_truth: bool, shared: dict | None = None,
        keypoints: torch.Tensor | None = None,
    ) -> dict[str, float | str]:
        """Per-video means (skipped frames excluded) and adds the frames to the overall values (``shared``, ``keypoints``: see :meth:`frame_values`)."""
        self.has_ground_truth |= ground_truth
        frame_values = self.frame_values(prediction, source, reference, ground_truth, shared, keypoints)
        result: dict[str, float | str] = {}
        for name in self.metrics():
            if name == "fid":
                continue
            value = frame_values.get(name)
            if value is None:
                result[name] = self.missing_reason(name, ground_truth)
                continue
            kept = value[~torch.isnan(value)]
            self.sums[name] = self.sums.get(name, 0.0) + kept.double().sum().item()
            self.counts[name] = self.counts.get(name, 0) + kept.numel()
            self.skipped[name] = self.skipped.get(name, 0) + value.numel() - kept.numel()
            result[name] = kept.double().mean().item() if kept.numel() else "n/a (no face found)"
        return result

    def missing_reason(self, name: str, ground_truth: bool) -> str:
        if name in IMAGE_METRICS and not ground_truth:
            return "n/a (no ground truth in this protocol)"
        if name == "region_psnr":
            return "n/a (no ground-truth landmarks in this protocol)"
        missing = self.extractors.missing
        key = {"apd": "aed", "apd_angles": "aed"}.get(name, name)
        return missing.get(key, "n/a (not computed)")

    def summary(self) -> dict[str, float | str]:
        """Overall values: frame-weighted means, FID over all frames."""
        result: dict[str, float | str] = {}
        for name in self.metrics():
            if name == "fid":
                result[name] = self._fid()
            elif self.counts.get(name):
                result[name] = self.sums[name] / self.counts[name]
            else:
                result[name] = self.missing_reason(name, self.has_ground_truth) if name not in self.counts else "n/a (no face found)"
        return result

    def _fid(self) -> float | str:
        if self.extractors.fid is None:
            return self.extractors.missing.get("fid", "n/a")
        if self.generated.count < 2:
            return "n/a (fewer than 2 frames)"
        return frechet_distance(*self.generated.moments(), *self.real.moments())

    def description(self) -> dict[str, object]:
        """Definitions, extractors and skipped-frame counts, for the result files."""
        ex = self.extractors
        extractor_names = {
            "lpips": "lpips 0.1.4 AlexNet v0.1 (alexnet-owt-7be5be79.pth)" if ex.lpips is not None else None,
            "fid": ex.fid_source or None,
            self.identity_metric: getattr(ex.identity, "name", None),
            "aed/apd": getattr(ex.motion, "name", None),
            "landmarks (akd, csim alignment)": getattr(ex.landmarks, "name", None),
        }
        definitions = describe(self.reduction)
        return {
            "definitions": {name: definitions[name] for name in self.metrics()},
            "extractors": {name: value or ex.missing.get(name.split("/")[0], "n/a") for name, value in extractor_names.items()},
            "skipped_frames": {name: count for name, count in self.skipped.items() if count},
            "reduction": self.reduction,
        }
