"""Reenactment: drive an avatar with a motion sequence from a camera path, write an mp4.

    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --out out.mp4 --side-by-side
    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --save-motion motion.npy --out out.mp4
    python scripts/reenact.py --portrait photo.jpg --driving motion.npy --camera orbit --out out.mp4
    python scripts/reenact.py --avatar avatar.pt --dataset DIR --video 'synth0001#00' --out out.mp4 --depth
    python scripts/reenact.py --side-by-side      # the embedded model, its sample portrait and driver
    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --device cuda --speed fast --out out.mp4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from otavatar.camera_paths import camera_path
from otavatar.cli import ScriptParser, add_inversion_arguments, at_least, camera_mode, pipeline_settings, positive, script, step_bar
from otavatar.driving import Driving, check_driving_file, coefficients_first, dataset_driving, is_video, read_driving
from otavatar.files import atomic_write, check_outputs
from otavatar.inversion import CAMERA_FIT_STEPS
from otavatar.motion import WINDOW_RADIUS
from otavatar.pipeline import Pipeline
from otavatar.portraits import portrait_target, sample_target
from otavatar.reenactment_video import ReenactmentOutputs, write_reenactment


def parse(argv: list[str]) -> argparse.Namespace:
    parser = ScriptParser(__doc__)
    parser.add_argument("--avatar", type=Path, help="an avatar file from scripts/invert.py")
    parser.add_argument("--portrait", help="or a photo: invert it first (same options as scripts/invert.py)")
    parser.add_argument("--driving", type=Path, help="a video (preprocessed on the fly) or a coefficient file (N × 257/260/70)")
    parser.add_argument("--dataset", help="or drive with a dataset video (with --video)")
    parser.add_argument("--resolution", type=at_least(1), default=None)
    parser.add_argument("--video")
    parser.add_argument("--camera", type=camera_mode, default=None, help="driving | source | orbit | yaw,pitch (default: driving when it has cameras)")
    parser.add_argument("--fps", type=positive, default=None, help="default: the driving video's, else 25")
    parser.add_argument("--out", type=Path, default=Path("reenactment.mp4"))
    parser.add_argument("--side-by-side", action="store_true", help="driving frames | result (video or dataset driving)")
    parser.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG")
    parser.add_argument("--save-motion", type=Path, default=None,
                        help="also write the motion x it drove with as .npy (N × 70, the coefficient-file layout, in the model's motion space)")
    parser.add_argument("--depth", action="store_true", help="also write the depth maps as <out>_depth.mp4")
    parser.add_argument("--w", choices=["w", "w_plus"], default="w_plus", help="which identity code of the avatar")
    parser.add_argument("--batch-size", type=at_least(1), default=8)
    parser.add_argument("--optimize-camera", action="store_true",
                        help="refit the avatar's intrinsics correction on the first driving frame, w_id frozen (the release's --cam_optim)")
    parser.add_argument("--camera-steps", type=at_least(1), default=CAMERA_FIT_STEPS, help="steps of --optimize-camera (the release's 100)")
    add_inversion_arguments(parser)
    args = parser.parse_args(argv)
    if args.avatar and args.portrait:
        parser.error("give one of --avatar FILE or --portrait PHOTO (neither: the embedded sample portrait)")
    if args.dataset and not args.video:
        parser.error("--dataset needs --video NAME")
    if args.save_motion and args.save_motion.suffix != ".npy":
        parser.error(f"--save-motion {args.save_motion}: expected a .npy file")
    if args.optimize_camera and args.driving and not is_video(args.driving):
        parser.error("--optimize-camera fits the first driving frame: drive with a video, a dataset video or the embedded sample, not a coefficient file")
    args.depth_path = args.out.with_name(args.out.stem + "_depth.mp4") if args.depth else None
    inputs = {"--avatar": args.avatar, "--portrait": args.portrait, "--driving": args.driving, "--coeffs": args.coeffs,
              "--checkpoint": args.checkpoint, "--dataset": args.dataset}
    check_outputs(inputs, files={"--out": args.out, "the depth video (from --out)": args.depth_path, "--save-motion": args.save_motion},
                  folders={"--frames-dir": args.frames_dir})
    if args.driving:
        check_driving_file(args.driving)
    return args


def driving_input(args: argparse.Namespace, pipeline: Pipeline, coefficients: Driving | None) -> Driving:
    """What ``--driving``, ``--dataset`` or neither (the embedded sample driver) gives."""
    if args.dataset and not args.driving:  # --driving wins when both are given
        return dataset_driving(args.dataset, args.video, pipeline.model_config, args.resolution)
    return read_driving(args.driving, pipeline.model_config, pipeline.settings.device, coefficients)


def inversion_target(args: argparse.Namespace, pipeline: Pipeline) -> dict:
    """The ``--portrait`` (default: the embedded sample portrait) as an inversion target."""
    if args.portrait:
        return portrait_target(args.portrait, pipeline.model_config, args.coeffs).target
    print("no --avatar or --portrait: inverting the embedded sample portrait (a held-out synthetic head)")
    return sample_target(pipeline.model_config)


@script
def main(argv: list[str]) -> None:
    args = parse(argv)
    # Coefficients are read and checked (shape, finite values) before any model work.
    coefficients = coefficients_first(args.driving)
    pipeline = Pipeline.load(pipeline_settings(args))
    avatar = pipeline.load_avatar(args.avatar) if args.avatar else None  # a file made by another model is refused before any work
    driving = driving_input(args, pipeline, coefficients)
    print(driving.description)
    target = None if avatar else inversion_target(args, pipeline)
    frames = driving.windows.shape[0]
    source_camera = (avatar or target)["camera"]
    cameras = camera_path(args.camera or driving.default_camera, frames, driving.cameras, source_camera)
    if args.save_motion:
        atomic_write(args.save_motion, lambda handle: np.save(handle, driving.windows[:, :, WINDOW_RADIUS].numpy()))
        print(f"motion ({frames} × {driving.windows.shape[1]}, {pipeline.model_config['motion_space']} space) → {args.save_motion}")
    if avatar is None:
        with step_bar(pipeline.inversion_steps, "invert") as on_step:
            avatar = pipeline.build_avatar(target, on_step)
    correction = None
    if args.optimize_camera:
        with step_bar(args.camera_steps, "camera") as on_step:
            correction = pipeline.refit_camera(avatar, driving.first_frame, args.w, on_step, args.camera_steps)
    rendering = pipeline.model_config["generator"]["rendering_kwargs"]
    outputs = ReenactmentOutputs(args.out, args.fps or driving.fps or 25.0, driving.images if args.side_by_side else None, driving.audio,
                                 args.frames_dir, args.depth_path, (rendering["ray_start"], rendering["ray_end"]))
    started = time.perf_counter()
    with tqdm(total=frames, desc="reenact") as bar:
        write_reenactment(pipeline.drive(avatar, driving.windows, cameras, args.w, correction, args.batch_size), outputs, bar.update)
    seconds = time.perf_counter() - started
    if args.depth:
        print(f"depth maps → {args.depth_path} (black {outputs.depth_range[0]}, white {outputs.depth_range[1]})")
    print(f"{frames} frames in {seconds:.1f} s ({frames / seconds:.2f} FPS) → {args.out}")


if __name__ == "__main__":
    main()
