"""The animation-path benchmark: a row in a fresh process (the script's default) and scripts/benchmark.py's rows."""

import dataclasses
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from otavatar.benchmarking import BENCHMARK, CUDA_GRAPH_WARMUP, benchmark_animation_path, benchmark_in_subprocess, format_table
from otavatar.config import load_model_preset
from otavatar.speed import SPEED_MODES

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_reports_a_row_with_its_settings_for_the_tiny_preset():
    result = benchmark_in_subprocess(threads=1, preset="tiny", batch=2, runs=1, warmup=0)
    assert result.batch == 2 and result.runs == 1 and result.threads == 1 and result.warmup_seconds == 0
    assert result.frames_per_second > 0
    assert result.frames_per_second == 2 / result.median_seconds_per_batch
    assert result.seconds_per_frame == result.median_seconds_per_batch / 2
    assert result.device.startswith("cpu") and result.precision == "float32"
    tiny = load_model_preset("tiny").generator
    expected = (tiny.rendering_kwargs.depth_resolution, tiny.rendering_kwargs.depth_resolution_importance, tiny.neural_rendering_resolution)
    assert (result.coarse_samples, result.fine_samples, result.neural_rendering_resolution) == expected
    assert result.peak_memory_mb > 0 and result.psnr_vs_exact is None and result.keep_freed_memory is False
    assert "| tiny | exact | cpu" in format_table([result])


def test_benchmark_script_writes_a_row_per_preset_and_mode(tmp_path):
    out = tmp_path / "bench.json"
    # In the script's process: a fresh process per row is the test above.
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--preset", "tiny", "--mode", "exact", "fast",
         "--runs", "1", "--warmup", "0", "--threads", "1", "--quality", "--in-process", "--json", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| tiny | exact |" in completed.stdout and "| tiny | fast |" in completed.stdout
    rows = json.loads(out.read_text())
    assert [row["mode"] for row in rows] == ["exact", "fast"]
    assert all(row["frames_per_second"] > 0 and row["threads"] == 1 and row["runs"] == 1 for row in rows)
    assert rows[0]["psnr_vs_exact"] is None and rows[1]["psnr_vs_exact"] > 40
    assert (rows[1]["coarse_samples"], rows[1]["fine_samples"]) == (12, 12)
    # By default the script keeps freed memory: glibc's mallopt does it (Linux), elsewhere it cannot.
    assert all(row["keep_freed_memory"] is (platform.libc_ver()[0] == "glibc") for row in rows)


def test_cuda_graph_benchmarks_warm_up_past_the_recording():
    assert BENCHMARK.warmup >= CUDA_GRAPH_WARMUP == 3
    compiled = dataclasses.replace(SPEED_MODES["exact"], compile=True)
    with pytest.raises(ValueError, match="use --warmup 3 or more"):
        benchmark_animation_path("tiny", compiled, warmup=2, device="cuda", compile_mode="reduce-overhead")
