"""Numerical parity of the EG3D generator with the public release (max absolute error)."""

import pytest
import torch

from otavatar.config import build_generator, load_model_preset
from otavatar.models.eg3d import TriPlaneGenerator


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def synthesis_output(reference, reference_generator):
    with torch.no_grad():
        return reference_generator.synthesis(reference["ws"], reference["c"], noise_mode="const", deterministic=True)


def test_state_dict_names_and_order_match_the_release(reference, reference_generator):
    assert list(reference_generator.state_dict()) == list(reference["state_dict"])


def test_mapping_parity(reference, reference_generator):
    with torch.no_grad():
        ws = reference_generator.mapping(
            reference["z"], reference["c"],
            truncation_psi=reference["truncation_psi"], truncation_cutoff=reference["truncation_cutoff"],
        )
    assert ws.shape == (2, 14, 512)
    assert max_error(ws, reference["ws"]) <= 1e-5


def test_planes_parity(reference, reference_generator):
    with torch.no_grad():
        planes = reference_generator.backbone.synthesis(reference["ws"], noise_mode="const")
    assert planes.shape == (2, 96, 256, 256)
    assert max_error(planes[:, :, ::4, ::4], reference["planes_stride4"]) <= 1e-4
    assert max_error(planes.mean(dim=(2, 3)), reference["planes_mean"]) <= 1e-4


def test_rendering_and_super_resolution_parity(reference, synthesis_output):
    assert synthesis_output["image"].shape == (2, 3, 512, 512)
    assert max_error(synthesis_output["image_raw"], reference["image_raw"]) <= 1e-4
    assert max_error(synthesis_output["image_depth"], reference["image_depth"]) <= 1e-4
    assert max_error(synthesis_output["image"], reference["image"]) <= 1e-3


def test_rendering_parity_with_gradients(reference, reference_generator):
    """Inversion and training run the renderer's gradient paths (autograd softplus, broadcast compositing).
    The stages of ``synthesis`` without super-resolution: it is most of the cost and none of what is checked here."""
    ws = reference["ws"].clone().requires_grad_()
    planes = reference_generator.synthesize_planes(ws, noise_mode="const")
    output = reference_generator.render_image(planes, ws, reference["c"], deterministic=True, super_resolve=False)
    assert max_error(output["image_raw"].detach(), reference["image_raw"]) <= 1e-4
    assert max_error(output["image_depth"].detach(), reference["image_depth"]) <= 1e-4
    output["image_raw"].square().mean().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_staged_rendering_equals_synthesis(reference, reference_generator, synthesis_output):
    with torch.no_grad():
        rendered = reference_generator.render_planes(synthesis_output["planes"], reference["c"], deterministic=True)
    assert torch.equal(rendered["image_raw"], synthesis_output["image_raw"])
    assert rendered["image_feature"].shape == (2, 32, 64, 64)


def test_non_fused_modconv_matches_fused(reference, reference_generator):
    """Training mode modulates activations instead of weights; the maths is the same."""
    ws = reference["ws"][:1]
    with torch.no_grad():
        fused = reference_generator.synthesize_planes(ws, fused_modconv=True)
        unfused = reference_generator.synthesize_planes(ws, fused_modconv=False)
    assert max_error(fused, unfused) <= 1e-4


def test_rendering_is_random_unless_deterministic(reference, reference_generator, synthesis_output):
    planes = synthesis_output["planes"][:1]
    camera = reference["c"][:1]
    with torch.no_grad():
        a = reference_generator.render_planes(planes, camera, neural_rendering_resolution=16)["image_raw"]
        b = reference_generator.render_planes(planes, camera, neural_rendering_resolution=16)["image_raw"]
        c = reference_generator.render_planes(planes, camera, neural_rendering_resolution=16, deterministic=True)["image_raw"]
        d = reference_generator.render_planes(planes, camera, neural_rendering_resolution=16, deterministic=True)["image_raw"]
    assert not torch.equal(a, b)
    assert torch.equal(c, d)


def test_full_preset_matches_the_release_manifest(eg3d_manifest):
    generator = TriPlaneGenerator(**eg3d_manifest["generator_kwargs"])
    shapes = {name: list(tensor.shape) for name, tensor in generator.state_dict().items()}
    assert shapes == eg3d_manifest["state_dict_shapes"]
    assert list(shapes) == list(eg3d_manifest["state_dict_shapes"])
    assert sum(p.numel() for p in generator.parameters()) == eg3d_manifest["num_parameters"] == 30_662_136
    assert generator.num_ws == 14


def test_config_preset_builds_the_release_architecture(eg3d_manifest):
    generator = build_generator(load_model_preset("eg3d_ffhq512").generator)
    shapes = {name: list(tensor.shape) for name, tensor in generator.state_dict().items()}
    assert shapes == eg3d_manifest["state_dict_shapes"]


def test_tiny_preset_renders_on_cpu(reference):
    tiny = load_model_preset("tiny").generator
    generator = build_generator(tiny).eval()
    ws = generator.w_avg.expand(1, generator.num_ws, -1) + torch.randn(1, generator.num_ws, 512) * 0.1
    camera = reference["c"][:1]
    with torch.no_grad():
        out = generator.synthesis(ws, camera)
    # The sizes the preset asks for (configs/model/tiny.yaml); three planes of 32 channels.
    assert out["image"].shape == (1, 3, tiny.img_resolution, tiny.img_resolution)
    assert out["image_raw"].shape == (1, 3, tiny.neural_rendering_resolution, tiny.neural_rendering_resolution)
    assert out["planes"].shape == (1, 96, tiny.plane_resolution, tiny.plane_resolution)
    assert torch.isfinite(out["image"]).all()


def test_bad_inputs_are_rejected(reference_generator):
    with pytest.raises(ValueError, match=r"expected ws of shape \(B, 14, 512\)"):
        reference_generator.synthesize_planes(torch.zeros(1, 10, 512))
    with pytest.raises(ValueError, match=r"camera label: expected shape \(B, 25\)"):
        reference_generator.render_planes(torch.zeros(1, 96, 8, 8), torch.zeros(1, 16))
    with pytest.raises(ValueError, match="superresolution_module"):
        TriPlaneGenerator(512, 25, 512, 512, 3, rendering_kwargs={"superresolution_module": "x.Nope", "sr_antialias": True})
