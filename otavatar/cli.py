"""Shared pieces of the user-facing scripts: their parser and error reporting, argument types, loading the
model, camera paths, the inversion options."""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Sequence

import torch
from tqdm import tqdm

from otavatar.assets import REPO_ROOT, MissingAssetError
from otavatar.camera import look_at_camera
from otavatar.checkpoints import file_sha256, load_animator
from otavatar.config import inversion_presets, load_inversion_preset, load_loss_preset
from otavatar.errors import InputError, MissingInputError, reported_as_one_line
from otavatar.inversion import CAMERA_FIT_STEPS, InversionSettings, fit_camera
from otavatar.losses.animation import AnimationLoss
from otavatar.losses.lpips_alexnet import load_lpips
from otavatar.models.animator import Animator
from otavatar.one_shot import PivotalTuningSettings, build_avatar
from otavatar.speed import SPEED_MODES, CudaSettings, SpeedMode, configure_cuda, speed_mode, speed_mode_by_name


DEFAULT_CHECKPOINT = REPO_ROOT / "pretrained" / "otavatar_tiny.pt"
# Steps between loss readings on the progress bar: each reading waits for the device.
PROGRESS_EVERY = 10


class ScriptParser(argparse.ArgumentParser):
    """The scripts' parser: the docstring as description, ``--debug``, and usage errors as one line (exit status 2)."""

    def __init__(self, doc: str | None = None, **kwargs) -> None:  # keywords: from add_subparsers().add_parser
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        self.add_argument("--debug", action="store_true", help="show the traceback of an input error")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def script(main: Callable[[list[str]], None]) -> Callable[[Sequence[str] | None], None]:
    """A script's ``main(argv)`` (default: the command line) whose input errors print as one line and exit with
    status 2; with ``--debug`` they keep their traceback."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> None:
        argv = list(sys.argv[1:] if argv is None else argv)
        with reported_as_one_line(debug="--debug" in argv):
            main(argv)

    return run


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}, found {text!r}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, found {text!r}")
    return value


def available_device(name: str) -> str:
    """An argparse type: ``cpu``, or ``cuda``/``cuda:N`` when this machine has that GPU."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, found {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return name


def camera_mode(mode: str) -> str:
    """An argparse type: ``driving``, ``source``, ``orbit`` or ``yaw,pitch`` in radians."""
    if mode not in ("driving", "source", "orbit") and _yaw_pitch(mode) is None:
        raise argparse.ArgumentTypeError(f"expected driving, source, orbit or 'yaw,pitch' in radians, found {mode!r}")
    return mode


def _yaw_pitch(mode: str) -> tuple[float, float] | None:
    try:
        yaw, pitch = (float(v) for v in mode.split(","))
    except ValueError:
        return None
    return (yaw, pitch) if math.isfinite(yaw) and math.isfinite(pitch) else None


def load_model(checkpoint: str | Path, device: str) -> tuple[Animator, dict, str]:
    """Animator on ``device``, its model config and the checkpoint's sha256 (the avatar's model identity)."""
    if Path(checkpoint) == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_file():
        raise MissingInputError(
            f"no --checkpoint given and the embedded tiny model {DEFAULT_CHECKPOINT} is not there; pass --checkpoint "
            "with a checkpoint from scripts/train.py (runs/<name>/checkpoint_*.pt) or the release's (see pretrained/README.md)"
        )
    animator, model_config = load_animator(checkpoint)
    return animator.to(device), model_config, file_sha256(checkpoint)


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """``--speed`` and ``--tf32``, shared by the inference scripts (defaults: exact fp32, as the release)."""
    parser.add_argument("--speed", default="exact", choices=sorted(SPEED_MODES),
                        help="exact: the preset's computation; fast: half the samples per ray and bf16/fp16 convolutions (README, Performance)")
    parser.add_argument("--tf32", action="store_true", default=CudaSettings.tf32,
                        help="CUDA: TF32 tensor cores for fp32 work (faster; parity with the release needs it off)")


@contextlib.contextmanager
def inference_speed(args: argparse.Namespace, generator: torch.nn.Module, task: str) -> Iterator[SpeedMode]:
    """The CUDA switches and the ``--speed`` mode for the block, with a line saying how ``task`` runs."""
    configure_cuda(replace(CudaSettings(), tf32=args.tf32))
    mode = speed_mode_by_name(args.speed)
    settings = mode.resolved(args.device).settings(generator)
    with speed_mode(generator, mode, args.device) as resolved:
        print(
            f"{task}: speed {mode.name}, {settings['coarse_samples']}+{settings['fine_samples']} samples/ray, {resolved.precision}"
            f"{', TF32' if args.tf32 else ''} on {args.device}"
        )
        yield resolved


