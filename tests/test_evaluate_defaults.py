"""scripts/evaluate.py on real-data protocols, in-process: the release's inversion loss and schedule by default,
stated in the results; the cross-identity driver excluded unless --include-driver."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.evaluation.protocols import episodes
from otavatar.evaluation.report import run_notes
from otavatar.losses.identity import ResNetArcFace
from otavatar.training import checkpointing
from otavatar.training.trainer import DecouplingTrainer
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import nano_config, pixel_loss, refused, run_script

pytestmark = pytest.mark.usefixtures("one_thread")


def checkpoint_at_32(folder: Path) -> Path:
    """The nano model rendering 32² rays: the release's perceptual loss needs 16 px at its second scale (the renders'
    quality is not what is checked)."""
    from omegaconf import OmegaConf

    from otavatar.config import build_animator

    config = nano_config()
    config.generator.neural_rendering_resolution = 32
    torch.manual_seed(0)
    trainer = DecouplingTrainer(build_animator(config), pixel_loss, TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0))
    state = {**trainer.state_dict(), "rng": [checkpointing.rng_state()], "config": {"model": OmegaConf.to_container(config)}}
    return checkpointing.save_checkpoint(state, folder, 1, keep=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate_defaults")
    checkpoint = checkpoint_at_32(folder)
    dataset = folder / "heads"
    write_synthetic_dataset(dataset, identities=3, videos=1, frames=4, resolution=128, seed=0, test_identities=2, progress=False)
    # Random weights in the real files' formats (torchvision's VGG19, GFPGAN's ArcFace), where the loader looks.
    weights = folder / "pretrained"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}, weights / "vgg19-dcbb9e9d.pth")
    arcface = ResNetArcFace()
    for module in arcface.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            module.running_var.uniform_(0.5, 1.5)
    torch.save(arcface.state_dict(), weights / "arcface_resnet18.pth")
    (folder / "empty").mkdir()
    return folder, checkpoint, dataset


@pytest.fixture
def weights_in(monkeypatch):
    """Where the loss networks' files are looked for (pretrained/ and the torch hub cache)."""

    def look_in(pretrained: Path, torch_home: Path) -> None:
        monkeypatch.setenv("OTAVATAR_PRETRAINED", str(pretrained))
        monkeypatch.setenv("TORCH_HOME", str(torch_home))

    return look_in


def test_real_protocols_stop_in_one_line_without_the_release_loss_networks(setup, weights_in, capsys):
    folder, checkpoint, dataset = setup
    weights_in(folder / "empty", folder / "empty")
    message = refused(capsys, "evaluate", "--checkpoint", checkpoint, "--dataset", dataset, "--protocol", "self", "--no-fid")
    assert message.startswith("error: --loss release: missing ") and "--loss offline_l1" in message
    assert str(folder / "empty" / "vgg19-dcbb9e9d.pth") in message and str(folder / "empty" / "arcface_resnet18.pth") in message


def test_cross_identity_runs_the_release_loss_and_states_it_with_the_driver(setup, weights_in, capsys):
    folder, checkpoint, dataset = setup
    weights_in(folder / "pretrained", folder / "empty")
    out = folder / "cross_id"
    driver = VideoLmdb(dataset, 128).splits["test"][0]
    # One episode: with --include-driver the driver's own video comes first (without it, the other video would).
    run_script(
        "evaluate", "--checkpoint", checkpoint, "--dataset", dataset, "--protocol", "cross_id", "--driving", driver, "--include-driver",
        "--episodes", 1, "--frames", 1, "--w-steps", 1, "--w-plus-steps", 1, "--baselines", "", "--no-fid", "--no-face-metrics", "--out", out,
    )
    assert "wrote" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    inversion = results["inversion"]
    assert inversion["loss"] == "release" and inversion["schedule"] == "release"
    assert (inversion["w_steps"], inversion["w_plus_steps"], inversion["lr"], inversion["sr_steps"]) == (1, 1, 0.01, 10)
    assert results["include_driver"] is True and list(results["per_video"]["otavatar"]) == [f"{driver}->{driver}"]
    table = (out / "table.md").read_text()
    header = table.split("| method |")[0]
    assert "Inversion: loss `release`, schedule `release`: 1 W + 1 W+ steps, lr 0.01" in header
    assert "Driver: its own video is driven too (the release's protocol)." in header
    paper_multiview = next(line for line in table.splitlines() if line.startswith("| paper, multi-view (Multiface)"))
    assert "| 1.874 |" in paper_multiview and "| 0.428 |" in paper_multiview


def test_the_driver_is_excluded_by_default_and_the_notes_say_so(setup):
    _, _, dataset = setup
    source = FrameSource(VideoLmdb(dataset, 128), "condition", image_size=128)
    driver, other = source.database.splits["test"]
    assert [e.name for e in episodes(source, "cross_id", driver, frames=2)] == [f"{driver}->{other}"]
    assert [e.name for e in episodes(source, "cross_id", driver, frames=2, include_driver=True)] == [f"{driver}->{driver}", f"{driver}->{other}"]
    notes = run_notes({"protocol": "cross_id", "include_driver": False, "inversion": None})
    assert notes == ["Driver: its own video is not driven (otavatar's default; the release drives it too: --include-driver)."]
