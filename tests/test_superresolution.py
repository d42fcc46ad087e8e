"""The tiny preset's super-resolution module."""

import torch

from otavatar.models.superresolution import SuperresolutionTiny2X


def test_tiny2x_keeps_the_rendering_size_then_doubles_it_and_leaves_its_inputs_alone():
    torch.manual_seed(0)
    module = SuperresolutionTiny2X(channels=32, img_resolution=128, sr_num_fp16_res=0, sr_antialias=True).eval()
    assert module.block0.resolution == 64 and module.block1.resolution == 128
    rgb, features, ws = torch.randn(2, 3, 64, 64), torch.randn(2, 32, 64, 64), torch.randn(2, 12, 512)
    before = rgb.clone()
    with torch.no_grad():
        image = module(rgb, features, ws, noise_mode="none")
    assert image.shape == (2, 3, 128, 128)
    # A 64² rendering reaches the first block as it is: adding to it in place would change the caller's raw image.
    assert torch.equal(rgb, before)
    with torch.enable_grad():
        assert torch.allclose(module(rgb, features, ws, noise_mode="none"), image, atol=1e-5)
