"""The disentanglement benchmark: its variants' training configs, the seed summary, the table and
its verdict, and scripts/disentanglement.py end to end (nano model, one iteration per run)."""

import copy
import functools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from otavatar.config import CONFIG_DIR, compose_config
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.errors import InputError
from otavatar.evaluation.disentanglement import (
    COLUMNS, cached_evaluation, disentanglement_table, seed_summary, variant_seeds, variant_training_config, verdict,
)
from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor
from otavatar.losses.animation import AnimationLoss
from otavatar.training.from_config import trainer_settings
from otavatar.training.trainer import DecouplingTrainer
from tests.helpers import nano_animator, pixel_loss, random_batch

REPO = Path(__file__).resolve().parent.parent
# tests.helpers.nano_config's model (32² planes, 8 ws): the script's wiring, not the model's quality, is tested.
MICRO = [
    "model.generator.neural_rendering_resolution=16", "model.generator.rendering_kwargs.depth_resolution=8",
    "model.generator.rendering_kwargs.depth_resolution_importance=8", "model.generator.plane_resolution=32", "model.controller.num_ws=8",
    "generator_checkpoint=null",
    "trainer.identity_steps=1", "trainer.sr_steps=1", "batch_size=1", "frames_per_item=1", "checkpoint_every=1", "image_every=1000",
]


