"""Result files of an evaluation: ``results.json``, ``results.csv`` (per video and overall) and ``table.md``
laid out like the paper's Table 1, with the paper's own rows for comparison."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Mapping

from otavatar.evaluation.protocols import BASELINES
from otavatar.files import atomic_write_text
from otavatar.metrics.suite import MetricSuite

# OTAvatar, CVPR 2023, Table 1 (multi-view on Multiface; cross-identity on HDTF driven by WRA_EricCantor_000).
PAPER_TABLE_1 = {
    "paper, multi-view (Multiface)": {
        "psnr": 21.19, "ssim": 0.657, "csim": 0.574, "lpips": 0.288, "fid": 137.3, "aed": 1.874, "apd": 0.428, "akd": 3.731,
    },
    "paper, cross-identity (HDTF)": {"csim": 0.694, "aed": 2.850, "apd": 0.405, "akd": 4.307, "fid": 101.8},
}
# OTAvatar Table 2: 35 FPS on an A100.
PAPER_FPS = {"fps": 35.0, "device": "NVIDIA A100 (paper Table 2)"}
ARROWS = {"psnr": "↑", "region_psnr": "↑", "ssim": "↑", "lpips": "↓", "fid": "↓", "csim": "↑", "csim_dlib": "↑", "aed": "↓", "apd": "↓", "apd_angles": "↓", "akd": "↓"}
METHOD_NAMES = {"otavatar": "OTAvatar (this checkpoint)", **BASELINES}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}" if abs(value) < 100 else f"{value:.1f}"
    return "—" if value is None else str(value)


def run_notes(results: dict) -> list[str]:
    """What ran, stated above the table: the inversion's loss and schedule, and on ``cross_id`` whether the driver was driven."""
    notes = []
    inversion = results.get("inversion")
    if inversion:
        sr = "every step" if inversion["sr_steps"] is None else f"the last {inversion['sr_steps']} steps of each phase"
        notes.append(
            f"Inversion: loss `{inversion['loss']}`, schedule `{inversion['schedule']}`: {inversion['w_steps']} W + "
            f"{inversion['w_plus_steps']} W+ steps, lr {inversion['lr']}, super-resolved terms in {sr}."
        )
    if results["protocol"] == "cross_id":
        notes.append(
            "Driver: its own video is driven too (the release's protocol)." if results.get("include_driver")
            else "Driver: its own video is not driven (otavatar's default; the release drives it too: --include-driver)."
        )
    return notes


def markdown_table(overall: dict[str, dict], metrics: list[str], title: str, fps: dict | None = None, notes: list[str] = ()) -> str:
    """Rows: each method of this run, then the paper's Table 1 rows (— where the paper has no value); ``notes`` above the table."""
    header = ["method", *(f"{name.upper().replace('_', ' ')} {ARROWS.get(name, '')}".strip() for name in metrics)]
    rows = [[METHOD_NAMES.get(method, method), *(_cell(values.get(name)) for name in metrics)] for method, values in overall.items()]
    rows += [[name, *(_cell(values.get(metric)) for metric in metrics)] for name, values in PAPER_TABLE_1.items()]
    lines = [f"**{title}**", "", *(f"{note}  " for note in notes), *([""] if notes else []), "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if fps is not None:
        lines += ["", "| Table 2 | FPS | device |", "|---|---|---|",
                  f"| this checkpoint | {fps['fps']:.2f} | {fps['device']} |", f"| paper | {PAPER_FPS['fps']:.0f} | {PAPER_FPS['device']} |"]
    return "\n".join(lines) + "\n"


def evaluation_record(protocol: str, suites: Mapping[str, MetricSuite], per_video: dict, run: Mapping[str, object], fps: dict | None = None) -> dict:
    """``results.json``'s content: the protocol, the metrics of every method (``suites``: method → suite that scored it;
    ``otavatar`` first), per video and overall, what the metrics mean, ``run`` (dataset, checkpoint, inversion, speed)
    and Table 2's ``fps`` when measured."""
    suite = suites["otavatar"]
    results = {
        "protocol": protocol, "dataset": run.get("dataset"), "checkpoint": run.get("checkpoint"), "checkpoint_sha256": run.get("checkpoint_sha256"),
        "episodes": len(per_video["otavatar"]), "metrics": suite.metrics(),
        "overall": {method: each.summary() for method, each in suites.items()}, "per_video": per_video, **suite.description(),
        **{key: value for key, value in run.items() if key not in ("dataset", "checkpoint", "checkpoint_sha256")},
    }
    return {**results, "fps": fps} if fps is not None else results


def write_results(out: Path, results: dict) -> list[Path]:
    """Write the three files (each atomically); ``results`` holds ``metrics``, ``overall``, ``per_video`` and the run's description."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = results["metrics"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "video", *metrics])
    for method, videos in results["per_video"].items():
        for video, values in videos.items():
            writer.writerow([method, video, *(values.get(name, "") for name in metrics)])
        writer.writerow([method, "overall", *(results["overall"][method].get(name, "") for name in metrics)])
    title = f"Protocol {results['protocol']} — {results['episodes']} episodes; checkpoint {results['checkpoint']}"
    files = {
        "results.json": json.dumps(results, indent=2, default=str) + "\n",
        "results.csv": buffer.getvalue(),
        "table.md": markdown_table(results["overall"], metrics, title, results.get("fps"), run_notes(results)),
    }
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files]
