"""Reenactment: drive an avatar with a motion sequence from a camera path, write an mp4.

    python scripts/reenact.py --checkpoint CKPT --avatar avatar.pt --driving motion.npy --camera orbit --out out.mp4
    python scripts/reenact.py --checkpoint CKPT --avatar avatar.pt --dataset DIR --video 'synth0001#00' --out out.mp4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from otavatar.avatar_file import load_avatar
from otavatar.cli import camera_path, load_model, read_coefficients
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.motion import motion_windows
from otavatar.reenactment import reenact
from otavatar.videos import to_uint8_frames, write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--avatar", required=True, type=Path)
    parser.add_argument("--driving", type=Path, help="a coefficient file (N × 257/260/70; .npy, .txt, .csv, .mat)")
    parser.add_argument("--dataset", help="drive with a dataset video instead (with --video)")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--video")
    parser.add_argument("--camera", default=None, help="driving | source | orbit | yaw,pitch (default: driving when it has cameras)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--out", type=Path, default=Path("reenactment.mp4"))
    parser.add_argument("--side-by-side", action="store_true", help="driving frames | result (dataset driving only)")
    parser.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG")
    parser.add_argument("--w", choices=["w", "w_plus"], default="w_plus", help="which identity code of the avatar")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    animator, model_config, sha256 = load_model(args.checkpoint, args.device)
    avatar = load_avatar(args.avatar, sha256)
    identity = avatar["identity_w_plus"] if args.w == "w_plus" and avatar["identity_w_plus"] is not None else avatar["identity_w"]
    driving_images = driving_cameras = None
    if args.driving:
        motion = read_coefficients(args.driving)
    elif args.dataset and args.video:
        size = model_config["generator"]["img_resolution"]
        source = FrameSource(VideoLmdb(args.dataset, args.resolution or size), "ground_truth", image_size=size)
        data = source.video(args.video)
        windows, driving_cameras = data["motion"], data["camera"]
        if args.side_by_side:
            driving_images = torch.stack([source.image(args.video, f) for f in range(windows.shape[0])])
    else:
        parser.error("give --driving FILE or --dataset DIR --video NAME")
    if args.driving:
        windows = motion_windows(motion)
    cameras = camera_path(args.camera or ("driving" if driving_cameras is not None else "source"), windows.shape[0], driving_cameras, avatar["camera"])
    if args.frames_dir:
        args.frames_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    bar = tqdm(total=windows.shape[0], desc="reenact")

    def frames():
        index = 0
        for batch in reenact(animator, identity.to(args.device), windows, cameras, avatar["correction"].to(args.device), args.batch_size):
            images = batch["image"].cpu()
            if driving_images is not None:
                images = torch.cat([driving_images[index : index + images.shape[0]], images], dim=3)
            for image in images:
                if args.frames_dir:
                    save_image(image, args.frames_dir / f"{index:06d}.png", normalize=True, value_range=(-1, 1))
                index += 1
            bar.update(images.shape[0])
            yield from to_uint8_frames(images)

    write_video(frames(), args.out, args.fps)
    bar.close()
    seconds = time.perf_counter() - start
    print(f"{windows.shape[0]} frames in {seconds:.1f} s ({windows.shape[0] / seconds:.2f} FPS) → {args.out}")


if __name__ == "__main__":
    main()
