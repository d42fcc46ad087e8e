"""ArcFace identity loss (reference §5).

The network is basicsr/GFPGAN's ``ResNetArcFace`` (IR blocks [2, 2, 2, 2], no SE, grey 128²
input, 512-d embedding) with its state-dict names, so GFPGAN's ``arcface_resnet18.pth`` loads.
Faces are aligned by a similarity transform of 5 points from the 68 landmarks to the standard
ArcFace template, on a 128² canvas as the release does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.assets import load_asset_state_dict, require_asset

ARCFACE_TEMPLATE = torch.tensor(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
CANVAS = 128
GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.prelu(out + residual)


class ResNetArcFace(nn.Module):
    """Grey ``(B, 1, 128, 128)`` face → ``(B, 512)`` embedding."""

    def __init__(self, layers=(2, 2, 2, 2)) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [IRBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IRBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def load_arcface(path: str | Path | None = None) -> ResNetArcFace:
    """Frozen ResNetArcFace with weights from ``arcface_resnet18.pth`` (GFPGAN key names; a ``module.`` prefix is accepted)."""
    path = require_asset("arcface", path)  # before building the network: fail fast
    network = ResNetArcFace()
    load_asset_state_dict("arcface", network, path)
    return network.eval().requires_grad_(False)


def five_points(keypoints: torch.Tensor) -> torch.Tensor:
    """``(B, 68, 2)`` → ``(B, 5, 2)``: eye centres (36/39, 42/45), nose tip 30, mouth corners 48, 54."""
    return torch.stack(
        [
            keypoints[:, [36, 39]].mean(1), keypoints[:, [42, 45]].mean(1),
            keypoints[:, 30], keypoints[:, 48], keypoints[:, 54],
        ],
        dim=1,
    )


def similarity_transform(source: torch.Tensor, destination: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity mapping ``source (B, N, 2)`` onto ``destination``: ``(B, 2, 3)`` (Umeyama's
    estimate without reflection, as skimage's ``SimilarityTransform``).

    In 2-D it has a closed form, so no SVD, determinant or inverse (on CUDA each checks its result
    on the host, a sync per call): with the centred points as complex numbers p and q, the linear
    part is the complex factor a + ib = Σ conj(p)·q / Σ |p|².
    """
    source, destination = source.double(), destination.double()
    source_mean, destination_mean = source.mean(1, keepdim=True), destination.mean(1, keepdim=True)
    src, dst = source - source_mean, destination - destination_mean
    # Coincident source points (degenerate landmarks) would divide by zero.
    norm = src.square().sum(dim=(1, 2)).clamp_min(1e-12 * source.shape[1])
    a = (src * dst).sum(dim=(1, 2)) / norm
    b = (src[..., 0] * dst[..., 1] - src[..., 1] * dst[..., 0]).sum(1) / norm
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    translation = destination_mean.transpose(1, 2) - linear @ source_mean.transpose(1, 2)
    return torch.cat([linear, translation], dim=2)


def align_faces(images: torch.Tensor, keypoints: torch.Tensor, template: torch.Tensor | None = None) -> torch.Tensor:
    """Grey aligned faces ``(B, 1, 128, 128)`` from images in [−1, 1] and 68 landmarks in their pixels.

    ``template``: the five ArcFace points (default :data:`ARCFACE_TEMPLATE`); pass one already on the
    device (:class:`IdentityLoss` keeps it as a buffer) to avoid a copy per call.
    """
    template = (ARCFACE_TEMPLATE if template is None else template).to(keypoints.device)
    matrix = similarity_transform(five_points(keypoints.detach()), template.expand(keypoints.shape[0], -1, -1))
    # The inverse of x ↦ A·x + t with A = [[a, −b], [b, a]] is x ↦ Aᵀ·(x − t) / (a² + b²).
    linear, translation = matrix[:, :, :2], matrix[:, :, 2:]
    scale_squared = (linear[:, 0, 0].square() + linear[:, 1, 0].square()).clamp_min(1e-12)
    inverse_linear = linear.transpose(1, 2) / scale_squared[:, None, None]
    inverse = torch.cat([inverse_linear, -inverse_linear @ translation], dim=2)
    height, width = images.shape[-2:]
    # Output pixel (x, y) of the canvas samples input pixel inverse·(x, y, 1); pixel centres on integers.
    ys, xs = torch.meshgrid(torch.arange(CANVAS, dtype=matrix.dtype, device=images.device),
                            torch.arange(CANVAS, dtype=matrix.dtype, device=images.device), indexing="ij")
    canvas = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    source = canvas @ inverse.transpose(1, 2)
    grid = torch.stack([2 * source[..., 0] / (width - 1) - 1, 2 * source[..., 1] / (height - 1) - 1], -1)
    grid = grid.reshape(-1, CANVAS, CANVAS, 2).to(images.dtype)
    red, green, blue = GREY_WEIGHTS
    grey = images[:, 0:1] * red + images[:, 1:2] * green + images[:, 2:3] * blue
    return F.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def arcface_embedding(arcface: ResNetArcFace, images: torch.Tensor, keypoints: torch.Tensor, template: torch.Tensor | None = None) -> torch.Tensor:
    """Identity embeddings ``(B, 512)`` of images ``(B, 3, H, W)`` in [−1, 1] with 68 landmarks ``(B, 68, 2)`` in their pixels."""
    return arcface(align_faces(images, keypoints, template))


class IdentityLoss(nn.Module):
    """1 − cos(ArcFace(target), ArcFace(prediction)), averaged over the batch; the target's embedding is constant."""

    def __init__(self, arcface: ResNetArcFace) -> None:
        super().__init__()
        self.arcface = arcface
        # Moves with the module, so the alignment copies nothing to the device per call; not in state dicts.
        self.register_buffer("template", ARCFACE_TEMPLATE.clone(), persistent=False)

    def embed(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """See :func:`arcface_embedding`."""
        return arcface_embedding(self.arcface, images, keypoints, self.template)

    @torch.no_grad()
    def target_embedding(self, target: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """The target's embedding; pass it as ``target_embedding`` to skip recomputing it."""
        return self.embed(target, keypoints)

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor | None, keypoints: torch.Tensor, target_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [−1, 1] (the target is area-resized if needed); keypoints in pixels of the prediction."""
        if target_embedding is None:
            if target.shape[-2:] != prediction.shape[-2:]:
                target = F.interpolate(target, size=prediction.shape[-2:], mode="area")
            target_embedding = self.target_embedding(target, keypoints)
        return (1 - F.cosine_similarity(self.embed(prediction, keypoints), target_embedding, dim=1)).mean()
