"""Small models and batches shared by the tests."""

import functools
import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch

from otavatar.camera import frontal_camera
from otavatar.config import build_animator, load_model_preset


def micro_config():
    """The tiny preset with fewer rays and samples, so a training step takes well under a second."""
    cfg = load_model_preset("tiny")
    cfg.generator.neural_rendering_resolution = 16
    cfg.generator.rendering_kwargs.depth_resolution = 8
    cfg.generator.rendering_kwargs.depth_resolution_importance = 8
    return cfg


def nano_config():
    """micro_config with 32² tri-planes (8 ws instead of 12): a render about half the cost, for tests of what the
    scripts do with a model (arguments, files, messages), where its quality does not matter."""
    cfg = micro_config()
    cfg.generator.plane_resolution = 32
    cfg.controller.num_ws = 8
    return cfg


def micro_animator(seed: int = 0, config=None):
    """The model of ``config`` (default: micro_config) with random weights drawn from ``seed``."""
    torch.manual_seed(seed)
    animator = build_animator(micro_config() if config is None else config)
    animator.generator.backbone.mapping.w_avg.normal_(0, 0.5)
    return animator


def frontal_cameras(batch: int, frames: int) -> torch.Tensor:
    return frontal_camera(batch * frames).view(batch, frames, 25)


def random_batch(seed: int, batch: int = 2, frames: int = 2, size: int = 128) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(batch, frames, 3, size, size, generator=g) * 2 - 1,
        "motion": torch.randn(batch, frames, 70, 27, generator=g),
        "camera": frontal_cameras(batch, frames),
        "keypoints": torch.rand(batch, frames, 68, 2, generator=g) * size,
    }


def pixel_loss(output, target, super_resolve, generator):
    """A stand-in for the animation loss: L1 on the raw image (and the super-resolved one)."""
    raw_target = torch.nn.functional.interpolate(target["image"], size=output["image_raw"].shape[-2:], mode="area")
    terms = {"raw": (output["image_raw"] - raw_target).abs().mean()}
    if super_resolve:
        terms["sr"] = (output["image"] - target["image"]).abs().mean()
    return sum(terms.values()), terms


def micro_checkpoint(folder, iteration: int = 1, motion_space: str = "3dmm", config=None):
    """A training checkpoint of the micro model (or of ``config``'s) in otavatar's format, whose controller reads
    ``motion_space`` (recorded as its training data's); returns (path, trainer)."""
    from omegaconf import OmegaConf

    from otavatar.training import checkpointing
    from otavatar.training.trainer import DecouplingTrainer
    from otavatar.training.trainer_settings import TrainerSettings

    config = micro_config() if config is None else config
    trainer = DecouplingTrainer(micro_animator(config=config), pixel_loss, TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0))
    state = {**trainer.state_dict(), "rng": [checkpointing.rng_state()], "config": {"model": OmegaConf.to_container(config), "data": {"motion_space": motion_space}}}
    return checkpointing.save_checkpoint(state, folder, iteration, keep=1), trainer


HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class HostReads:
    """Counts the tensor→Python reads (``item``, ``tolist``, ``bool``, ``float``, ``int``) made by
    otavatar's own code: on a GPU each one waits for the device (a host–device sync)."""

    def __init__(self, monkeypatch, package_dir: str = "/otavatar/") -> None:
        self.calls: list[tuple[str, str, int]] = []
        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name), package_dir))

    def _counting(self, name, original, package_dir):
        import sys

        def read(tensor, *args, **kwargs):
            caller = sys._getframe(1)
            if package_dir in caller.f_code.co_filename:
                self.calls.append((name, caller.f_code.co_name, caller.f_lineno))
            return original(tensor, *args, **kwargs)

        return read

    def clear(self) -> None:
        self.calls.clear()


class TensorConstructions:
    """Counts tensors built from Python data (``torch.tensor``, ``torch.as_tensor``, ``new_tensor``) by
    otavatar's own code: on a GPU each is a host-to-device copy."""

    def __init__(self, monkeypatch, package_dir: str = "/otavatar/") -> None:
        import sys

        self.calls: list[tuple[str, int]] = []

        def counting(original):
            def build(*args, **kwargs):
                caller = sys._getframe(1)
                if package_dir in caller.f_code.co_filename:
                    self.calls.append((caller.f_code.co_name, caller.f_lineno))
                return original(*args, **kwargs)

            return build

        monkeypatch.setattr(torch, "tensor", counting(torch.tensor))
        monkeypatch.setattr(torch, "as_tensor", counting(torch.as_tensor))
        monkeypatch.setattr(torch.Tensor, "new_tensor", counting(torch.Tensor.new_tensor))


@functools.cache
def script_main(name: str) -> Callable[[list[str]], None]:
    """``main(argv)`` of scripts/<name>.py, loaded once per process: a test of what a script does (arguments →
    package → files, printed lines) runs it in-process and skips the interpreter's start-up and imports."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_script(name: str, *args) -> None:
    """Run scripts/<name>.py in-process with ``args`` (paths and numbers as they are)."""
    script_main(name)([str(a) for a in args])


def refused(capsys: pytest.CaptureFixture, name: str, *args) -> str:
    """Run scripts/<name>.py in-process, expect exit status 2, and return its one error line."""
    with pytest.raises(SystemExit) as exit:
        run_script(name, *args)
    err = capsys.readouterr().err
    assert exit.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def nano_animator(seed: int = 0):
    """micro_animator of nano_config: for tests of what the trainer does with a model (schedules, freezing, resumes,
    checkpoints), where the model's size does not matter: its training step costs about a third of micro's."""
    return micro_animator(seed, nano_config())
