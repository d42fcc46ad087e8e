"""Multi-scale VGG19 perceptual loss with a Gram-matrix style term (reference §5)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from otavatar.assets import load_asset_state_dict, require_asset

# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features.
VGG19_LAYERS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_vgg19_features(path: str | Path | None = None) -> nn.Sequential:
    """torchvision's VGG19 ``features`` up to relu5_1 (indices 0–29), with ImageNet weights from a local file.

    The file is torchvision's ``vgg19-dcbb9e9d.pth`` (``features.*`` and ``classifier.*`` keys; the
    classifier is ignored), found as described in :mod:`otavatar.assets`.
    """
    path = require_asset("vgg19", path)  # before building the network: fail fast
    # torchvision's VGG19 feature stack (config "E") without building the 120M-parameter classifier.
    features = make_layers(cfgs["E"])[: VGG19_LAYERS[-1] + 1]
    load_asset_state_dict(
        "vgg19", features, path, key_map={key: f"features.{key}" for key in features.state_dict()}, ignore_unexpected=True
    )
    return features.eval().requires_grad_(False)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, C, C)`` = F Fᵀ / (C·H·W)."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


class PerceptualLoss(nn.Module):
    """Σ over scales and layers of L1 between VGG19 features, + ``style_weight`` × Gram L1 at the first scale.

    Args:
        features: VGG19 ``features`` (frozen).
        num_scales: the images are halved (bilinear) between scales: 2 for 64², 4 for 512².
        style_weight: the release's ``style_to_perceptual`` (250).
    """

    def __init__(self, features: nn.Sequential, num_scales: int = 2, style_weight: float = 250.0, layers=VGG19_LAYERS) -> None:
        super().__init__()
        self.features = features
        self.num_scales = num_scales
        self.style_weight = style_weight
        self.layers = tuple(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features at the chosen layers of images in [−1, 1]."""
        x = ((images + 1) / 2 - self.mean) / self.std
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layers:
                out.append(x)
                if index == self.layers[-1]:
                    break
        return out

    def _check_size(self, size: tuple[int, int]) -> None:
        smallest = min(size) // 2 ** (self.num_scales - 1)
        pools = sum(isinstance(layer, nn.MaxPool2d) for layer in self.features[: self.layers[-1] + 1])
        if smallest < 2**pools:
            raise ValueError(
                f"perceptual loss: {self.num_scales} scales of a {tuple(size)} image go down to "
                f"{smallest} px; the feature network needs at least {2**pools}"
            )

    def _pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        levels = [images]
        for _ in range(1, self.num_scales):
            levels.append(F.interpolate(levels[-1], scale_factor=0.5, mode="bilinear", align_corners=False))
        return levels

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> list[list[torch.Tensor]]:
        """The target's features at every scale; pass them as ``target_features`` to skip recomputing them."""
        self._check_size(target.shape[-2:])
        return [self.extract(level) for level in self._pyramid(target)]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor | None = None, target_features: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Give ``target`` (same size as ``prediction``) or its precomputed :meth:`target_features`."""
        self._check_size(prediction.shape[-2:])
        wanted_levels = target_features if target_features is not None else self.target_features(target)
        loss = prediction.new_zeros(())
        for scale, (level, wanted) in enumerate(zip(self._pyramid(prediction), wanted_levels)):
            for p, t in zip(self.extract(level), wanted):
                loss = loss + F.l1_loss(p, t)
                if scale == 0 and self.style_weight:
                    loss = loss + self.style_weight * F.l1_loss(gram_matrix(p), gram_matrix(t))
        return loss
