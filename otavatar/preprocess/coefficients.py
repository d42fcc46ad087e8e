"""3DMM coefficients with the Deep3DFaceRecon regressor (ResNet-50 → 257 values), as the reference data has them.

Layout of the 257 values: identity 80, expression 64, texture 80, Euler angles 3 (radians),
lighting 27, translation 3 (:mod:`otavatar.motion`). The reference LMDB appends the three crop
values ``(s, t_x, t_y)`` of the 224² alignment (260 columns).

The network is Deep3DFaceRecon_pytorch's ``ReconNetWrapper``: a torchvision-layout ResNet-50
without its classifier, then seven 1×1 convolutions (one per coefficient group) on the pooled
features. Its input is the face aligned to 224² from five landmarks: a least-squares
scaled-orthographic fit of a standard 3D five-point template gives a scale and a translation, the
image is resized so the face measures :data:`RESCALE_FACTOR` pixels and a 224² window is cut around it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from otavatar.assets import load_asset_state_dict, require_asset

INPUT_SIZE = 224
RESCALE_FACTOR = 102.0
GROUP_SIZES = (80, 64, 80, 3, 27, 2, 1)  # identity, expression, texture, angles, lighting, translation xy, z
# Deep3DFaceRecon's standard five-point 3D template (left eye, right eye, nose tip, mouth corners),
# derived from its BFM file similarity_Lm3D_all.mat (load_lm3d).
TEMPLATE_3D = np.array(
    [
        [-0.31148657, 0.29036078, 0.13377953],
        [0.30979887, 0.28972036, 0.13179526],
        [0.0032535, -0.04617932, 0.55244243],
        [-0.25216928, -0.38133916, 0.22405732],
        [0.2484662, -0.38128236, 0.22235769],
    ]
)


class ReconNet(nn.Module):
    """Deep3DFaceRecon's coefficient regressor: ``(B, 3, 224, 224)`` RGB in [0, 1] → ``(B, 257)``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torchvision.models.resnet50(weights=None)
        del self.backbone.fc
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, size, kernel_size=1) for size in GROUP_SIZES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        x = b.avgpool(b.layer4(b.layer3(b.layer2(b.layer1(x)))))
        return torch.cat([layer(x) for layer in self.final_layers], dim=1).flatten(1)


def load_reconnet(path: str | Path | None = None) -> ReconNet:
    """Frozen :class:`ReconNet` from ``pretrained/deep3dfacerecon/epoch_20.pth`` (its ``net_recon`` entry)."""
    path = require_asset("deep3dfacerecon", path)
    network = ReconNet()
    load_asset_state_dict("deep3dfacerecon", network, path, entry="net_recon")
    return network.eval().requires_grad_(False)


def fit_template(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Scaled-orthographic least-squares fit of :data:`TEMPLATE_3D` to five points ``(5, 2)`` given with y up.

    Each image coordinate is an affine function of the template's 3D points; the scale is the mean
    norm of the two fitted rows and the translation their offsets (Deep3DFaceRecon's ``POS``).
    Returns ``(translation (2,), scale)``.
    """
    count = len(points)
    design = np.zeros((2 * count, 8))
    design[0::2, :3], design[0::2, 3] = TEMPLATE_3D, 1
    design[1::2, 4:7], design[1::2, 7] = TEMPLATE_3D, 1
    solution = np.linalg.lstsq(design, points.reshape(-1), rcond=None)[0]
    scale = (np.linalg.norm(solution[:3]) + np.linalg.norm(solution[4:7])) / 2
    return np.array([solution[3], solution[7]]), float(scale)


def align_face(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align a uint8 ``(H, W, 3)`` image for the regressor from its five points ``(5, 2)`` (pixels, y down).

    Returns the aligned ``(224, 224, 3)`` uint8 face and the transform ``(W, H, s, t_x, t_y)``; its
    last three values are the crop columns 257:260 of the reference data.
    """
    height, width = image.shape[:2]
    points_up = np.asarray(points, dtype=np.float64).copy()
    points_up[:, 1] = height - 1 - points_up[:, 1]
    translation, scale = fit_template(points_up)
    scale = RESCALE_FACTOR / scale
    new_width, new_height = int(width * scale), int(height * scale)
    left = int(new_width / 2 - INPUT_SIZE / 2 + (translation[0] - width / 2) * scale)
    top = int(new_height / 2 - INPUT_SIZE / 2 + (height / 2 - translation[1]) * scale)
    resized = Image.fromarray(image).resize((new_width, new_height), resample=Image.Resampling.BICUBIC)
    aligned = np.asarray(resized.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE)))
    return aligned, np.array([width, height, scale, translation[0], translation[1]])


class CoefficientRegressor:
    """Images + five points → reference-layout coefficients ``(N, 260)`` (257 regressed + 3 crop values).

    Args:
        network: a loaded :class:`ReconNet`.
        device: where the network runs.
    """

    name = "Deep3DFaceRecon ResNet-50 (epoch_20.pth)"

    def __init__(self, network: ReconNet, device: str | torch.device = "cpu") -> None:
        self.network = network.to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``coefficients (N, 260)`` and the alignment transforms ``(N, 5)``."""
        aligned, transforms = zip(*(align_face(image, pts) for image, pts in zip(images, points)))
        batch = torch.from_numpy(np.stack(aligned)).permute(0, 3, 1, 2).float().div(255).to(self.device)
        coefficients = self.network(batch).double().cpu().numpy()
        transforms = np.stack(transforms)
        return np.concatenate([coefficients, transforms[:, 2:]], axis=1).astype(np.float32), transforms
