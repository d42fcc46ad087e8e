"""One-shot avatar construction: invert a portrait to its identity code (W, then W+).

    python scripts/invert.py --checkpoint runs/tiny_synthetic/checkpoint_000002000.pt \
        --dataset datasets/synthetic_128 --video 'synth0038#00' --frame 0 --out avatar.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from otavatar.avatar_file import save_avatar
from otavatar.cli import load_model
from otavatar.config import load_loss_preset
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.inversion import InversionSettings, invert
from otavatar.losses.animation import AnimationLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an otavatar training checkpoint or the release's")
    parser.add_argument("--dataset", help="a dataset in the reference layout (with --video and --frame)")
    parser.add_argument("--resolution", type=int, default=None, help="the dataset's LMDB sub-folder (default: the model's)")
    parser.add_argument("--video")
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--camera-source", default="ground_truth", choices=["ground_truth", "condition"])
    parser.add_argument("--out", type=Path, default=Path("avatar.pt"))
    parser.add_argument("--loss", default="offline", help="a loss preset of configs/loss (release needs VGG19 and ArcFace)")
    parser.add_argument("--w-steps", type=int, default=100)
    parser.add_argument("--w-plus-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (args.dataset and args.video):
        parser.error("give --dataset DIR --video NAME [--frame K]")

    torch.manual_seed(args.seed)
    animator, model_config, sha256 = load_model(args.checkpoint, args.device)
    size = model_config["generator"]["img_resolution"]
    source = FrameSource(VideoLmdb(args.dataset, args.resolution or size), args.camera_source, image_size=size)
    frame = source.frame(args.video, args.frame)
    target = {key: value[None].to(args.device) for key, value in frame.items()}
    loss = AnimationLoss.from_config(load_loss_preset(args.loss), use_regularisers=False).to(args.device)
    settings = InversionSettings(w_steps=args.w_steps, w_plus_steps=args.w_plus_steps, lr=args.lr)
    bar = tqdm(total=settings.w_steps + settings.w_plus_steps, desc="invert")

    def progress(phase: str, step: int, value: float) -> None:
        bar.set_postfix(phase=phase, loss=f"{value:.4f}", refresh=False)
        bar.update()

    result = invert(animator, target, loss, settings, on_step=progress)
    bar.close()
    save_avatar(args.out, {
        "identity_w": result.identity_w.cpu(),
        "identity_w_plus": result.identity_w_plus.cpu() if result.identity_w_plus is not None else None,
        "correction": result.correction.cpu(),
        "camera": frame["camera"][None],
        "motion": frame["motion"][None],
        "source_image": frame["image"][None],
        "reconstruction": result.reconstruction.cpu(),
        "loss_curve": torch.tensor(result.loss_curve),
        "model": {"checkpoint_sha256": sha256, "config": model_config},
    })
    preview = args.out.with_suffix(".png")
    save_image(torch.cat([frame["image"][None], result.reconstruction.cpu()]), preview, normalize=True, value_range=(-1, 1))
    error = (result.reconstruction.cpu().clamp(-1, 1) - frame["image"][None]).square().mean()
    print(f"avatar: {args.out} (preview {preview}); reconstruction PSNR {10 * torch.log10(4 / error):.2f} dB")


if __name__ == "__main__":
    main()
