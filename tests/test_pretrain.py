"""Generator pretraining on synthetic heads (the embedded default's recipe), on the micro model."""

import subprocess
import sys
from pathlib import Path

import torch

from otavatar.checkpoints import load_generator
from otavatar.config import build_generator
from otavatar.training.pretrain import GeneratorPretrainer, PretrainSettings, reconstruction_loss, render_views, sample_heads
from tests.helpers import micro_config

REPO = Path(__file__).resolve().parent.parent


def test_heads_are_seen_from_three_cameras():
    batch = sample_heads(2, 64, torch.Generator().manual_seed(0))
    assert batch["parameters"].shape == (2, 16) and batch["images"].shape == (2, 3, 3, 64, 64)
    assert batch["cameras"].shape == (2, 3, 25)
    assert not torch.allclose(batch["images"][:, 0], batch["images"][:, 1])  # other yaw, other picture
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1


def test_a_fixed_batch_is_learned_and_resuming_is_exact(tmp_path):
    torch.manual_seed(0)
    generator = build_generator(micro_config().generator).train()
    trainer = GeneratorPretrainer(generator, PretrainSettings(batch_size=2, lr=3e-3))
    batch = sample_heads(2, generator.img_resolution, torch.Generator().manual_seed(1))

    def loss_on_batch() -> float:
        with torch.no_grad():
            ws = generator.mapping(trainer.embedding(batch["parameters"]), torch.zeros(2, 25))
            return reconstruction_loss(render_views(generator, ws, batch["cameras"]), batch["images"], 1.0)[0].item()

    first = loss_on_batch()
    for _ in range(4):
        trainer.step()
    assert loss_on_batch() < first
    saved = {key: value for key, value in trainer.state_dict().items()}
    torch.save(saved, tmp_path / "state.pt")
    expected = trainer.step()

    torch.manual_seed(123)
    other = GeneratorPretrainer(build_generator(micro_config().generator).train(), PretrainSettings(batch_size=2, lr=3e-3))
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert other.iteration == 4
    resumed = other.step()
    assert resumed["loss"] == expected["loss"]


def test_script_writes_a_generator_the_trainer_can_start_from(tmp_path):
    out = tmp_path / "generator.pt"
    overrides = [
        "iterations=2", "batch_size=1", "w_avg_samples=8", "checkpoint_every=1", "log_every=1",
        f"run_dir={tmp_path / 'run'}", f"out={out}",
        "model.generator.neural_rendering_resolution=16",
        "model.generator.rendering_kwargs.depth_resolution=8", "model.generator.rendering_kwargs.depth_resolution_importance=8",
    ]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain_generator.py"), *overrides], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "iteration 2: loss" in result.stdout
    generator = load_generator(out)  # the file records its architecture
    assert generator.neural_rendering_resolution == 16
    assert generator.w_avg.abs().sum() > 0  # set to the mean w of random heads
    # A second run resumes from the run's last checkpoint instead of starting over.
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain_generator.py"), *overrides, "iterations=3"], capture_output=True, text=True)
    assert again.returncode == 0 and "resumed from" in again.stdout and "iteration 3: loss" in again.stdout
