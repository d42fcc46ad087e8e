"""Frames per second and peak memory of the animation path (ws → planes → render → super-resolution).

One row per preset × speed mode, each measured in a fresh process; the table is printed as it
grows and written to JSON.

    python scripts/benchmark.py --preset eg3d_ffhq512 --runs 5
    python scripts/benchmark.py --preset tiny eg3d_ffhq512 --mode exact fast --quality --json results/benchmark.json
    python scripts/benchmark.py --preset eg3d_ffhq512 --device cuda --mode exact fast --quality   # what a GPU owner reports
    python scripts/benchmark.py --preset eg3d_ffhq512 --device cuda --mode exact fast --compile-mode reduce-overhead
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from otavatar.benchmarking import BENCHMARK, CUDA_GRAPH_WARMUP, benchmark_animation_path, benchmark_in_subprocess, format_table
from otavatar.cli import ScriptParser, at_least, available_device, script
from otavatar.config import model_presets
from otavatar.files import atomic_write_text, check_outputs
from otavatar.speed import PRECISIONS, SPEED_MODES, CudaSettings, speed_mode_by_name


def parse(argv: list[str]) -> argparse.Namespace:
    parser = ScriptParser(__doc__)
    parser.add_argument("--preset", nargs="+", default=["tiny"], help=f"model presets: {model_presets()}")
    parser.add_argument("--mode", nargs="+", default=["exact"], choices=sorted(SPEED_MODES), help="speed modes (otavatar/speed.py)")
    parser.add_argument("--batch", type=at_least(1), default=BENCHMARK.batch)
    parser.add_argument("--runs", type=at_least(1), default=BENCHMARK.runs, help="timed runs; the median is reported")
    parser.add_argument("--warmup", type=at_least(0), default=BENCHMARK.warmup,
                        help="untimed runs first (cuDNN autotuning; CUDA graphs need 3)")
    parser.add_argument("--device", type=available_device, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=at_least(1), default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help="override the modes' autocast precision")
    parser.add_argument("--compile", action="store_true", help="run synthesis through torch.compile")
    parser.add_argument(
        "--compile-mode", default=None, choices=["default", "reduce-overhead", "max-autotune"],
        help="torch.compile mode, implies --compile (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--quality", action="store_true", help="add each mode's PSNR against the exact output")
    parser.add_argument("--tf32", action="store_true", default=CudaSettings.tf32,
                        help="CUDA: TF32 tensor cores for fp32 work (off by default: parity with the release needs full fp32)")
    parser.add_argument(
        "--default-allocator", action="store_true",
        help="leave glibc's malloc as is (by default freed memory is kept, see otavatar.speed.keep_freed_memory)",
    )
    parser.add_argument("--in-process", action="store_true", help="measure in this process (peak memory then accumulates)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.compile_mode == "reduce-overhead" and args.warmup < CUDA_GRAPH_WARMUP:
        parser.error(f"--warmup {args.warmup}: CUDA graphs (--compile-mode reduce-overhead) record on the 2nd run and replay "
                     f"from the 3rd; use --warmup {CUDA_GRAPH_WARMUP} or more")
    check_outputs({}, files={"--json": args.json})
    return args


@script
def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = []
    for preset in args.preset:
        for mode_name in args.mode:
            mode = speed_mode_by_name(mode_name)
            if args.precision:
                mode = dataclasses.replace(mode, precision=args.precision)
            if args.compile or args.compile_mode:
                mode = dataclasses.replace(mode, compile=True)
            kwargs = dict(
                preset=preset, mode=mode, batch=args.batch, runs=args.runs, warmup=args.warmup, device=args.device,
                quality=args.quality, allocator_keeps_memory=not args.default_allocator, compile_mode=args.compile_mode,
                cuda=dataclasses.replace(CudaSettings(), tf32=args.tf32),
            )
            if args.in_process:
                result = benchmark_animation_path(**kwargs)
            else:
                result = benchmark_in_subprocess(threads=args.threads or torch.get_num_threads(), **kwargs)
            results.append(result)
            table = format_table(results).splitlines()
            print("\n".join(table if len(results) == 1 else table[-1:]), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps([r.as_dict() for r in results], indent=2))


if __name__ == "__main__":
    main()
