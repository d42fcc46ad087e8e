"""Generator pretraining on synthetic heads (the embedded default's recipe), on the micro model (the nano one where its size does not matter)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from otavatar.checkpoints import load_generator
from otavatar.config import build_generator
from otavatar.files import load_torch_file
from otavatar.camera import FRONTAL_TRANSLATION_Z, TRACKER_FOCAL, head_pose_camera
from otavatar.data.synthetic import HeadModel, sample_identity
from otavatar.training.pretrain import (GeneratorPretrainer, PretrainSettings, field_learning_rate, field_loss, field_samples,
                                        in_feature_boxes, reconstruction_loss, sample_heads)
from tests.helpers import micro_config, nano_config

REPO = Path(__file__).resolve().parent.parent


def test_heads_are_seen_from_three_cameras():
    batch = sample_heads(2, 64, torch.Generator().manual_seed(0))
    assert batch["parameters"].shape == (2, 16) and batch["images"].shape == (2, 3, 3, 64, 64)
    assert batch["cameras"].shape == (2, 3, 25)
    assert not torch.allclose(batch["images"][:, 0], batch["images"][:, 1])  # other yaw, other picture
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    # Each view's landmarks: the mouth sits below the eyes, and another yaw moves them sideways.
    keypoints = batch["keypoints"]
    assert keypoints.shape == (2, 3, 68, 2)
    assert (keypoints[..., 48:68, 1].mean(-1) > keypoints[..., 36:48, 1].mean(-1)).all()
    assert (keypoints[:, 1, 30, 0] - keypoints[:, 0, 30, 0]).abs().min() > 20


def test_region_term_weights_only_the_eye_and_mouth_boxes():
    batch = sample_heads(1, 64, torch.Generator().manual_seed(2))
    target = batch["images"]
    output = {"image": target.reshape(-1, 3, 64, 64).clone(), "image_raw": F.interpolate(target.reshape(-1, 3, 64, 64), size=16, mode="area")}
    assert reconstruction_loss(output, target, 1.0, batch["keypoints"], 5.0)[0].item() == 0
    corner = output["image"].clone()
    corner[..., :4, :4] += 0.5  # background: outside every box
    plain, _ = reconstruction_loss({**output, "image": corner}, target, 1.0)
    weighted, terms = reconstruction_loss({**output, "image": corner}, target, 1.0, batch["keypoints"], 5.0)
    assert terms["l1_regions"] == 0 and weighted.item() == plain.item() > 0
    mouth = output["image"].clone()
    centre = (batch["keypoints"][0, :, 48:68].mean(1) * 64 / 512).round().long()
    for view, (x, y) in enumerate(centre.tolist()):
        mouth[view, :, y - 1 : y + 2, x - 2 : x + 3] += 0.5
    plain, _ = reconstruction_loss({**output, "image": mouth}, target, 1.0)
    weighted, terms = reconstruction_loss({**output, "image": mouth}, target, 1.0, batch["keypoints"], 5.0)
    assert terms["l1_regions"] > 0 and weighted.item() == pytest.approx(plain.item() + 5.0 * terms["l1_regions"])


def test_field_learning_rate_anneals_from_its_start_to_its_end():
    settings = PretrainSettings(field_iterations=11, field_lr=3e-2, field_lr_end=1e-3)
    rates = [field_learning_rate(settings, iteration) for iteration in range(11)]
    assert rates[0] == pytest.approx(3e-2) and rates[-1] == pytest.approx(1e-3) and rates[5] == pytest.approx((3e-2 + 1e-3) / 2)
    assert all(earlier > later for earlier, later in zip(rates, rates[1:]))
    held = PretrainSettings(field_iterations=11, field_lr=3e-2, field_lr_end=None)
    assert {field_learning_rate(held, iteration) for iteration in range(11)} == {3e-2}


def test_a_fixed_batch_is_learned_and_resuming_is_exact(tmp_path):
    """Four field iterations (at their own, annealed, learning rate) lower the field loss of unseen heads; a
    resumed trainer takes the first image iteration (at the image learning rate) exactly as the original does."""
    settings = PretrainSettings(batch_size=2, lr=3e-3, field_iterations=4, field_lr=1e-2, field_lr_end=1e-3, field_points=2048,
                                field_weight=0.5, image_batch_size=1)
    torch.manual_seed(0)
    generator = build_generator(nano_config().generator).train()
    trainer = GeneratorPretrainer(generator, settings)
    batch = sample_heads(2, generator.img_resolution, torch.Generator().manual_seed(1), field_points=2048, images=False)

    def loss_on_batch() -> float:
        with torch.no_grad():
            ws = generator.mapping(trainer.embedding(batch["parameters"]), torch.zeros(2, 25))
            return field_loss(generator, generator.synthesize_planes(ws), batch)[0].item()

    first = loss_on_batch()
    for _ in range(4):
        trainer.step()
    assert loss_on_batch() < first and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the last field iteration's
    saved = {key: value for key, value in trainer.state_dict().items()}
    torch.save(saved, tmp_path / "state.pt")
    expected = trainer.step()
    assert "l1_image" in expected and "field_occupancy" in expected and trainer.optimizer.param_groups[0]["lr"] == 3e-3

    torch.manual_seed(123)
    other = GeneratorPretrainer(build_generator(nano_config().generator).train(), settings)
    other.load_state_dict(load_torch_file(tmp_path / "state.pt", "a pretrainer state"))
    assert other.iteration == 4
    resumed = other.step()
    assert resumed["loss"] == expected["loss"]


def test_script_writes_a_generator_the_trainer_can_start_from(tmp_path, capsys):
    """The script once (one field and one image iteration); resuming, a second stage and a missing
    init_generator through pretrain_from_config, which is all the script's main calls (its one-line
    error report is the one every script shares: tests/test_bad_inputs.py runs train.py's)."""
    from otavatar.config import compose_config
    from otavatar.errors import MissingInputError
    from otavatar.training.pretrain_from_config import pretrain_from_config

    out = tmp_path / "generator.pt"
    overrides = [
        "iterations=2", "field_iterations=1", "field_points=512", "region_start=2", "batch_size=1", "w_avg_samples=8", "checkpoint_every=1", "log_every=1",
        f"run_dir={tmp_path / 'run'}", f"out={out}",
        "model.generator.neural_rendering_resolution=16",
        "model.generator.rendering_kwargs.depth_resolution=8", "model.generator.rendering_kwargs.depth_resolution_importance=8",
        "model.generator.plane_resolution=32", "image_batch_size=1",  # tests.helpers.nano_config's generator, one head per image iteration
    ]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain_generator.py"), *overrides], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines() if line.startswith("iteration")}
    assert "field_occupancy" in lines["iteration 1"] and "l1_image" not in lines["iteration 1"]  # fields only, no rendering
    assert "field_occupancy" in lines["iteration 2"] and "l1_image" in lines["iteration 2"]  # images, the field term kept
    assert "l1_regions" not in result.stdout  # the region term starts at region_start
    assert f"generator: {out}" in result.stdout
    generator = load_generator(out)  # the file records its architecture
    assert generator.neural_rendering_resolution == 16
    assert generator.w_avg.abs().sum() > 0  # set to the mean w of random heads

    def pretrain(*changes: str) -> str:
        try:
            pretrain_from_config(compose_config([*overrides, *changes], config_name="pretrain"))
        finally:
            torch.set_flush_denormal(False)  # as the script's process does, the pretraining flushed them in this one
        return capsys.readouterr().out

    # A second run resumes from the run's last checkpoint instead of starting over.
    again = pretrain("iterations=3")
    assert "resumed from" in again and "iteration 3: loss" in again and "iteration 2:" not in again
    # A new run can continue from that output with another recipe (here: the region term on).
    stage_two = ["iterations=1", "field_iterations=0", f"run_dir={tmp_path / 'run2'}", f"out={tmp_path / 'stage2.pt'}", f"init_generator={out}",
                 "region_weight=2.0", "region_start=0"]
    second = pretrain(*stage_two)
    assert f"started from {out}" in second and "l1_regions" in second
    first_state, second_state = torch.load(out, weights_only=True), torch.load(tmp_path / "stage2.pt", weights_only=True)
    assert set(second_state["embedding"]) == set(first_state["embedding"])
    with pytest.raises(MissingInputError, match="nope.pt: file does not exist"):
        pretrain(*stage_two, f"run_dir={tmp_path / 'run3'}", f"init_generator={tmp_path / 'nope.pt'}")


