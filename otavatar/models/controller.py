"""The motion controller C: a window of 3DMM motion x → motion code w_x in W+ (paper Eq. 4–7).

Temporal dilated convolutions summarise the 27-frame window, an MLP with a shortcut predicts
magnitudes on an orthogonal codebook (QR of a learned 512 × K matrix at every call), and the
codebook combination gives one offset per synthesis layer. State-dict names are the release's
(``mapping_3DMM.*``, ``mapping_Refine.*``, ``direction.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from otavatar.errors import check_positive
from otavatar.motion import MOTION_DIM, WINDOW_LENGTH


class TemporalEncoder(nn.Module):
    """Conv1d(k7) then residual LeakyReLU + dilated Conv1d(k3, d3) blocks, averaged over time.

    ``(B, motion_dim, 27)`` → ``(B, descriptor_nc)``. Each block shortens the sequence by 6 and
    its residual is cropped by 3 on each side, so the receptive field is exactly 27 frames.
    """

    def __init__(self, motion_dim: int, descriptor_nc: int, num_blocks: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.first = nn.Sequential(nn.Conv1d(motion_dim, descriptor_nc, kernel_size=7, padding=0, bias=True))
        for index in range(num_blocks):
            block = nn.Sequential(
                nn.LeakyReLU(0.1),
                nn.Conv1d(descriptor_nc, descriptor_nc, kernel_size=3, padding=0, dilation=3),
            )
            setattr(self, f"encoder{index}", block)
        self.pooling = nn.AdaptiveAvgPool1d(1)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        out = self.first(motion)
        for index in range(self.num_blocks):
            out = getattr(self, f"encoder{index}")(out) + out[:, :, 3:-3]
        return self.pooling(out).squeeze(-1)


class OrthogonalCodebook(nn.Module):
    """K orthonormal directions in W: Q of the reduced QR decomposition of a ``(w_dim, K)`` parameter."""

    def __init__(self, w_dim: int, directions: int, init_std: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(init_std * torch.randn(w_dim, directions))

    def forward(self) -> torch.Tensor:
        """``(w_dim, K)`` with orthonormal columns."""
        q, _ = torch.linalg.qr(self.weight + 1e-8)
        return q


class MotionController(nn.Module):
    """C: motion window x ``(B, 70, 27)`` → motion code w_x ``(B, num_ws, 512)``.

    Args:
        motion_dim: channels of x (70 = expression 64 + angles 3 + translation 3).
        descriptor_nc: width of the temporal encoder and the MLP.
        mapping_layers: dilated residual blocks (3 → receptive field 27).
        mlp_layers: hidden layers of the MLP.
        directions: size K of the orthogonal codebook.
        num_ws: layers of W+ (14 for EG3D at 256² planes).
        w_dim: dimension of W.
        tied_mlp: the release builds its MLP by list multiplication, so its hidden layers are
            one Linear applied ``mlp_layers`` times (869,420 parameters, which matches the paper's
            0.8 M); False gives distinct layers (1,132,588). Both use the same state-dict names.
        shortcut: add the pooled descriptor around the hidden layers, as the release does.
        codebook_init_std: scale of the codebook's initial parameter (the release: 1, standard normal).
            Q is scale-invariant, so under Adam a smaller scale turns the codebook faster: each step
            moves every entry by about the learning rate, a larger fraction of a smaller matrix.
        output_scale: a fixed factor on w_x (the release: 1). Under Adam each step moves C's weights by
            about the learning rate whatever the loss's scale, so w_x can only grow as fast as that
            allows; a factor s lets it grow s× faster toward motion codes much larger than C's initial
            output (the tiny generator's expression offsets are 7–20 per W+ layer).
        layer_offsets: one offset per synthesis layer (w_x in W+, the release's); False gives one
            offset in W shared by every layer. The renderer's gradient then reaches C summed over the
            layers, which on the tiny generator points at the expression far more consistently than
            the per-layer gradient (one coarse layer's part is large and unrelated to expression).
    """

    def __init__(
        self,
        motion_dim: int = MOTION_DIM,
        descriptor_nc: int = 256,
        mapping_layers: int = 3,
        mlp_layers: int = 5,
        directions: int = 20,
        num_ws: int = 14,
        w_dim: int = 512,
        tied_mlp: bool = True,
        shortcut: bool = True,
        codebook_init_std: float = 1.0,
        output_scale: float = 1.0,
        layer_offsets: bool = True,
    ) -> None:
        super().__init__()
        check_positive("output_scale", output_scale)
        if WINDOW_LENGTH - 6 - 6 * mapping_layers < 1:
            raise ValueError(f"MotionController: {mapping_layers} mapping layers need a window longer than {WINDOW_LENGTH} frames")
        self.motion_dim = motion_dim
        self.num_ws = num_ws
        self.directions = directions
        self.shortcut = shortcut
        self.output_scale = output_scale
        self.layer_offsets = layer_offsets
        self.mlp_layers = mlp_layers
        self.mapping_3DMM = TemporalEncoder(motion_dim, descriptor_nc, mapping_layers)
        shared = nn.Linear(descriptor_nc, descriptor_nc)
        layers: list[nn.Module] = []
        for _ in range(mlp_layers):
            layers += [shared if tied_mlp else nn.Linear(descriptor_nc, descriptor_nc), nn.LeakyReLU(0.1)]
        layers.append(nn.Linear(descriptor_nc, ((num_ws + 1) if layer_offsets else 1) * directions))
        self.mapping_Refine = nn.Sequential(*layers)
        self.direction = OrthogonalCodebook(w_dim, directions, codebook_init_std)
        self._init_weights()

    @classmethod
    def from_reference_config(cls, kwargs: dict, **overrides) -> MotionController:
        """Build from the release's ``warp.param`` keywords (``descriptor_nc``, ``mapping_layers``, ...)."""
        if kwargs.get("if_plus_scaling", False):
            raise ValueError("MotionController: the release's if_plus_scaling branch is unused and not supported")
        if kwargs.get("if_norm", False):
            raise ValueError("MotionController: the release's if_norm branch is unused and not supported")
        return cls(
            motion_dim=MOTION_DIM if kwargs.get("if_use_pose", True) else 64,
            descriptor_nc=kwargs["descriptor_nc"],
            mapping_layers=kwargs["mapping_layers"],
            mlp_layers=kwargs["mlp_layers"],
            directions=kwargs["directions"],
            shortcut=kwargs.get("if_short_cut", True),
            **overrides,
        )

    def _init_weights(self) -> None:
        # The release's init: xavier-normal with gain 0.02 on convs and linears, zero biases;
        # the codebook keeps its own init (standard normal in the release).
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_normal_(module.weight, gain=0.02)
                nn.init.zeros_(module.bias)

    def magnitudes(self, motion: torch.Tensor) -> torch.Tensor:
        """Codebook magnitudes ``(B, num_ws, K)``: a shared row plus one row per layer (or the shared row alone)."""
        if motion.dim() != 3 or motion.shape[1] != self.motion_dim or motion.shape[2] != WINDOW_LENGTH:
            raise ValueError(
                f"controller: expected motion of shape (B, {self.motion_dim}, {WINDOW_LENGTH}), found {tuple(motion.shape)}"
            )
        feature = self.mapping_3DMM(motion)
        if self.shortcut:
            hidden_end = 2 * self.mlp_layers - 1
            feature = feature + self.mapping_Refine[:hidden_end](feature)
            out = self.mapping_Refine[hidden_end:](feature)
        else:
            out = self.mapping_Refine(feature)
        if not self.layer_offsets:
            return out[:, None].expand(-1, self.num_ws, -1)
        out = out.view(-1, self.num_ws + 1, self.directions)
        return out[:, :1] + out[:, 1:]

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """Motion window x ``(B, 70, 27)`` → w_x ``(B, num_ws, 512)``."""
        return self.output_scale * (self.magnitudes(motion) @ self.direction().t())
