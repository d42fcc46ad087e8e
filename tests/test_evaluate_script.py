"""scripts/evaluate.py end to end on the micro model and a tiny synthetic set."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.evaluation.protocols import episodes, synthetic_keypoints
from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor
from otavatar.metrics.image import region_mask
from tests.helpers import micro_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    checkpoint, _ = micro_checkpoint(folder)
    dataset = folder / "heads"
    write_synthetic_dataset(dataset, identities=3, videos=1, frames=4, resolution=128, seed=0, test_identities=2, progress=False)
    regressor = folder / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    return folder, checkpoint, dataset, regressor


def evaluate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), *map(str, args)], capture_output=True, text=True)


def test_synthetic_cross_identity_writes_every_column_then_scores_saved_renders(setup):
    folder, checkpoint, dataset, regressor = setup
    out = folder / "results"
    common = ["--dataset", dataset, "--protocol", "synthetic_cross_id", "--synthetic-regressor", regressor, "--alexnet", folder / "no_alexnet.pth"]
    run = evaluate("--checkpoint", checkpoint, *common, "--w-steps", 3, "--w-plus-steps", 2, "--out", out, "--save-renders", "--fps",
                   "--baselines", "static", "--speed", "fast")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "evaluation: speed fast, 4+4 samples/ray" in run.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["speed"] == {"mode": "fast", "tf32": False}
    assert results["episodes"] == 2 and set(results["overall"]) == {"otavatar", "static"}
    columns = ["psnr", "region_psnr", "ssim", "lpips", "fid", "csim", "csim_dlib", "aed", "apd", "apd_angles", "akd"]
    assert results["metrics"] == columns
    overall = results["overall"]["otavatar"]
    assert all(isinstance(overall[key], float) for key in ("psnr", "region_psnr", "fid", "aed")), overall
    assert isinstance(results["overall"]["static"]["region_psnr"], float) and "mouth" in results["definitions"]["region_psnr"]
    assert overall["lpips"] == f"n/a (missing {folder / 'no_alexnet.pth'})"
    assert overall["csim"].startswith("n/a (missing ") and overall["csim"].endswith("arcface_resnet18.pth)")
    assert results["fps"]["fps"] > 0 and results["fps"]["device"]
    assert "mean |Δ|" in results["definitions"]["aed"] and results["reduction"] == "mean"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows].count("otavatar") == 3  # two videos and the overall row
    assert set(rows[0]) == {"method", "video", *columns}
    table = (out / "table.md").read_text()
    assert "paper, cross-identity (HDTF)" in table and "| 0.694 |" in table and "static baseline (source motion, driving cameras)" in table
    assert "PSNR ↑" in table and "REGION PSNR ↑" in table and "Table 2" in table

    episodes = sorted((out / "renders").iterdir())
    assert len(episodes) == 2 and len(list(episodes[0].glob("*.png"))) == 4
    rescored = evaluate(*common, "--renders", out / "renders", "--out", folder / "rescored", "--no-fid", "--no-face-metrics")
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    again = json.loads((folder / "rescored" / "results.json").read_text())["overall"]
    assert set(again) == {"otavatar"}
    assert again["otavatar"]["psnr"] == pytest.approx(overall["psnr"], abs=0.1)  # 8-bit PNGs vs float frames
    assert again["otavatar"]["region_psnr"] == pytest.approx(overall["region_psnr"], abs=0.1)


def test_ground_truth_static_is_the_true_head_with_the_source_expression(setup):
    _, _, dataset, _ = setup
    source = FrameSource(VideoLmdb(dataset, 128), "ground_truth", image_size=128)
    for episode in episodes(source, "synthetic_multiview", frames=4):
        # Frame 0 is the source's own expression: the static truth is the stored view (8-bit PNG).
        assert (episode.static_target[0] - episode.target[0]).abs().max() < 1.5 / 127.5
        assert episode.static_target.shape == episode.target.shape == (4, 3, 128, 128)
        assert episode.keypoints.shape == (4, 68, 2)
    video = source.database.splits["test"][0]
    stored = source.video(video)
    # The landmarks projected from the true head through the stored cameras are the stored ones.
    assert torch.allclose(synthetic_keypoints(source, video, stored["camera"][:4]), stored["keypoint"][:4] * 128 / 512, atol=1e-3)
    for episode in episodes(source, "synthetic_cross_id", frames=4):
        # Same head from the same cameras, only the expression differs (the driver's vs the source's) ...
        moved = (episode.static_target - episode.target).abs().amax(1) > 0.1
        assert 0 < moved.float().mean() < 0.05
        # ... and far more densely inside the eye and mouth boxes than elsewhere (measured: 25 % vs 1.4 % of pixels).
        boxes = region_mask(episode.keypoints, (128, 128))
        assert moved[boxes].float().mean() > 5 * moved[~boxes].float().mean()


def test_bad_inputs_are_named(setup):
    folder, checkpoint, dataset, regressor = setup
    missing = evaluate("--checkpoint", checkpoint, "--dataset", folder / "nowhere")
    assert missing.returncode != 0 and "nowhere: no such folder" in missing.stderr
    renders = evaluate("--dataset", dataset, "--renders", folder / "empty_renders", "--synthetic-regressor", regressor, "--no-fid")
    assert renders.returncode != 0 and "PNG frames, the episode needs 4" in renders.stderr
    real = evaluate("--checkpoint", checkpoint, "--dataset", dataset, "--protocol", "self", "--baselines", "ground_truth_static", "--no-fid")
    assert real.returncode != 0 and "need a synthetic_* protocol" in real.stderr
