"""scripts/demo.py end to end on the nano model (the embedded model runs it in `make demo`)."""

import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import torch
from PIL import Image

from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor
from tests.helpers import micro_checkpoint, nano_config

REPO = Path(__file__).resolve().parent.parent


def test_demo_writes_video_contact_sheet_and_metrics(tmp_path):
    checkpoint, _ = micro_checkpoint(tmp_path, config=nano_config())
    regressor = tmp_path / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--checkpoint", str(checkpoint), "--out", str(out), "--frames", "2",
         "--schedule", "release", "--w-steps", "1", "--w-plus-steps", "1", "--synthetic-regressor", str(regressor)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = run.stdout.strip().splitlines()[-1]
    assert line.startswith("demo: cross-identity PSNR / region PSNR / AED vs ground truth ") and "LPIPS" in line
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("otavatar", "static_baseline", "still_baseline", "ground_truth_static"):
        assert all(isinstance(metrics[method][key], float) for key in ("psnr", "region_psnr", "aed")), metrics[method]
        assert f"{metrics[method]['region_psnr']:.3f} dB" in line
    assert metrics["ground_truth_static"]["psnr"] > metrics["static_baseline"]["psnr"] + 5  # the true head vs a random nano model
    # The true head with the source's expression differs from the ground truth only where expression lives.
    assert metrics["ground_truth_static"]["region_psnr"] < metrics["ground_truth_static"]["psnr"]
    assert metrics["frames"] == 2 and "definitions" in metrics
    # The release's schedule with the steps given on the command line (the demo's default is fast).
    assert {key: metrics["inversion"][key] for key in ("w_steps", "w_plus_steps", "lr", "sr_steps")} == {"w_steps": 1, "w_plus_steps": 1, "lr": 0.01, "sr_steps": 10}
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out / "demo.mp4"))
    assert frames == 2
    assert next(imageio_ffmpeg.read_frames(str(out / "demo.mp4")))["size"] == (4 * 128, 128)  # source | driving | result | truth
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > 4 * 128 and sheet.height > 2 * 128  # a row per frame (at most 6)
