import multiprocessing
import os

import pytest
import torch

from otavatar.training import checkpointing as ckpt


def test_save_keeps_the_last_m_and_finds_the_latest(tmp_path):
    for iteration in (10, 20, 30, 40):
        ckpt.save_checkpoint({"weights": torch.full((2,), float(iteration))}, tmp_path, iteration, keep=2)
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path)] == [30, 40]
    latest, state = ckpt.newest_loadable_checkpoint(tmp_path, print)
    assert latest == tmp_path / "checkpoint_000000040.pt"
    assert state["iteration"] == 40 and torch.equal(state["weights"], torch.full((2,), 40.0))


class Killer:
    def __reduce__(self):
        os._exit(9)  # the process dies in the middle of writing


def _save_and_die(run_dir) -> None:
    ckpt.save_checkpoint({"weights": torch.zeros(1000), "bomb": Killer()}, run_dir, 2, keep=3)


def test_a_killed_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    ckpt.save_checkpoint({"weights": torch.ones(3)}, tmp_path, 1, keep=3)
    # A forked copy of this process (no interpreter start-up or imports) saves and is killed mid-write.
    process = multiprocessing.get_context("fork").Process(target=_save_and_die, args=(tmp_path,))
    process.start()
    process.join()
    assert process.exitcode == 9
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert torch.equal(ckpt.newest_loadable_checkpoint(tmp_path, print)[1]["weights"], torch.ones(3))


def test_truncated_or_foreign_files_are_refused_with_the_file_name(tmp_path):
    path = ckpt.save_checkpoint({"weights": torch.ones(100)}, tmp_path, 5, keep=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{path}: cannot be read as a training checkpoint"):
        ckpt.load_checkpoint(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"net_G": {}}, foreign)
    with pytest.raises(ValueError, match="expected format 'otavatar-train-v1', found None"):
        ckpt.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt: file does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_config_differences_name_the_keys():
    saved = {"model": {"generator": {"channel_base": 4096}}, "trainer": {"lr": 1e-3}}
    current = {"model": {"generator": {"channel_base": 2048}}, "trainer": {"lr": 1e-3, "ema": 0.95}}
    assert ckpt.config_differences(saved, current) == [
        "model.generator.channel_base: 4096 in the checkpoint, 2048 now",
        "trainer.ema: absent in the checkpoint, 0.95 now",
    ]


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = torch.rand(3)
    ckpt.restore_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def test_release_export_has_the_release_structure(tmp_path):
    state = {
        "iteration": 7,
        "controller": {"direction.weight": torch.ones(2)},
        "controller_ema": {"direction.weight": torch.zeros(2)},
        "generator": {"decoder.net.0.bias": torch.ones(1)},
        "generator_ema": {"decoder.net.0.bias": torch.zeros(1)},
        "optimizers": {"controller": {"state": {}}, "generator": {"state": {}}},
    }
    path = ckpt.export_release_checkpoint(state, tmp_path, epoch=1)
    assert path.name == "epoch_00001_iteration_000000007_checkpoint.pt"
    release = torch.load(path, weights_only=True)
    assert set(release) == {"net_Warp", "net_Warp_ema", "opt_Warp", "sch_Warp", "net_G", "net_G_ema", "opt_G", "sch_G",
                            "current_epoch", "current_iteration"}
    assert list(release["net_Warp"]) == ["module.direction.weight"]
    assert list(release["net_G_ema"]) == ["decoder.net.0.bias"]
    assert release["opt_G"] is None and release["current_iteration"] == 7


def test_exported_model_renders_like_its_checkpoint(tmp_path):
    from otavatar.checkpoints import CheckpointError, load_animator
    from otavatar.training.checkpointing import export_model
    from tests.helpers import frontal_cameras, micro_checkpoint

    checkpoint, _ = micro_checkpoint(tmp_path)
    exported = export_model(checkpoint, tmp_path / "model.pt")
    assert exported.stat().st_size < checkpoint.stat().st_size / 2
    (full, config), (slim, slim_config) = load_animator(checkpoint), load_animator(exported)
    assert slim_config == config
    identity, motion, camera = torch.zeros(1, 1, 512), torch.randn(1, 70, 27), frontal_cameras(1, 1)[:, 0]
    with torch.no_grad():
        expected = full.render(identity, motion, camera, deterministic=True)["image"]
        assert torch.equal(slim.render(identity, motion, camera, deterministic=True)["image"], expected)
    with pytest.raises(CheckpointError, match="only the EMA weights"):
        load_animator(exported, use_ema=False)
