"""External assets the project can use but cannot download: where they go, where they come from, how they load.

Every loader of pretrained weights goes through :func:`require_asset` (and, for plain state dicts,
:func:`load_asset_state_dict`), so a missing file always fails the same way: the file, where it
was looked for, where it comes from, and a pointer to ``pretrained/README.md``; a file that does
not fit names the file, each offending key and the expected and found shapes.

Look-up order for an asset: an explicit path (must exist); ``$OTAVATAR_PRETRAINED/<file>`` if the
variable is set, else ``pretrained/<file>`` under the repository root; for torchvision/torch.hub
files also the torch hub cache ``$TORCH_HOME/hub/checkpoints/<file>``, where those libraries put
their downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from otavatar.errors import FileFormatError, MissingInputError
from otavatar.files import load_state_dict_checked, load_torch_file

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Asset:
    """One external file.

    ``sha256`` is the full digest when known; ``sha256_prefix`` the first 8 hex digits that
    torch.hub-style file names carry (``vgg19-dcbb9e9d.pth``).
    """

    name: str
    filename: str
    source: str
    format: str
    used_by: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    in_torch_hub_cache: bool = False

    @property
    def default_path(self) -> Path:
        root = Path(os.environ.get("OTAVATAR_PRETRAINED", REPO_ROOT / "pretrained"))
        return root / self.filename

    def search_paths(self) -> list[Path]:
        """Where the file is looked for when no explicit path is given, in order."""
        paths = [self.default_path]
        if self.in_torch_hub_cache:
            paths.append(Path(torch.hub.get_dir()) / "checkpoints" / Path(self.filename).name)
        return paths


ASSETS = {
    asset.name: asset
    for asset in (
        Asset(
            "eg3d_ffhq512",
            "ffhqrebalanced512-64.pkl",
            "NVIDIA NGC, catalog 'EG3D' (catalog.ngc.nvidia.com/orgs/nvidia/teams/research/models/eg3d), "
            "file ffhqrebalanced512-64.pkl (free NGC account; NVIDIA Source Code License)",
            "NVIDIA network pickle (dnnlib/torch_utils persistence) holding G, D, G_ema; otavatar reads G_ema "
            "with a restricted unpickler that never runs the embedded code",
            "experiment=hdtf (generator initialisation), evaluation of the paper's model",
        ),
        Asset(
            "eg3d_ffhq512_pth",
            "ffhqrebalanced512-64.pth",
            "the .pkl above converted by EG3D-projector's eg3d/convert_pkl_2_pth.py (as the OTAvatar README says); "
            "otavatar reads the .pkl directly, so this is optional",
            "torch.save({'G_ema': TriPlaneGenerator state dict})",
            "experiment=hdtf (as the release's YAML names it)",
        ),
        Asset(
            "otavatar_release",
            "epoch_00005_iteration_000002000_checkpoint.pt",
            "the OTAvatar authors' release (github.com/theEricMa/OTAvatar README, 'pretrained model' link)",
            "torch.save dict: net_G, net_G_ema, net_Warp, net_Warp_ema state dicts (live ones with a 'module.' "
            "prefix), opt_Warp, sch_Warp, current_epoch, current_iteration",
            "invert/reenact/evaluate with --checkpoint (the paper's controller and finetuned generator)",
        ),
        Asset(
            "arcface",
            "arcface_resnet18.pth",
            "GFPGAN release v0.1.0 (github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth); "
            "the same file the OTAvatar release expects at pretrained/arcface_resnet18.pth",
            "torch state dict of basicsr's ResNetArcFace (IRBlock, [2,2,2,2], use_se=False): conv1.weight, "
            "layer1.0.bn0.*, ..., fc5.*, bn5.*; a 'module.' prefix is accepted",
            "identity loss, CSIM metric",
        ),
        Asset(
            "vgg19",
            "vgg19-dcbb9e9d.pth",
            "torchvision ImageNet VGG19 (download.pytorch.org/models/vgg19-dcbb9e9d.pth, "
            "torchvision.models.VGG19_Weights.IMAGENET1K_V1)",
            "torchvision state dict: features.N.weight/bias, classifier.N.weight/bias (only features.0-28 are used)",
            "perceptual and style losses",
            sha256_prefix="dcbb9e9d",
            in_torch_hub_cache=True,
        ),
        Asset(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            "torchvision ImageNet AlexNet (download.pytorch.org/models/alexnet-owt-7be5be79.pth, "
            "torchvision.models.AlexNet_Weights.IMAGENET1K_V1), the LPIPS backbone; LPIPS' linear layers "
            "(lpips/weights/v0.1/alex.pth) ship inside the lpips package",
            "torchvision state dict: features.N.weight/bias, classifier.N.weight/bias (only features.* are used)",
            "LPIPS metric",
            sha256_prefix="7be5be79",
            in_torch_hub_cache=True,
        ),
        Asset(
            "inception_fid",
            "pt_inception-2015-12-05-6726825d.pth",
            "pytorch-fid (github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth), the TF-Inception-v3 of the original FID",
            "state dict of pytorch-fid's FIDInceptionA/C/E Inception-v3 (1008 classes)",
            "FID metric",
            sha256_prefix="6726825d",
            in_torch_hub_cache=True,
        ),
        Asset(
            "deep3dfacerecon",
            "deep3dfacerecon/epoch_20.pth",
            "Deep3DFaceRecon_pytorch (github.com/sicxu/Deep3DFaceRecon_pytorch README, model "
            "'face_recon_feat0.2_augment', checkpoints/face_recon_feat0.2_augment/epoch_20.pth)",
            "torch.save dict with 'net_recon' (ResNet-50 coefficient regressor state dict)",
            "3DMM coefficients in preprocessing, AED/APD metrics",
        ),
    )
}


class MissingAssetError(MissingInputError):
    """A pretrained file is not where it should be; ``path`` is where it belongs (when known)."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class AssetFormatError(FileFormatError):
    """A pretrained file exists but does not hold what the loader expects."""


