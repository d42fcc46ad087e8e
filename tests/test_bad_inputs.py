"""Bad input as a new user gives it: no file runs code, no input is destroyed, bad values are refused
before any work, and each user error is one line (exit status 2) without a traceback.

Scripts run in-process through their ``main(argv)``; a subprocess only where the real exit status and
output of a process are what is tested.
"""

import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from otavatar.avatar_file import load_avatar, save_avatar
from otavatar.checkpoints import load_animator, load_generator, load_release_animator, read_eg3d_pickle
from otavatar.config import build_generator, compose_config
from otavatar.errors import FileFormatError, InputError
from otavatar.evaluation.generator_quality import load_generator_and_embedding
from otavatar.evaluation.synthetic_regressor import load_synthetic_regressor
from otavatar.files import check_outputs, load_torch_file
from otavatar.losses.perceptual import load_vgg19_features
from otavatar.preprocess.multiface import MultifaceLayoutError, read_krt
from otavatar.training import checkpointing
from otavatar.training.from_config import train_from_config
from otavatar.training.loop import ConfigMismatchError
from otavatar.training.pretrain import GeneratorPretrainer, PretrainSettings
from otavatar.training.pretrain_from_config import load_pretrained_generator, resume_pretraining
from tests.helpers import micro_checkpoint, micro_config, nano_config, refused, run_script, script_main

REPO = Path(__file__).resolve().parent.parent
FAST = ["trainer.identity_steps=1", "trainer.motion_steps=1", "trainer.sr_steps=0", "batch_size=1", "log_every=1", "image_every=0",
        "checkpoint_every=1", "model.generator.neural_rendering_resolution=16", "model.generator.rendering_kwargs.depth_resolution=4",
        "model.generator.rendering_kwargs.depth_resolution_importance=4",
        # nano_config's 32² tri-planes: what is tested is the run folder and its resumes, not what the model learns
        "model.generator.plane_resolution=32", "model.controller.num_ws=8", "frames_per_item=1"]