def disentanglement_main():
    """scripts/disentanglement.py's ``main(argv)``, run in this process (no interpreter start-up and imports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scripts_disentanglement", REPO / "scripts" / "disentanglement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_trains_variants_scores_them_and_updates_the_readme(tmp_path, monkeypatch, capsys):
    """scripts/disentanglement.py's main, run in this process (the interpreter's start-up and imports are most of a
    subprocess's cost; the exit status of a refused option is checked): three one-iteration trainings of one frame,
    each scored on one source × 1 frame, then re-runs that reuse and re-evaluate."""
    dataset = tmp_path / "heads"
    write_synthetic_dataset(dataset, identities=3, videos=1, frames=2, resolution=128, seed=0, test_identities=2, progress=False)
    regressor = tmp_path / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    config = tmp_path / "benchmark.yaml"
    config.write_text(json.dumps({
        "train_overrides": ["experiment=tiny_synthetic", "trainer=cpu", f"data.root={dataset}", *MICRO],
        "iterations": 1, "run_root": "runs", "out": "results", "sources": 1, "frames": 1, "w_steps": 1, "w_plus_steps": 0, "inversion_loss": "offline_l1",
        "variants": {
            "decoupling": {"label": "decoupling (1/1)", "overrides": ["trainer.motion_steps=1"], "seeds": [0, 1]},
            "joint": {"label": "joint (2)", "overrides": ["trainer.motion_steps=1", "trainer.schedule=joint"]},
        },
        "compare": [["decoupling", "joint"], ["joint", "decoupling"]],
    }))
    (tmp_path / "README.md").write_text("intro\n<!-- disentanglement:start -->\nold\n<!-- disentanglement:end -->\nrest\n")
    main = disentanglement_main()
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(config), "--synthetic-regressor", str(regressor)]

    def run(*args: str) -> str:
        try:
            main([*common, *args])
        finally:
            torch.set_flush_denormal(False)  # the trainings flushed them in this process, as they do in the script's
        return capsys.readouterr().out

    assert "README.md: results table updated" in run("--update-readme")
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert list(results["rows"]) == ["decoupling", "static", "still", "ground_truth_static", "joint"]
    for row in results["rows"].values():
        assert set(row) == {"synthetic_cross_id", "synthetic_multiview"}
        for protocol in row.values():
            assert all(isinstance(protocol[key], float) for key in ("psnr", "region_psnr", "aed")), protocol
    for protocol in ("synthetic_cross_id", "synthetic_multiview"):  # the true head beats a one-iteration nano model
        assert results["rows"]["ground_truth_static"][protocol]["psnr"] > results["rows"]["decoupling"][protocol]["psnr"] + 5
    # Every seed trains in its own run; results.json keeps each seed's numbers; the row is their mean.
    assert set(results["per_seed"]) == {"decoupling", "joint"} and set(results["per_seed"]["joint"]) == {"seed_0"}
    seeds = results["per_seed"]["decoupling"]
    assert set(seeds) == {"seed_0", "seed_1"} and set(results["training"]["decoupling"]) == {"seed_0", "seed_1"}
    for seed in ("seed_0", "seed_1"):
        assert (tmp_path / "runs" / "decoupling" / seed / "checkpoint_000000001.pt").is_file()
    assert OmegaConf.load(tmp_path / "runs" / "decoupling" / "seed_1" / "config.yaml").seed == 1
    assert seeds["seed_0"]["synthetic_cross_id"]["psnr"] != seeds["seed_1"]["synthetic_cross_id"]["psnr"]  # two seeds, two networks
    psnrs = [seeds[seed]["synthetic_cross_id"]["psnr"] for seed in ("seed_0", "seed_1")]
    assert results["rows"]["decoupling"]["synthetic_cross_id"]["psnr"] == pytest.approx(sum(psnrs) / 2)
    assert results["spreads"]["decoupling"]["synthetic_cross_id"]["psnr"] == pytest.approx(abs(psnrs[0] - psnrs[1]) / 2)
    assert results["spreads"]["joint"] == {"synthetic_cross_id": {}, "synthetic_multiview": {}}
    assert (tmp_path / "runs" / "joint" / "seed_0" / "checkpoint_000000001.pt").is_file()
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and "| joint (2) | 0 |" in readme and readme.startswith("intro\n") and readme.endswith("rest\n")
    assert "| decoupling (1/1) | 0, 1 | " in readme and " ± " in readme.split("| decoupling (1/1) |")[1].splitlines()[0]
    assert "still baseline (source motion and camera)" in readme
    assert "| seeds | X-id PSNR ↑ | X-id REGION PSNR ↑ |" in readme and "MV AED ↓" in readme
    assert results["verdict"] in readme and "one seed only for joint" in results["verdict"]
    assert results["verdict"].split("\n\n") == [verdict("decoupling", "joint", results["per_seed"]), verdict("joint", "decoupling", results["per_seed"])]

    # A re-run trains nothing more and reuses each evaluation while checkpoint and settings are unchanged.
    again = run()
    assert again.count("reused from") == 3 and again.count("at iteration 1") == 3  # each run resumed where it ended
    assert json.loads((tmp_path / "results" / "results.json").read_text())["rows"] == results["rows"]
    # --variants and --seeds pick variants and each one's seeds (parallel processes each train their own). Joint first
    # now needs the baselines, which its stored evaluation lacks: evaluated anew; decoupling's seed 0 is reused.
    picked = run("--variants", "joint,decoupling", "--seeds", "0")
    assert picked.count("reused from") == 1 and "decoupling seed 0: evaluation of this checkpoint with these settings reused" in picked
    stored = json.loads((tmp_path / "results" / "results.json").read_text())
    assert list(stored["rows"]) == ["joint", "static", "still", "ground_truth_static", "decoupling"]
    assert {name: list(values) for name, values in stored["per_seed"].items()} == {"joint": ["seed_0"], "decoupling": ["seed_0"]}
    assert stored["rows"]["decoupling"] == results["per_seed"]["decoupling"]["seed_0"]
    # A seed that some picked variant lacks is refused before anything runs.
    with pytest.raises(SystemExit) as refused:
        main([*common, "--seeds", "1"])
    assert refused.value.code == 2 and "--seeds 1: no seed of ['joint'] among them" in capsys.readouterr().err


def test_a_stored_evaluation_without_a_column_is_evaluated_anew(tmp_path):
    file, key = tmp_path / "evaluation.json", {"checkpoint_sha256": "abc", "frames": 4}
    complete = {"synthetic_cross_id": {"otavatar": {name: 1.0 for name in COLUMNS}}}
    older = {"synthetic_cross_id": {"otavatar": {name: 1.0 for name in COLUMNS if name != "region_psnr"}}}
    file.write_text(json.dumps({"key": key, "results": older}))
    calls = []
    results, reused = cached_evaluation(file, key, ("otavatar",), lambda: calls.append(1) or complete)
    assert not reused and calls == [1] and results == complete
    assert cached_evaluation(file, key, ("otavatar",), lambda: calls.append(1) or complete) == (complete, True) and calls == [1]


BENCHMARK = OmegaConf.load(CONFIG_DIR / "benchmark" / "disentanglement.yaml")


@functools.cache
def _composed_variant(name: str, seed: int):
    return variant_training_config(BENCHMARK, name, seed, None, "cpu", "disentanglement.yaml")


def variant_config(name: str, seed: int = 0):
    """A variant's training config, composed once per module (Hydra's compose is most of these tests' cost); a copy each call."""
    return copy.deepcopy(_composed_variant(name, seed))


