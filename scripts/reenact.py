"""Reenactment: drive an avatar with a motion sequence from a camera path, write an mp4.

    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --out out.mp4 --side-by-side
    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --save-motion motion.npy --out out.mp4
    python scripts/reenact.py --portrait photo.jpg --driving motion.npy --camera orbit --out out.mp4
    python scripts/reenact.py --avatar avatar.pt --dataset DIR --video 'synth0001#00' --out out.mp4 --depth
    python scripts/reenact.py --side-by-side      # the embedded model, its sample portrait and driver
    python scripts/reenact.py --avatar avatar.pt --driving talking.mp4 --device cuda --speed fast --out out.mp4
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm import tqdm

from otavatar.avatar_file import load_avatar
from otavatar.cli import (ScriptParser, add_inversion_arguments, add_speed_arguments, at_least, camera_mode, camera_path, construct,
                          inference_speed, load_model, positive, refit_camera, script)
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.data.samples import driving_windows, frame_target, sample_videos
from otavatar.errors import InputError
from otavatar.files import atomic_write, check_outputs
from otavatar.motion import COEFFICIENT_SUFFIXES, WINDOW_RADIUS, motion_windows, read_coefficients
from otavatar.one_shot import avatar_animator, portrait_target
from otavatar.preprocess.reading import VIDEO_SUFFIXES
from otavatar.reenactment import driving_video, reenact
from otavatar.videos import to_uint8_frames, write_video


@script
def main(argv: list[str]) -> None:
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
    add_inversion_arguments(parser)
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    if args.avatar and args.portrait:
        parser.error("give one of --avatar FILE or --portrait PHOTO (neither: the embedded sample portrait)")
    if args.dataset and not args.video:
        parser.error("--dataset needs --video NAME")
    if args.save_motion and args.save_motion.suffix != ".npy":
        parser.error(f"--save-motion {args.save_motion}: expected a .npy file")
    if args.optimize_camera and args.driving and args.driving.suffix.lower() not in VIDEO_SUFFIXES:
        parser.error("--optimize-camera fits the first driving frame: drive with a video, a dataset video or the embedded sample, not a coefficient file")
    depth_path = args.out.with_name(args.out.stem + "_depth.mp4") if args.depth else None
    inputs = {"--avatar": args.avatar, "--portrait": args.portrait, "--driving": args.driving, "--coeffs": args.coeffs,
              "--checkpoint": args.checkpoint, "--dataset": args.dataset}
    check_outputs(inputs, files={"--out": args.out, "the depth video (from --out)": depth_path, "--save-motion": args.save_motion},
                  folders={"--frames-dir": args.frames_dir})
    driving_is_video = args.driving is not None and args.driving.suffix.lower() in VIDEO_SUFFIXES
    if args.driving and not driving_is_video and args.driving.suffix.lower() not in COEFFICIENT_SUFFIXES:
        raise InputError(
            f"--driving {args.driving}: a '{args.driving.suffix}' file; expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
            f"or a coefficient file ({', '.join(COEFFICIENT_SUFFIXES)}); a photo to animate goes to --portrait"
        )
    # Coefficients are read and checked (shape, finite values) before any model work.
    windows = motion_windows(read_coefficients(args.driving)) if args.driving and not driving_is_video else None

    animator, model_config, sha256 = load_model(args.checkpoint, args.device)
    size = model_config["generator"]["img_resolution"]
    sample = functools.cache(lambda: sample_videos(size))  # rendered only when used
    avatar = load_avatar(args.avatar, sha256) if args.avatar else None

    driving_images = driving_cameras = audio = first_frame = None  # first_frame: what --optimize-camera fits
    fps = 25.0
    if driving_is_video:
        reading = time.perf_counter()
        driving = driving_video(args.driving, size, model_config, args.device)
        windows, driving_cameras, fps, audio = driving.windows, driving.cameras, driving.fps, args.driving
        reading = time.perf_counter() - reading
        print(f"driving: {windows.shape[0]} frames, motion and cameras read by {driving.reader} in {reading:.1f} s "
              f"({windows.shape[0] / reading:.1f} FPS); {driving.reused} without a detected face repeat the last reading that had one")
        driving_images = driving.images if args.side_by_side else None
        first_frame = {"image": driving.images[:1], "keypoints": driving.keypoints[:1], "motion": windows[:1], "camera": driving_cameras[:1]}
    elif windows is None and args.dataset:
        source = FrameSource(VideoLmdb(args.dataset, args.resolution or size), "ground_truth", image_size=size,
                             motion_space=model_config["motion_space"])
        data = source.video(args.video)
        windows, driving_cameras = data["motion"], data["camera"]
        if args.side_by_side:
            driving_images = torch.stack([source.image(args.video, f) for f in range(windows.shape[0])])
        first_frame = {key: value[None] for key, value in source.frame(args.video, 0).items()}
    elif windows is None:
        print("no --driving or --dataset: driving with the embedded sample (another synthetic identity)")
        driver = sample()[1]
        windows, driving_cameras = driving_windows(driver), driver.cameras
        driving_images = driver.images * 2 - 1 if args.side_by_side else None
        first_frame = frame_target(driver)
    fps = args.fps or fps
    target = portrait_target(args.portrait, model_config, args.coeffs).target if args.portrait else None
    if avatar is None and target is None:
        print("no --avatar or --portrait: inverting the embedded sample portrait (a held-out synthetic head)")
        target = frame_target(sample()[0])
    source_camera = avatar["camera"] if avatar is not None else target["camera"]
    cameras = camera_path(args.camera or ("driving" if driving_cameras is not None else "source"), windows.shape[0], driving_cameras, source_camera)
    if args.save_motion:
        atomic_write(args.save_motion, lambda handle: np.save(handle, windows[:, :, WINDOW_RADIUS].numpy()))
        print(f"motion ({windows.shape[0]} × {windows.shape[1]}, {model_config['motion_space']} space) → {args.save_motion}")

    if avatar is None:
        with inference_speed(args, animator.generator, "inversion"):
            avatar = construct(args, animator, model_config, sha256, target)
    animator = avatar_animator(animator, avatar)
    identity = avatar["identity_w_plus"] if args.w == "w_plus" and avatar["identity_w_plus"] is not None else avatar["identity_w"]
    correction = avatar["correction"].to(args.device)
    if args.optimize_camera:
        with inference_speed(args, animator.generator, "camera refit"):
            correction = refit_camera(args, animator, identity.to(args.device), first_frame)
    if args.frames_dir:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
    depth_range = (model_config["generator"]["rendering_kwargs"]["ray_start"], model_config["generator"]["rendering_kwargs"]["ray_end"])
    depth_frames = []

    start = time.perf_counter()
    bar = tqdm(total=windows.shape[0], desc="reenact")

    def frames():
        index = 0
        batches = reenact(animator, identity.to(args.device), windows, cameras, correction, args.batch_size)
        for batch in batches:
            images = batch["image"].cpu()
            if args.depth:
                depth = F.interpolate(batch["image_depth"].cpu(), size=images.shape[-2:], mode="nearest")
                depth_frames.append(to_uint8_frames(((depth - depth_range[0]) / (depth_range[1] - depth_range[0]) * 2 - 1).repeat(1, 3, 1, 1)))
            if driving_images is not None:
                images = torch.cat([driving_images[index : index + images.shape[0]], images], dim=3)
            for image in images:
                if args.frames_dir:
                    atomic_write(args.frames_dir / f"{index:06d}.png",
                                 lambda handle: save_image(image, handle, format="png", normalize=True, value_range=(-1, 1)))
                index += 1
            bar.update(images.shape[0])
            yield from to_uint8_frames(images)

    with inference_speed(args, animator.generator, "reenactment"):
        write_video(frames(), args.out, fps, audio_source=audio)
    bar.close()
    seconds = time.perf_counter() - start
    if args.depth:
        write_video((f for batch in depth_frames for f in batch), depth_path, fps)
        print(f"depth maps → {depth_path} (black {depth_range[0]}, white {depth_range[1]})")
    print(f"{windows.shape[0]} frames in {seconds:.1f} s ({windows.shape[0] / seconds:.2f} FPS) → {args.out}")


if __name__ == "__main__":
    main()
