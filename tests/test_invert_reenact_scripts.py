"""scripts/invert.py, scripts/reenact.py and scripts/benchmark_inversion.py end to end on synthetic heads and the
nano model (what is checked is what the scripts do with a model): in-process through their ``main(argv)``, and one
real process each for the exit status and the one-line error (invert.py's: tests/test_bad_inputs.py)."""

import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from tests.helpers import micro_checkpoint, nano_config, run_script

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")
    checkpoint, _ = micro_checkpoint(folder, config=nano_config())
    dataset = folder / "heads"
    write_synthetic_dataset(dataset, identities=2, videos=1, frames=4, resolution=128, seed=0, progress=False)
    return folder, checkpoint, dataset


def process(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True, text=True)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a script's process: exit status 2, one line on stderr, no traceback."""
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_invert_then_reenact_a_coefficient_sequence(setup, capsys):
    folder, checkpoint, dataset = setup
    avatar = folder / "avatar.pt"
    run_script("invert", "--checkpoint", checkpoint, "--dataset", dataset, "--video", "synth0001#00",
               "--w-steps", 4, "--w-plus-steps", 2, "--lr", 0.05, "--out", avatar)
    assert "reconstruction PSNR" in capsys.readouterr().out
    content = torch.load(avatar, weights_only=True)
    assert content["identity_w_plus"].shape == (1, nano_config().controller.num_ws, 512)  # one w per layer of the checkpoint's model
    curve = content["loss_curve"]
    assert len(curve) == 6 and curve[3] < curve[0]
    assert avatar.with_name("avatar_preview.png").is_file()

    coefficients = folder / "motion.npy"
    np.save(coefficients, np.random.default_rng(0).normal(0, 0.1, (6, 257)).astype(np.float32))
    video = folder / "out.mp4"
    run_script("reenact", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", coefficients, "--camera", "orbit", "--out", video)
    assert "6 frames in" in capsys.readouterr().out
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 6
    reader = imageio_ffmpeg.read_frames(str(video))
    assert next(reader)["size"] == (128, 128)


def test_a_bad_coefficient_file_is_one_line_from_a_real_process(setup):
    """Missing checkpoint and avatar files are named in tests/test_bad_inputs.py."""
    folder, checkpoint, _ = setup
    wrong = folder / "wrong.npy"
    np.save(wrong, np.zeros((5, 100), np.float32))
    result = process("reenact.py", "--checkpoint", checkpoint, "--driving", wrong, "--out", folder / "x.mp4")
    assert "expected (N, 257), (N, 260) or (N, 70) values, found shape (5, 100)" in one_line_error(result)
    assert not (folder / "x.mp4").exists()


def test_without_inputs_both_scripts_use_the_embedded_sample(setup, capsys):
    """reenact.py also refits the camera on the sample driver's first frame (--optimize-camera), in 10 steps
    (--camera-steps; the refit itself: tests/test_pti_and_camera_fit.py)."""
    folder, checkpoint, _ = setup
    avatar = folder / "sample_avatar.pt"
    run_script("invert", "--checkpoint", checkpoint, "--w-steps", 1, "--w-plus-steps", 1, "--out", avatar)
    printed = capsys.readouterr().out
    assert "embedded sample" in printed and avatar.is_file()
    assert "inversion: speed exact, 8+8 samples/ray, float32 on cpu" in printed
    video = folder / "sample.mp4"
    run_script("reenact", "--checkpoint", checkpoint, "--w-steps", 1, "--w-plus-steps", 1, "--side-by-side", "--out", video,
               "--speed", "fast", "--optimize-camera", "--camera-steps", 10)
    printed, progress = capsys.readouterr()
    assert "embedded sample portrait" in printed and "48 frames in" in printed
    # The model's 8 + 8 samples per ray, halved; the precision is the CPU's native one.
    assert "inversion: speed fast, 4+4 samples/ray" in printed and "reenactment: speed fast, 4+4 samples/ray" in printed
    assert "camera refit: speed fast, 4+4 samples/ray" in printed and "camera: 100%" in progress
    assert next(imageio_ffmpeg.read_frames(str(video)))["size"] == (256, 128)


def test_time_to_avatar_benchmark_writes_its_table_and_json(setup, capsys):
    folder, checkpoint, _ = setup
    (folder / "release.yaml").write_text("w_steps: 1\nw_plus_steps: 0\nsr_steps: 1\n")
    (folder / "ours.yaml").write_text("w_steps: 1\nw_plus_steps: 1\nsr_steps: null\nlr: 0.03\ndeterministic: true\n")
    run_script("benchmark_inversion", "--checkpoint", checkpoint, "--release", folder / "release.yaml", "--ours", folder / "ours.yaml",
               "--portraits", 1, "--json", folder / "tta.json")
    table = capsys.readouterr().out
    assert "| release-equivalent | 1 + 0, 0.01, 1 |" in table and "| otavatar | 1 + 1, 0.03, all |" in table
    rows = json.loads((folder / "tta.json").read_text())["rows"]
    assert [row["run"] for row in rows] == ["release-equivalent", "release schedule, cached", "otavatar"]
    missing = one_line_error(process("benchmark_inversion.py", "--checkpoint", checkpoint, "--ours", "nope", "--portraits", 1))
    assert "inversion schedule 'nope'" in missing and "schedules: ['fast', 'release']" in missing
