import json
import subprocess
import sys
from pathlib import Path

from otavatar.benchmarking import benchmark_animation_path, format_table

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_reports_a_row_for_the_tiny_preset():
    result = benchmark_animation_path("tiny", batch=2, runs=2, warmup=1)
    assert result.batch == 2 and result.runs == 2
    assert result.frames_per_second > 0
    assert result.frames_per_second == 2 / result.median_seconds_per_batch
    assert result.device.startswith("cpu")
    assert "| tiny | cpu" in format_table([result])


def test_benchmark_script_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--preset", "tiny", "--runs", "1", "--json", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| tiny |" in completed.stdout
    rows = json.loads(out.read_text())
    assert rows[0]["preset"] == "tiny" and rows[0]["frames_per_second"] > 0
