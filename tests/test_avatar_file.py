"""Loading any checkpoint for inference, and the avatar file."""

import pytest
import torch

from otavatar.avatar_file import load_avatar, save_avatar
from otavatar.checkpoints import file_sha256, load_animator
from tests.helpers import micro_checkpoint


def test_our_training_checkpoint_loads_with_its_recorded_config(tmp_path):
    path, trainer = micro_checkpoint(tmp_path, 7)
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
