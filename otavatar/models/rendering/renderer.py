"""The importance renderer: a stratified coarse pass and an importance-sampled fine pass, composited.

Follows EG3D's ``renderer.py``, tying the other modules of this package. Randomness (stratified
jitter, importance sampling) is on unless ``deterministic=True``, which uses exact ``linspace``
depths and ``u = linspace(0, 1, N)`` as the parity fixtures do.
"""

from __future__ import annotations

import torch
from torch import nn

from otavatar.models.rendering.decoder import OSGDecoder, sample_from_planes
from otavatar.models.rendering.importance import sample_importance
from otavatar.models.rendering.marching import march_weights, ray_march, ray_march_unsorted


class ImportanceRenderer(nn.Module):
    """Stratified coarse pass + importance-sampled fine pass, composited together."""

    def run_model(self, planes: torch.Tensor, decoder: OSGDecoder, coordinates: torch.Tensor, options: dict) -> dict[str, torch.Tensor]:
        out = decoder(sample_from_planes(planes, coordinates, options["box_warp"], options.get("plane_axes", "release")))
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
