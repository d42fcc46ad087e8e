"""scripts/disentanglement.py end to end: two variants of the micro model, one iteration each."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.evaluation.disentanglement import COLUMNS, cached_evaluation
from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor

REPO = Path(__file__).resolve().parent.parent
MICRO = [
    "model.generator.neural_rendering_resolution=16", "model.generator.rendering_kwargs.depth_resolution=8",
    "model.generator.rendering_kwargs.depth_resolution_importance=8", "generator_checkpoint=null",
    "trainer.identity_steps=2", "trainer.sr_steps=1", "batch_size=1", "checkpoint_every=1", "image_every=1000",
]


def test_trains_variants_scores_them_and_updates_the_readme(tmp_path):
    dataset = tmp_path / "heads"
    write_synthetic_dataset(dataset, identities=3, videos=1, frames=4, resolution=128, seed=0, test_identities=2, progress=False)
    regressor = tmp_path / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    config = tmp_path / "benchmark.yaml"
    config.write_text(json.dumps({
        "train_overrides": ["experiment=tiny_synthetic", f"data.root={dataset}", *MICRO],
        "iterations": 1, "run_root": "runs", "out": "results", "sources": 1, "frames": 4, "w_steps": 2, "w_plus_steps": 1, "inversion_loss": "offline_l1",
        "variants": {
            "decoupling": {"label": "decoupling (2/1)", "overrides": ["trainer.motion_steps=1"]},
            "joint": {"label": "joint (3)", "overrides": ["trainer.motion_steps=1", "trainer.schedule=joint"]},
        },
    }))
    (tmp_path / "README.md").write_text("intro\n<!-- disentanglement:start -->\nold\n<!-- disentanglement:end -->\nrest\n")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "disentanglement.py"), "--config", str(config),
                          "--synthetic-regressor", str(regressor), "--update-readme"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert list(results["rows"]) == ["decoupling", "static", "still", "ground_truth_static", "joint"]
    for row in results["rows"].values():
        assert set(row) == {"synthetic_cross_id", "synthetic_multiview"}
        for protocol in row.values():
            assert all(isinstance(protocol[key], float) for key in ("psnr", "region_psnr", "aed")), protocol
    for protocol in ("synthetic_cross_id", "synthetic_multiview"):  # the true head beats a one-iteration micro model
        assert results["rows"]["ground_truth_static"][protocol]["psnr"] > results["rows"]["decoupling"][protocol]["psnr"] + 5
    assert (tmp_path / "runs" / "joint" / "checkpoint_000000001.pt").is_file()
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and "| joint (3) |" in readme and readme.startswith("intro\n") and readme.endswith("rest\n")
    assert "still baseline (source motion and camera)" in readme
    assert "| X-id PSNR ↑ | X-id REGION PSNR ↑ |" in readme and "MV AED ↓" in readme
    # A re-run trains nothing more and reuses each evaluation while checkpoint and settings are unchanged.
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "disentanglement.py"), "--config", str(config),
                            "--synthetic-regressor", str(regressor)], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused from") == 2
    assert json.loads((tmp_path / "results" / "results.json").read_text())["rows"] == results["rows"]
    # The joint variant alone now needs the baselines, which its stored evaluation lacks: evaluated anew.
    joint = subprocess.run([sys.executable, str(REPO / "scripts" / "disentanglement.py"), "--config", str(config), "--variants", "joint",
                            "--synthetic-regressor", str(regressor)], capture_output=True, text=True, cwd=tmp_path)
    assert joint.returncode == 0 and "reused from" not in joint.stdout
    assert list(json.loads((tmp_path / "results" / "results.json").read_text())["rows"]) == ["joint", "static", "still", "ground_truth_static"]


def test_a_stored_evaluation_without_a_column_is_evaluated_anew(tmp_path):
    file, key = tmp_path / "evaluation.json", {"checkpoint_sha256": "abc", "frames": 4}
    complete = {"synthetic_cross_id": {"otavatar": {name: 1.0 for name in COLUMNS}}}
    older = {"synthetic_cross_id": {"otavatar": {name: 1.0 for name in COLUMNS if name != "region_psnr"}}}
    file.write_text(json.dumps({"key": key, "results": older}))
    calls = []
    results, reused = cached_evaluation(file, key, ("otavatar",), lambda: calls.append(1) or complete)
    assert not reused and calls == [1] and results == complete
    assert cached_evaluation(file, key, ("otavatar",), lambda: calls.append(1) or complete) == (complete, True) and calls == [1]
