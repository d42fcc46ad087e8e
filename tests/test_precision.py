"""Reduced precision on the GPU paths, emulated on the CPU: which dtype the fast mode picks, and the
parts EG3D keeps in fp32 (tri-plane backbone under fp16, renderer, density regularisers)."""

import pytest
import torch
import torch.nn.functional as F

from otavatar.models.rendering.decoder import Softplus
from otavatar.models.stylegan2 import FP16_CLAMP, SynthesisLayer
from otavatar.config import compose_config
from otavatar.speed import SPEED_MODES, CudaSettings, configure_cuda, native_low_precision
from tests.helpers import micro_animator

LARGE = [-200.0, -30.0, -20.0, 0.0, 17.9, 18.0, 19.99, 20.0, 20.01, 90.0, 200.0, 1000.0, 60000.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softplus_is_finite_and_matches_torch_in_half_precisions(dtype):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(5000) * 8, torch.tensor(LARGE)]).to(dtype)
    eps = torch.finfo(dtype).eps
    with torch.no_grad():
        ours = Softplus()(x)
    assert ours.dtype == dtype and torch.isfinite(ours).all()
    torch.testing.assert_close(ours.float(), F.softplus(x).float(), rtol=eps, atol=eps)
    leaf = x.clone().requires_grad_()
    out = Softplus()(leaf)
    (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out.detach().float(), F.softplus(x).float(), rtol=eps, atol=eps)
    torch.testing.assert_close(grad.float(), torch.sigmoid(x.float()), rtol=eps, atol=eps)


@pytest.mark.parametrize("native_bf16, expected", [(True, "bfloat16"), (False, "float16")])
def test_fast_mode_uses_bf16_where_the_gpu_has_it(monkeypatch, native_bf16, expected):
    calls = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return native_bf16 or including_emulation  # emulated bf16 is "supported" everywhere, but slow

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert native_low_precision(torch.device("cuda")) == expected
    assert SPEED_MODES["fast"].resolved("cuda:0").precision == expected
    assert calls and not any(calls), "the check must ask for native bf16, not emulation"


def test_fp16_layers_without_a_clamp_are_clamped():
    torch.manual_seed(0)
    layer = SynthesisLayer(8, 8, w_dim=16, resolution=4, conv_clamp=None)
    x, w = torch.randn(1, 8, 4, 4) * 1e4, torch.randn(1, 16)  # activations beyond fp16's ±65504
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.float16):
            out = layer(x, w, noise_mode="none")
        full = layer(x, w, noise_mode="none")
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all() and out.abs().max() == FP16_CLAMP
    assert full.abs().max() > FP16_CLAMP, "fp32 keeps the preset's clamp (none)"


def test_triplane_backbone_stays_fp32_under_fp16_but_not_bf16_autocast():
    generator = micro_animator().generator.eval()
    ws = generator.w_avg.expand(1, generator.num_ws, -1) + torch.randn(1, generator.num_ws, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = generator.synthesize_planes(ws)
        with torch.autocast("cpu", dtype=torch.float16):
            under_fp16 = generator.synthesize_planes(ws)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_bf16 = generator.synthesize_planes(ws)
    assert torch.equal(under_fp16, exact), "EG3D keeps this backbone in fp32 (num_fp16_res 0, no conv clamp)"
    assert not torch.equal(under_bf16, exact), "bf16 has fp32's range: the backbone may use it"


def test_density_samples_stay_fp32_under_autocast():
    generator = micro_animator().generator.eval()
    g = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 96, 16, 16, generator=g)
    points = torch.rand(2, 500, 3, generator=g) - 0.5
    nearby = points + torch.randn(2, 500, 3, generator=g) * generator.rendering_kwargs["density_reg_p_dist"]
    coordinates = torch.cat([points, nearby], dim=1)
    with torch.no_grad():
        exact = generator.sample_density(planes, coordinates)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_bf16 = generator.sample_density(planes, coordinates)
    assert under_bf16.dtype == torch.float32
    assert torch.equal(under_bf16, exact)


@pytest.fixture
def restore_cuda_flags():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    yield
    torch.backends.cudnn.benchmark = saved[0]
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved[1:]


def test_cuda_defaults_autotune_convolutions_and_keep_fp32_exact(restore_cuda_flags):
    """PyTorch's default runs cuDNN convolutions in TF32 on Ampere+, which breaks parity with the release."""
    configure_cuda()
    assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cuda.matmul.fp32_precision == "ieee" and torch.backends.cudnn.conv.fp32_precision == "ieee"
    configure_cuda(CudaSettings(tf32=True))
    assert torch.backends.cuda.matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"


@pytest.mark.parametrize("config_name", ["train", "pretrain"])
def test_training_configs_hold_the_cuda_defaults(config_name):
    assert CudaSettings(**compose_config(config_name=config_name).cuda) == CudaSettings()


def test_a_speed_mode_sets_the_generators_precision_only():
    """The fp16 mode (GPUs without bf16) emulated on the CPU: the backbone stays fp32, the
    super-resolution runs in fp16, and nothing else in the block (losses, metric networks) is autocast."""
    from otavatar.camera import frontal_camera
    from otavatar.metrics.image import psnr
    from otavatar.speed import SpeedMode, speed_mode

    generator = micro_animator().generator.eval()
    ws = generator.w_avg.expand(1, generator.num_ws, -1) + torch.randn(1, generator.num_ws, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = generator.synthesis(ws, frontal_camera(1), deterministic=True)
        with speed_mode(generator, SpeedMode("fp16", precision="float16")):
            assert not torch.is_autocast_enabled("cpu")
            half = generator.synthesis(ws, frontal_camera(1), deterministic=True)
    assert generator.autocast_dtype is None
    assert torch.equal(half["planes"], exact["planes"]) and torch.equal(half["image_raw"], exact["image_raw"])
    assert half["image"].dtype == torch.float32 and not torch.equal(half["image"], exact["image"])
    assert psnr(half["image"], exact["image"]).item() > 40
