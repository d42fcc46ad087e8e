"""The inference pipeline: its settings are the single source of the scripts' defaults; it builds an avatar and
drives it as the release's functions do."""

import argparse
import dataclasses

import pytest
import torch

from otavatar.cli import add_inversion_arguments, pipeline_settings
from otavatar.config import load_inversion_preset
from otavatar.inversion import invert
from otavatar.one_shot import PivotalTuningSettings
from otavatar.pipeline import Pipeline, PipelineSettings
from otavatar.reenactment import reenact
from tests.helpers import micro_checkpoint, random_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_scripts_options_default_to_the_pipeline_settings():
    parser = argparse.ArgumentParser()
    add_inversion_arguments(parser)
    assert pipeline_settings(parser.parse_args([])) == PipelineSettings()
    assert PipelineSettings().inversion() == load_inversion_preset(PipelineSettings.schedule)
    given = pipeline_settings(parser.parse_args(["--schedule", "release", "--speed", "fast", "--seed", "3", "--pti", "--pti-steps", "7"]))
    assert (given.schedule, given.speed, given.seed, given.pti) == ("release", "fast", 3, dataclasses.replace(PivotalTuningSettings(), steps=7))


def test_build_avatar_and_drive_match_inversion_and_reenactment(tmp_path):
    checkpoint, _ = micro_checkpoint(tmp_path)
    logged = []
    settings = PipelineSettings(checkpoint=str(checkpoint), w_steps=2, w_plus_steps=1, seed=5)
    pipeline = Pipeline.load(settings, log=logged.append)
    batch = random_batch(0, batch=1, frames=3)
    target = {key: value[:, 0] for key, value in batch.items()}
    steps = []
    avatar = pipeline.build_avatar(target, lambda phase, step, loss: steps.append(phase))
    assert len(steps) == pipeline.inversion_steps == 3 and logged == ["inversion: speed exact, 8+8 samples/ray, float32 on cpu"]
    torch.manual_seed(5)  # the pipeline seeds the inversion with settings.seed
    expected = invert(pipeline.animator, target, pipeline.frame_loss, pipeline.inversion)
    assert torch.equal(avatar["identity_w_plus"], expected.identity_w_plus) and torch.equal(avatar["correction"], expected.correction)
    assert avatar["model"]["checkpoint_sha256"] == pipeline.checkpoint_sha256

    windows, cameras = batch["motion"][0], batch["camera"][0]
    frames = torch.cat([out["image"] for out in pipeline.drive(avatar, windows, cameras, batch_size=2)])
    reference = torch.cat([out["image"] for out in reenact(pipeline.animator, expected.identity_w_plus, windows, cameras, expected.correction, 2)])
    assert frames.shape[0] == 3 and torch.equal(frames, reference)
    assert logged[-1].startswith("reenactment: speed exact")
    in_w = torch.cat([out["image"] for out in pipeline.drive(avatar, windows, cameras, space="w")])
    assert not torch.equal(in_w, frames)  # --w w drives the W code
