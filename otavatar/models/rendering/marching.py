"""Ray marching: samples along each ray composited into a feature, a depth and an opacity.

As EG3D's ``ray_marcher.py`` (MipNeRF midpoints). ``ray_march_unsorted`` composites the coarse and
fine passes without sorting or concatenating their colours, which dominated the marcher's memory
traffic.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F


def march_weights(densities: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Compositing weights of sorted samples: densities (raw) and depths ``(B, R, S, 1)`` → ``(B, R, S−1, 1)``.

    MipNeRF midpoints: softplus(mean raw density − 1) over each interval, α = 1 − exp(−σδ),
    exclusive transmittance Π(1 − α + 1e-10).
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    densities_mid = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
    alpha = 1 - torch.exp(-densities_mid * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2), -2)[:, :, :-1]
    return alpha * transmittance


def _march_depth(weights: torch.Tensor, depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    weight_total = weights.sum(2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, -2) / weight_total, float("inf"))
    return torch.clamp(depth, torch.min(depths), torch.max(depths)), weight_total


def ray_march(
    colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MipNeRF midpoint compositing of sorted samples.

    Args:
        colors ``(B, R, S, C)``, densities ``(B, R, S, 1)`` raw, depths ``(B, R, S, 1)`` sorted.

    Returns:
        rgb ``(B, R, C)`` mapped to [−1, 1], depth ``(B, R, 1)``, weights ``(B, R, S−1, 1)``.
    """
    weights = march_weights(densities, depths)
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    rgb = torch.sum(weights * colors_mid, -2)
    depth, weight_total = _march_depth(weights, depths)
    if white_back:
        rgb = rgb + 1 - weight_total
    return rgb * 2 - 1, depth, weights


def _weighted_sum(weights: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Σ_s weights[b, r, s] · colors[b, r, s, :] → ``(B, R, C)``."""
    return (weights.unsqueeze(-1) * colors).sum(-2)


def ray_march_unsorted(
    colors: tuple[torch.Tensor, ...], densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`ray_march` of samples in any order, given as passes whose colours are never concatenated.

    Sorting, gathering and midpoint-averaging 32-channel colours dominate the marcher's memory
    traffic; instead the weights are computed on the sorted one-channel data and each sample's
    colour weight ``(w_{j−1} + w_j) / 2`` is scattered back to its pass. Equal to ``ray_march``
    after sorting, up to rounding.

    Args:
        colors: per pass ``(B, R, S_i, C)``.
        densities, depths: ``(B, R, ΣS_i, 1)``, the passes concatenated in the same order.

    Returns:
        rgb ``(B, R, C)`` mapped to [−1, 1], depth ``(B, R, 1)``, opacity ``(B, R, 1)``.
    """
    depths, order = torch.sort(depths, dim=-2)
    weights = march_weights(torch.gather(densities, -2, order), depths)
    depth, weight_total = _march_depth(weights, depths)
    sample_weights = F.pad(weights, (0, 0, 1, 1)).unfold(-2, 2, 1).mean(-1)
    sample_weights = torch.empty_like(sample_weights).scatter_(-2, order, sample_weights).squeeze(-1)
    # A batched matrix-vector product at inference; with gradients, a broadcast product and sum
    # (bmm's backward with a unit dimension falls back to a loop over the rays on the CPU).
    composite = _weighted_sum if torch.is_grad_enabled() else partial(torch.einsum, "brs,brsc->brc")
    rgb = sum(
        composite(part, pass_colors)
        for part, pass_colors in zip(sample_weights.split([c.shape[-2] for c in colors], -1), colors)
    )
    if white_back:
        rgb = rgb + 1 - weight_total
    return rgb * 2 - 1, depth, weight_total