def test_seeds_default_to_zero_and_must_be_distinct_integers():
    assert variant_seeds({"overrides": []}, "v.seeds") == [0]
    assert variant_seeds(BENCHMARK.variants.decoupling, "v.seeds") == [0, 1] == variant_seeds(BENCHMARK.variants.joint, "v.seeds")
    for bad in ([], [0, 0], ["1"], [True]):
        with pytest.raises(InputError, match=r"^v\.seeds: expected a non-empty list of distinct integers"):
            variant_seeds({"seeds": bad}, "v.seeds")


def test_each_seed_trains_in_its_own_run_with_that_seed():
    configs = {seed: variant_config("decoupling", seed) for seed in (0, 1)}
    assert {seed: cfg.seed for seed, cfg in configs.items()} == {0: 0, 1: 1}
    assert configs[1].run_dir == str(Path(BENCHMARK.run_root) / "decoupling" / "seed_1") != configs[0].run_dir
    assert BENCHMARK.iterations is None and configs[0].iterations == compose_config(list(BENCHMARK.train_overrides)).iterations
    assert variant_training_config(BENCHMARK, "decoupling", 0, 7, "cpu", "b").iterations == 7


def test_a_bad_variant_override_is_refused_before_training():
    broken = copy.deepcopy(BENCHMARK)
    broken.variants.decoupling.overrides = ["loss.regionn=0"]
    with pytest.raises(InputError, match=r"^bench.yaml: variants.decoupling.overrides: Could not override 'loss.regionn'"):
        variant_training_config(broken, "decoupling", 0, None, "cpu", "bench.yaml")
    broken.variants.decoupling.overrides = ["trainer.finetune_generator=maybe"]
    with pytest.raises(InputError, match="trainer.finetune_generator"):
        variant_training_config(broken, "decoupling", 0, None, "cpu", "bench.yaml")


def test_the_n_mo_ablation_keeps_n_id_plus_n_mo_and_its_labels_say_both():
    decoupling = variant_config("decoupling").trainer
    total = decoupling.identity_steps + decoupling.motion_steps
    assert total == 30
    steps = {}
    for name in ("decoupling", "n_mo_1", "n_mo_3", "n_mo_5", "n_mo_20"):
        trainer = variant_config(name).trainer
        assert trainer.identity_steps + trainer.motion_steps == total and trainer.schedule == "successive", name
        assert f"N_id {trainer.identity_steps} / N_mo {trainer.motion_steps}" in BENCHMARK.variants[name].label
        steps[name] = trainer.motion_steps
    assert steps == {"decoupling": 10, "n_mo_1": 1, "n_mo_3": 3, "n_mo_5": 5, "n_mo_20": 20}
    assert variant_config("joint").trainer.schedule == "joint"


