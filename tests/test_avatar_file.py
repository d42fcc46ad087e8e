"""Loading any checkpoint for inference, and the avatar file."""

import pytest
import torch

from otavatar.avatar_file import load_avatar, save_avatar
from otavatar.checkpoints import file_sha256, load_animator
from otavatar.training import checkpointing
from otavatar.training.trainer import DecouplingTrainer, TrainerSettings
from tests.helpers import micro_animator, pixel_loss


def test_our_training_checkpoint_loads_with_its_recorded_config(tmp_path):
    from otavatar.config import load_model_preset
    from omegaconf import OmegaConf

    animator = micro_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0))
    config = load_model_preset("tiny")
    config.generator.neural_rendering_resolution = 16
    config.generator.rendering_kwargs.depth_resolution = 8
    config.generator.rendering_kwargs.depth_resolution_importance = 8
    state = {**trainer.state_dict(), "rng": [checkpointing.rng_state()], "config": {"model": OmegaConf.to_container(config)}}
    path = checkpointing.save_checkpoint(state, tmp_path, 7, keep=1)
    loaded, model_config = load_animator(path)
    assert model_config["generator"]["neural_rendering_resolution"] == 16
    for name, value in trainer.ema.generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], value)


def test_avatar_round_trip_and_model_check(tmp_path):
    avatar = {
        "identity_w": torch.randn(1, 1, 512), "identity_w_plus": torch.randn(1, 10, 512), "correction": torch.zeros(1, 18),
        "camera": torch.zeros(1, 25), "loss_curve": torch.tensor([1.0, 0.5]),
        "model": {"checkpoint_sha256": "ab" * 32, "config": {"name": "tiny"}},
    }
    path = save_avatar(tmp_path / "a.pt", avatar)
    loaded = load_avatar(path, model_sha256="ab" * 32)
    assert torch.equal(loaded["identity_w_plus"], avatar["identity_w_plus"])
    assert torch.load(path, weights_only=True)["format"] == "otavatar-avatar-v1"
    with pytest.raises(ValueError, match="was made with the model whose checkpoint has sha256 abababababab"):
        load_avatar(path, model_sha256="cd" * 32)
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist"):
        save_avatar(tmp_path / "nowhere" / "a.pt", avatar)
    assert len(file_sha256(path)) == 64
