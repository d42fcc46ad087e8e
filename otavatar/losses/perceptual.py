"""Multi-scale VGG19 perceptual loss with a Gram-matrix style term (reference §5)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg19

from otavatar.assets import require_asset

# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features.
VGG19_LAYERS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_vgg19_features(path: str | Path | None = None) -> nn.Sequential:
    """torchvision's VGG19 ``features`` up to relu5_1, with ImageNet weights from a local file.

    The file is torchvision's ``vgg19-dcbb9e9d.pth`` (a state dict with ``features.*`` and
    ``classifier.*`` keys); only the ``features.*`` entries are used.
    """
    path = require_asset("vgg19", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot be read as a VGG19 state dict ({type(error).__name__}: {error})") from error
    features = vgg19(weights=None).features[: VGG19_LAYERS[-1] + 1]
    wanted = {f"features.{k}": v for k, v in features.state_dict().items()}
    problems = [f"{k}: missing" for k in wanted if k not in state]
    problems += [
        f"{k}: expected shape {tuple(v.shape)}, found {tuple(state[k].shape)}"
        for k, v in wanted.items() if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise ValueError(f"{path}: not torchvision VGG19 weights:\n  " + "\n  ".join(problems))
    features.load_state_dict({k[len("features."):]: state[k] for k in wanted})
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

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        smallest = min(prediction.shape[-2:]) // 2 ** (self.num_scales - 1)
        pools = sum(isinstance(layer, nn.MaxPool2d) for layer in self.features[: self.layers[-1] + 1])
        if smallest < 2**pools:
            raise ValueError(
                f"perceptual loss: {self.num_scales} scales of a {tuple(prediction.shape[-2:])} image go down to "
                f"{smallest} px; the feature network needs at least {2**pools}"
            )
        loss = prediction.new_zeros(())
        for scale in range(self.num_scales):
            if scale > 0:
                prediction = F.interpolate(prediction, scale_factor=0.5, mode="bilinear", align_corners=False)
                target = F.interpolate(target, scale_factor=0.5, mode="bilinear", align_corners=False)
            predicted = self.extract(prediction)
            with torch.no_grad():
                wanted = self.extract(target)
            for p, t in zip(predicted, wanted):
                loss = loss + F.l1_loss(p, t)
                if scale == 0 and self.style_weight:
                    loss = loss + self.style_weight * F.l1_loss(gram_matrix(p), gram_matrix(t))
        return loss
