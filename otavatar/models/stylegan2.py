"""StyleGAN2 mapping and synthesis networks in plain PyTorch, as used by EG3D.

Parameter and buffer names match NVlabs' ``networks_stylegan2.py`` so released checkpoints load
with ``strict=True``. The custom CUDA ops of the release (bias_act, upfirdn2d) are replaced by
their reference semantics: the [1, 3, 3, 1] FIR upsampling is a depthwise transposed conv.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
# The release's conv_clamp for its fp16 layers; layers built without a clamp get it when they run in
# fp16 (under autocast), whose range ends at ±65504.
FP16_CLAMP = 256.0


def activation_clamp(conv_clamp: float | None, x: torch.Tensor) -> float | None:
    """The clamp of a layer whose output is ``x``: its own, or :data:`FP16_CLAMP` for unclamped fp16 output."""
    if conv_clamp is None and x.dtype == torch.float16:
        return FP16_CLAMP
    return conv_clamp


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by ``gain``, clamp to ±``clamp``.

    ``inplace=True`` lets a caller that owns ``x`` (a fresh conv output) skip the temporaries; it is
    honoured only when autograd does not need ``x``.
    """
    if activation not in ACTIVATION_GAINS:
        raise ValueError(f"unsupported activation {activation!r}; expected 'linear' or 'lrelu'")
    gain = ACTIVATION_GAINS[activation] if gain is None else gain
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        if bias is not None:
            x.add_(bias.reshape([1, -1] + [1] * (x.dim() - 2)))
        if activation == "lrelu":
            F.leaky_relu_(x, 0.2)
        if gain != 1:
            x.mul_(gain)
        if clamp is not None and clamp >= 0:
            x.clamp_(-clamp, clamp)
        return x
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.dim() - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The activation layout the convolutions run fastest in for ``x``'s device and dtype.

    oneDNN (CPU) and tensor-core (CUDA half/bfloat16) convolutions work on NHWC natively; given
    NCHW they reorder every input and output.
    """
    if x.device.type == "cpu" or x.dtype in (torch.float16, torch.bfloat16):
        return torch.channels_last
    return torch.contiguous_format


def fir_filter(taps: list[float] | None = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable FIR kernel as a normalised 2-D outer product, ``(len(taps), len(taps))``."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int, gain: float, dtype: torch.dtype) -> torch.Tensor:
    # The release convolves with the flipped filter; [1,3,3,1] is symmetric, but flip anyway so any
    # checkpoint-supplied filter behaves the same.
    return (f * gain).flip([0, 1]).to(dtype)[None, None].repeat(channels, 1, 1, 1)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Zero-insertion ×2 upsampling followed by the FIR filter (gain 4): ``(B, C, H, W)`` → ``(B, C, 2H, 2W)``.

    Equal to the release's ``upfirdn2d.upsample2d`` for a 4-tap filter: a depthwise transposed
    convolution with stride 2 and padding 1.
    """
    channels = x.shape[1]
    weight = _depthwise(f, channels, 4.0, x.dtype)
    return F.conv_transpose2d(x, weight, stride=2, padding=1, groups=channels)


def _conv_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int, bias: torch.Tensor | None) -> torch.Tensor:
    """3×3 convolution with ×2 upsampling, as the release's ``conv2d_resample(up=2, padding=1)``.

    Transposed conv (stride 2, weight transposed but not flipped) gives 2H+1 pixels; the FIR filter
    with padding 1 and gain 4 brings it to exactly 2H. The bias rides on the FIR convolution.
    """
    out_channels, in_per_group, kh, kw = weight.shape
    weight = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    weight = weight.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    x = F.conv_transpose2d(x, weight, stride=2, groups=groups)
    return F.conv2d(x, _depthwise(f, x.shape[1], 4.0, x.dtype), bias, padding=1, groups=x.shape[1])


def _conv(x: torch.Tensor, weight: torch.Tensor, up: int, f: torch.Tensor | None, groups: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    if up == 2:
        return _conv_up2(x, weight, f, groups, bias)
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=groups)


