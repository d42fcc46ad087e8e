"""Evaluate a checkpoint on a protocol: inversion + reenactment, the paper's metrics, Table-1-shaped output.

    python scripts/evaluate.py                                   # embedded tiny model, synthetic cross-identity
    python scripts/evaluate.py --checkpoint CKPT --dataset datasets/hdtf --protocol cross_id \\
        --driving 'WRA_EricCantor_000' --out results/hdtf_cross_id --fps
    python scripts/evaluate.py --protocol self --renders results/other_method/renders   # frames from elsewhere

Writes OUT/results.json, OUT/results.csv and OUT/table.md. Metrics whose extractor weights are missing
are reported as ``n/a (missing FILE)``; pretrained/README.md says where each file comes from.
Inversion follows the release (its loss and its 100 + 100-step schedule) on real-data protocols;
synthetic protocols invert with ``offline_l1``. Both files state the loss and schedule that ran.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import asdict
from pathlib import Path

import torch

from otavatar.cli import ScriptParser, add_schedule_arguments, add_speed_arguments, at_least, available_device, pipeline_settings, script
from otavatar.config import load_loss_preset
from otavatar.evaluation.protocols import BASELINES, PROTOCOLS, SYNTHETIC_ONLY_BASELINES
from otavatar.evaluation.report import evaluation_record, write_results
from otavatar.evaluation.runner import EvaluationSettings, animation_fps, protocol_source, run_evaluation
from otavatar.errors import MissingInputError
from otavatar.evaluation.scoring import DEFAULT_SYNTHETIC_REGRESSOR, ExtractorPaths, build_extractors
from otavatar.files import check_outputs
from otavatar.losses.animation import missing_weight_files
from otavatar.metrics.suite import MetricSuite
from otavatar.pipeline import Pipeline, PipelineSettings


def parse(argv: list[str]) -> argparse.Namespace:
    """The options, checked, with the resolved baselines, loss, inversion schedule, motion reader and output folder."""
    parser = ScriptParser(__doc__)
    parser.add_argument("--checkpoint", default=PipelineSettings.checkpoint)
    parser.add_argument("--dataset", default="datasets/synthetic_128", help="a dataset in the reference layout (its test list is evaluated)")
    parser.add_argument("--resolution", type=at_least(1), default=None, help="the dataset's LMDB sub-folder (default: the model's)")
    parser.add_argument("--protocol", default="synthetic_cross_id", choices=PROTOCOLS)
    parser.add_argument("--driving", help="cross_id: the driving video (the paper: WRA_EricCantor_000)")
    parser.add_argument("--include-driver", action="store_true",
                        help="cross_id: also drive the driver's own video, as the release does (default: every other test video)")
    parser.add_argument("--camera-source", default=None, choices=["ground_truth", "condition"],
                        help="default: ground_truth for synthetic_* protocols and for multiview on a dataset that stores exact "
                             "cameras (a converted Multiface capture), condition otherwise")
    parser.add_argument("--frames", type=at_least(1), default=None, help="frames per episode (default: the whole video)")
    parser.add_argument("--episodes", type=at_least(1), default=None, help="evaluate only the first N episodes")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<protocol>")
    parser.add_argument("--renders", type=Path, help="score frames rendered elsewhere: RENDERS/<episode>/00000.png …")
    parser.add_argument("--save-renders", action="store_true", help="also write OUT/renders/<episode>/*.png")
    parser.add_argument("--baselines", default=None,
                        help="comma-separated baselines to score too (static, still, ground_truth_static; '' for none); "
                             "default: static,still, plus ground_truth_static on synthetic_* protocols")
    parser.add_argument("--fps", action="store_true", help="add Table 2: frames per second of the animation path")
    parser.add_argument("--motion-reader", default="auto", choices=["auto", "deep3d", "synthetic"],
                        help="AED/APD extractor (auto: synthetic for synthetic_* protocols, else Deep3DFaceRecon)")
    parser.add_argument("--reduction", default="mean", choices=["mean", "sum"], help="AED/APD over coefficient dimensions")
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--no-face-metrics", action="store_true", help="skip AKD, CSIM (and Deep3DFaceRecon AED/APD)")
    parser.add_argument("--alexnet", help="LPIPS backbone (alexnet-owt-7be5be79.pth)")
    parser.add_argument("--inception", help="FID weights (pt_inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--arcface", help="CSIM network (arcface_resnet18.pth)")
    parser.add_argument("--deep3dfacerecon", help="AED/APD regressor (epoch_20.pth)")
    parser.add_argument("--synthetic-regressor", default=str(DEFAULT_SYNTHETIC_REGRESSOR))
    parser.add_argument("--loss", default=None, help="inversion loss preset of configs/loss (default: release, which needs VGG19 and "
                        "ArcFace, on real-data protocols; offline_l1 on synthetic_* protocols)")
    add_schedule_arguments(parser, default="release")  # the release's protocol
    parser.add_argument("--seed", type=int, default=PipelineSettings.seed)
    parser.add_argument("--device", type=available_device, default=PipelineSettings.device)
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    if args.fps and args.renders:
        parser.error("--fps measures the checkpoint's animation path: it cannot be combined with --renders")
    synthetic = args.protocol.startswith("synthetic")
    requested = args.baselines if args.baselines is not None else "static,still" + (",ground_truth_static" if synthetic else "")
    args.baselines = () if args.renders else tuple(name for name in requested.split(",") if name)
    unknown = set(args.baselines) - set(BASELINES)
    if unknown:
        parser.error(f"--baselines: unknown {sorted(unknown)}; choose from {sorted(BASELINES)}")
    if not synthetic and set(args.baselines) & set(SYNTHETIC_ONLY_BASELINES):
        parser.error(f"--baselines: {sorted(SYNTHETIC_ONLY_BASELINES)} need a synthetic_* protocol (they render the true head)")
    if args.include_driver and args.protocol != "cross_id":
        parser.error("--include-driver applies to --protocol cross_id only")
    args.loss = args.loss or ("offline_l1" if synthetic else "release")
    args.inversion = pipeline_settings(args).inversion()  # the loss preset and schedule are read and checked before any work
    missing = [] if args.renders else missing_weight_files(load_loss_preset(args.loss))
    if missing:
        raise MissingInputError(f"--loss {args.loss}: missing {', '.join(missing)} (see pretrained/README.md); "
                                "or pass --loss offline_l1, which needs neither but is not the release's inversion loss")
    args.motion_reader = args.motion_reader if args.motion_reader != "auto" else ("synthetic" if synthetic else "deep3d")
    args.out = args.out or Path("results") / args.protocol
    args.dataset = Path(args.dataset)
    if not args.dataset.is_dir():
        raise MissingInputError(f"--dataset {args.dataset}: no such folder (the synthetic set: python scripts/preprocess.py synthetic --out {args.dataset})")
    inputs = {"--checkpoint": None if args.renders else args.checkpoint, "--dataset": args.dataset, "--renders": args.renders,
              "--alexnet": args.alexnet, "--inception": args.inception, "--arcface": args.arcface, "--deep3dfacerecon": args.deep3dfacerecon}
    check_outputs(inputs, folders={"--out": args.out})
    return args


@script
def main(argv: list[str]) -> None:
    args = parse(argv)
    started = time.perf_counter()
    pipeline = None if args.renders else Pipeline.load(pipeline_settings(args))
    source = protocol_source(args.dataset, args.protocol, pipeline.model_config if pipeline else None, args.resolution, args.camera_source)
    paths = ExtractorPaths(args.alexnet, args.inception, args.arcface, args.deep3dfacerecon, args.synthetic_regressor)
    extractors = build_extractors(args.motion_reader, paths, args.device, faces=not args.no_face_metrics, fid=not args.no_fid)
    suites = {method: MetricSuite(extractors, args.reduction, args.device) for method in ("otavatar", *args.baselines)}

    torch.manual_seed(args.seed)
    settings = EvaluationSettings(args.protocol, args.driving, args.frames, args.episodes, args.baselines, args.inversion, args.include_driver)
    animator, frame_loss = (pipeline.animator, pipeline.frame_loss) if pipeline else (None, None)
    with pipeline.speed("evaluation") if pipeline is not None else contextlib.nullcontext():
        per_video = run_evaluation(animator, source, settings, suites, frame_loss, args.renders, args.out / "renders" if args.save_renders else None)
        fps = animation_fps(animator, source, source.database.splits["test"][0]) if args.fps else None
    run = {
        "dataset": str(args.dataset), "checkpoint": str(args.renders or args.checkpoint), "checkpoint_sha256": pipeline and pipeline.checkpoint_sha256,
        "inversion": None if args.renders else {"loss": args.loss, "schedule": args.schedule, **asdict(args.inversion)},
        **({"include_driver": args.include_driver} if args.protocol == "cross_id" else {}),
        "speed": {"mode": args.speed, "tf32": args.tf32},
    }
    files = write_results(args.out, evaluation_record(args.protocol, suites, per_video, run, fps))
    print(open(files[-1]).read())
    print(f"wrote {', '.join(map(str, files))} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
