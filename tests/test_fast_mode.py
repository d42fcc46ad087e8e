"""The speed work on the animation path: exact rewrites equal the release's maths, the fast mode is close."""

import math

import pytest
import torch
import torch.nn.functional as F

from otavatar.camera import frontal_camera
from otavatar.config import build_generator, load_model_preset
from otavatar.metrics.image import psnr
from otavatar.models.rendering.decoder import Softplus
from otavatar.models.rendering.marching import march_weights, ray_march, ray_march_unsorted
from otavatar.models import stylegan2
from otavatar.models.stylegan2 import bias_act, fir_filter, modulated_conv2d
from otavatar.speed import SPEED_MODES, SpeedMode, native_low_precision, speed_mode


def release_modulated_conv2d(x, weight, styles, noise, up, f, bias, gain, demodulate=True):
    """The release's fused path: grouped conv with per-sample weights, noise, then bias and gain."""
    batch, in_channels = x.shape[:2]
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, *weight.shape[2:])
    if up == 2:
        out_per, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
        w = w.reshape(batch, out_per, in_channels, kh, kw).transpose(1, 2).reshape(batch * in_channels, out_per, kh, kw)
        x = F.conv_transpose2d(x, w, stride=2, groups=batch)
        fir = (f * 4).flip([0, 1])[None, None].repeat(x.shape[1], 1, 1, 1)
        x = F.conv2d(x, fir, padding=1, groups=x.shape[1])
    else:
        x = F.conv2d(x, w, padding=weight.shape[-1] // 2, groups=batch)
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return (x + bias.reshape(1, -1, 1, 1)) * gain


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_with_folded_bias_and_gain_matches_the_release(up, fused):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    weight, styles, bias = torch.randn(5, 8, 3, 3), torch.randn(2, 8), torch.randn(5)
    noise = torch.randn(6 * up, 6 * up) * 0.3
    expected = release_modulated_conv2d(x, weight, styles, noise, up, fir_filter(), bias, math.sqrt(2))
    out = modulated_conv2d(x, weight, styles, noise, up, fir_filter(), fused_modconv=fused, bias=bias, gain=math.sqrt(2))
    assert out.shape == expected.shape == (2, 5, 6 * up, 6 * up)
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize("up", [1, 2])
def test_grouped_batch_path_matches_the_release(up, monkeypatch):
    """CUDA batches use one grouped convolution; exercise that path on the CPU."""
    monkeypatch.setattr(stylegan2, "_per_sample_convolutions", lambda x: False)
    torch.manual_seed(1)
    x, weight, styles, bias = torch.randn(3, 4, 5, 5), torch.randn(6, 4, 3, 3), torch.randn(3, 4), torch.randn(6)
    expected = release_modulated_conv2d(x, weight, styles, None, up, fir_filter(), bias, 0.5)
    out = modulated_conv2d(x, weight, styles, None, up, fir_filter(), bias=bias, gain=0.5)
    assert (out - expected).abs().max() < 1e-5


def test_fused_modconv_gradients_match_non_fused():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, requires_grad=True)
    styles, bias, noise = torch.randn(2, 4), torch.randn(3), torch.randn(5, 5)
    grads = []
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, noise, fused_modconv=fused, bias=bias, gain=2.0)
        out = bias_act(out, None, "lrelu", gain=1, clamp=4.0, inplace=True)
        grads.append(torch.autograd.grad(out.square().sum(), (x, weight)))
    for fused_grad, plain_grad in zip(*grads):
        assert (fused_grad - plain_grad).abs().max() < 1e-4


def test_bias_act_in_place_only_when_autograd_allows():
    x = torch.randn(2, 3, 4, 4)
    bias = torch.randn(3)
    expected = (F.leaky_relu(x + bias.view(1, 3, 1, 1), 0.2) * math.sqrt(2)).clamp(-1, 1)
    with torch.no_grad():
        copy = x.clone()
        out = bias_act(copy, bias, "lrelu", clamp=1.0, inplace=True)
    assert out.data_ptr() == copy.data_ptr() and torch.equal(out, expected)
    leaf = x.clone().requires_grad_()
    y = leaf * 1
    out = bias_act(y, bias, "lrelu", clamp=1.0, inplace=True)
    assert out.data_ptr() != y.data_ptr() and torch.equal(out, expected)
    out.sum().backward()
    assert leaf.grad is not None


