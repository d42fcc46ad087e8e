"""The tri-plane decoder: plane features at 3D points → colour features and raw density.

Follows EG3D's ``OSGDecoder``. The release's plane projection keeps the (x, y), (x, z) and (z, x)
coordinates (the intended YZ plane is missing, NVlabs/eg3d #30); checkpoints depend on it, so it
is kept. The decoder's activation is a vectorised equal of ``nn.Softplus``, its costliest op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.models.stylegan2 import FullyConnectedLayer

# Grid coordinates each plane reads. "release": as produced by the release's inverse plane-axes
# projection, whose third plane reads (z, x) again instead of (y, z) (NVlabs/eg3d #30), so no plane
# couples y and z; its weights depend on it. "paper": the tri-plane of the paper, xy, xz and yz.
PLANE_COORDINATE_AXES = {"release": ((0, 1), (0, 2), (2, 0)), "paper": ((0, 1), (0, 2), (1, 2))}


def sample_from_planes(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float, plane_axes: str = "release") -> torch.Tensor:
    """Bilinear features of points on the three planes.

    Args:
        planes: ``(B, 3, C, H, W)`` tri-plane.
        coordinates: ``(B, M, 3)`` world points; the box ``[-box_warp/2, box_warp/2]³`` maps to the planes.
        plane_axes: which coordinates each plane reads (``PLANE_COORDINATE_AXES``).

    Returns:
        ``(B, 3, M, C)``; points outside the box read zeros.
    """
    batch, num_planes, channels, height, width = planes.shape
    coordinates = (2 / box_warp) * coordinates
    grid = torch.stack([coordinates[..., list(axes)] for axes in PLANE_COORDINATE_AXES[plane_axes]], dim=1)
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
