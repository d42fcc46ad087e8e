"""Density regularisers on the tri-plane (EG3D, reused by the release) and the motion-code penalty.

Both density terms act on the raw decoder sigma at 2000 random points per sample, drawn in
[−1, 1]³ as the release does (twice the side of the plane box, so many points read zeros).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

SigmaFn = Callable[[torch.Tensor], torch.Tensor]


def _random_points(batch: int, num_points: int, device: torch.device) -> torch.Tensor:
    return torch.rand(batch, num_points, 3, device=device) * 2 - 1


def tv_density_loss(sigma_fn: SigmaFn, batch: int, device: torch.device, num_points: int = 2000,
                    perturbation: float = 0.004, density_reg: float = 0.25) -> torch.Tensor:
    """L1 between sigma at random points and at points moved by N(0, perturbation²), × density_reg."""
    points = _random_points(batch, num_points, device)
    perturbed = points + torch.randn_like(points) * perturbation
    sigma = sigma_fn(torch.cat([points, perturbed], dim=1))
    return F.l1_loss(sigma[:, :num_points], sigma[:, num_points:]) * density_reg


def monotonic_density_loss(sigma_fn: SigmaFn, batch: int, device: torch.device, num_points: int = 2000,
                           box_warp: float = 1.0, detach_front: bool = False) -> torch.Tensor:
    """mean relu(σ(p) − σ(p − (0, 0, box_warp/256))): density must not drop moving away from a frontal camera.

    ``detach_front`` is EG3D's 'monotonic-detach'; the release detaches nothing.
    """
    points = _random_points(batch, num_points, device)
    behind = points + torch.tensor([0.0, 0.0, -box_warp / 256], device=device)
    sigma = sigma_fn(torch.cat([points, behind], dim=1))
    front = sigma[:, :num_points].detach() if detach_front else sigma[:, :num_points]
    return F.relu(front - sigma[:, num_points:]).mean()


def motion_code_l1(motion_code: torch.Tensor) -> torch.Tensor:
    """Mean absolute value of w_x ``(B, num_ws, 512)`` (the paper's L1 on the controller's output)."""
    return motion_code.abs().mean()
