"""Importance sampling: fine depths drawn from the coarse pass's compositing weights.

As EG3D's renderer does it (inverse-transform sampling of the dilated, smoothed weights). Random
unless ``deterministic=True``, which uses ``u = linspace(0, 1, N)`` as the parity fixtures do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, num_samples: int, deterministic: bool, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-transform sampling of ``num_samples`` depths per ray from piecewise-constant weights.

    Args:
        bins: ``(N, K)`` bin edges; weights ``(N, K − 2)`` as the release passes them.
    """
    num_rays, num_weights = weights.shape
    pdf = (weights + eps) / torch.sum(weights + eps, -1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if deterministic:
        u = torch.linspace(0, 1, num_samples, device=bins.device).expand(num_rays, num_samples).contiguous()
    else:
        u = torch.rand(num_rays, num_samples, device=bins.device)
    index = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(index - 1, 0)
    above = torch.clamp_max(index, num_weights)
    gather_index = torch.stack([below, above], -1).view(num_rays, 2 * num_samples)
    cdf_g = torch.gather(cdf, 1, gather_index).view(num_rays, num_samples, 2)
    bins_g = torch.gather(bins, 1, gather_index).view(num_rays, num_samples, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


@torch.no_grad()
def sample_importance(depths: torch.Tensor, weights: torch.Tensor, num_samples: int, deterministic: bool) -> torch.Tensor:
    """Fine depths ``(B, R, num_samples, 1)`` from coarse depths ``(B, R, S, 1)`` and marcher weights."""
    batch, num_rays, samples_per_ray, _ = depths.shape
    depths = depths.reshape(batch * num_rays, samples_per_ray)
    weights = weights.reshape(batch * num_rays, 1, -1).float()
    # Dilate then smooth the weights (max then average pool) so thin surfaces are not missed.
    weights = F.avg_pool1d(F.max_pool1d(weights, 2, 1, padding=1), 2, 1).squeeze(1) + 0.01
    midpoints = 0.5 * (depths[:, :-1] + depths[:, 1:])
    fine = sample_pdf(midpoints, weights[:, 1:-1], num_samples, deterministic)
    return fine.reshape(batch, num_rays, num_samples, 1)
