"""The disentanglement benchmark: does decoupling-by-inverting separate identity from motion?

Trains every variant of configs/benchmark/disentanglement.yaml with the same budget, each of its
seeds in its own run (runs resume when re-run, and an evaluation is reused while its checkpoint and
settings are unchanged), then scores each on held-out synthetic identities against ground truth:
cross-identity and multi-view reenactment (PSNR, region PSNR over the eye and mouth boxes, SSIM,
LPIPS, and expression/pose error read by the synthetic regressor), with the static and still
baselines. A variant with several seeds is reported as mean ± half the range over seeds, and a line
under the table says whether decoupling and joint training are separated by more than the seed
spread. Writes OUT/results.json (every seed's numbers) and OUT/table.md; --update-readme puts the
table into README.md's results section.

    python scripts/disentanglement.py                    # everything: 14 trainings of 100 iterations, ≈ 48 h on 2 CPU cores (estimate)
    python scripts/disentanglement.py --variants decoupling,joint --update-readme   # 4 trainings, ≈ 16.5 h (estimate)
    python scripts/disentanglement.py --variants fitted,fitted_joint --seeds 1     # the embedded recipe and its joint counterpart, seed 1: 2 trainings, ≈ 2.8 h
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from otavatar.checkpoints import file_sha256, load_animator
from otavatar.cli import ScriptParser, at_least, available_device, script
from otavatar.config import CONFIG_DIR, load_loss_preset
from otavatar.errors import InputError
from otavatar.evaluation.disentanglement import (
    cached_evaluation, disentanglement_table, evaluate_variant, seed_summary, variant_seeds, variant_training_config, verdict,
)
from otavatar.evaluation.protocols import BASELINES
from otavatar.evaluation.scoring import DEFAULT_SYNTHETIC_REGRESSOR, ExtractorPaths, build_extractors
from otavatar.files import atomic_write_text, replace_marked_block
from otavatar.inversion import InversionSettings
from otavatar.losses.animation import AnimationLoss
from otavatar.metrics.suite import Extractors
from otavatar.training.from_config import frame_source, train_from_config

README_MARKERS = ("<!-- disentanglement:start -->", "<!-- disentanglement:end -->")


def train_and_evaluate(
    train_cfg: DictConfig, benchmark: DictConfig, args: argparse.Namespace, extractors: Extractors, frame_loss: AnimationLoss,
    inversion: InversionSettings, baselines: tuple[str, ...], name: str,
) -> tuple[dict, dict]:
    """Train (or resume) one variant with one seed, then evaluate it (reused while checkpoint and settings
    are unchanged). Returns (protocol → method → metrics, the training record)."""
    run_dir = Path(train_cfg.run_dir)
    started = time.perf_counter()
    checkpoint = train_from_config(train_cfg)
    training = {"iterations": train_cfg.iterations, "seconds_this_run": round(time.perf_counter() - started, 1), "checkpoint": str(checkpoint)}
    print(f"{name} seed {train_cfg.seed}: trained to {checkpoint} ({training['seconds_this_run']:.0f} s); evaluating", flush=True)
    key = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "sources": benchmark.sources, "frames": benchmark.frames,
           "w_steps": benchmark.w_steps, "w_plus_steps": benchmark.w_plus_steps, "inversion_loss": benchmark.inversion_loss,
           "synthetic_regressor": _file_key(args.synthetic_regressor), "alexnet": _file_key(args.alexnet), "device": args.device}

    def evaluate() -> dict:
        animator, model_config = load_animator(checkpoint)
        source = frame_source(train_cfg.data, model_config["generator"]["img_resolution"])
        torch.manual_seed(0)  # the same evaluation randomness for every variant and seed
        return evaluate_variant(animator.to(args.device), source, extractors, frame_loss, benchmark.sources, benchmark.frames, inversion, baselines)

    results, reused = cached_evaluation(run_dir / "evaluation.json", key, ("otavatar", *baselines), evaluate)
    if reused:
        print(f"{name} seed {train_cfg.seed}: evaluation of this checkpoint with these settings reused from {run_dir / 'evaluation.json'}", flush=True)
    print(f"{name} seed {train_cfg.seed}: " + json.dumps({p: {k: v for k, v in r["otavatar"].items() if isinstance(v, float)} for p, r in results.items()}), flush=True)
    return results, training


def _file_key(path: str | None) -> str | None:
    """A scoring network in an evaluation's cache key: its content, wherever the file lies (None: not given or missing)."""
    return file_sha256(path) if path and Path(path).is_file() else None


def table_header(cfg: DictConfig, train_cfg: DictConfig) -> str:
    """What the table measures, from the benchmark config and a variant's training config."""
    return (
        f"Held-out synthetic identities: {cfg.sources} sources × {cfg.frames} driving frames; every variant trained "
        f"{train_cfg.iterations} iterations per seed from {train_cfg.generator_checkpoint or 'a random generator'} (batch {train_cfg.batch_size}); "
        f"inversion {cfg.w_steps} W + {cfg.w_plus_steps} W+ steps ({cfg.inversion_loss} loss). SEEDS: the training seeds (initial controller, "
        "data order, rendering jitter); with several, a cell is the mean over seeds ± half their range, so it spans every seed. "
        "X-id: cross-identity (source identity with the next identity's motion); MV: multi-view (self-reenactment seen from the stored "
        "extra views). REGION PSNR: PSNR inside the eye and mouth boxes of the true landmarks. AED/APD: mean |Δ| of the regressor's "
        "6 expression / 6 pose parameters. Baselines use the first variant's first seed's avatars."
    )


