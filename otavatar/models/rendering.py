"""Tri-plane volume rendering: ray sampler, plane sampling, OSG decoder, importance renderer, ray marcher.

Follows EG3D's renderer. The release's plane projection keeps the (x, y), (x, z) and (z, x)
coordinates (the intended YZ plane is missing, NVlabs/eg3d #30); checkpoints depend on it, so it
is kept. Randomness (stratified jitter, importance sampling) is on unless ``deterministic=True``,
which uses exact ``linspace`` depths and ``u = linspace(0, 1, N)`` as the parity fixtures do.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.models.stylegan2 import FullyConnectedLayer

# Grid coordinates each plane reads, as produced by the release's inverse plane-axes projection.
PLANE_COORDINATE_AXES = ((0, 1), (0, 2), (2, 0))


def ray_bundle(camera_label: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres of an OpenCV camera.

    Args:
        camera_label: ``(B, 25)``: cam2world 4×4 row-major ++ normalised intrinsics 3×3 row-major.
        resolution: rays per side.

    Returns:
        origins and unit directions, each ``(B, resolution², 3)``, row-major over pixels.
    """
    if camera_label.dim() != 2 or camera_label.shape[1] != 25:
        raise ValueError(f"camera label: expected shape (B, 25), found {tuple(camera_label.shape)}")
    batch = camera_label.shape[0]
    cam2world = camera_label[:, :16].view(-1, 4, 4)
    intrinsics = camera_label[:, 16:25].view(-1, 3, 3)
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    skew = intrinsics[:, 0, 1, None]

    pixels = torch.arange(resolution, dtype=torch.float32, device=camera_label.device) * (1.0 / resolution) + (0.5 / resolution)
    y_cam = pixels.repeat_interleave(resolution).unsqueeze(0).expand(batch, -1)
    x_cam = pixels.repeat(resolution).unsqueeze(0).expand(batch, -1)
    x_lift = (x_cam - cx + cy * skew / fy - skew * y_cam / fy) / fx
    y_lift = (y_cam - cy) / fy
    ones = torch.ones_like(x_lift)
    camera_points = torch.stack((x_lift, y_lift, ones, ones), dim=-1)
    world_points = torch.bmm(cam2world, camera_points.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
    centres = cam2world[:, :3, 3]
    directions = world_points - centres[:, None, :]
    # Same as F.normalize, which is several times slower on a last dimension of 3.
    directions = directions / directions.square().sum(dim=2, keepdim=True).sqrt().clamp_min(1e-12)
    origins = centres.unsqueeze(1).expand(-1, resolution * resolution, -1)
    return origins, directions


def sample_from_planes(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Bilinear features of points on the three planes.

    Args:
        planes: ``(B, 3, C, H, W)`` tri-plane.
        coordinates: ``(B, M, 3)`` world points; the box ``[-box_warp/2, box_warp/2]³`` maps to the planes.

    Returns:
        ``(B, 3, M, C)``; points outside the box read zeros.
    """
    batch, num_planes, channels, height, width = planes.shape
    coordinates = (2 / box_warp) * coordinates
    grid = torch.stack([coordinates[..., list(axes)] for axes in PLANE_COORDINATE_AXES], dim=1)
    grid = grid.reshape(batch * num_planes, 1, -1, 2)
    features = F.grid_sample(
        planes.reshape(batch * num_planes, channels, height, width), grid.float(),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )
    # A view, not a copy: the decoder's plane mean reads any layout.
    return features.squeeze(2).unflatten(0, (batch, num_planes)).transpose(2, 3)


class OSGDecoder(nn.Module):
    """Mean of the three plane features → FC 32→64 → Softplus → FC 64→1+32 (raw sigma, features)."""

    def __init__(self, n_features: int, options: dict) -> None:
        super().__init__()
        self.hidden_dim = 64
        lr_multiplier = options["decoder_lr_mul"]
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_multiplier),
            Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options["decoder_output_dim"], lr_multiplier=lr_multiplier),
        )

    def forward(self, sampled_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, M, C)`` → ``rgb (B, M, 32)`` in (−0.001, 1.001) and raw ``sigma (B, M, 1)``."""
        # The sampler writes (B, 3, C, M): the plane mean reduces in that layout, so its gradient
        # reaches the sampler's backward in it too (no stacking and transposing of three gradients),
        # and as a sum then a scale of the 3× smaller result, so that gradient is a broadcast.
        x = sampled_features.transpose(2, 3).sum(1).transpose(1, 2) * (1 / sampled_features.shape[1])
        batch, num_points, channels = x.shape
        x = self.net(x.reshape(batch * num_points, channels)).view(batch, num_points, -1)
        rgb = torch.sigmoid(x[..., 1:])
        if torch.is_grad_enabled() and rgb.requires_grad:
            rgb = rgb * (1 + 2 * 0.001) - 0.001
        else:
            rgb.mul_(1 + 2 * 0.001).sub_(0.001)
        return {"rgb": rgb, "sigma": x[..., 0:1]}


# σ(−20): below it softplus(x) is x itself (the threshold), and the log stays finite.
_SIGMOID_FLOOR = 2.0611537e-09


def _softplus_from(x: torch.Tensor, sigmoid_of_minus_x: torch.Tensor) -> torch.Tensor:
    """softplus(x) = −log σ(−x), overwriting ``sigmoid_of_minus_x``; above the threshold, x itself."""
    out = sigmoid_of_minus_x.clamp_min_(_SIGMOID_FLOOR).log_().neg_()
    return torch.maximum(out, x, out=out)


class _VectorisedSoftplus(torch.autograd.Function):
    """softplus with its gradient σ(x), both vectorised (torch's softplus backward is not either)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _softplus_from(x, torch.neg(x).sigmoid_())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


class Softplus(nn.Softplus):
    """``nn.Softplus()`` (β 1, threshold 20) computed as −log σ(−x), which vectorises (torch's
    softplus does not: it was the decoder's costliest op in inversion steps).

    The two agree to float32 rounding (a few ulps of the result and of the gradient). Half
    precisions are computed in float32 and rounded back: in fp16, σ(−x) underflows to 0 from
    x ≈ 17, which would make the result infinite.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            return self.forward(x.float()).to(x.dtype)
        if torch.is_grad_enabled() and x.requires_grad:
            return _VectorisedSoftplus.apply(x)
        return _softplus_from(x, torch.neg(x).sigmoid_())


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


class ImportanceRenderer(nn.Module):
    """Stratified coarse pass + importance-sampled fine pass, composited together."""

    def run_model(self, planes: torch.Tensor, decoder: OSGDecoder, coordinates: torch.Tensor, options: dict) -> dict[str, torch.Tensor]:
        out = decoder(sample_from_planes(planes, coordinates, options["box_warp"]))
        if options.get("density_noise", 0) > 0:
            out["sigma"] = out["sigma"] + torch.randn_like(out["sigma"]) * options["density_noise"]
        return out

    def _query(self, planes, decoder, origins, directions, depths, options):
        batch, num_rays, samples, _ = depths.shape
        coordinates = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(batch, -1, 3)
        out = self.run_model(planes, decoder, coordinates, options)
        colors = out["rgb"].reshape(batch, num_rays, samples, out["rgb"].shape[-1])
        return colors, out["sigma"].reshape(batch, num_rays, samples, 1)

    def forward(
        self,
        planes: torch.Tensor,
        decoder: OSGDecoder,
        ray_origins: torch.Tensor,
        ray_directions: torch.Tensor,
        options: dict,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """planes ``(B, 3, 32, H, W)``, rays ``(B, R, 3)`` → features ``(B, R, 32)``, depth ``(B, R, 1)``, opacity ``(B, R, 1)``."""
        if options.get("disparity_space_sampling", False) or options["ray_start"] == "auto":
            raise ValueError("renderer: disparity-space sampling and 'auto' ray limits are not supported")
        batch, num_rays, _ = ray_origins.shape
        ray_start, ray_end, num_coarse = options["ray_start"], options["ray_end"], options["depth_resolution"]
        depths = torch.linspace(ray_start, ray_end, num_coarse, device=ray_origins.device).reshape(1, 1, num_coarse, 1)
        depths = depths.repeat(batch, num_rays, 1, 1)
        if not deterministic:
            depths = depths + torch.rand_like(depths) * ((ray_end - ray_start) / (num_coarse - 1))
        colors, densities = self._query(planes, decoder, ray_origins, ray_directions, depths, options)

        num_fine = options["depth_resolution_importance"]
        white_back = options.get("white_back", False)
        if num_fine == 0:
            rgb, depth, weights = ray_march(colors, densities, depths, white_back)
            return rgb, depth, weights.sum(2)
        fine_depths = sample_importance(depths, march_weights(densities, depths), num_fine, deterministic)
        fine_colors, fine_densities = self._query(planes, decoder, ray_origins, ray_directions, fine_depths, options)
        return ray_march_unsorted(
            (colors, fine_colors), torch.cat([densities, fine_densities], -2), torch.cat([depths, fine_depths], -2), white_back
        )