def test_the_fitted_variant_trains_with_the_embedded_models_schedule():
    # The variant's trainer=cpu_fitted replaces the benchmark's trainer=cpu: the embedded recipe, not the paper's.
    fitted = variant_config("fitted").trainer
    assert fitted == compose_config(["experiment=tiny_synthetic"]).trainer
    assert fitted.motion_target_steps > 0 == variant_config("decoupling").trainer.motion_target_steps


def test_the_fitted_joint_variant_fits_w_id_with_the_motion_codes_in_the_same_rendering_steps():
    fitted, joint = variant_config("fitted").trainer, variant_config("fitted_joint").trainer
    assert (fitted.schedule, joint.schedule, joint.identity_steps) == ("successive", "joint", 0)
    assert joint.motion_target_steps == fitted.identity_steps + fitted.motion_target_steps  # the same rendering budget per batch
    assert {key: value for key, value in joint.items() if key not in ("schedule", "identity_steps", "motion_target_steps")} == {
        key: value for key, value in fitted.items() if key not in ("schedule", "identity_steps", "motion_target_steps")}
    trainer_settings(joint)  # the joint fit is a valid schedule


def test_without_the_region_loss_training_has_no_region_term():
    prediction, target = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    keypoints = torch.rand(1, 68, 2) * 80 + 24
    terms = {}
    for name in ("decoupling", "no_region"):
        cfg = variant_config(name)
        terms[name] = AnimationLoss.from_config(cfg.loss).image_terms(prediction, target, keypoints, "raw")
    assert variant_config("decoupling").loss.region > 0 and variant_config("no_region").loss.region == 0
    assert terms["decoupling"]["region_raw"] > 0 and "region_raw" not in terms["no_region"]
    assert set(terms["decoupling"]) - set(terms["no_region"]) == {"region_raw"}


def test_without_finetuning_g_keeps_its_weights_through_an_iteration(one_thread):
    changed = {}
    for name in ("decoupling", "no_finetune"):
        settings = trainer_settings(variant_config(name).trainer)
        # The variant's settings on the nano model, with a short inner loop so the iteration is cheap.
        trainer = DecouplingTrainer(nano_animator(), pixel_loss, replace(settings, identity_steps=1, motion_steps=1, sr_steps=1))
        before = copy.deepcopy(trainer.animator.generator.state_dict())
        trainer.train_step(random_batch(5, batch=1, frames=1))
        changed[name] = [key for key, value in trainer.animator.generator.state_dict().items() if not torch.equal(value, before[key])]
    assert changed["decoupling"] and changed["no_finetune"] == []


def results(psnr: float, region: float, aed: float) -> dict:
    cross_id = {"psnr": psnr, "region_psnr": region, "ssim": 0.8, "lpips": "n/a (no AlexNet weights)", "aed": aed, "apd": 0.03}
    return {"synthetic_cross_id": cross_id, "synthetic_multiview": {**cross_id, "psnr": psnr - 1, "region_psnr": region - 1}}


def test_the_seed_summary_is_the_mean_and_half_the_range():
    means, spreads = seed_summary({0: results(22.0, 18.0, 0.50), 1: results(22.5, 18.6, 0.46)})
    assert means["synthetic_cross_id"]["psnr"] == pytest.approx(22.25) and spreads["synthetic_cross_id"]["psnr"] == pytest.approx(0.25)
    assert means["synthetic_cross_id"]["region_psnr"] == pytest.approx(18.3) and spreads["synthetic_cross_id"]["region_psnr"] == pytest.approx(0.3)
    assert means["synthetic_cross_id"]["aed"] == pytest.approx(0.48) and spreads["synthetic_cross_id"]["aed"] == pytest.approx(0.02)
    assert means["synthetic_multiview"]["psnr"] == pytest.approx(21.25)
    assert means["synthetic_cross_id"]["lpips"] == "n/a (no AlexNet weights)" and "lpips" not in spreads["synthetic_cross_id"]
    single_means, single_spreads = seed_summary({3: results(22.0, 18.0, 0.5)})
    assert single_means == results(22.0, 18.0, 0.5) and single_spreads == {"synthetic_cross_id": {}, "synthetic_multiview": {}}


