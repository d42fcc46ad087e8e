"""A training run says, after its first iteration, how long the whole run takes at that pace."""

import torch
from torch.utils.data import Dataset

from otavatar.training.distributed import DistributedContext
from otavatar.training.loop import RunSettings, pace_line, train
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import frontal_cameras, nano_animator, pixel_loss


class OnePair(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(2, 3, 128, 128), "motion": torch.zeros(2, 70, 27), "camera": frontal_cameras(1, 2)[0],
                "keypoints": torch.full((2, 68, 2), 64.0)}


def test_a_gpu_sized_schedule_on_a_cpu_names_the_small_recipe():
    line = pace_line(220.0, 2000, torch.device("cpu"))
    assert "took 220.0 s" in line and "the 2000 iterations of this run take ≈ 5.1 days on cpu" in line
    assert "python scripts/train.py experiment=tiny_synthetic" in line


def test_short_runs_and_gpu_runs_are_only_timed():
    assert pace_line(30.0, 100, torch.device("cpu")).endswith("≈ 50.0 min on cpu")
    assert pace_line(220.0, 2000, torch.device("cuda")).endswith("≈ 5.1 days on cuda")


def test_the_pace_is_said_after_the_first_iteration_only(tmp_path, capsys):
    run = RunSettings(run_dir=tmp_path, iterations=2, batch_size=1, checkpoint_every=2, log_every=2, image_every=0)
    settings = TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0)
    context = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    train(nano_animator(), pixel_loss, OnePair(), settings, run, {"model": {}, "trainer": {}}, context)
    out = capsys.readouterr()
    said = out.out + out.err
    assert "iterations 1–2: 1 + 1 sub-steps per batch of 1 × 2 frames on cpu" in said
    assert said.count("the first iteration took") == 1 and "the 2 iterations of this run take" in said
