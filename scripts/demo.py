"""The embedded demo (`make demo`): one synthetic portrait in, an animated 3D avatar out.

A held-out synthetic identity is inverted from one frame and driven by another identity's motion
while the camera swings; the result is scored against the exact ground truth the synthetic renderer
draws. Writes OUT/demo.mp4 (source | driving | result | ground truth), OUT/contact_sheet.png and
OUT/metrics.json, and prints one line with the cross-identity PSNR, region PSNR (eye and mouth boxes),
AED and LPIPS, beside the baselines'.

    python scripts/demo.py [--checkpoint pretrained/otavatar_tiny.pt] [--out outputs/demo] [--schedule fast|release]
"""

from __future__ import annotations

from pathlib import Path

import torch

from otavatar.cli import ScriptParser, add_schedule_arguments, add_speed_arguments, at_least, available_device, pipeline_settings, script
from otavatar.evaluation.demo import DemoSettings, run_demo
from otavatar.evaluation.scoring import DEFAULT_SYNTHETIC_REGRESSOR, ExtractorPaths, build_extractors
from otavatar.files import check_outputs
from otavatar.metrics.suite import MetricSuite
from otavatar.pipeline import Pipeline, PipelineSettings


def _figure(value: object, unit: str = "") -> str:
    return f"{value:.3f}{unit}" if isinstance(value, float) else str(value)


def _scores(method: dict) -> str:
    """``PSNR / region PSNR / AED`` of one method block of metrics.json."""
    return f"{_figure(method['psnr'], ' dB')} / {_figure(method['region_psnr'], ' dB')} / {_figure(method['aed'])}"


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--checkpoint", default=PipelineSettings.checkpoint)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=at_least(1), default=DemoSettings.frames)
    parser.add_argument("--seed", dest="sample_seed", type=int, default=DemoSettings.seed, help="draws the two held-out identities")
    parser.add_argument("--alexnet", help="LPIPS backbone (alexnet-owt-7be5be79.pth); without it LPIPS is n/a")
    parser.add_argument("--synthetic-regressor", default=str(DEFAULT_SYNTHETIC_REGRESSOR))
    add_schedule_arguments(parser)
    parser.add_argument("--loss", default=PipelineSettings.loss, help="inversion loss preset of configs/loss")
    parser.add_argument("--device", type=available_device, default=PipelineSettings.device)
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    check_outputs({"--checkpoint": args.checkpoint, "--alexnet": args.alexnet, "--synthetic-regressor": args.synthetic_regressor},
                  folders={"--out": args.out})

    torch.manual_seed(0)
    pipeline = Pipeline.load(pipeline_settings(args))
    extractors = build_extractors("synthetic", ExtractorPaths(alexnet=args.alexnet, synthetic_regressor=args.synthetic_regressor), args.device, fid=False)
    with pipeline.speed("demo"):
        metrics = run_demo(pipeline.animator, pipeline.frame_loss, lambda: MetricSuite(extractors, device=args.device), args.out,
                           DemoSettings(seed=args.sample_seed, frames=args.frames, inversion=pipeline.inversion))
    ours = metrics["otavatar"]
    print(
        f"demo: cross-identity PSNR / region PSNR / AED vs ground truth {_scores(ours)} (baselines: static {_scores(metrics['static_baseline'])}, "
        f"still {_scores(metrics['still_baseline'])}, ground-truth static {_scores(metrics['ground_truth_static'])}), "
        f"LPIPS {_figure(ours['lpips'])}; "
        f"{args.out}/demo.mp4, contact_sheet.png, metrics.json in {metrics['seconds']['total']:.0f} s"
    )


if __name__ == "__main__":
    main()