def _per_sample_convolutions(x: torch.Tensor) -> bool:
    """Plain per-sample convolutions instead of one grouped convolution over the batch?

    They keep the caller's memory format (NHWC on CPU), and oneDNN has no fast path for a grouped
    convolution with a few huge groups; cuDNN does, so CUDA batches stay grouped.
    """
    return x.shape[0] == 1 or x.device.type == "cpu"


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused_modconv: bool = True,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution: ``gain · (conv(x, w ⊙ s, demodulated) + noise + bias)``.

    Args:
        x: ``(B, C_in, H, W)`` input.
        weight: ``(C_out, C_in, k, k)`` shared weight.
        styles: ``(B, C_in)`` per-sample modulation.
        noise: broadcastable to the output, added after the (de)modulated conv.
        up: 1 or 2.
        fused_modconv: one convolution with per-sample weights (inference; grouped when B > 1) or
            modulate the activations instead (training); mathematically identical.
        bias: ``(C_out,)``, added with the noise; the fused path adds it inside the convolution.
        gain: output scale; the fused path folds it into the weights, bias and noise.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # The release pre-normalises in fp16 to avoid overflow; demodulation cancels the scale.
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = _conv(x, weight.to(x.dtype), up, resample_filter, groups=1)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        if bias is not None:
            x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x * gain if gain != 1 else x

    scale = dcoefs * gain if demodulate else torch.full_like(w[:, :, 0, 0, 0], gain)
    w = (w * scale.reshape(batch_size, -1, 1, 1, 1)).to(x.dtype)
    if bias is not None:
        bias = (bias * gain).to(x.dtype)
    if _per_sample_convolutions(x):
        convs = [_conv(x[i : i + 1], w[i], up, resample_filter, groups=1, bias=bias) for i in range(batch_size)]
        x = convs[0] if batch_size == 1 else torch.cat(convs)
    else:
        x = x.reshape(1, -1, *x.shape[2:])
        w = w.reshape(-1, in_channels, kh, kw)
        x = _conv(x, w, up, resample_filter, groups=batch_size, bias=None if bias is None else bias.repeat(batch_size))
        x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        noise = noise.to(x.dtype) * gain if gain != 1 else noise.to(x.dtype)
        x = x.add_(noise) if not (torch.is_grad_enabled() and x.requires_grad) else x + noise
    return x


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: ``W_eff = weight · lr_multiplier / √in``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z (and camera conditioning c) → w, broadcast to ``num_ws`` layers, with w_avg tracking."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """``z (B, z_dim)``, ``c (B, c_dim)`` → ws ``(B, num_ws, w_dim)``."""
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally ×2 upsampling) + noise + bias + leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.act_gain = ACTIVATION_GAINS[activation]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True, gain: float = 1) -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode: expected 'random', 'const' or 'none', found {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        # Leaky ReLU is positively homogeneous, so the activation gain moves into the convolution.
        x = modulated_conv2d(
            x, self.weight, styles, noise, self.up, self.resample_filter, fused_modconv=fused_modconv,
            bias=self.bias, gain=self.act_gain * gain,
        )
        clamp = activation_clamp(self.conv_clamp, x)
        act_clamp = clamp * gain if clamp is not None else None
        return bias_act(x, None, self.activation, gain=1, clamp=act_clamp, inplace=True)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv without demodulation + bias: features → output channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, bias=self.bias)
        return bias_act(x, None, clamp=activation_clamp(self.conv_clamp, x), inplace=True)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: [conv0 ×up], conv1, torgb (``up`` 2, or 1 to keep the size)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: list[float] = (1, 3, 3, 1),
        conv_clamp: float | None = 256,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = True,
        up: int = 2,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"SynthesisBlock: only the 'skip' architecture is used by EG3D, found {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.use_fp16 = use_fp16
        self.fused_modconv_default = fused_modconv_default
        self.up = up
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=up,
                resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | str | None = None,
        **layer_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws ``(B, num_conv + num_torgb, w_dim)``; returns features and the accumulated image."""
        w_iter = iter(ws.unbind(1))
        if ws.device.type != "cuda":
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training

        # Under autocast the convolutions choose their precision; casting here would only add copies.
        autocast = torch.is_autocast_enabled(ws.device.type)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        if not autocast:
            x = x.to(dtype)
        x = x.contiguous(memory_format=conv_memory_format(x))
        if self.in_channels != 0:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        if img is None:
            return x, y
        with torch.autocast(ws.device.type, enabled=False):
            # The skip image (the tri-plane in EG3D's backbone) accumulates in fp32, as in the release.
            if self.up == 1:  # img is the caller's tensor: never add in place
                return x, img + y
            img = upsample2d(img, self.resample_filter)
        return x, img.add_(y) if not (torch.is_grad_enabled() and (img.requires_grad or y.requires_grad)) else img + y


class SynthesisNetwork(nn.Module):
    """ws ``(B, num_ws, w_dim)`` → image ``(B, img_channels, R, R)`` (EG3D: the 96-channel tri-plane)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 4,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"SynthesisNetwork: resolution must be a power of two >= 4, found {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels, channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                is_last=is_last, use_fp16=res >= fp16_resolution, **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        if ws.dim() != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"synthesis: expected ws of shape (B, {self.num_ws}, {self.w_dim}), found {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        # Each block reads num_conv + num_torgb consecutive ws; torgb shares its w with the next conv0.
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img


class StyleGAN2Backbone(nn.Module):
    """Synthesis + mapping, registered in the release's order (synthesis first)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs,
    ) -> None:
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))
