"""Time-to-avatar: the release's per-step inversion work vs otavatar's, same steps and losses.

    python scripts/benchmark_inversion.py --preset tiny --loss release --random-feature-weights
    python scripts/benchmark_inversion.py --preset eg3d_ffhq512 --loss release --device cuda

Weights do not change the timing, so the generator is random and --random-feature-weights writes
random VGG19/ArcFace files of the right format when the real ones are not at hand.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torchvision.models.vgg import cfgs, make_layers

from otavatar.config import build_animator, load_loss_preset, load_model_preset
from otavatar.evaluation.time_to_avatar import time_to_avatar
from otavatar.files import atomic_write_text
from otavatar.inversion import InversionSettings
from otavatar.losses.animation import AnimationLoss
from otavatar.losses.identity import ResNetArcFace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--loss", default="release", help="loss preset of configs/loss")
    parser.add_argument("--random-feature-weights", action="store_true", help="random VGG19/ArcFace files (timing only)")
    parser.add_argument("--w-steps", type=int, default=100)
    parser.add_argument("--w-plus-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loss_config = load_loss_preset(args.loss)
    with tempfile.TemporaryDirectory() as folder:
        if args.random_feature_weights:
            torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}, Path(folder) / "vgg19.pth")
            torch.save(ResNetArcFace().state_dict(), Path(folder) / "arcface.pth")
            loss_config.vgg19_path, loss_config.arcface_path = f"{folder}/vgg19.pth", f"{folder}/arcface.pth"
        frame_loss = AnimationLoss.from_config(loss_config, use_regularisers=False).to(args.device)
    torch.manual_seed(0)
    animator = build_animator(load_model_preset(args.preset)).eval().to(args.device)
    rows = time_to_avatar(animator, frame_loss, InversionSettings(w_steps=args.w_steps, w_plus_steps=args.w_plus_steps))
    print(f"preset {args.preset}, loss {args.loss}, {args.w_steps} W + {args.w_plus_steps} W+ steps, {rows[0]['device']}, {rows[0]['threads']} threads")
    print("| run | seconds | s/step | final loss | speed-up |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['seconds']:.1f} | {row['seconds_per_step']:.3f} | {row['final_loss']:.5f} | {row['speed_up']:.2f}× |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"preset": args.preset, "loss": args.loss, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
