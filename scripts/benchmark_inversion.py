"""Time-to-avatar: the release's inversion (schedule and per-step work) vs otavatar's, at equal or lower final loss.

    python scripts/benchmark_inversion.py                      # embedded tiny model, offline_l1 loss
    python scripts/benchmark_inversion.py --loss release --random-feature-weights
    python scripts/benchmark_inversion.py --checkpoint RELEASE.pt --loss release --device cuda

The portraits are held-out synthetic identities (seeds --first-seed …; the fast schedule was
chosen on seeds 0-3, so the default starts at 10). --random-feature-weights writes random
VGG19/ArcFace files of the right format when the real ones are not at hand: the timing is right,
the loss values only compare runs under the same random networks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torchvision.models.vgg import cfgs, make_layers

from otavatar.cli import ScriptParser, at_least, available_device, script
from otavatar.config import inversion_presets, load_inversion_preset, load_loss_preset
from otavatar.data.samples import frame_target, sample_source
from otavatar.evaluation.time_to_avatar import time_to_avatar
from otavatar.files import atomic_write_text, check_outputs
from otavatar.losses.animation import AnimationLoss
from otavatar.losses.identity import ResNetArcFace
from otavatar.pipeline import DEFAULT_CHECKPOINT, load_model


def parse(argv: list[str]) -> argparse.Namespace:
    parser = ScriptParser(__doc__)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--loss", default="offline_l1", help="loss preset of configs/loss")
    parser.add_argument("--random-feature-weights", action="store_true", help="random VGG19/ArcFace files (timing only)")
    parser.add_argument("--release", default="release", help=f"the release's schedule: {inversion_presets()} or a YAML file")
    parser.add_argument("--ours", default="fast", help=f"otavatar's schedule: {inversion_presets()} or a YAML file")
    parser.add_argument("--portraits", type=at_least(1), default=4)
    parser.add_argument("--first-seed", type=int, default=10)
    parser.add_argument("--threads", type=at_least(1), default=None)
    parser.add_argument("--device", type=available_device, default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    check_outputs({"--checkpoint": args.checkpoint}, files={"--json": args.json})
    return args


@script
def main(argv: list[str]) -> None:
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    loss_config = load_loss_preset(args.loss)
    with tempfile.TemporaryDirectory() as folder:
        if args.random_feature_weights:
            torch.manual_seed(0)  # the same random networks on every run of the benchmark
            torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}, Path(folder) / "vgg19.pth")
            torch.save(ResNetArcFace().state_dict(), Path(folder) / "arcface.pth")
            loss_config.vgg19_path, loss_config.arcface_path = f"{folder}/vgg19.pth", f"{folder}/arcface.pth"
        frame_loss = AnimationLoss.from_config(loss_config, use_regularisers=False).to(args.device)
    animator, _, _ = load_model(args.checkpoint, args.device)
    resolution = animator.generator.img_resolution
    targets = [
        {key: value.to(args.device) for key, value in frame_target(sample_source(resolution, seed)).items()}
        for seed in range(args.first_seed, args.first_seed + args.portraits)
    ]
    rows = time_to_avatar(animator, frame_loss, targets, load_inversion_preset(args.release), load_inversion_preset(args.ours))
    print(f"{args.checkpoint}, loss {args.loss}, {args.portraits} portraits (seeds {args.first_seed}…), "
          f"{rows[0]['device']}, {rows[0]['threads']} threads")
    print("| run | W + W+ steps, lr, SR steps | seconds | s/step | final loss (mean) | ≤ release on every portrait | PSNR dB | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        sr = "all" if row["sr_steps"] is None else row["sr_steps"]
        print(f"| {row['run']} | {row['w_steps']} + {row['w_plus_steps']}, {row['lr']}, {sr} | {row['seconds']:.1f} | "
              f"{row['seconds_per_step']:.3f} | {row['final_loss']:.4f} | {'yes' if row['not_higher_on_every_portrait'] else 'no'} | "
              f"{row['psnr']:.2f} | {row['speed_up']:.2f}× |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"checkpoint": args.checkpoint, "loss": args.loss, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