def test_initialising_from_a_file_without_embedding_keeps_a_fresh_one():
    torch.manual_seed(0)
    source = build_generator(micro_config().generator)
    trainer = GeneratorPretrainer(build_generator(micro_config().generator), PretrainSettings(batch_size=1))
    fresh = {key: value.clone() for key, value in trainer.embedding.state_dict().items()}
    trainer.initialise_from({"G_ema": source.state_dict()})
    assert all(torch.equal(a, b) for a, b in zip(trainer.generator.state_dict().values(), source.state_dict().values()))
    assert all(torch.equal(trainer.embedding.state_dict()[key], value) for key, value in fresh.items())


def test_field_samples_carry_the_closed_form_head():
    batch = sample_heads(2, 64, torch.Generator().manual_seed(3), field_points=2048, images=False)
    assert "images" not in batch and batch["points"].shape == (2, 2048, 3)
    surface = batch["points"][:, :1024]
    # Half the points hug the visible surface: about half of them inside, all with a known colour.
    assert 0.3 < batch["occupancy"][:, :1024].float().mean() < 0.7 and batch["colour_mask"][:, :1024].all()
    # The other half lie along view rays: mostly empty space, which must stay transparent.
    assert batch["occupancy"][:, 1024:].float().mean() < 0.3 and not batch["colour_mask"][:, 1024:].any()
    assert surface.norm(dim=-1).max() < 0.5  # the heads sit well inside the box


