"""One-shot inversion of the identity code."""

import torch

from otavatar.inversion import InversionSettings, correct_intrinsics, initial_identity_code, invert
from tests.helpers import frontal_cameras, micro_animator, pixel_loss


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / ((a - b) ** 2).mean()))


def test_intrinsics_correction_is_identity_at_zero_and_scales_otherwise():
    camera = frontal_cameras(2, 1)[:, 0]
    assert torch.equal(correct_intrinsics(camera, torch.zeros(2, 18)), camera)
    correction = torch.zeros(2, 18)
    correction[:, 0] = torch.atanh(torch.tensor(0.1))  # fx × 1.1
    correction[:, 9 + 2] = 0.05  # cx + 0.05
    corrected = correct_intrinsics(camera, correction)
    assert torch.allclose(corrected[:, 16], camera[:, 16] * 1.1)
    assert torch.allclose(corrected[:, 18], camera[:, 18] + 0.05)
    assert torch.equal(corrected[:, :16], camera[:, :16])


def test_inverting_a_rendered_frame_lowers_the_loss_and_reconstructs_it():
    torch.manual_seed(0)
    animator = micro_animator().eval()
    motion = torch.randn(1, 70, 27) * 0.1
    camera = frontal_cameras(1, 1)[:, 0]
    true_identity = initial_identity_code(animator.generator, 1) + torch.randn(1, 1, 512) * 0.5
    with torch.no_grad():
        image = animator.render(true_identity, motion, camera, deterministic=True)["image"]
    target = {"image": image, "keypoints": torch.zeros(1, 68, 2), "motion": motion, "camera": camera}
    settings = InversionSettings(w_steps=30, w_plus_steps=10, sr_steps=5, lr=0.05, deterministic=True, optimize_camera=False)
    steps = []
    result = invert(animator, target, pixel_loss, settings, on_step=lambda phase, step, loss: steps.append((phase, step)))
    with torch.no_grad():
        start = animator.render(initial_identity_code(animator.generator, 1), motion, camera, deterministic=True)["image"]
    assert steps[0] == ("W", 0) and steps[-1] == ("W+", 9) and len(result.loss_curve) == 40
    assert result.identity_w.shape == (1, 1, 512) and result.identity_w_plus.shape == (1, 10, 512)
    assert min(result.loss_curve[-5:]) < result.loss_curve[0]
    assert psnr(result.reconstruction, image) > psnr(start, image) + 3
    assert all(p.requires_grad for p in animator.parameters()), "inversion must leave the networks as it found them"


def test_reusing_static_work_changes_nothing_but_the_time():
    """C(x), the target's features and unused super-resolution are computed once / skipped: same result."""
    animator = micro_animator().eval()
    g = torch.Generator().manual_seed(1)
    target = {"image": torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, "keypoints": torch.zeros(1, 68, 2),
              "motion": torch.randn(1, 70, 27, generator=g) * 0.1, "camera": frontal_cameras(1, 1)[:, 0]}
    curves = []
    for reuse in (False, True):
        settings = InversionSettings(w_steps=6, w_plus_steps=3, sr_steps=2, deterministic=True, reuse_static_work=reuse)
        result = invert(animator, target, pixel_loss, settings)
        curves.append((result.loss_curve, result.identity_w_plus))
    assert curves[0][0] == curves[1][0]
    assert torch.equal(curves[0][1], curves[1][1])


def test_time_to_avatar_reports_both_runs_with_equal_final_loss():
    from otavatar.evaluation.time_to_avatar import time_to_avatar

    rows = time_to_avatar(micro_animator().eval(), pixel_loss, InversionSettings(w_steps=3, w_plus_steps=2, sr_steps=1, deterministic=True))
    assert [row["run"] for row in rows] == ["release-equivalent", "otavatar"]
    assert rows[0]["final_loss"] == rows[1]["final_loss"] and rows[0]["speed_up"] == 1.0
    assert all(row["seconds"] > 0 and row["steps"] == 5 for row in rows)