class Payload:
    """What a malicious checkpoint holds: unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A nano checkpoint, a photo, a crafted checkpoint and pickle, and coefficient files."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    micro_checkpoint(folder, config=nano_config())
    Image.fromarray(skimage.data.astronaut()).save(folder / "me.png")
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("hello\nthis is a text file\n")
    (folder / "notes.mp4").write_text("hello\nthis is a text file\n")
    motion = np.random.default_rng(0).normal(0, 0.1, (10, 257)).astype(np.float32)
    np.save(folder / "motion.npy", motion)
    motion[3, 90] = np.nan
    np.save(folder / "nan.npy", motion)
    np.savetxt(folder / "inf.txt", np.where(np.isnan(motion), np.inf, motion))
    for name in ("evil.pt", "evil.pth"):
        torch.save({"format": checkpointing.CHECKPOINT_FORMAT, "G_ema": Payload(folder / "MARKER")}, folder / name)
    (folder / "evil.pkl").write_bytes(pickle.dumps({"G_ema": Payload(folder / "MARKER")}))
    return folder


@pytest.fixture(autouse=True)
def no_marker(folder, monkeypatch):
    """Every test ends with the crafted files never having run; the regressor weights are absent."""
    monkeypatch.setenv("OTAVATAR_PRETRAINED", "/nonexistent")
    yield
    assert not (folder / "MARKER").exists(), "a crafted file ran its code"


def checksums(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- no file runs code ------------------------------------------------------------------------------------------


def test_every_loader_refuses_the_crafted_file_and_names_the_global(folder):
    evil, evil_pth = folder / "evil.pt", folder / "evil.pth"
    loaders = [
        lambda: load_torch_file(evil, "a checkpoint"),
        lambda: load_animator(evil),
        lambda: load_generator(evil_pth, {}),
        lambda: load_release_animator(evil, {}, {}),
        lambda: checkpointing.load_checkpoint(evil),
        lambda: checkpointing.export_model(evil, folder / "exported.pt"),
        lambda: load_avatar(evil),
        lambda: load_vgg19_features(evil_pth),
        lambda: load_synthetic_regressor(evil),
        lambda: load_pretrained_generator(evil),
        lambda: load_generator_and_embedding(evil_pth),
    ]
    for load in loaders:
        with pytest.raises(FileFormatError, match=r"evil\.pth?: refused: loading it would import posix\.system"):
            load()
    with pytest.raises(FileFormatError, match=r"evil\.pkl: refusing to load global posix\.system"):
        read_eg3d_pickle(folder / "evil.pkl")
    assert not (folder / "exported.pt").exists()


def test_the_crafted_checkpoint_never_runs_through_a_script(folder, capsys):
    evil = folder / "evil.pt"
    refusal = "evil.pt: refused: loading it would import posix.system"
    assert refusal in refused(capsys, "invert", "--checkpoint", evil, "--out", folder / "a.pt")
    assert refusal in refused(capsys, "reenact", "--checkpoint", evil, "--driving", folder / "motion.npy", "--out", folder / "a.mp4")
    assert refusal in refused(capsys, "reenact", "--checkpoint", folder / "checkpoint_000000001.pt", "--avatar", evil,
                              "--driving", folder / "motion.npy", "--out", folder / "a.mp4")
    assert refusal in refused(capsys, "evaluate", "--checkpoint", evil, "--dataset", folder, "--out", folder.parent / "results")
    assert refusal in refused(capsys, "export_model", evil, folder / "exported.pt")
    assert "evil.pth: refused: loading it would import posix.system" in refused(
        capsys, "evaluate_generator", "--checkpoint", folder / "evil.pth", "--json", folder / "quality" / "q.json")
    assert not any((folder / name).exists() for name in ("a.pt", "a_preview.png", "a.mp4", "exported.pt", "quality"))


def test_the_crafted_checkpoint_through_a_real_process_is_one_line(folder):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "invert.py"), "--checkpoint", str(folder / "evil.pt"), "--out", str(folder / "a.pt")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "refused: loading it would import posix.system" in result.stderr


# -- training runs: resume, refused resume, bad settings ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder with the checkpoint of one training iteration, and the overrides that made it."""
    root = tmp_path_factory.mktemp("run")
    overrides = [*FAST, f"data.root={root / 'heads'}", "data.resolution=64", "data.generate.identities=2",
                 "data.generate.videos=1", "data.generate.frames=2", "device=cpu"]
    train_from_config(compose_config([*overrides, f"run_dir={root / 'run'}", "iterations=1"]))
    return root / "run", overrides


def test_resume_skips_a_crafted_and_a_truncated_checkpoint_and_says_why(trained_run, folder, tmp_path, capsys):
    source, overrides = trained_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    good = run / "checkpoint_000000001.pt"
    (run / "checkpoint_000000002.pt").write_bytes(good.read_bytes()[:100_000])
    shutil.copy(folder / "evil.pt", run / "checkpoint_000000003.pt")
    last = train_from_config(compose_config([*overrides, f"run_dir={run}", "iterations=1"]))
    out = capsys.readouterr().out
    assert "not resuming from " + str(run / "checkpoint_000000003.pt") + ": refused: loading it would import posix.system" in out
    assert "not resuming from " + str(run / "checkpoint_000000002.pt") + ": cannot be read as a training checkpoint" in out
    assert f"resumed from {good} at iteration 1" in out and last == good


def test_pretraining_resumes_from_the_newest_checkpoint_that_loads(folder, tmp_path):
    settings = PretrainSettings(iterations=2, batch_size=1)
    trainer = GeneratorPretrainer(build_generator(micro_config().generator), settings, seed=0)
    trainer.iteration = 1
    good = checkpointing.save_checkpoint({"pretrainer": trainer.state_dict()}, tmp_path, 1, keep=3)
    (tmp_path / "checkpoint_000000002.pt").write_bytes(good.read_bytes()[:100_000])
    shutil.copy(folder / "evil.pt", tmp_path / "checkpoint_000000003.pt")
    resumed, said = GeneratorPretrainer(build_generator(micro_config().generator), settings, seed=0), []
    assert resume_pretraining(resumed, tmp_path, said.append) == good and resumed.iteration == 1
    assert said[0].startswith("not resuming from " + str(tmp_path / "checkpoint_000000003.pt") + ": refused: loading it would import posix.system")
    assert said[1].startswith("not resuming from " + str(tmp_path / "checkpoint_000000002.pt") + ": cannot be read as a training checkpoint")