def test_field_samples_can_gather_in_the_eye_and_mouth_boxes():
    identity = sample_identity(torch.Generator().manual_seed(4))
    expression = torch.tensor([0.8, 0.0, 1.0, 0.0, 0.0, 0.0])  # open jaw, right lid closed
    head = HeadModel(identity, expression[None])
    cameras = head_pose_camera(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.45, 0.0]]), torch.tensor([[0.0, 0.0, FRONTAL_TRANSLATION_Z]] * 2), TRACKER_FOCAL)
    shares = []
    for fraction in (0.0, 0.5):
        samples = field_samples(identity, expression, cameras, 4096, torch.Generator().manual_seed(5), (2.25, 3.3), fraction)
        shares.append(in_feature_boxes(head, samples["points"][:2048]).float().mean().item())
    # Eyes and mouth cover a fifth of the visible head (21 %); with half the points drawn there and half
    # anywhere, 0.5 + 0.5 · 21 % (59 %: a few leave the boxes by their jitter along the ray).
    assert shares[0] < 0.3 and abs(shares[1] - (0.5 + 0.5 * shares[0])) < 0.05
    # The boxes are the landmarks' (here: the mouth's centre, and a point off the face, behind it).
    mouth = head.landmarks[0, 48:68].mean(0)
    assert in_feature_boxes(head, mouth[None]).item() and not in_feature_boxes(head, (mouth * torch.tensor([1.0, 1.0, -1.0]))[None]).item()


# Copying weights into meta parameters is a no-op that torch warns about; the device is only a stand-in.
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_resuming_onto_an_accelerator_reads_the_checkpoint_to_the_cpu(tmp_path):
    """The GPU resume crash, emulated with the meta device: the data generator's and the global RNG
    states must be CPU byte tensors; weights and optimiser states move to the generator's device."""
    from otavatar.training.checkpointing import save_checkpoint
    from otavatar.training.pretrain_from_config import resume_pretraining

    settings = PretrainSettings(iterations=2, batch_size=1)
    trainer = GeneratorPretrainer(build_generator(micro_config().generator), settings, seed=0)
    for parameter in trainer.optimizer.param_groups[0]["params"]:
        parameter.grad = torch.full_like(parameter, 1e-3)
    trainer.optimizer.step()
    trainer.iteration = 1
    with torch.random.fork_rng(devices=[]):
        save_checkpoint({"pretrainer": trainer.state_dict()}, tmp_path, 1, keep=1)
        on_accelerator = GeneratorPretrainer(build_generator(micro_config().generator).to("meta"), settings, seed=0)
        assert resume_pretraining(on_accelerator, tmp_path) is not None
    assert on_accelerator.iteration == 1
    states = list(on_accelerator.optimizer.state.values())
    assert states and all(state["exp_avg"].device.type == "meta" for state in states)


def test_the_pretrain_config_saves_the_settings_defaults():
    """configs/pretrain.yaml is the recipe PretrainSettings' defaults hold: one source, two spellings kept equal."""
    from otavatar.config import compose_config, typed_settings

    assert typed_settings(PretrainSettings, compose_config(config_name="pretrain"), select=True) == PretrainSettings()
