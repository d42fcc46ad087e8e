"""One-shot avatar construction: invert a portrait to its identity code (W, then W+).

    python scripts/invert.py --portrait photo.jpg --out avatar.pt
    python scripts/invert.py --portrait photo.jpg --coeffs photo_coeffs.txt --pti --out avatar.pt
    python scripts/invert.py --portrait photo.jpg --device cuda --speed fast --out avatar.pt
    python scripts/invert.py --dataset datasets/synthetic_128 --video 'synth0038#00' --frame 0 --out avatar.pt
    python scripts/invert.py                      # the embedded model and its sample portrait
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from otavatar.avatar_file import save_avatar
from otavatar.cli import ScriptParser, add_inversion_arguments, at_least, pipeline_settings, script, step_bar
from otavatar.files import atomic_write, check_outputs
from otavatar.metrics.image import psnr
from otavatar.pipeline import Pipeline
from otavatar.portraits import dataset_target, portrait_target, sample_target


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--portrait", help="a photo (the largest face is used)")
    parser.add_argument("--dataset", help="or a dataset frame: a dataset in the reference layout (with --video and --frame)")
    parser.add_argument("--resolution", type=at_least(1), default=None, help="the dataset's LMDB sub-folder (default: the model's)")
    parser.add_argument("--video")
    parser.add_argument("--frame", type=at_least(0), default=0)
    parser.add_argument("--camera-source", default="ground_truth", choices=["ground_truth", "condition"])
    parser.add_argument("--out", type=Path, default=Path("avatar.pt"), help="the avatar file; the preview goes to OUT_preview.png")
    add_inversion_arguments(parser)
    args = parser.parse_args(argv)
    if args.dataset and not args.video:
        parser.error("--dataset needs --video NAME [--frame K]")
    preview = args.out.with_name(args.out.stem + "_preview.png")
    inputs = {"--portrait": args.portrait, "--coeffs": args.coeffs, "--checkpoint": args.checkpoint, "--dataset": args.dataset}
    check_outputs(inputs, files={"--out": args.out, "the preview (from --out)": preview})

    started = time.perf_counter()
    pipeline = Pipeline.load(pipeline_settings(args))
    if args.portrait:
        portrait = portrait_target(args.portrait, pipeline.model_config, args.coeffs)
        target = portrait.target
        print(f"portrait {args.portrait}: motion from {portrait.motion_source}, camera from {portrait.camera_source}")
    elif args.dataset:
        target = dataset_target(args.dataset, args.video, args.frame, pipeline.model_config, args.resolution, args.camera_source)
    else:
        print("no --portrait or --dataset: inverting the embedded sample (a held-out synthetic head)")
        target = sample_target(pipeline.model_config)
    with step_bar(pipeline.inversion_steps, "invert") as on_step:
        avatar = pipeline.build_avatar(target, on_step)
    save_avatar(args.out, avatar)
    pair = torch.cat([avatar["source_image"], avatar["reconstruction"]])
    atomic_write(preview, lambda handle: save_image(pair, handle, format="png", normalize=True, value_range=(-1, 1)))
    quality = psnr(avatar["reconstruction"], avatar["source_image"]).item()
    print(f"avatar: {args.out} (preview {preview}); reconstruction PSNR {quality:.2f} dB; {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
