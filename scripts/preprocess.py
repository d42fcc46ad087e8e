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

from otavatar.assets import MissingAssetError
from otavatar.camera import FFHQ_FOCAL
from otavatar.data.multiface import MultifaceCapture, extractor_annotator, write_multiface_dataset
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from otavatar.preprocess.pipeline import PreprocessSettings, align_portrait, write_dataset


def synthetic(args: argparse.Namespace) -> None:
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
    summary = write_dataset(args.paths, args.out, _settings(args), args.test_fraction, args.test_person)
    print(summary)
    if summary.failed and not summary.written and not summary.skipped:
        raise SystemExit(1)


def portrait(args: argparse.Namespace) -> None:
    result = align_portrait(args.photo, _settings(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.photo).stem
    Image.fromarray(result.image).save(out / f"{stem}_crop.png")
    arrays = {"keypoints": result.keypoints, "box": result.box}
    if result.coefficients is not None:
        arrays |= {"coefficients": result.coefficients, "condition": result.condition}
    np.savez(out / f"{stem}.npz", **arrays)
    print(f"wrote {out / f'{stem}_crop.png'} ({args.size}²) and {out / f'{stem}.npz'} ({', '.join(arrays)})")
    if result.missing:
        print(f"warning: no coefficients: {result.missing}")


def multiface(args: argparse.Namespace) -> None:
    capture = MultifaceCapture(args.capture, args.krt)
    try:
        annotate = extractor_annotator(args.device, args.coefficient_weights)
    except MissingAssetError as error:
        raise SystemExit(str(error)) from None
    out = write_multiface_dataset(capture, args.out, annotate, args.size, args.frontal_camera, args.views, args.sentences, args.frames, args.focal)
    print(f"wrote {out}: the multiview protocol's test videos (python scripts/evaluate.py --protocol multiview --dataset {out})")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=512, help="crop size (the reference data: 512)")
    parser.add_argument("--increase", type=float, default=0.1, help="FOMM crop margin per side, as a fraction of the face box")
    parser.add_argument("--coefficient-weights", default=None, help="Deep3DFaceRecon epoch_20.pth (default: pretrained/deep3dfacerecon/)")
    parser.add_argument("--device", default="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthetic", help="procedural talking heads with exact ground truth")
    synth.add_argument("--out", required=True)
    synth.add_argument("--identities", type=int, default=40)
    synth.add_argument("--videos", type=int, default=2, help="videos per identity")
    synth.add_argument("--frames", type=int, default=64, help="frames per video")
    synth.add_argument("--resolution", type=int, default=128, help="image size, 64 to 512")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--test-identities", type=int, default=None, help="default: a tenth of the identities")
    synth.set_defaults(run=synthetic)
    videos = commands.add_parser("video", help="real videos (files or folders of frames) → dataset; re-running resumes")
    videos.add_argument("paths", nargs="+")
    videos.add_argument("--out", required=True)
    _common(videos)
    videos.add_argument("--batch-size", type=int, default=16)
    videos.add_argument("--camera-smoothing", type=int, default=2, help="± frames averaged for cameras")
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
    capture.add_argument("--frames", type=int, default=None, help="at most this many frames per sentence")
    capture.add_argument("--size", type=int, default=512, help="crop size (the reference data: 512)")
    capture.add_argument("--focal", type=float, default=FFHQ_FOCAL, help="normalised focal of the crops (the training labels')")
    capture.add_argument("--coefficient-weights", default=None, help="Deep3DFaceRecon epoch_20.pth (default: pretrained/deep3dfacerecon/)")
    capture.add_argument("--device", default="cpu")
    capture.set_defaults(run=multiface)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
