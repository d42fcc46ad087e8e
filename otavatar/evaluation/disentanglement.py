"""The disentanglement benchmark: training schedules compared by synthetic cross-identity and multi-view
reenactment against ground truth (configs/benchmark/disentanglement.yaml)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Mapping

from hydra.errors import HydraException
from omegaconf import DictConfig

from otavatar.config import compose_config
from otavatar.data.datasets import FrameSource
from otavatar.errors import InputError
from otavatar.evaluation.protocols import BASELINES
from otavatar.evaluation.runner import EvaluationSettings, run_evaluation
from otavatar.files import atomic_write_text
from otavatar.inversion import FrameLoss, InversionSettings
from otavatar.metrics.suite import Extractors, MetricSuite
from otavatar.models.animator import Animator
from otavatar.training.from_config import run_settings, trainer_settings

PROTOCOLS = ("synthetic_cross_id", "synthetic_multiview")  # the X-id and MV columns
DEFAULT_SEEDS = (0,)  # a variant's training seeds when its config names none
COLUMNS = ("psnr", "region_psnr", "ssim", "lpips", "aed", "apd")


def evaluate_variant(
    animator: Animator, source: FrameSource, extractors: Extractors, frame_loss: FrameLoss, sources: int, frames: int,
    inversion: InversionSettings, baselines: tuple[str, ...] = (),
) -> dict[str, dict[str, dict]]:
    """Overall metrics per protocol and method (the variant as ``otavatar``, plus ``baselines``); the
    first ``sources`` test videos are inverted once and shared by both protocols."""
    avatars: dict = {}
    views = source.database.array(source.database.splits["test"][0], "view_camera").shape[0]
    results: dict[str, dict[str, dict]] = {}
    for protocol, episodes_per_source in (("synthetic_cross_id", 1), ("synthetic_multiview", views)):
        suites = {method: MetricSuite(extractors) for method in ("otavatar", *baselines)}
        settings = EvaluationSettings(protocol, frames=frames, max_episodes=sources * episodes_per_source, baselines=baselines, inversion=inversion)
        run_evaluation(animator, source, settings, suites, frame_loss, avatars=avatars, log=lambda line: None)
        results[protocol] = {method: suite.summary() for method, suite in suites.items()}
    return results


def cached_evaluation(
    file: Path, key: Mapping[str, object], methods: tuple[str, ...], evaluate: Callable[[], dict], metrics: tuple[str, ...] = COLUMNS,
) -> tuple[dict, bool]:
    """``evaluate()``'s results (protocol → method → metrics), stored in ``file`` with ``key``
    (checkpoint, settings) and read back while the key is unchanged and the stored results hold every
    one of ``methods`` with every one of ``metrics`` (an evaluation stored before a metric existed is
    redone), so a re-run evaluates only what changed. Returns (results, reused)."""
    key = json.loads(json.dumps(key, default=str))  # tuples → lists, paths → strings, as stored
    if file.is_file():
        saved = json.loads(file.read_text())
        complete = all(
            method in values and set(metrics) <= set(values[method]) for values in saved["results"].values() for method in methods
        )
        if saved.get("key") == key and complete:
            return {protocol: {m: values[m] for m in methods} for protocol, values in saved["results"].items()}, True
    results = evaluate()
    atomic_write_text(file, json.dumps({"key": key, "results": results}, indent=2, default=str) + "\n")
    return results, False


def variant_seeds(variant: Mapping[str, object], where: str) -> list[int]:
    """A variant's training seeds: its ``seeds`` list (default ``[0]``), distinct integers; ``where`` names the key in errors."""
    seeds = list(variant.get("seeds", DEFAULT_SEEDS))
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise InputError(f"{where}: expected a non-empty list of distinct integers, found {seeds}")
    return seeds


def seed_run_dir(run_root: str | Path, name: str, seed: int) -> Path:
    """Where a variant trains with one seed (and its evaluation is stored)."""
    return Path(run_root) / name / f"seed_{seed}"


def variant_training_config(benchmark: DictConfig, name: str, seed: int, iterations: int | None, device: str, where: str) -> DictConfig:
    """The training config of variant ``name`` trained with ``seed`` (the benchmark's ``train_overrides``,
    then the variant's ``overrides``; ``iterations``: None keeps the composed budget), its run and
    trainer settings checked, so a bad variant is refused before any training starts; ``where`` names
    the benchmark config in errors."""
    run_dir = seed_run_dir(benchmark.run_root, name, seed)
    overrides = [*benchmark.train_overrides, *benchmark.variants[name].overrides, f"seed={seed}", f"run_dir={run_dir}", f"device={device}"]
    if iterations is not None:
        overrides.append(f"iterations={iterations}")
    try:
        cfg = compose_config(overrides)
    except HydraException as error:
        raise InputError(f"{where}: variants.{name}.overrides: {str(error).splitlines()[0]}") from error
    run_settings(cfg)
    trainer_settings(cfg.trainer)
    return cfg


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def seed_summary(per_seed: Mapping[int, Mapping[str, Mapping[str, object]]]) -> tuple[dict, dict]:
    """(means, spreads) of a variant's per-seed results (seed → protocol → metric → value), each
    protocol → metric → value: the mean over seeds and half their range, (max − min) / 2, so that
    mean ± spread spans every seed. With one seed there is no spread; a metric that is not a finite
    number in every seed (n/a) keeps the first seed's value and has no spread."""
    results = list(per_seed.values())
    means: dict[str, dict] = {}
    spreads: dict[str, dict] = {}
    for protocol, metrics in results[0].items():
        means[protocol], spreads[protocol] = {}, {}
        for metric, first in metrics.items():
            values = [result[protocol][metric] for result in results]
            if all(_number(value) for value in values):
                means[protocol][metric] = sum(values) / len(values)
                if len(values) > 1:
                    spreads[protocol][metric] = (max(values) - min(values)) / 2
            else:
                means[protocol][metric] = first
    return means, spreads


