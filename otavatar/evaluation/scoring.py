"""Which extractors the metrics use, loaded once, with every missing one recorded as ``n/a (missing FILE)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from otavatar.assets import REPO_ROOT
from otavatar.evaluation.synthetic_regressor import SyntheticMotionReader, load_synthetic_regressor
from otavatar.losses.identity import load_arcface
from otavatar.metrics.lpips import load_lpips
from otavatar.metrics.faces import FaceLandmarks
from otavatar.metrics.fid import load_fid_inception
from otavatar.metrics.identity import ArcFaceEmbedder, DlibEmbedder
from otavatar.metrics.motion import Deep3DMotionReader
from otavatar.metrics.suite import Extractors, try_load
from otavatar.preprocess.coefficients import CoefficientRegressor, load_reconnet

MOTION_READERS = ("deep3d", "synthetic")
DEFAULT_SYNTHETIC_REGRESSOR = REPO_ROOT / "pretrained" / "tiny_regressor.pt"  # committed with the repository


@dataclass
class ExtractorPaths:
    """Weights files (None: the assets' default places)."""

    alexnet: str | None = None
    inception: str | None = None
    arcface: str | None = None
    deep3dfacerecon: str | None = None
    synthetic_regressor: str | Path = DEFAULT_SYNTHETIC_REGRESSOR


def build_extractors(motion: str, paths: ExtractorPaths = ExtractorPaths(), device: torch.device | str = "cpu", faces: bool = True, fid: bool = True) -> Extractors:
    """Load what exists. ``motion``: ``deep3d`` (real faces) or ``synthetic`` (synthetic heads' regressor).

    ``faces`` enables the landmark-based metrics (AKD, CSIM and Deep3DFaceRecon alignment).
    """
    if motion not in MOTION_READERS:
        raise ValueError(f"motion reader: expected one of {MOTION_READERS}, found {motion!r}")
    extractors = Extractors()
    missing = extractors.missing
    lpips, missing["lpips"] = try_load(lambda: load_lpips(paths.alexnet).to(device))
    extractors.lpips = lpips
    if fid:
        loaded, missing["fid"] = try_load(lambda: load_fid_inception(paths.inception))
        if loaded is not None:
            network, extractors.fid_source = loaded
            extractors.fid = network.to(device)
    else:
        missing["fid"] = "n/a (disabled)"
    if faces:
        extractors.landmarks, missing["akd"] = try_load(FaceLandmarks)
        arcface, missing["csim"] = try_load(lambda: ArcFaceEmbedder(load_arcface(paths.arcface), device))
        # ArcFace weights are not downloadable here; dlib's descriptor ships offline (named csim_dlib).
        extractors.identity = arcface or try_load(DlibEmbedder)[0]
    else:
        missing["akd"] = missing["csim"] = "n/a (face metrics disabled)"
    if motion == "synthetic":
        extractors.motion, missing["aed"] = try_load(lambda: SyntheticMotionReader(load_synthetic_regressor(paths.synthetic_regressor), device))
    elif faces:
        extractors.motion, missing["aed"] = try_load(lambda: Deep3DMotionReader(CoefficientRegressor(load_reconnet(paths.deep3dfacerecon), device)))
    else:
        missing["aed"] = "n/a (Deep3DFaceRecon needs the face metrics' landmarks)"
    extractors.missing = {name: reason for name, reason in missing.items() if reason is not None}
    return extractors