def parse(argv: list[str]) -> argparse.Namespace:
    """The options, with the benchmark config (``cfg``), the verdicts' ``pairs`` and every variant and seed's training
    config (``runs``), composed and checked before anything trains."""
    parser = ScriptParser(__doc__)
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "benchmark" / "disentanglement.yaml")
    parser.add_argument("--variants", help="comma-separated subset of the config's variants")
    parser.add_argument("--seeds", help="comma-separated subset of each variant's seeds (e.g. to train seeds in parallel processes)")
    parser.add_argument("--iterations", type=at_least(0), help="override the training budget of every variant")
    parser.add_argument("--alexnet", help="LPIPS backbone (alexnet-owt-7be5be79.pth); without it LPIPS is n/a")
    parser.add_argument("--synthetic-regressor", default=str(DEFAULT_SYNTHETIC_REGRESSOR))
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--device", type=available_device, default="cpu")
    args = parser.parse_args(argv)

    cfg = OmegaConf.load(args.config)
    names = args.variants.split(",") if args.variants else list(cfg.variants)
    unknown = [name for name in names if name not in cfg.variants]
    if unknown:
        parser.error(f"--variants: {unknown} are not in {args.config} (it has {list(cfg.variants)})")
    pairs = [list(pair) for pair in cfg.get("compare", [])]
    if not pairs or any(len(pair) != 2 or not set(pair) <= set(cfg.variants) for pair in pairs):
        raise InputError(f"{args.config}: compare: expected pairs of its variants {list(cfg.variants)}, found {pairs}")
    iterations = cfg.iterations if args.iterations is None else args.iterations
    seeds = {name: variant_seeds(cfg.variants[name], f"{args.config}: variants.{name}.seeds") for name in names}
    if args.seeds:
        wanted = [int(seed) for seed in args.seeds.split(",")]
        seeds = {name: [seed for seed in listed if seed in wanted] for name, listed in seeds.items()}
        if not all(seeds.values()):
            parser.error(f"--seeds {args.seeds}: no seed of {[name for name, listed in seeds.items() if not listed]} among them")
    args.runs = {
        (name, seed): variant_training_config(cfg, name, seed, iterations, args.device, str(args.config)) for name in names for seed in seeds[name]
    }
    args.cfg, args.names, args.pairs = cfg, names, pairs
    return args


@script
def main(argv: list[str]) -> None:
    args = parse(argv)
    cfg, names, pairs, runs = args.cfg, args.names, args.pairs, args.runs
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    extractors = build_extractors("synthetic", ExtractorPaths(alexnet=args.alexnet, synthetic_regressor=args.synthetic_regressor), args.device, faces=False, fid=False)
    frame_loss = AnimationLoss.from_config(load_loss_preset(cfg.inversion_loss), use_regularisers=False).to(args.device)
    inversion = InversionSettings(w_steps=cfg.w_steps, w_plus_steps=cfg.w_plus_steps)

    per_seed, baseline_rows, training = {}, {}, {}
    for index, ((name, seed), train_cfg) in enumerate(runs.items()):
        baselines = tuple(BASELINES) if index == 0 else ()  # the baselines use the first variant's first seed's avatars
        results, training.setdefault(name, {})[f"seed_{seed}"] = train_and_evaluate(train_cfg, cfg, args, extractors, frame_loss, inversion, baselines, name)
        per_seed.setdefault(name, {})[seed] = {protocol: values["otavatar"] for protocol, values in results.items()}
        baseline_rows.update({method: {protocol: values[method] for protocol, values in results.items()} for method in baselines})
    rows, spreads = {}, {}
    for name in names:
        rows[name], spreads[name] = seed_summary(per_seed[name])
        if name == names[0]:
            rows.update(baseline_rows)

    # A verdict for every pair this run trained a side of (the first pair's "no verdict" line when none).
    summary = "\n\n".join(verdict(*pair, per_seed) for pair in pairs if set(pair) & set(per_seed)) or verdict(*pairs[0], per_seed)
    labels = {name: cfg.variants[name].label for name in names}
    table = disentanglement_table(rows, labels, table_header(cfg, next(iter(runs.values()))), spreads, {name: list(per_seed[name]) for name in names}, summary)
    stored = {"rows": rows, "spreads": spreads, "per_seed": {name: {f"seed_{seed}": values for seed, values in results.items()} for name, results in per_seed.items()},
              "verdict": summary, "labels": labels, "training": training, "config": OmegaConf.to_container(cfg)}
    atomic_write_text(out / "results.json", json.dumps(stored, indent=2, default=str) + "\n")
    atomic_write_text(out / "table.md", table)
    print(table)
    if args.update_readme:
        replace_marked_block(Path("README.md"), README_MARKERS, table)
        print("README.md: results table updated")


if __name__ == "__main__":
    main()
