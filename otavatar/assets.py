"""External assets the project can use but cannot download: where they go and where they come from.

Every loader of pretrained weights asks :func:`require_asset`, so a missing file always fails
with the same kind of message: the file, where to put it, where it comes from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    source: str
    used_by: str
    sha256: str | None = None

    @property
    def default_path(self) -> Path:
        root = Path(os.environ.get("OTAVATAR_PRETRAINED", REPO_ROOT / "pretrained"))
        return root / self.filename


ASSETS = {
    asset.name: asset
    for asset in (
        Asset(
            "eg3d_ffhq512",
            "ffhqrebalanced512-64.pkl",
            "NVIDIA NGC, catalog 'EG3D' (nvidia/research/eg3d), file ffhqrebalanced512-64.pkl",
            "experiment=hdtf (generator initialisation), evaluation of the paper's model",
        ),
        Asset(
            "eg3d_ffhq512_pth",
            "ffhqrebalanced512-64.pth",
            "the .pkl above converted by EG3D-projector's eg3d/convert_pkl_2_pth.py ({'G_ema': state_dict}); "
            "otavatar reads the .pkl directly, so this is optional",
            "experiment=hdtf (as the release's YAML names it)",
        ),
        Asset(
            "otavatar_release",
            "epoch_00005_iteration_000002000_checkpoint.pt",
            "the OTAvatar authors' release (theEricMa/OTAvatar README, 'pretrained model' link)",
            "invert/reenact/evaluate with --checkpoint (the paper's controller and finetuned generator)",
        ),
        Asset(
            "arcface",
            "arcface_resnet18.pth",
            "GFPGAN release v0.1.0 (TencentARC/GFPGAN, asset arcface_resnet18.pth); key names of basicsr's ResNetArcFace",
            "identity loss, CSIM metric",
        ),
        Asset(
            "vgg19",
            "vgg19-dcbb9e9d.pth",
            "torchvision ImageNet VGG19 weights (download.pytorch.org/models/vgg19-dcbb9e9d.pth); also found in "
            "$TORCH_HOME/hub/checkpoints",
            "perceptual and style losses",
        ),
        Asset(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            "torchvision ImageNet AlexNet weights (download.pytorch.org/models/alexnet-owt-7be5be79.pth), the LPIPS "
            "backbone; the LPIPS linear layers ship inside the lpips package",
            "LPIPS metric",
        ),
        Asset(
            "inception_fid",
            "pt_inception-2015-12-05-6726825d.pth",
            "pytorch-fid release (github.com/mseitzer/pytorch-fid/releases, pt_inception-2015-12-05-6726825d.pth)",
            "FID metric",
        ),
        Asset(
            "deep3dfacerecon",
            "deep3dfacerecon/epoch_20.pth",
            "Deep3DFaceRecon_pytorch (sicxu/Deep3DFaceRecon_pytorch README, 'face_recon_feat0.2_augment' model, "
            "checkpoints/.../epoch_20.pth)",
            "3DMM coefficients in preprocessing, AED/APD metrics",
        ),
    )
}


class MissingAssetError(FileNotFoundError):
    """A pretrained file is not where it should be."""


def asset_path(name: str, path: str | Path | None = None) -> Path:
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
    return Path(path) if path is not None else ASSETS[name].default_path


def require_asset(name: str, path: str | Path | None = None) -> Path:
    """The path of an asset, or a :class:`MissingAssetError` saying where to put it and where it comes from."""
    resolved = asset_path(name, path)
    if not resolved.is_file():
        asset = ASSETS[name]
        raise MissingAssetError(
            f"{asset.filename} ({name}, used by {asset.used_by}) not found at {resolved}. "
            f"Put it there (or set OTAVATAR_PRETRAINED to its folder, or pass its path). "
            f"It comes from: {asset.source}. See pretrained/README.md."
        )
    return resolved
