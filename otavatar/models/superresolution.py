"""EG3D super-resolution modules: the low-resolution feature image → the final RGB image.

All six synthesis layers of a module read the last w (layer 13 at full scale) repeated three
times, as in the release. On CUDA the blocks run in fp16 when ``sr_num_fp16_res > 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.models.stylegan2 import SynthesisBlock, fir_filter


class SuperresolutionHybrid(nn.Module):
    """Resize the feature image to ``input_resolution``, then two skip blocks, each doubling the resolution
    (the first keeps it when ``first_block_up`` is 1).

    Args:
        channels: feature channels of the rendered image (32).
        block_channels: output channels of the two blocks, e.g. (256, 128) for Hybrid8XDC.
        input_resolution: size the feature image is resized to before the blocks.
        img_resolution: output size, ``2 * first_block_up * input_resolution``.
    """

    def __init__(
        self,
        channels: int,
        img_resolution: int,
        sr_num_fp16_res: int,
        sr_antialias: bool,
        block_channels: tuple[int, int],
        input_resolution: int,
        first_block_up: int = 2,
        w_dim: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = None,
        channel_base: int | None = None,
        channel_max: int | None = None,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution != 2 * first_block_up * input_resolution:
            raise ValueError(
                f"{type(self).__name__}: output resolution must be {2 * first_block_up} × {input_resolution}, found {img_resolution}"
            )
        use_fp16 = sr_num_fp16_res > 0
        self.input_resolution = input_resolution
        self.sr_antialias = sr_antialias
        clamp = 256 if use_fp16 else None
        self.block0 = SynthesisBlock(
            channels, block_channels[0], w_dim=w_dim, resolution=first_block_up * input_resolution, img_channels=3,
            is_last=False, use_fp16=use_fp16, conv_clamp=clamp, up=first_block_up, **block_kwargs,
        )
        self.block1 = SynthesisBlock(
            block_channels[0], block_channels[1], w_dim=w_dim, resolution=img_resolution, img_channels=3,
            is_last=True, use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs,
        )

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """rgb ``(B, 3, r, r)``, features ``(B, 32, r, r)``, ws ``(B, num_ws, 512)`` → ``(B, 3, H, W)``."""
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        if x.shape[-1] != self.input_resolution:
            size = (self.input_resolution, self.input_resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return rgb


class SuperresolutionHybrid8XDC(SuperresolutionHybrid):
    """EG3D's FFHQ-512 module: 64² (resized to 128²) → 256² (256 ch) → 512² (128 ch)."""

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool, **kwargs) -> None:
        super().__init__(channels, img_resolution, sr_num_fp16_res, sr_antialias, block_channels=(256, 128), input_resolution=128, **kwargs)


class SuperresolutionHybrid8X(SuperresolutionHybrid):
    """EG3D's lighter 512² module: 128 → 256² (128 ch) → 512² (64 ch)."""

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool, **kwargs) -> None:
        super().__init__(channels, img_resolution, sr_num_fp16_res, sr_antialias, block_channels=(128, 64), input_resolution=128, **kwargs)
        # Unused by the forward pass, but part of the release's state dict for this class.
        self.register_buffer("resample_filter", fir_filter())


class SuperresolutionTiny4X(SuperresolutionHybrid):
    """The tiny preset's module: 32² → 64² (32 ch) → 128² (16 ch), for CPU training and tests."""

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool, **kwargs) -> None:
        super().__init__(
            channels, img_resolution, sr_num_fp16_res, sr_antialias,
            block_channels=(32, 16), input_resolution=img_resolution // 4, **kwargs,
        )


class SuperresolutionTiny2X(SuperresolutionHybrid):
    """The tiny preset's module for a 64² neural rendering: 64² (32 ch, same size) → 128² (32 ch).

    Its first block keeps the resolution, so the detail of the 64² rendering reaches the output
    instead of being resized away (as a 4× module on a 32² input would).
    """

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool, **kwargs) -> None:
        super().__init__(
            channels, img_resolution, sr_num_fp16_res, sr_antialias,
            block_channels=(32, 32), input_resolution=img_resolution // 2, first_block_up=1, **kwargs,
        )


SUPERRESOLUTION_MODULES = {
    cls.__name__: cls for cls in (SuperresolutionHybrid8XDC, SuperresolutionHybrid8X, SuperresolutionTiny4X, SuperresolutionTiny2X)
}


def superresolution_class(name: str) -> type[SuperresolutionHybrid]:
    """Resolve a module by class name; the release's dotted paths (``models.superresolution.X``) work too."""
    class_name = name.rsplit(".", 1)[-1]
    if class_name not in SUPERRESOLUTION_MODULES:
        raise ValueError(f"superresolution_module {name!r}: expected one of {sorted(SUPERRESOLUTION_MODULES)}")
    return SUPERRESOLUTION_MODULES[class_name]
