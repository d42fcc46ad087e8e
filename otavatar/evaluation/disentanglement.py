"""The disentanglement benchmark: training schedules compared by synthetic cross-identity and multi-view
reenactment against ground truth (configs/benchmark/disentanglement.yaml)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Mapping

from otavatar.data.datasets import FrameSource
from otavatar.evaluation.protocols import BASELINES
from otavatar.evaluation.runner import EvaluationSettings, run_evaluation
from otavatar.files import atomic_write_text
from otavatar.inversion import FrameLoss, InversionSettings
from otavatar.metrics.suite import Extractors, MetricSuite
from otavatar.models.animator import Animator

PROTOCOLS = ("synthetic_cross_id", "synthetic_multiview")  # the X-id and MV columns
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


def _cell(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"
    return "n/a" if isinstance(value, str) else str(value)


def disentanglement_table(rows: Mapping[str, Mapping[str, Mapping[str, object]]], labels: Mapping[str, str], header: str) -> str:
    """Markdown: one row per variant (and baseline), cross-identity then multi-view columns."""
    arrows = {"psnr": "↑", "region_psnr": "↑", "ssim": "↑", "lpips": "↓", "aed": "↓", "apd": "↓"}
    titles = [f"{short} {metric.upper().replace('_', ' ')} {arrows[metric]}" for short in ("X-id", "MV") for metric in COLUMNS]
    lines = [header, "", "| method | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for key, protocols in rows.items():
        cells = [_cell(protocols[protocol].get(metric)) for protocol in PROTOCOLS for metric in COLUMNS]
        lines.append(f"| {labels.get(key, BASELINES.get(key, key))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
