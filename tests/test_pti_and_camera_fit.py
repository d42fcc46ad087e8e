"""The release's inference options: pivotal tuning (``net_G_optimize``) and the camera refit (``--cam_optim``)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import alexnet

from otavatar.inversion import InversionSettings, correct_intrinsics, fit_camera
from otavatar.metrics.lpips import load_lpips
from otavatar.one_shot import PivotalTuningSettings, pivotal_tuning
from otavatar.pipeline import pivotal_tuning_lpips
from tests.helpers import micro_animator, nano_config, random_batch, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def portrait(seed: int = 0) -> dict:
    return {key: value[:1, 0] for key, value in random_batch(seed, batch=1, frames=1).items()}


@pytest.fixture(scope="module")
def lpips(tmp_path_factory):
    """LPIPS on a random AlexNet backbone saved in torchvision's format (the real file cannot be downloaded here)."""
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-owt-7be5be79.pth"
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()}, path)
    return load_lpips(path)


def test_pivotal_tuning_fits_the_raw_image_with_smooth_l1_and_never_touches_super_resolution():
    animator = micro_animator()
    before = copy.deepcopy(animator.state_dict())
    target, identity = portrait(), animator.generator.w_avg.reshape(1, 1, -1).clone()
    torch.manual_seed(1)
    raw = animator.render(identity, target["motion"], target["camera"], clamp=True, super_resolve=False)["image_raw"]
    torch.manual_seed(1)
    result = pivotal_tuning(animator, identity, torch.zeros(1, 18), target, PivotalTuningSettings(steps=3))
    expected = F.smooth_l1_loss(raw, F.interpolate(target["image"], size=raw.shape[-2:], mode="area"), beta=1.0)
    assert result.loss_curve[0] == pytest.approx(expected.item(), rel=1e-5)
    assert len(result.loss_curve) == 3 and result.lpips_curve == [] and not result.stopped_early
    tuned = result.animator.generator.state_dict()
    assert all(torch.equal(tuned[k], v) for k, v in animator.generator.superresolution.state_dict(prefix="superresolution.").items())
    assert not torch.equal(tuned["decoder.net.0.weight"], before["generator.decoder.net.0.weight"])
    assert all(torch.equal(v, before[k]) for k, v in animator.state_dict().items())  # the original is untouched


def test_pivotal_tuning_stops_at_the_first_render_whose_lpips_reaches_the_threshold(lpips):
    animator = micro_animator()
    target, identity = portrait(2), animator.generator.w_avg.reshape(1, 1, -1).clone()
    torch.manual_seed(3)
    raw = animator.render(identity, target["motion"], target["camera"], clamp=True, super_resolve=False)["image_raw"]
    torch.manual_seed(3)
    full = pivotal_tuning(animator, identity, torch.zeros(1, 18), target, PivotalTuningSettings(steps=8, lr=1e-3, lpips_threshold=-1), lpips)
    assert len(full.lpips_curve) == 8 and len(full.loss_curve) == 8 and not full.stopped_early
    # Scored as the release does: the raw image nearest-upsampled to the portrait's size.
    upsampled = F.interpolate(raw, size=target["image"].shape[-2:], mode="nearest")
    with torch.no_grad():
        assert full.lpips_curve[0] == pytest.approx(float(lpips(upsampled, target["image"])), rel=1e-5)
    # lr 1e-3: on the micro model (white background) larger steps fit the pixels but not LPIPS, which
    # then never reaches a new low.
    stop = next(i for i in range(1, 8) if full.lpips_curve[i] < min(full.lpips_curve[:i]))  # the first new low
    torch.manual_seed(3)
    early = pivotal_tuning(
        animator, identity, torch.zeros(1, 18), target, PivotalTuningSettings(steps=8, lr=1e-3, lpips_threshold=full.lpips_curve[stop]), lpips
    )
    assert early.stopped_early and len(early.loss_curve) == stop
    assert early.lpips_curve == pytest.approx(full.lpips_curve[: stop + 1], rel=1e-6)


def test_without_the_alexnet_file_pivotal_tuning_says_its_early_stop_is_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OTAVATAR_PRETRAINED", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert pivotal_tuning_lpips(PivotalTuningSettings(), "cpu") is None
    printed = capsys.readouterr().out
    assert "the early stop at LPIPS ≤ 0.06 is off" in printed and "alexnet-owt-7be5be79.pth is missing" in printed
    assert "all 50 steps run" in printed


def test_camera_fit_refits_the_correction_from_zero_with_the_identity_frozen():
    animator = micro_animator(config=nano_config())  # half the render cost of the micro model; the focal is as well recovered
    identity = animator.generator.w_avg.reshape(1, 1, -1) + 0.3 * torch.randn(1, 1, 512)
    target = portrait(4)
    truth = torch.zeros(1, 18)
    truth[0, [0, 4]] = torch.atanh(torch.tensor(0.12))  # a 12 % longer focal than the label says
    with torch.no_grad():
        image = animator.render(identity, target["motion"], correct_intrinsics(target["camera"], truth), deterministic=True)["image"]
    target["image"] = image
    settings = InversionSettings(deterministic=True, camera_lr=0.02)
    kept, parameters = identity.clone(), copy.deepcopy(animator.state_dict())
    steps = []
    def image_l1(output, target, super_resolve, generator):
        return (output["image"] - target["image"]).abs().mean(), {}

    correction = fit_camera(animator, identity, target, image_l1, settings, steps=30, sr_steps=None, on_step=lambda *s: steps.append(s))
    assert torch.equal(identity, kept) and all(torch.equal(v, parameters[k]) for k, v in animator.state_dict().items())
    assert all(p.requires_grad for p in animator.parameters())
    assert [s[:2] for s in steps] == [("camera", i) for i in range(30)] and steps[-1][2] < steps[0][2] / 2

    def error(correction):
        with torch.no_grad():
            return (animator.render(identity, target["motion"], correct_intrinsics(target["camera"], correction), deterministic=True)["image"] - image).abs().mean()

    assert error(correction) < error(torch.zeros(1, 18)) / 2
    assert correction[0, [0, 4]].mean() > 0  # toward the longer focal


def test_reenact_refuses_optimize_camera_for_a_coefficient_file(tmp_path, capsys):
    """A coefficient file has no frame to fit; the run with a driving frame is in
    tests/test_invert_reenact_scripts.py (the embedded sample driver)."""
    np.save(tmp_path / "motion.npy", np.zeros((4, 70), np.float32))
    line = refused(capsys, "reenact", "--optimize-camera", "--driving", tmp_path / "motion.npy", "--out", tmp_path / "out.mp4")
    assert "not a coefficient file" in line and not (tmp_path / "out.mp4").exists()
