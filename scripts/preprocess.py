"""Build datasets in the reference LMDB layout, and align single portraits.

    python scripts/preprocess.py video clips/*.mp4 --out datasets/mine            # real videos → dataset
    python scripts/preprocess.py portrait photo.jpg --out outputs/portrait        # one aligned crop + landmarks
    python scripts/preprocess.py synthetic --out datasets/synthetic --identities 40 --videos 2 --frames 64 --resolution 128
    python scripts/preprocess.py multiface CAPTURE --out datasets/multiface_CAPTURE   # for evaluate.py --protocol multiview
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from otavatar.camera import FFHQ_FOCAL
from otavatar.cli import ScriptParser, at_least, available_device, positive, script
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.files import atomic_write, check_outputs
from otavatar.preprocess.multiface import MultifaceCapture, check_conversion, extractor_annotator, write_multiface_dataset
from otavatar.preprocess.pipeline import PreprocessSettings, align_portrait, write_dataset


def synthetic(args: argparse.Namespace) -> None:
    check_outputs({}, folders={"--out": args.out})
    summary = write_synthetic_dataset(
        args.out, args.identities, args.videos, args.frames, args.resolution, args.seed, args.test_identities
    )
    print(
        f"wrote {summary.videos} videos ({summary.frames} frames, {summary.identities} identities) at "
        f"{summary.resolution}² to {summary.root} in {summary.seconds:.1f} s, {summary.bytes / 2**20:.1f} MiB; "
        f"contact sheet: {summary.contact_sheet}"
    )


def _settings(args: argparse.Namespace) -> PreprocessSettings:
    return PreprocessSettings(
        size=args.size, increase=args.increase, coefficient_weights=args.coefficient_weights, device=args.device,
        **({"batch_size": args.batch_size, "camera_smoothing": args.camera_smoothing, "image_format": args.image_format}
           if args.command == "video" else {}),
    )


def video(args: argparse.Namespace) -> None:
    check_outputs({f"the input {path}": path for path in args.paths}, folders={"--out": args.out})
    summary = write_dataset(args.paths, args.out, _settings(args), args.test_fraction, args.test_person)
    print(summary)
    if summary.failed and not summary.written and not summary.skipped:
        raise SystemExit(1)


def portrait(args: argparse.Namespace) -> None:
    out, stem = Path(args.out), Path(args.photo).stem
    crop, landmarks = out / f"{stem}_crop.png", out / f"{stem}.npz"
    check_outputs({"the photo": args.photo}, folders={"--out": out})
    result = align_portrait(args.photo, _settings(args))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(crop, lambda handle: Image.fromarray(result.image).save(handle, format="PNG"))
    arrays = {"keypoints": result.keypoints, "box": result.box}
    if result.coefficients is not None:
        arrays |= {"coefficients": result.coefficients, "condition": result.condition}
    atomic_write(landmarks, lambda handle: np.savez(handle, **arrays))
    print(f"wrote {crop} ({args.size}²) and {landmarks} ({', '.join(arrays)})")
    if result.missing:
        print(f"warning: no coefficients: {result.missing}")


def multiface(args: argparse.Namespace) -> None:
    check_outputs({"the capture": args.capture, "--krt": args.krt}, folders={"--out": args.out})
    capture = MultifaceCapture(args.capture, args.krt)
    check_conversion(capture, args.out, args.frontal_camera, args.views, args.sentences)
    annotate = extractor_annotator(args.device, args.coefficient_weights)
    out = write_multiface_dataset(capture, args.out, annotate, args.size, args.frontal_camera, args.views, args.sentences, args.frames, args.focal)
    print(f"wrote {out}: the multiview protocol's test videos (python scripts/evaluate.py --protocol multiview --dataset {out})")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=at_least(1), default=512, help="crop size (the reference data: 512)")
    parser.add_argument("--increase", type=float, default=0.1, help="FOMM crop margin per side, as a fraction of the face box")
    parser.add_argument("--coefficient-weights", default=None, help="Deep3DFaceRecon epoch_20.pth (default: pretrained/deep3dfacerecon/)")
    parser.add_argument("--device", type=available_device, default="cpu")


def build_parser() -> ScriptParser:
    """One sub-command per source: synthetic, video, portrait, multiface."""
    parser = ScriptParser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthetic", help="procedural talking heads with exact ground truth")
    synth.add_argument("--out", required=True)
    synth.add_argument("--identities", type=at_least(1), default=40)
    synth.add_argument("--videos", type=at_least(1), default=2, help="videos per identity")
    synth.add_argument("--frames", type=at_least(1), default=64, help="frames per video")
    synth.add_argument("--resolution", type=at_least(1), default=128, help="image size, 64 to 512")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--test-identities", type=at_least(0), default=None, help="default: a tenth of the identities")
    synth.set_defaults(run=synthetic)
    videos = commands.add_parser("video", help="real videos (files or folders of frames) → dataset; re-running resumes")
    videos.add_argument("paths", nargs="+")
    videos.add_argument("--out", required=True)
    _common(videos)
    videos.add_argument("--batch-size", type=at_least(1), default=16)
    videos.add_argument("--camera-smoothing", type=at_least(0), default=2, help="± frames averaged for cameras")
    videos.add_argument("--image-format", choices=("JPEG", "PNG"), default="JPEG")
    videos.add_argument("--test-fraction", type=float, default=0.1, help="share of persons (hash of the name before '#') in the test list")
    videos.add_argument("--test-person", action="append", default=[], help="put this person in the test list (repeatable)")
    videos.set_defaults(run=video)
    photo = commands.add_parser("portrait", help="one photo → aligned crop PNG + landmarks/coefficients (.npz)")
    photo.add_argument("photo")
    photo.add_argument("--out", default="outputs/portrait")
    _common(photo)
    photo.set_defaults(run=portrait)
    capture = commands.add_parser("multiface", help="a Multiface capture → the multiview protocol's dataset (exact cameras from KRT)")
    capture.add_argument("capture", help="the capture folder (KRT, images/, tracked_mesh/)")
    capture.add_argument("--out", required=True)
    capture.add_argument("--krt", default=None, help="default: CAPTURE/KRT")
    capture.add_argument("--frontal-camera", default=None, help="the source view (default: the camera nearest the rig's mean direction)")
    capture.add_argument("--views", nargs="+", default=None, help="the target views (default: every other camera)")
    capture.add_argument("--sentences", nargs="+", default=None, help="default: every sentence")
    capture.add_argument("--frames", type=at_least(1), default=None, help="at most this many frames per sentence")
    capture.add_argument("--size", type=at_least(1), default=512, help="crop size (the reference data: 512)")
    capture.add_argument("--focal", type=positive, default=FFHQ_FOCAL, help="normalised focal of the crops (the training labels')")
    capture.add_argument("--coefficient-weights", default=None, help="Deep3DFaceRecon epoch_20.pth (default: pretrained/deep3dfacerecon/)")
    capture.add_argument("--device", type=available_device, default="cpu")
    capture.set_defaults(run=multiface)
    return parser


@script
def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