def _get(name: str) -> Asset:
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}")
    return ASSETS[name]


def asset_path(name: str, path: str | Path | None = None) -> Path:
    """The explicit ``path`` if given, else the first existing search path, else the default path."""
    asset = _get(name)
    if path is not None:
        return Path(path)
    return next((p for p in asset.search_paths() if p.is_file()), asset.default_path)


def require_asset(name: str, path: str | Path | None = None) -> Path:
    """The path of an existing asset file, or a :class:`MissingAssetError` saying where to put it and where it comes from."""
    asset = _get(name)
    resolved = asset_path(name, path)
    if not resolved.is_file():
        searched = [Path(path)] if path is not None else asset.search_paths()
        raise MissingAssetError(
            f"{asset.filename} ({name}, used by {asset.used_by}) not found; looked at "
            f"{', '.join(str(p) for p in searched)}. Put it at {asset.default_path} (or set OTAVATAR_PRETRAINED "
            f"to its folder, or pass its path). It comes from: {asset.source}. Format: {asset.format}. "
            f"See pretrained/README.md.",
            resolved,
        )
    return resolved


def load_asset_state_dict(
    name: str,
    module: nn.Module,
    path: str | Path | None = None,
    key_map: Mapping[str, str] | None = None,
    strip_prefix: str = "module.",
    ignore_unexpected: bool = False,
    entry: str | None = None,
    optional_suffixes: tuple[str, ...] = (),
) -> Path:
    """Load the asset's state dict into ``module`` after checking every key and shape; returns the file used.

    Args:
        key_map: file key for each of ``module``'s keys when they differ (default: the same names).
        strip_prefix: removed from the file's keys when present (DDP's ``module.``).
        ignore_unexpected: file keys the module does not use are allowed (e.g. a classifier).
        entry: the file holds a dict and the state dict is under this key (``'net_recon'``).
        optional_suffixes: module keys ending so may be absent from the file (batch norm's
            ``num_batches_tracked`` in files saved before it existed); they keep their values.

    Raises:
        MissingAssetError: no file (see :func:`require_asset`).
        AssetFormatError: unreadable file, or keys missing / unexpected / of another shape; the message
            names the file, each key, and the expected and found shapes.
    """
    file = require_asset(name, path)
    state = load_torch_file(file, f"a {name} state dict", AssetFormatError)
    if entry is not None:
        if not isinstance(state, Mapping) or entry not in state:
            found = sorted(state)[:10] if isinstance(state, Mapping) else type(state).__name__
            raise AssetFormatError(f"{file}: expected a dict with the key '{entry}' ({ASSETS[name].format}), found {found}")
        state = state[entry]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssetFormatError(f"{file}: expected a state dict of tensors ({ASSETS[name].format}), found {type(state).__name__}")
    if strip_prefix:
        state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    load_state_dict_checked(
        module, state, AssetFormatError, f"{file}: does not fit the {name} network ({ASSETS[name].format})", key_map, ignore_unexpected, optional_suffixes
    )
    return file