def test_a_refused_resume_changes_nothing_in_the_run_folder(trained_run, folder, tmp_path):
    source, overrides = trained_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = checksums(run)
    assert "config.yaml" in before
    with pytest.raises(ConfigMismatchError, match="trainer.ema_decay: 0.95 in the checkpoint, 0.9 now"):
        train_from_config(compose_config([*overrides, f"run_dir={run}", "iterations=2", "trainer.ema_decay=0.9"]))
    with pytest.raises(FileFormatError, match="refused: loading it would import posix.system"):
        train_from_config(compose_config([*overrides, f"run_dir={run}", "iterations=2", f"resume={folder / 'evil.pt'}"]))
    (run / "checkpoint_000000001.pt").write_bytes(b"truncated")
    before = checksums(run)
    with pytest.raises(FileFormatError, match="none of its 1 checkpoints loads"):
        train_from_config(compose_config([*overrides, f"run_dir={run}", "iterations=2"]))
    assert checksums(run) == before


def test_bad_training_settings_are_refused_before_the_run_folder_exists(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    for override, message in [("batch_size=abc", "batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
                              ("batch_size=0", "batch_size: expected an integer ≥ 1, found 0"),
                              ("trainer.ema_decay=x", "trainer.ema_decay: Value 'x' of type 'str' could not be converted to Float"),
                              ("+trainer.unknown=1", "trainer.unknown: Key 'unknown' not in 'TrainerSettings'"),
                              ("cuda.tf32=maybe", "cuda.tf32: Value 'maybe' is not a valid bool"),
                              ("dataset_wait_seconds=-1", "dataset_wait_seconds: expected a finite number > 0, found -1"),
                              ("frames_per_item=0", "frames_per_item: expected an integer ≥ 1, found 0")]:
        with pytest.raises(InputError, match=message):
            train_from_config(compose_config([f"run_dir={run}", override]))
    # The script's Hydra entry point in-process (its real process: tests/test_train_script.py); Hydra points the
    # root logger at the captured stdout, so its handlers and level are put back.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", f"run_dir={run}", "batch_size=abc"])
    handlers, level = list(logging.root.handlers), logging.root.level
    try:
        with pytest.raises(SystemExit) as exit:
            script_main("train")()
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "batch_size: Value 'abc'" in err
    assert not run.exists() and not any(tmp_path.iterdir())  # Hydra wrote nothing either


# -- inputs are never destroyed, outputs are atomic --------------------------------------------------------------


def test_the_photo_survives_an_out_next_to_it(folder, tmp_path, capsys):
    photo = tmp_path / "me.png"
    shutil.copy(folder / "me.png", photo)
    before = photo.read_bytes()
    run_script("invert", "--checkpoint", folder / "checkpoint_000000001.pt", "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 1,
               "--out", tmp_path / "me.pt")
    assert photo.read_bytes() == before
    assert load_avatar(tmp_path / "me.pt")["source_image"].shape == (1, 3, 128, 128)
    assert Image.open(tmp_path / "me_preview.png").size[0] > 2 * 128  # source | reconstruction
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    capsys.readouterr()
    assert "--out " + str(photo) + " is also --portrait" in refused(capsys, "invert", "--portrait", photo, "--out", photo)
    preview_named_like_the_photo = tmp_path / "x_preview.png"
    shutil.copy(photo, preview_named_like_the_photo)
    line = refused(capsys, "invert", "--portrait", preview_named_like_the_photo, "--out", tmp_path / "x.png")
    assert "the preview (from --out)" in line and "would destroy that file" in line
    assert photo.read_bytes() == before and preview_named_like_the_photo.read_bytes() == before


def test_outputs_that_would_replace_an_input_are_refused(folder, tmp_path, capsys):
    checkpoint, motion = folder / "checkpoint_000000001.pt", folder / "motion.npy"
    assert "is also --driving" in refused(capsys, "reenact", "--checkpoint", checkpoint, "--driving", motion, "--out", motion)
    assert "is also the checkpoint" in refused(capsys, "export_model", checkpoint, checkpoint)
    assert "lies inside the folder --dataset" in refused(capsys, "evaluate", "--checkpoint", checkpoint, "--dataset", folder, "--out", folder / "results")
    link = tmp_path / "link.npy"
    os.link(motion, link)  # another name of the same file
    assert "is also --driving" in refused(capsys, "reenact", "--checkpoint", checkpoint, "--driving", motion, "--out", link)
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(InputError, match="lies inside the folder --driving"):
        check_outputs({"--driving": frames}, files={"--out": frames / "000000.png"})
    assert np.load(motion).shape == (10, 257)


# -- values are checked before any work ------------------------------------------------------------------------------


def test_nan_motion_is_refused_before_rendering_and_nothing_is_written(folder, tmp_path, capsys):
    checkpoint = folder / "checkpoint_000000001.pt"
    out, frames = tmp_path / "out.mp4", tmp_path / "frames"
    for coefficients, found in ((folder / "nan.npy", "nan.npy: 1 NaN or infinite value(s), the first at row 3, column 90"),
                                (folder / "inf.txt", "inf.txt: 1 NaN or infinite value(s), the first at row 3, column 90")):
        line = refused(capsys, "reenact", "--checkpoint", checkpoint, "--driving", coefficients, "--out", out, "--frames-dir", frames, "--depth")
        assert found in line and "expected finite numbers" in line
        line = refused(capsys, "invert", "--checkpoint", checkpoint, "--portrait", folder / "me.png", "--coeffs", coefficients,
                       "--out", tmp_path / "a.pt")
        assert found in line
    assert not any(tmp_path.iterdir())


def test_an_avatar_with_nan_codes_is_refused(tmp_path):
    path = save_avatar(tmp_path / "a.pt", {"identity_w": torch.full((1, 1, 512), float("nan")), "identity_w_plus": None,
                                           "correction": torch.zeros(1, 18), "camera": torch.zeros(1, 25), "model": {"checkpoint_sha256": ""}})
    with pytest.raises(FileFormatError, match="'identity_w' holds NaN or infinite values"):
        load_avatar(path)


@pytest.mark.parametrize("script, args, message", [
    ("reenact", ["--fps", "-5"], "argument --fps: expected a number > 0, found '-5'"),
    ("reenact", ["--fps", "0"], "argument --fps: expected a number > 0, found '0'"),
    ("reenact", ["--batch-size", "0"], "argument --batch-size: expected an integer ≥ 1, found '0'"),
    ("reenact", ["--camera", "1,x"], "argument --camera: expected driving, source, orbit or 'yaw,pitch'"),
    ("invert", ["--w-steps", "0"], "argument --w-steps: expected an integer ≥ 1, found '0'"),
    ("invert", ["--w-steps", "-3"], "argument --w-steps: expected an integer ≥ 1, found '-3'"),
    ("invert", ["--lr", "nan"], "argument --lr: expected a number > 0, found 'nan'"),
    ("benchmark", ["--threads", "0"], "argument --threads: expected an integer ≥ 1, found '0'"),
    ("benchmark_inversion", ["--threads", "0"], "argument --threads: expected an integer ≥ 1, found '0'"),
    ("evaluate", ["--w-steps", "0"], "argument --w-steps: expected an integer ≥ 1, found '0'"),
    ("evaluate", ["--protocol", "self", "--include-driver"], "--include-driver applies to --protocol cross_id only"),
    ("benchmark", ["--compile-mode", "reduce-overhead", "--warmup", "2"], "--warmup 2: CUDA graphs (--compile-mode reduce-overhead) record"),
    ("evaluate_generator", ["--heads", "0"], "argument --heads: expected an integer ≥ 1, found '0'"),
    ("preprocess", ["multiface", "capture", "--out", "x", "--frames", "0"], "argument --frames: expected an integer ≥ 1, found '0'"),
])
def test_out_of_range_arguments_are_one_line(capsys, script, args, message):
    assert message in refused(capsys, script, *args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    assert "argument --device: cuda: CUDA is not available on this machine; use --device cpu" in refused(capsys, "invert", "--device", "cuda")
    with pytest.raises(InputError, match="device=cuda: CUDA is not available"):
        train_from_config(compose_config(["device=cuda", "run_dir=/nonexistent/run"]))


# -- one line per user error --------------------------------------------------------------------------------------


def test_user_errors_are_one_line_naming_the_file(folder, tmp_path, capsys):
    checkpoint, avatar, video = folder / "checkpoint_000000001.pt", tmp_path / "a.pt", tmp_path / "a.mp4"
    cases = [
        ("invert", ["--portrait", folder / "grey.png", "--out", avatar], "grey.png: no face found"),
        ("invert", ["--portrait", folder / "tiny.png", "--out", avatar], "tiny.png: 16×16 pixels is too small to hold a face"),
        ("invert", ["--portrait", folder / "missing.png", "--out", avatar], "missing.png: no such file or folder"),
        ("invert", ["--checkpoint", folder / "missing.pt", "--out", avatar], "missing.pt: file does not exist"),
        ("invert", ["--out", tmp_path / "nowhere" / "a.pt"], "the folder " + str(tmp_path / "nowhere") + " does not exist"),
        ("invert", ["--out", tmp_path], f"--out {tmp_path}: is a folder"),
        ("reenact", ["--avatar", folder / "missing.pt", "--driving", folder / "motion.npy", "--out", video], "missing.pt: file does not exist"),
        ("reenact", ["--driving", folder / "notes.txt", "--out", video],
         "notes.txt: not readable as numbers (ValueError: could not convert string 'hello'"),
        ("reenact", ["--driving", folder / "me.png", "--out", video], "--driving " + str(folder / "me.png") + ": a '.png' file; expected a video"),
        ("reenact", ["--driving", folder / "notes.mp4", "--out", video], "notes.mp4: not a readable video"),
        ("reenact", ["--driving", folder / "motion.npy", "--camera", "driving", "--out", video], "--camera driving: the driving motion has no cameras"),
    ]
    for script, args, message in cases:
        assert message in refused(capsys, script, "--checkpoint", checkpoint, *args)
    assert not any(tmp_path.iterdir())


def test_multiface_input_errors_name_the_file(tmp_path, capsys):
    krt = tmp_path / "KRT"
    krt.write_text("400001\n1 0 0\n0 nan 0\n0 0 1\n0 0 0 0 0\n1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(MultifaceLayoutError, match=r"KRT, line 3: NaN or infinite values; expected finite numbers"):
        read_krt(krt)
    krt.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(MultifaceLayoutError, match=r"KRT: not a text file"):
        read_krt(krt)
    capture = tmp_path / "capture"
    assert f"Multiface capture {capture}: no such folder" in refused(capsys, "preprocess", "multiface", capture, "--out", tmp_path / "out")
    for layout in ("images/SEN_a/400001", "tracked_mesh/SEN_a"):
        (capture / layout).mkdir(parents=True)
    shutil.copy(krt, capture / "KRT")
    assert "KRT: not a text file" in refused(capsys, "preprocess", "multiface", capture, "--out", tmp_path / "out")
    assert "lies inside the folder the capture" in refused(capsys, "preprocess", "multiface", capture, "--out", capture / "out")
    assert not (tmp_path / "out").exists() and not (capture / "out").exists()


def test_debug_keeps_the_traceback(folder):
    with pytest.raises(FileFormatError, match="refused"):
        run_script("invert", "--checkpoint", folder / "evil.pt", "--out", folder / "a.pt", "--debug")
