"""scripts/train.py end to end on synthetic heads, and learning on them."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from otavatar.config import compose_config
from otavatar.data.datasets import FrameSource, TrainingPairs
from otavatar.data.lmdb import VideoLmdb
from otavatar.losses.animation import AnimationLoss, LossWeights
from otavatar.training import from_config
from otavatar.training.batches import training_batches
from otavatar.training.trainer import DecouplingTrainer
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import micro_animator

REPO = Path(__file__).resolve().parent.parent
FAST = ["trainer.identity_steps=2", "trainer.motion_steps=1", "trainer.sr_steps=1", "batch_size=2",
        "model.generator.neural_rendering_resolution=16", "model.generator.rendering_kwargs.depth_resolution=8",
        "model.generator.rendering_kwargs.depth_resolution_importance=8", "log_every=1", "image_every=2", "checkpoint_every=1"]


@pytest.fixture(scope="module")
def dataset_args(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "heads"
    return [f"data.root={root}", "data.resolution=64", "data.generate.identities=3", "data.generate.videos=1", "data.generate.frames=6"]


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), *args], capture_output=True, text=True, cwd=REPO)


def test_train_script_generates_data_trains_and_resumes(tmp_path, dataset_args):
    run_dir = tmp_path / "run"
    first = run_train(*FAST, *dataset_args, f"run_dir={run_dir}", "iterations=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "checkpoint_000000002.pt").is_file()
    assert (run_dir / "images" / "iteration_000000002.png").is_file()
    second = run_train(*FAST, *dataset_args, f"run_dir={run_dir}", "iterations=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "at iteration 2" in second.stdout
    assert (run_dir / "checkpoint_000000003.pt").is_file()
    refused = run_train(*FAST, *dataset_args, f"run_dir={run_dir}", "iterations=4", "trainer.ema_decay=0.9")
    assert refused.returncode != 0
    assert "trainer.ema_decay: 0.95 in the checkpoint, 0.9 now" in refused.stderr


def test_missing_assets_fail_early_with_a_clear_message(tmp_path):
    result = run_train("experiment=hdtf", f"run_dir={tmp_path}", "generator_checkpoint=/nonexistent/ffhq.pkl")
    assert result.returncode != 0
    assert "generator_checkpoint /nonexistent/ffhq.pkl does not exist" in result.stderr


def test_loss_decreases_over_20_iterations_on_synthetic_heads(dataset_args):
    root = Path(dataset_args[0].split("=", 1)[1])
    if not root.exists():
        run_train(*FAST, *dataset_args, "iterations=0", f"run_dir={root.parent / 'unused'}")
    torch.manual_seed(0)
    source = FrameSource(VideoLmdb(root, 64), camera_source="ground_truth", image_size=128)
    pairs = TrainingPairs(source, repeat=10)
    loss = AnimationLoss(LossWeights(perceptual=0, identity=0, tv=0, monotonic=0))
    trainer = DecouplingTrainer(micro_animator(), loss, TrainerSettings(identity_steps=3, motion_steps=1, sr_steps=1))
    totals = []
    for batch in training_batches(pairs, 2, seed=0, start_iteration=0, end_iteration=20):
        logs = trainer.train_step(batch)
        totals.append(sum(v for k, v in logs.items() if k.startswith("refine/")))
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_frames_per_item_is_the_number_of_frames_sharing_one_identity_code(monkeypatch, dataset_args, tmp_path):
    captured = {}

    def capture(animator, loss, dataset, *rest):
        captured["dataset"] = dataset
        return tmp_path / "unused.pt"

    monkeypatch.setattr(from_config, "train", capture)
    from_config.train_from_config(compose_config([*FAST, *dataset_args, f"run_dir={tmp_path / 'run'}", "frames_per_item=3", "device=cpu"]))
    item = captured["dataset"][0]
    assert item["image"].shape[:2] == (3, 3) and item["motion"].shape[0] == 3 and item["camera"].shape == (3, 25)
