"""EG3D tri-plane generator G_eg: StyleGAN2 backbone → tri-plane → volume rendering → super-resolution.

The constructor takes the release's keyword arguments and the state-dict names are the release's,
so NVIDIA's FFHQ weights and OTAvatar's checkpoints load with ``strict=True``. The pipeline is
also exposed in stages (planes, rendering, super-resolution) so that the animator can reuse
planes across camera changes.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from otavatar.models.rendering.decoder import OSGDecoder
from otavatar.models.rendering.rays import ray_bundle
from otavatar.models.rendering.renderer import ImportanceRenderer
from otavatar.models.stylegan2 import StyleGAN2Backbone
from otavatar.models.superresolution import superresolution_class

PLANE_CHANNELS = 32


class TriPlaneGenerator(nn.Module):
    """G_eg. ws ``(B, num_ws, 512)`` and a camera label p ``(B, 25)`` → images.

    Args:
        z_dim, c_dim, w_dim, img_resolution, img_channels: as in the release.
        sr_num_fp16_res: > 0 runs super-resolution in fp16 on CUDA (clamped to ±256).
        mapping_kwargs: MappingNetwork options (FFHQ: ``num_layers=2``).
        rendering_kwargs: the release's rendering options (depth samples, ray range, box_warp,
            ``superresolution_module`` by class name or the release's dotted path, ...).
        sr_kwargs: super-resolution block options.
        plane_resolution: tri-plane size (256 in the release; the tiny preset uses less).
        neural_rendering_resolution: default number of rays per side (64 for FFHQ-512).
        **synthesis_kwargs: channel_base, channel_max, num_fp16_res, conv_clamp, ...
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        sr_num_fp16_res: int = 0,
        mapping_kwargs: dict | None = None,
        rendering_kwargs: dict | None = None,
        sr_kwargs: dict | None = None,
        plane_resolution: int = 256,
        neural_rendering_resolution: int = 64,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        rendering_kwargs = dict(rendering_kwargs or {})
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.rendering_kwargs = rendering_kwargs
        self.neural_rendering_resolution = neural_rendering_resolution
        # Autocast dtype of the synthesis and super-resolution convolutions (set by otavatar.speed.speed_mode);
        # None leaves them to the caller's autocast.
        self.autocast_dtype: torch.dtype | None = None
        self.renderer = ImportanceRenderer()
        self.backbone = StyleGAN2Backbone(
            z_dim, c_dim, w_dim, img_resolution=plane_resolution, img_channels=3 * PLANE_CHANNELS,
            mapping_kwargs=mapping_kwargs, **synthesis_kwargs,
        )
        sr_class = superresolution_class(rendering_kwargs["superresolution_module"])
        self.superresolution = sr_class(
            channels=PLANE_CHANNELS, img_resolution=img_resolution, sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rendering_kwargs["sr_antialias"], **(sr_kwargs or {}),
        )
        self.decoder = OSGDecoder(
            PLANE_CHANNELS, {"decoder_lr_mul": rendering_kwargs.get("decoder_lr_mul", 1), "decoder_output_dim": PLANE_CHANNELS}
        )

    @property
    def num_ws(self) -> int:
        return self.backbone.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean latent, ``(512,)``: the starting point of every inversion."""
        return self.backbone.mapping.w_avg

    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """z ``(B, 512)``, conditioning camera c ``(B, 25)`` → ws ``(B, num_ws, 512)``."""
        if self.rendering_kwargs["c_gen_conditioning_zero"]:
            c = torch.zeros_like(c)
        # The release multiplies by get('c_scale', 0): a missing key zeroes the conditioning.
        c = c * self.rendering_kwargs.get("c_scale", 0)
        return self.backbone.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def synthesize_planes(self, ws: torch.Tensor, noise_mode: str = "const", **synthesis_kwargs) -> torch.Tensor:
        """ws ``(B, num_ws, 512)`` → tri-plane ``(B, 96, R, R)`` (three 32-channel planes).

        Under fp16 the backbone runs in fp32: EG3D trained it in fp32 without a conv clamp
        (num_fp16_res 0, conv_clamp None), so nothing keeps its activations within fp16's range.
        bf16 has fp32's range, and autocast applies to it as usual.
        """
        with self._convolution_precision(ws.device.type, backbone=True):
            return self.backbone.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)

    def sample_points(self, planes: torch.Tensor, coordinates: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoder at world points ``(B, M, 3)`` of planes ``(B, 96, R, R)``: ``rgb (B, M, 32)`` (features;
        the first three are the colour) and raw (pre-activation) ``sigma (B, M, 1)``.

        fp32 under autocast, as :meth:`render_planes`: the TV regulariser compares points 0.004 apart.
        """
        with torch.autocast(planes.device.type, enabled=False):
            return self.renderer.run_model(self._split_planes(planes.float()), self.decoder, coordinates.float(), self.rendering_kwargs)

    def sample_density(self, planes: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
        """Raw (pre-activation) density ``(B, M, 1)`` at world points ``(B, M, 3)`` of planes ``(B, 96, R, R)``, in fp32."""
        return self.sample_points(planes, coordinates)["sigma"]

    def render_planes(
        self,
        planes: torch.Tensor,
        camera_label: torch.Tensor,
        neural_rendering_resolution: int | None = None,
        deterministic: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Volume-render a tri-plane from camera p.

        Args:
            planes: ``(B, 96, R, R)``.
            camera_label: ``(B, 25)``.
            neural_rendering_resolution: rays per side r (default: the generator's, 64 for FFHQ).
            deterministic: no stratified jitter, importance ``u = linspace(0, 1, N)``.

        Returns:
            ``image_raw (B, 3, r, r)``, ``image_feature (B, 32, r, r)``, ``image_depth (B, 1, r, r)``.
        """
        resolution = neural_rendering_resolution or self.neural_rendering_resolution
        if planes.shape[0] != camera_label.shape[0]:
            raise ValueError(f"render: {planes.shape[0]} tri-planes but {camera_label.shape[0]} camera labels")
        # The renderer stays fp32 under autocast: densities feed exp/cumprod, and it is a small share of the work.
        with torch.autocast(planes.device.type, enabled=False):
            origins, directions = ray_bundle(camera_label.float(), resolution)
            features, depth, _ = self.renderer(
                self._split_planes(planes.float()), self.decoder, origins, directions, self.rendering_kwargs,
                deterministic=deterministic,
            )
        batch = planes.shape[0]
        feature_image = features.permute(0, 2, 1).reshape(batch, features.shape[-1], resolution, resolution).contiguous()
        depth_image = depth.permute(0, 2, 1).reshape(batch, 1, resolution, resolution)
        return {"image_raw": feature_image[:, :3], "image_feature": feature_image, "image_depth": depth_image}

    def render_image(
        self, planes: torch.Tensor, ws: torch.Tensor, camera_label: torch.Tensor, neural_rendering_resolution: int | None = None,
        deterministic: bool = False, super_resolve: bool = True, **block_kwargs,
    ) -> dict[str, torch.Tensor]:
        """Tri-planes ``(B, 3·32, S, S)`` of ws ``(B, num_ws, 512)`` seen from p ``(B, 25)``: :meth:`render_planes`'s
        outputs and, with ``super_resolve``, ``image (B, 3, H, W)`` (:meth:`super_resolve`)."""
        out = self.render_planes(planes, camera_label, neural_rendering_resolution, deterministic)
        if super_resolve:
            out["image"] = self.super_resolve(out["image_raw"], out["image_feature"], ws, **block_kwargs)
        return out

    def super_resolve(self, image_raw: torch.Tensor, image_feature: torch.Tensor, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        """Raw image ``(B, 3, r, r)`` + features ``(B, 32, r, r)`` + ws ``(B, num_ws, 512)`` → ``(B, 3, H, W)``."""
        with self._convolution_precision(ws.device.type):
            return self.superresolution(
                image_raw, image_feature, ws, noise_mode=self.rendering_kwargs["superresolution_noise_mode"], **block_kwargs
            )

    def _convolution_precision(self, device_type: str, backbone: bool = False) -> contextlib.AbstractContextManager:
        """Autocast for the convolutions: :attr:`autocast_dtype`, else the caller's; fp32 for the backbone instead of fp16."""
        dtype = self.autocast_dtype
        if dtype is None and torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
        if backbone and dtype == torch.float16:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=dtype) if self.autocast_dtype is not None else contextlib.nullcontext()

    def synthesis(
        self,
        ws: torch.Tensor,
        c: torch.Tensor,
        neural_rendering_resolution: int | None = None,
        noise_mode: str = "const",
        deterministic: bool = False,
        planes: torch.Tensor | None = None,
        **block_kwargs,
    ) -> dict[str, torch.Tensor]:
        """ws ``(B, num_ws, 512)``, camera c ``(B, 25)`` → ``image (B, 3, H, W)``, ``image_raw``, ``image_depth``, ``image_feature``, ``planes``.

        Pass ``planes`` computed earlier from the same ws to skip the synthesis network.
        """
        if planes is None:
            planes = self.synthesize_planes(ws, noise_mode=noise_mode, **block_kwargs)
        out = self.render_image(planes, ws, c, neural_rendering_resolution, deterministic, **block_kwargs)
        out["planes"] = planes
        return out

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs,
    ) -> dict[str, torch.Tensor]:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, c, **synthesis_kwargs)

    @staticmethod
    def _split_planes(planes: torch.Tensor) -> torch.Tensor:
        return planes.view(planes.shape[0], 3, PLANE_CHANNELS, planes.shape[-2], planes.shape[-1])
