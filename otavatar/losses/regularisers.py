"""Density regularisers on the tri-plane (EG3D, reused by the release) and the motion-code penalty.

Both density terms act on the raw decoder sigma (before the ray marcher's softplus) at random
points drawn uniformly in [−1, 1]³ as the release does: twice the side of the plane box, so many
points fall outside it. ``sigma_fn(coordinates (B, M, 3)) -> (B, M, 1)`` is typically
``functools.partial(generator.sample_density, planes)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

SigmaFn = Callable[[torch.Tensor], torch.Tensor]


def _random_points(batch: int, num_points: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the generator's own device so a CPU generator also serves CUDA tensors.
    draw_device = generator.device if generator is not None else device
    return (torch.rand(batch, num_points, 3, device=draw_device, generator=generator) * 2 - 1).to(device)


def tv_density_loss(
    sigma_fn: SigmaFn,
    batch: int,
    device: torch.device,
    num_points: int = 2000,
    perturbation: float = 0.004,
    density_reg: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L1 between sigma at random points and at the points moved by N(0, 1)·``perturbation``, × ``density_reg``.

    Args:
        perturbation: ``rendering_kwargs['density_reg_p_dist']`` (0.004).
        density_reg: ``rendering_kwargs['density_reg']`` (0.25).
        generator: the random source of the points (global RNG if None).
    """
    points = _random_points(batch, num_points, device, generator)
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(batch, num_points, 3, device=draw_device, generator=generator).to(device)
    sigma = sigma_fn(torch.cat([points, points + noise * perturbation], dim=1))
    return F.l1_loss(sigma[:, :num_points], sigma[:, num_points:]) * density_reg


def monotonic_density_loss(
    sigma_fn: SigmaFn,
    batch: int,
    device: torch.device,
    num_points: int = 2000,
    box_warp: float = 1.0,
    detach_front: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """mean relu(σ(p) − σ(p − (0, 0, box_warp/256))): density must not drop moving away from a frontal camera (−z).

    Args:
        box_warp: ``rendering_kwargs['box_warp']``.
        detach_front: EG3D's 'monotonic-detach' (no gradient through σ(p)); the release detaches nothing.
        generator: the random source of the points (global RNG if None).
    """
    points = _random_points(batch, num_points, device, generator)
    # z − step with a Python number: no offset tensor copied to the device on every call.
    behind = torch.cat([points[..., :2], points[..., 2:] - box_warp / 256], dim=-1)
    sigma = sigma_fn(torch.cat([points, behind], dim=1))
    front = sigma[:, :num_points].detach() if detach_front else sigma[:, :num_points]
    return F.relu(front - sigma[:, num_points:]).mean()


def motion_code_l1(motion_code: torch.Tensor) -> torch.Tensor:
    """Mean absolute value of w_x ``(B, num_ws, 512)`` (an optional penalty on the controller's output)."""
    return motion_code.abs().mean()
