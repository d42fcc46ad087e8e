"""scripts/invert.py and scripts/reenact.py end to end on the micro model and synthetic heads."""

import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from otavatar.data.synthetic_dataset import write_synthetic_dataset
from tests.helpers import micro_animator, micro_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")
    checkpoint, _ = micro_checkpoint(folder)
    dataset = folder / "heads"
    write_synthetic_dataset(dataset, identities=2, videos=1, frames=4, resolution=128, seed=0, progress=False)
    return folder, checkpoint, dataset


def run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True, text=True)


def test_invert_then_reenact_a_coefficient_sequence(setup):
    folder, checkpoint, dataset = setup
    avatar = folder / "avatar.pt"
    inverted = run("invert.py", "--checkpoint", checkpoint, "--dataset", dataset, "--video", "synth0001#00",
                   "--w-steps", 12, "--w-plus-steps", 4, "--lr", 0.05, "--out", avatar)
    assert inverted.returncode == 0, inverted.stderr[-2000:]
    assert "reconstruction PSNR" in inverted.stdout
    content = torch.load(avatar, weights_only=True)
    assert content["identity_w_plus"].shape == (1, micro_animator().generator.num_ws, 512)  # one w per layer of the checkpoint's model
    curve = content["loss_curve"]
    assert len(curve) == 16 and curve[11] < curve[0]
    assert avatar.with_name("avatar_preview.png").is_file()

    coefficients = folder / "motion.npy"
    np.save(coefficients, np.random.default_rng(0).normal(0, 0.1, (30, 257)).astype(np.float32))
    video = folder / "out.mp4"
    reenacted = run("reenact.py", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", coefficients, "--camera", "orbit", "--out", video)
    assert reenacted.returncode == 0, reenacted.stderr[-2000:]
    assert "30 frames in" in reenacted.stdout
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 30
    reader = imageio_ffmpeg.read_frames(str(video))
    assert next(reader)["size"] == (128, 128)


def test_errors_say_what_to_do(setup):
    folder, checkpoint, dataset = setup
    wrong = folder / "wrong.npy"
    np.save(wrong, np.zeros((5, 100), np.float32))
    avatar = folder / "avatar.pt"
    if avatar.exists():
        result = run("reenact.py", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", wrong, "--out", folder / "x.mp4")
        assert result.returncode != 0 and "expected (N, 257), (N, 260) or (N, 70) values, found shape (5, 100)" in result.stderr
    right = folder / "right.npy"
    np.save(right, np.zeros((5, 70), np.float32))
    result = run("reenact.py", "--checkpoint", checkpoint, "--avatar", folder / "none.pt", "--driving", right, "--out", folder / "x.mp4")
    assert result.returncode != 0 and "none.pt: file does not exist" in result.stderr
    result = run("invert.py", "--checkpoint", folder / "missing.pt", "--dataset", dataset, "--video", "synth0001#00")
    assert result.returncode != 0 and "missing.pt: file does not exist" in result.stderr


def test_without_inputs_both_scripts_use_the_embedded_sample(setup):
    folder, checkpoint, _ = setup
    avatar = folder / "sample_avatar.pt"
    inverted = run("invert.py", "--checkpoint", checkpoint, "--w-steps", 2, "--w-plus-steps", 1, "--out", avatar)
    assert inverted.returncode == 0, inverted.stderr[-2000:]
    assert "embedded sample" in inverted.stdout and avatar.is_file()
    assert "inversion: speed exact, 8+8 samples/ray, float32 on cpu" in inverted.stdout
    video = folder / "sample.mp4"
    reenacted = run("reenact.py", "--checkpoint", checkpoint, "--w-steps", 2, "--w-plus-steps", 1, "--side-by-side", "--out", video,
                    "--speed", "fast")
    assert reenacted.returncode == 0, reenacted.stderr[-2000:]
    assert "embedded sample portrait" in reenacted.stdout and "48 frames in" in reenacted.stdout
    # The micro model's 8 + 8 samples per ray, halved; the precision is the CPU's native one.
    assert "inversion: speed fast, 4+4 samples/ray" in reenacted.stdout and "reenactment: speed fast, 4+4 samples/ray" in reenacted.stdout
    assert next(imageio_ffmpeg.read_frames(str(video)))["size"] == (256, 128)


def test_time_to_avatar_benchmark_writes_its_table_and_json(setup):
    folder, checkpoint, _ = setup
    (folder / "release.yaml").write_text("w_steps: 3\nw_plus_steps: 2\nsr_steps: 1\n")
    (folder / "ours.yaml").write_text("w_steps: 1\nw_plus_steps: 2\nsr_steps: null\nlr: 0.03\ndeterministic: true\n")
    result = run("benchmark_inversion.py", "--checkpoint", checkpoint, "--release", folder / "release.yaml", "--ours", folder / "ours.yaml",
                 "--portraits", 1, "--json", folder / "tta.json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| otavatar | 1 + 2, 0.03, all |" in result.stdout
    rows = json.loads((folder / "tta.json").read_text())["rows"]
    assert [row["run"] for row in rows] == ["release-equivalent", "release schedule, cached", "otavatar"]
    missing = run("benchmark_inversion.py", "--checkpoint", checkpoint, "--ours", "nope")
    assert missing.returncode != 0 and "inversion schedule 'nope'" in missing.stderr and "schedules: ['fast', 'release']" in missing.stderr
