"""One-shot inversion of the identity code."""

import pytest
import torch

from otavatar.errors import InputError
from otavatar.inversion import InversionSettings, correct_intrinsics, initial_identity_code, invert
from tests.helpers import HostReads, frontal_cameras, micro_animator, nano_config, pixel_loss


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
    # The nano model: half the render cost of the micro one, and the inversion's gain on it is as clear (≈ 10 dB).
    animator = micro_animator(config=nano_config()).eval()
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
    assert result.identity_w.shape == (1, 1, 512) and result.identity_w_plus.shape == (1, animator.generator.num_ws, 512)
    # The last sr_steps of each phase add the super-resolved terms: compare W steps of one objective.
    assert min(result.loss_curve[20:25]) < result.loss_curve[0]
    assert psnr(result.reconstruction, image) > psnr(start, image) + 3
    assert all(p.requires_grad for p in animator.parameters()), "inversion must leave the networks as it found them"


def test_reusing_static_work_changes_nothing_but_the_time():
    """C(x) and the target's features computed once: the same loss curve and codes as recomputing them."""
    animator = micro_animator(config=nano_config()).eval()  # what is checked is the bookkeeping, not the fit
    g = torch.Generator().manual_seed(1)
    target = {"image": torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, "keypoints": torch.zeros(1, 68, 2),
              "motion": torch.randn(1, 70, 27, generator=g) * 0.1, "camera": frontal_cameras(1, 1)[:, 0]}
    curves = []
    for reuse in (False, True):
        settings = InversionSettings(w_steps=3, w_plus_steps=2, sr_steps=1, deterministic=True, reuse_static_work=reuse)
        result = invert(animator, target, pixel_loss, settings)
        curves.append((result.loss_curve, result.identity_w_plus))
    assert curves[0][0] == curves[1][0]
    assert torch.equal(curves[0][1], curves[1][1])


def test_super_resolution_only_in_the_steps_whose_loss_uses_it():
    animator = micro_animator(config=nano_config()).eval()  # what is checked is the bookkeeping, not the fit
    target = {"image": torch.zeros(1, 3, 128, 128), "keypoints": torch.zeros(1, 68, 2),
              "motion": torch.zeros(1, 70, 27), "camera": frontal_cameras(1, 1)[:, 0]}
    for sr_steps, expected in ((2, [False] * 2 + [True] * 2 + [False] * 1 + [True] * 2), (None, [True] * 7)):
        seen = []

        def loss(output, frame_target, super_resolve, generator):
            seen.append(("image" in output, super_resolve))
            return pixel_loss(output, frame_target, super_resolve, generator)

        invert(animator, target, loss, InversionSettings(w_steps=4, w_plus_steps=3, sr_steps=sr_steps, deterministic=True))
        assert seen == [(flag, flag) for flag in expected]


def test_inversion_presets_load_and_unknown_ones_are_named(tmp_path):
    from otavatar.config import load_inversion_preset

    release, fast = load_inversion_preset("release"), load_inversion_preset("fast")
    assert (release.w_steps, release.w_plus_steps, release.lr, release.sr_steps) == (100, 100, 0.01, 10)
    assert fast.sr_steps is None and fast.steps < release.steps
    with pytest.raises(FileNotFoundError, match="nope.*schedules: .*fast"):
        load_inversion_preset("nope")
    (tmp_path / "typo.yaml").write_text("w_stepz: 3\n")
    with pytest.raises(InputError, match=r"typo.yaml.w_stepz: Key 'w_stepz' not in 'InversionSettings'"):
        load_inversion_preset(tmp_path / "typo.yaml")


def test_time_to_avatar_compares_the_release_run_with_ours_on_one_objective():
    from otavatar.evaluation.time_to_avatar import final_objective, time_to_avatar

    animator = micro_animator(config=nano_config()).eval()  # the rows' bookkeeping, not the model, is what is checked
    targets = [{"image": torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(seed)) * 2 - 1,
                "keypoints": torch.zeros(1, 68, 2), "motion": torch.zeros(1, 70, 27), "camera": frontal_cameras(1, 1)[:, 0]}
               for seed in (1, 2)]
    release = InversionSettings(w_steps=2, w_plus_steps=1, sr_steps=1)
    rows = time_to_avatar(animator, pixel_loss, targets, release, InversionSettings(w_steps=1, w_plus_steps=1, sr_steps=None))
    assert [row["run"] for row in rows] == ["release-equivalent", "release schedule, cached", "otavatar"]
    # Same schedule and seeds: caching changes the time, not the result.
    assert rows[0]["final_losses"] == rows[1]["final_losses"] and rows[1]["not_higher_on_every_portrait"]
    assert rows[0]["speed_up"] == 1.0 and [row["w_steps"] + row["w_plus_steps"] for row in rows] == [3, 3, 2]
    assert all(row["seconds"] > 0 and len(row["final_losses"]) == 2 for row in rows)
    # The objective is that of the returned code, with super-resolved terms, whatever the schedule.
    torch.manual_seed(0)
    result = invert(animator, targets[0], pixel_loss, release)
    assert final_objective(animator, pixel_loss, result, targets[0]) == rows[0]["final_losses"][0]


def test_scripts_take_the_schedule_preset_with_command_line_overrides():
    import argparse

    from otavatar.cli import add_inversion_arguments, pipeline_settings

    parser = argparse.ArgumentParser()
    add_inversion_arguments(parser)
    fast = pipeline_settings(parser.parse_args([])).inversion()
    assert (fast.w_steps, fast.w_plus_steps, fast.lr, fast.sr_steps, fast.deterministic) == (5, 50, 0.03, None, True)
    release = pipeline_settings(parser.parse_args(["--schedule", "release", "--w-plus-steps", "0", "--lr", "0.05"])).inversion()
    assert (release.w_steps, release.w_plus_steps, release.lr, release.sr_steps) == (100, 0, 0.05, 10)


def test_inversion_reads_the_loss_once_not_every_step(monkeypatch):
    """A read per step waits for the device every step on a GPU; the curve is read once at the end."""
    animator = micro_animator(config=nano_config()).eval()  # what is checked is the bookkeeping, not the fit
    g = torch.Generator().manual_seed(2)
    target = {"image": torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, "keypoints": torch.zeros(1, 68, 2),
              "motion": torch.randn(1, 70, 27, generator=g) * 0.1, "camera": frontal_cameras(1, 1)[:, 0]}
    reads = HostReads(monkeypatch)
    result = invert(animator, target, pixel_loss, InversionSettings(w_steps=4, w_plus_steps=3, sr_steps=1, deterministic=True))
    assert len(result.loss_curve) == 7 and all(isinstance(value, float) for value in result.loss_curve)
    assert [name for name, *_ in reads.calls] == ["tolist"], reads.calls


def test_the_release_preset_saves_the_settings_defaults():
    from otavatar.config import load_inversion_preset

    assert load_inversion_preset("release") == InversionSettings()
