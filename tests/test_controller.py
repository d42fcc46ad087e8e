"""Motion controller and animator: parity with the public release."""

import pytest
import torch

from otavatar.models.animator import Animator
from otavatar.models.controller import MotionController


def test_controller_state_dict_matches_the_release(controller_manifest, reference_controller):
    shapes = {name: list(t.shape) for name, t in reference_controller.state_dict().items()}
    assert shapes == controller_manifest["state_dict_shapes"]


def test_parameter_counts_tied_and_untied(controller_manifest):
    tied = MotionController.from_reference_config(controller_manifest["controller_kwargs"])
    untied = MotionController.from_reference_config(controller_manifest["controller_kwargs"], tied_mlp=False)
    assert sum(p.numel() for p in tied.parameters()) == controller_manifest["num_parameters"] == 869_420
    assert sum(p.numel() for p in untied.parameters()) == 1_132_588
    assert list(tied.state_dict()) == list(untied.state_dict())


def test_untied_controller_loads_release_weights_and_behaves_the_same(reference):
    untied = MotionController.from_reference_config(reference["controller_kwargs"], tied_mlp=False).eval()
    untied.load_state_dict(reference["controller_state_dict"], strict=True)
    with torch.no_grad():
        assert (untied(reference["motion"]) - reference["w_x"]).abs().max() <= 1e-5


def test_motion_code_parity(reference, reference_controller):
    with torch.no_grad():
        w_x = reference_controller(reference["motion"])
        magnitudes = reference_controller.magnitudes(reference["motion"])
    assert w_x.shape == (2, 14, 512)
    assert (w_x - reference["w_x"]).abs().max() <= 1e-5
    assert (magnitudes - reference["controller_feat"]).abs().max() <= 1e-5


def test_codebook_is_orthonormal(reference_controller):
    q = reference_controller.direction()
    assert torch.allclose(q.t() @ q, torch.eye(20), atol=1e-5)


def test_codebook_scale_changes_how_fast_it_turns_not_where_it_starts():
    starts, turned = {}, {}
    for init_std in (1.0, 0.01):
        torch.manual_seed(0)
        codebook = MotionController(codebook_init_std=init_std).direction
        start = starts[init_std] = codebook().detach()
        optimizer = torch.optim.Adam(codebook.parameters(), lr=1e-3)
        torch.manual_seed(1)
        target = torch.randn(512, 20)
        for _ in range(5):
            optimizer.zero_grad()
            (codebook() * target).sum().neg().backward()
            optimizer.step()
        turned[init_std] = ((codebook() - start).norm() / start.norm()).item()
    assert torch.allclose(starts[1.0], starts[0.01], atol=1e-5)
    assert turned[0.01] > 20 * turned[1.0]


def test_output_scale_multiplies_the_motion_code_and_how_fast_it_grows():
    """w_x = s · (magnitudes @ Qᵀ); under Adam one step changes it s times as much as at scale 1."""
    torch.manual_seed(0)
    motion = torch.randn(3, 70, 27)
    codes, grown = {}, {}
    for scale in (1.0, 10.0):
        torch.manual_seed(1)
        controller = MotionController(num_ws=4, output_scale=scale)
        codes[scale] = controller(motion).detach()
        optimizer = torch.optim.Adam(controller.parameters(), lr=1e-3)
        controller(motion).sum().backward()
        optimizer.step()
        grown[scale] = (controller(motion).detach() - codes[scale]).norm().item()
    assert torch.allclose(codes[10.0], 10 * codes[1.0], rtol=1e-5, atol=1e-8)
    assert grown[10.0] == pytest.approx(10 * grown[1.0], rel=1e-3)
    with pytest.raises(ValueError, match="output_scale: expected a finite number > 0, found 0"):
        MotionController(output_scale=0)


def test_shared_offset_controller_gives_every_layer_the_same_code_and_equals_the_release_with_zero_layer_rows():
    """layer_offsets=False: w_x is one W offset on every layer, the release's C whose per-layer rows are zero."""
    torch.manual_seed(0)
    motion = torch.randn(3, 70, 27)
    shared = MotionController(num_ws=4, layer_offsets=False)
    w_x = shared(motion)
    assert w_x.shape == (3, 4, 512)
    assert torch.equal(w_x, w_x[:, :1].expand(-1, 4, -1))
    release = MotionController(num_ws=4)
    state = shared.state_dict()
    head = "mapping_Refine.10"
    state[f"{head}.weight"] = torch.cat([state[f"{head}.weight"], torch.zeros(4 * 20, 256)])
    state[f"{head}.bias"] = torch.cat([state[f"{head}.bias"], torch.zeros(4 * 20)])
    release.load_state_dict(state)
    assert torch.allclose(release(motion), w_x, atol=1e-6)


def test_controller_rejects_wrong_window():
    with pytest.raises(ValueError, match=r"expected motion of shape \(B, 70, 27\), found \(1, 70, 20\)"):
        MotionController()(torch.zeros(1, 70, 20))


@pytest.fixture(scope="module")
def animator(reference_generator, reference_controller):
    return Animator(reference_generator, reference_controller).eval()


@pytest.fixture(scope="module")
def animated(reference, animator):
    with torch.no_grad():
        return animator.render(reference["ws"][:, :1], reference["motion"], reference["c"], deterministic=True)


def test_animated_image_parity(reference, animated):
    assert (animated["image_raw"] - reference["animated_image_raw"]).abs().max() <= 1e-4
    assert (animated["image"] - reference["animated_image"]).abs().max() <= 1e-3


def test_w_plus_identity_code_gives_the_same_result(reference, animator, animated):
    identity_plus = reference["ws"][:, :1].repeat(1, 14, 1)
    with torch.no_grad():
        ws = animator.compose(identity_plus, reference["motion"])
    assert torch.allclose(ws, animated["ws"])


def test_planes_are_reused_across_cameras(reference, animator, animated, monkeypatch):
    calls = []
    original = animator.generator.synthesize_planes
    monkeypatch.setattr(animator.generator, "synthesize_planes", lambda *a, **k: calls.append(1) or original(*a, **k))
    camera = reference["c"].clone()
    camera[:, 3] += 0.1  # move the camera sideways
    with torch.no_grad():
        moved = animator.render(None, None, camera, deterministic=True, super_resolve=False,
                                planes=(animated["ws"], animated["planes"]))
    assert not calls
    assert "image" not in moved
    assert not torch.allclose(moved["image_raw"], animated["image_raw"])


def test_clamp_limits_ws_around_w_avg(reference, animator):
    far = animator.generator.w_avg + 100.0
    ws = animator.compose(far.expand(2, 1, -1), reference["motion"], clamp=True)
    assert torch.allclose(ws, (animator.generator.w_avg + 5.0).expand_as(ws))


def test_mismatched_controller_is_rejected(reference_generator):
    with pytest.raises(ValueError, match="controller makes 10 ws, generator needs 14"):
        Animator(reference_generator, MotionController(num_ws=10))