def _decimals(metric: str) -> int:
    return 2 if metric in ("psnr", "region_psnr") else 3


def _cell(value: object, metric: str, spread: float | None = None) -> str:
    if not _number(value):
        return "n/a" if isinstance(value, str) else str(value)
    decimals = _decimals(metric)
    return f"{value:.{decimals}f}" + (f" ± {spread:.{decimals}f}" if spread is not None else "")


VERDICT_METRICS = (("region_psnr", "region PSNR", " dB", True), ("aed", "AED", "", False))  # (metric, name, unit, higher is better)


def verdict(first: str, second: str, per_seed: Mapping[str, Mapping[int, Mapping[str, Mapping[str, object]]]], protocol: str = "synthetic_cross_id") -> str:
    """One line comparing variants ``first`` and ``second`` (names in ``per_seed``: variant → seed →
    protocol → metric → value) on ``protocol``'s region PSNR and AED: which leads and by how much
    (difference of the means over seeds), and whether that gap exceeds the larger of the two variants'
    seed ranges (max − min), i.e. every seed of the leader beats every seed of the other (two seeds each)."""
    missing = [name for name in (first, second) if name not in per_seed]
    if missing:
        return f"No {first} vs {second} verdict: {' and '.join(missing)} not in this run."
    short = dict(zip(PROTOCOLS, ("X-id", "MV"))).get(protocol, protocol)
    counts = {name: len(per_seed[name]) for name in (first, second)}
    parts = []
    for metric, title, unit, higher in VERDICT_METRICS:
        values = {name: [result[protocol][metric] for result in per_seed[name].values()] for name in (first, second)}
        if not all(_number(value) for name in values for value in values[name]):
            parts.append(f"{title} n/a")
            continue
        means = {name: sum(v) / len(v) for name, v in values.items()}
        gap = means[first] - means[second]
        decimals = _decimals(metric)
        if round(gap, decimals) == 0:
            lead = f"{first} and {second} tie on {title}"
        else:
            leader = first if (gap > 0) == higher else second
            lead = f"{leader} leads by {abs(gap):.{decimals}f}{unit} {title}"
        if min(counts.values()) < 2:
            parts.append(f"{lead}; one seed only for {' and '.join(n for n in counts if counts[n] < 2)}, so no seed spread: cannot say")
            continue
        spread = max(max(v) - min(v) for v in values.values())
        separated = abs(gap) > spread
        parts.append(f"{lead}; the larger seed range is {spread:.{decimals}f}{unit}: {'separated' if separated else 'not separated'}")
    seeds = ", ".join(f"{name} {counts[name]} seed{'s' if counts[name] > 1 else ''}" for name in (first, second))
    return f"**{first} vs {second}** ({short}, means over seeds: {seeds}; separated = the gap exceeds the larger seed range, max − min): " + "; ".join(parts) + "."


def disentanglement_table(
    rows: Mapping[str, Mapping[str, Mapping[str, object]]], labels: Mapping[str, str], header: str,
    spreads: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None, seeds: Mapping[str, list[int]] | None = None, footer: str = "",
) -> str:
    """Markdown: one row per variant (and baseline), cross-identity then multi-view columns; a variant
    in ``spreads`` shows mean ± spread, ``seeds`` fills the seeds column; ``footer`` goes under the table."""
    spreads, seeds = spreads or {}, seeds or {}
    arrows = {"psnr": "↑", "region_psnr": "↑", "ssim": "↑", "lpips": "↓", "aed": "↓", "apd": "↓"}
    titles = ["seeds", *(f"{short} {metric.upper().replace('_', ' ')} {arrows[metric]}" for short in ("X-id", "MV") for metric in COLUMNS)]
    lines = [header, "", "| method | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for key, protocols in rows.items():
        spread = spreads.get(key, {})
        cells = [", ".join(map(str, seeds[key])) if key in seeds else "–"]
        cells += [_cell(protocols[protocol].get(metric), metric, spread.get(protocol, {}).get(metric)) for protocol in PROTOCOLS for metric in COLUMNS]
        lines.append(f"| {labels.get(key, BASELINES.get(key, key))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + (f"\n{footer}\n" if footer else "")