def test_table_cells_show_mean_plus_minus_spread_and_the_seeds():
    means, spreads = seed_summary({0: results(22.0, 18.0, 0.50), 1: results(22.5, 18.6, 0.46)})
    rows = {"decoupling": means, "static": results(21.0, 15.0, 0.7)}
    table = disentanglement_table(rows, {"decoupling": "decoupling"}, "HEADER", {"decoupling": spreads}, {"decoupling": [0, 1]}, "VERDICT")
    lines = table.splitlines()
    assert lines[0] == "HEADER" and lines[-1] == "VERDICT" and lines[-2] == ""
    assert lines[4] == ("| decoupling | 0, 1 | 22.25 ± 0.25 | 18.30 ± 0.30 | 0.800 ± 0.000 | n/a | 0.480 ± 0.020 | 0.030 ± 0.000 "
                        "| 21.25 ± 0.25 | 17.30 ± 0.30 | 0.800 ± 0.000 | n/a | 0.480 ± 0.020 | 0.030 ± 0.000 |")
    assert lines[5] == ("| static baseline (source motion, driving cameras) | – | 21.00 | 15.00 | 0.800 | n/a | 0.700 | 0.030 "
                        "| 20.00 | 14.00 | 0.800 | n/a | 0.700 | 0.030 |")


def test_the_verdict_compares_the_gap_with_the_larger_seed_range():
    per_seed = {
        "decoupling": {0: results(22.0, 19.0, 0.40), 1: results(22.2, 19.2, 0.44)},  # region range 0.2, AED range 0.04
        "joint": {0: results(22.1, 18.5, 0.43), 1: results(22.1, 18.6, 0.45)},  # region range 0.1, AED range 0.02
    }
    line = verdict("decoupling", "joint", per_seed)
    # Region PSNR: 19.1 vs 18.55, a 0.55 dB gap beyond the 0.2 dB range. AED: 0.42 vs 0.44 (lower wins), a 0.02 gap within 0.04.
    assert "decoupling leads by 0.55 dB region PSNR; the larger seed range is 0.20 dB: separated" in line
    assert "decoupling leads by 0.020 AED; the larger seed range is 0.040: not separated" in line
    assert line.startswith("**decoupling vs joint** (X-id, means over seeds: decoupling 2 seeds, joint 2 seeds;")
    assert "joint 1 seed;" in verdict("decoupling", "joint", {**per_seed, "joint": {0: results(22.1, 19.1, 0.42)}})
    per_seed["joint"] = {0: results(22.1, 19.3, 0.30), 1: results(22.1, 19.4, 0.31)}
    line = verdict("decoupling", "joint", per_seed)
    assert "joint leads by 0.25 dB region PSNR; the larger seed range is 0.20 dB: separated" in line
    assert "joint leads by 0.115 AED; the larger seed range is 0.040: separated" in line
    per_seed["joint"] = {0: results(22.1, 19.1, 0.42)}
    line = verdict("decoupling", "joint", per_seed)
    assert "decoupling and joint tie on region PSNR; one seed only for joint, so no seed spread: cannot say" in line
    assert line.count("separated") == 1  # only in the definition: no claim either way
    per_seed["joint"][0]["synthetic_cross_id"]["aed"] = "n/a (no regressor)"
    assert "AED n/a" in verdict("decoupling", "joint", per_seed)
    assert verdict("decoupling", "joint", {"decoupling": per_seed["decoupling"]}) == "No decoupling vs joint verdict: joint not in this run."
