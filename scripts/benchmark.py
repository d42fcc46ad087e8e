"""Frames per second of the animation path (ws → planes → render → super-resolution).

    python scripts/benchmark.py --preset eg3d_ffhq512 --batch 1 --runs 5
    python scripts/benchmark.py --preset tiny eg3d_ffhq512 --device cuda --json results/benchmark.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from otavatar.benchmarking import benchmark_animation_path, format_table
from otavatar.config import model_presets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", default=["tiny"], help=f"model presets: {model_presets()}")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for preset in args.preset:
        results.append(benchmark_animation_path(preset, args.batch, args.runs, args.warmup, args.device))
        print(format_table(results[-1:]).splitlines()[-1] if len(results) > 1 else format_table(results), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, suffix=".tmp", delete=False) as handle:
            json.dump([r.as_dict() for r in results], handle, indent=2)
        os.replace(handle.name, args.json)


if __name__ == "__main__":
    main()
