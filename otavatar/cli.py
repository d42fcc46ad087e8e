"""Shared pieces of the user-facing scripts: their parser and error reporting, argument types, the options of
the inference pipeline (generated from :class:`otavatar.pipeline.PipelineSettings`) and progress bars."""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
from typing import Callable, Iterator, NoReturn, Sequence

import torch
from tqdm import tqdm

from otavatar.camera_paths import CAMERA_MODES, yaw_pitch
from otavatar.config import inversion_presets
from otavatar.errors import reported_as_one_line
from otavatar.one_shot import PivotalTuningSettings
from otavatar.pipeline import PipelineSettings
from otavatar.speed import SPEED_MODES

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
    if mode not in CAMERA_MODES and yaw_pitch(mode) is None:
        raise argparse.ArgumentTypeError(f"expected driving, source, orbit or 'yaw,pitch' in radians, found {mode!r}")
    return mode


def add_inversion_arguments(parser: argparse.ArgumentParser, defaults: PipelineSettings = PipelineSettings()) -> None:
    """The options of one-shot construction, shared by scripts/invert.py and scripts/reenact.py --portrait; their
    defaults are :class:`PipelineSettings`' (read back by :func:`pipeline_settings`)."""
    parser.add_argument("--coeffs", help="the portrait's 3DMM coefficients (257/260/70 values); default: regressed, or neutral")
    add_pipeline_arguments(parser, defaults)


def add_pipeline_arguments(parser: argparse.ArgumentParser, defaults: PipelineSettings = PipelineSettings()) -> None:
    """One option per field of :class:`PipelineSettings` (scripts/app.py takes these alone)."""
    parser.add_argument("--checkpoint", default=defaults.checkpoint, help="an otavatar training checkpoint or the release's")
    parser.add_argument("--loss", default=defaults.loss, help="a loss preset of configs/loss (release needs VGG19 and ArcFace)")
    add_schedule_arguments(parser, defaults.schedule)
    parser.add_argument("--pti", action="store_true", help="then finetune the generator on the portrait (pivotal tuning, as the "
                        "release's: SmoothL1 on the raw image, stopping at LPIPS ≤ 0.06 when the AlexNet file is installed)")
    parser.add_argument("--pti-steps", type=at_least(0), default=PivotalTuningSettings.steps)
    parser.add_argument("--pti-lr", type=positive, default=PivotalTuningSettings.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", type=available_device, default=defaults.device)
    add_speed_arguments(parser, defaults)


def add_speed_arguments(parser: argparse.ArgumentParser, defaults: PipelineSettings = PipelineSettings()) -> None:
    """``--speed`` and ``--tf32`` (defaults: exact fp32, as the release)."""
    parser.add_argument("--speed", default=defaults.speed, choices=sorted(SPEED_MODES),
                        help="exact: the preset's computation; fast: half the samples per ray and bf16/fp16 convolutions (README, Performance)")
    parser.add_argument("--tf32", action="store_true", default=defaults.tf32,
                        help="CUDA: TF32 tensor cores for fp32 work (faster; parity with the release needs it off)")


def add_schedule_arguments(parser: argparse.ArgumentParser, default: str = PipelineSettings.schedule) -> None:
    """``--schedule`` (a preset of configs/inversion) and its overrides."""
    parser.add_argument("--schedule", default=default, choices=inversion_presets(),
                        help="inversion schedule of configs/inversion: fast (5 W + 50 W+ steps) or release (100 W + 100 W+)")
    parser.add_argument("--w-steps", type=at_least(1), help="override the schedule's W steps")
    parser.add_argument("--w-plus-steps", type=at_least(0), help="override the schedule's W+ steps")
    parser.add_argument("--lr", type=positive, help="override the schedule's learning rate")


def pipeline_settings(args: argparse.Namespace) -> PipelineSettings:
    """The :class:`PipelineSettings` of parsed options (those a script does not take keep their defaults)."""
    given = {name: getattr(args, name) for name in PipelineSettings.__dataclass_fields__ if name != "pti" and hasattr(args, name)}
    pti = PivotalTuningSettings(args.pti_steps, args.pti_lr) if getattr(args, "pti", False) else None
    return PipelineSettings(**given, pti=pti)


@contextlib.contextmanager
def step_bar(total: int, description: str) -> Iterator[Callable[[str, int, torch.Tensor], None]]:
    """A progress bar over ``total`` optimiser steps; yields the ``on_step(phase, step, loss)`` that advances it and
    shows the loss every :data:`PROGRESS_EVERY` steps."""
    with tqdm(total=total, desc=description) as bar:

        def on_step(phase: str, step: int, value: torch.Tensor) -> None:
            if step % PROGRESS_EVERY == 0:
                bar.set_postfix(phase=phase, loss=f"{float(value):.4f}", refresh=False)
            bar.update()

        yield on_step