def camera_path(mode: str, count: int, driving: torch.Tensor | None, source: torch.Tensor) -> torch.Tensor:
    """Cameras ``(N, 25)``: ``driving`` (the driving frames' own), ``source`` (the portrait's, fixed),
    ``orbit`` (the release's --rotate path around the source camera's focal), or ``yaw,pitch`` in radians."""
    if mode == "driving":
        if driving is None:
            raise InputError("--camera driving: the driving motion has no cameras (a coefficient file); use source, orbit or yaw,pitch")
        return driving
    if mode == "source":
        return source.reshape(1, 25).expand(count, -1).clone()
    if mode == "orbit":
        t = torch.arange(count, dtype=torch.float32)
        return look_at_camera(0.5 * torch.sin(2 * math.pi * t / 100), -0.05 + 0.5 * torch.cos(2 * math.pi * t / 100), focal=float(source.reshape(25)[16]))
    angles = _yaw_pitch(mode)
    if angles is None:
        raise InputError(f"--camera {mode!r}: expected driving, source, orbit or 'yaw,pitch' in radians")
    yaw, pitch = angles
    return look_at_camera(torch.full((count,), yaw), torch.full((count,), pitch), focal=float(source.reshape(25)[16]))


def add_inversion_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with scripts/reenact.py --portrait."""
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="an otavatar training checkpoint or the release's")
    parser.add_argument("--coeffs", help="the portrait's 3DMM coefficients (257/260/70 values); default: regressed, or neutral")
    parser.add_argument("--loss", default="offline_l1", help="a loss preset of configs/loss (release needs VGG19 and ArcFace)")
    add_schedule_arguments(parser)
    parser.add_argument("--pti", action="store_true", help="then finetune the generator on the portrait (pivotal tuning, as the "
                        "release's: SmoothL1 on the raw image, stopping at LPIPS ≤ 0.06 when the AlexNet file is installed)")
    parser.add_argument("--pti-steps", type=at_least(0), default=50)
    parser.add_argument("--pti-lr", type=positive, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=available_device, default="cpu")


def add_schedule_arguments(parser: argparse.ArgumentParser, default: str = "fast") -> None:
    """``--schedule`` (a preset of configs/inversion) and its overrides, read back by :func:`inversion_settings`."""
    parser.add_argument("--schedule", default=default, choices=inversion_presets(),
                        help="inversion schedule of configs/inversion: fast (5 W + 50 W+ steps) or release (100 W + 100 W+)")
    parser.add_argument("--w-steps", type=at_least(1), help="override the schedule's W steps")
    parser.add_argument("--w-plus-steps", type=at_least(0), help="override the schedule's W+ steps")
    parser.add_argument("--lr", type=positive, help="override the schedule's learning rate")


def inversion_settings(args: argparse.Namespace) -> InversionSettings:
    """The ``--schedule`` preset with the steps and learning rate given on the command line."""
    overrides = {"w_steps": args.w_steps, "w_plus_steps": args.w_plus_steps, "lr": args.lr}
    return replace(load_inversion_preset(args.schedule), **{key: value for key, value in overrides.items() if value is not None})


def pivotal_tuning_lpips(settings: PivotalTuningSettings, device: str) -> torch.nn.Module | None:
    """The LPIPS network of pivotal tuning's early stop; None, said on the console, when its AlexNet file is missing."""
    try:
        return load_lpips().to(device)
    except MissingAssetError as error:
        print(f"--pti: the early stop at LPIPS ≤ {settings.lpips_threshold} is off ({error.path} is missing, see "
              f"pretrained/README.md): all {settings.steps} steps run")
        return None


def construct(args: argparse.Namespace, animator: Animator, model_config: dict, sha256: str, target: dict) -> dict:
    """Invert with a progress bar showing the loss; returns the avatar file's content."""
    torch.manual_seed(args.seed)
    loss = AnimationLoss.from_config(load_loss_preset(args.loss), use_regularisers=False).to(args.device)
    settings = inversion_settings(args)
    pti = PivotalTuningSettings(args.pti_steps, args.pti_lr) if args.pti else None
    lpips = pivotal_tuning_lpips(pti, args.device) if pti else None
    bar = tqdm(total=settings.w_steps + settings.w_plus_steps + (pti.steps if pti else 0), desc="invert")

    def progress(phase: str, step: int, value: torch.Tensor) -> None:
        if step % PROGRESS_EVERY == 0:
            bar.set_postfix(phase=phase, loss=f"{float(value):.4f}", refresh=False)
        bar.update()

    target = {key: value.to(args.device) for key, value in target.items()}
    avatar = build_avatar(animator, {"checkpoint_sha256": sha256, "config": model_config}, target, loss, settings, pti, progress, lpips)
    bar.close()
    return avatar


def refit_camera(args: argparse.Namespace, animator: Animator, identity: torch.Tensor, target: dict) -> torch.Tensor:
    """``--optimize-camera``: the intrinsics correction refitted on the first driving frame (w_id frozen), as the release's ``--cam_optim``."""
    torch.manual_seed(args.seed)
    loss = AnimationLoss.from_config(load_loss_preset(args.loss), use_regularisers=False).to(args.device)
    bar = tqdm(total=CAMERA_FIT_STEPS, desc="camera")
    target = {key: value.to(args.device) for key, value in target.items()}
    correction = fit_camera(animator, identity, target, loss, inversion_settings(args), on_step=lambda *_: bar.update())
    bar.close()
    return correction