def test_vectorised_softplus_matches_torch():
    x = torch.cat([torch.randn(10_000) * 8, torch.tensor([-200.0, -30.0, -20.0, 0.0, 19.99, 20.0, 20.01, 90.0, 200.0])])
    with torch.no_grad():
        fast = Softplus()(x)
    assert torch.isfinite(fast).all()
    assert (fast - F.softplus(x)).abs().max() < 2e-6
    x.requires_grad_()
    grad = torch.rand_like(x)
    (ours,) = torch.autograd.grad(Softplus()(x), x, grad)
    (torch_grad,) = torch.autograd.grad(F.softplus(x), x, grad)
    assert (ours - torch_grad).abs().max() < 1e-6
    assert torch.autograd.gradcheck(Softplus(), torch.randn(50, dtype=torch.float64, requires_grad=True) * 5)


def test_compositing_without_sorting_colours_equals_sorted_marching():
    torch.manual_seed(0)
    batch, rays, coarse, fine, channels = 2, 7, 6, 5, 4
    depths = torch.cat([torch.linspace(2.25, 3.3, coarse).expand(batch, rays, -1), 2.25 + torch.rand(batch, rays, fine)], -1)
    depths = depths.unsqueeze(-1)
    densities = torch.randn(batch, rays, coarse + fine, 1) * 3
    colors = torch.rand(batch, rays, coarse + fine, channels)
    sorted_depths, order = torch.sort(depths, dim=-2)
    expected = ray_march(
        torch.gather(colors, -2, order.expand(-1, -1, -1, channels)), torch.gather(densities, -2, order), sorted_depths
    )
    rgb, depth, opacity = ray_march_unsorted((colors[:, :, :coarse], colors[:, :, coarse:]), densities, depths)
    assert (rgb - expected[0]).abs().max() < 1e-5
    assert (depth - expected[1]).abs().max() < 1e-5
    assert (opacity - expected[2].sum(2)).abs().max() < 1e-6
    assert torch.equal(march_weights(densities[:, :, :coarse], depths[:, :, :coarse]), ray_march(
        colors[:, :, :coarse], densities[:, :, :coarse], depths[:, :, :coarse])[2])


@pytest.fixture(scope="module")
def tiny_generator():
    torch.manual_seed(0)
    return build_generator(load_model_preset("tiny").generator).eval()


def test_speed_mode_sets_and_restores_the_generator(tiny_generator):
    before = dict(tiny_generator.rendering_kwargs), tiny_generator.neural_rendering_resolution
    mode = SpeedMode("test", sample_scale=0.5, neural_rendering_resolution=16, precision="float32")
    assert mode.settings(tiny_generator)["coarse_samples"] == 12
    with pytest.raises(RuntimeError, match="inside"):
        with speed_mode(tiny_generator, mode):
            assert tiny_generator.rendering_kwargs["depth_resolution_importance"] == 12
            assert tiny_generator.neural_rendering_resolution == 16
            raise RuntimeError("inside")
    assert (dict(tiny_generator.rendering_kwargs), tiny_generator.neural_rendering_resolution) == before


def test_fast_mode_is_close_to_exact_on_the_tiny_preset(tiny_generator):
    ws = tiny_generator.w_avg.expand(1, tiny_generator.num_ws, -1) + torch.randn(1, tiny_generator.num_ws, 512)
    camera = frontal_camera(1)
    with torch.no_grad():
        exact = tiny_generator.synthesis(ws, camera, deterministic=True)
        with speed_mode(tiny_generator, SPEED_MODES["fast"]) as mode:
            fast = tiny_generator.synthesis(ws, camera, deterministic=True)
    assert mode.precision in ("bfloat16", "float32")
    assert fast["image"].dtype == torch.float32 and fast["image"].shape == exact["image"].shape
    assert fast["image_raw"].dtype == torch.float32
    assert 40 < psnr(fast["image"], exact["image"]).item() < float("inf")


def test_precision_resolution_and_validation():
    # The CUDA choice (bf16 or fp16) is tested in tests/test_precision.py.
    assert SPEED_MODES["fast"].resolved("cpu").precision == native_low_precision(torch.device("cpu"))
    assert SPEED_MODES["exact"].resolved("cpu").precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        SpeedMode("bad", precision="int8")
    with pytest.raises(ValueError, match="sample_scale"):
        SpeedMode("bad", sample_scale=2)
