"""reenact.py --driving CLIP on a model that reads the synthetic heads' parameters: offline, every frame, the audio,
--save-motion for every reader, frames without a face counted; invert.py --portrait cameras from landmarks."""

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from otavatar.data.synthetic import sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import render_video
from otavatar.videos import has_audio, write_video
from tests.helpers import micro_checkpoint

REPO = Path(__file__).resolve().parent.parent
QUICK = ("--w-steps", 1, "--w-plus-steps", 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("drive")
    checkpoint, _ = micro_checkpoint(folder, motion_space="synthetic")
    generator = torch.Generator().manual_seed(2)
    video = render_video(sample_identity(generator), *sample_talking_sequence(10, generator), 160, extra_view_yaws=())
    frames = list((video.images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    frames += [np.full_like(frames[0], 255)] * 2  # the head leaves the picture: no face in the last two frames
    tone = folder / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(tone)], check=True)
    driving = write_video(frames, folder / "driving.mp4", fps=10, audio_source=tone)
    return folder, checkpoint, driving


def run(script: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OTAVATAR_PRETRAINED": "/nonexistent"}  # no Deep3DFaceRecon: what a fresh offline machine has
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True, text=True, env=env)


def test_drive_with_a_video_and_save_the_motion(setup):
    folder, checkpoint, driving = setup
    out, motion = folder / "out.mp4", folder / "motion.npy"
    result = run("reenact.py", "--checkpoint", checkpoint, "--driving", driving, "--save-motion", motion, "--side-by-side", "--out", out, *QUICK)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "driving: 12 frames, motion and cameras read by landmarks" in result.stdout
    assert "2 without a detected face repeat the last reading" in result.stdout
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 12 and has_audio(out)
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (256, 128)  # driver | avatar
    reader.close()
    saved = np.load(motion)
    assert saved.shape == (12, 70) and saved.dtype == np.float32
    assert np.all(saved[:, 6:64] == 0)  # the synthetic parameters' columns, as the synthetic dataset writes them
    assert np.all((saved[:, 0] >= 0) & (saved[:, 0] <= 1)) and saved[:, 0].std() > 0.02  # jaw_open moves
    assert np.abs(saved[:, 64:67]).max() < 0.5 and np.all(saved[:, 69] < -3)  # angles (radians), depth near the data's


def test_save_motion_of_a_coefficient_file(setup, tmp_path):
    _, checkpoint, _ = setup
    coefficients, motion = tmp_path / "in.npy", tmp_path / "out.npy"
    values = np.random.default_rng(0).normal(size=(5, 70)).astype(np.float32)
    np.save(coefficients, values)
    result = run("reenact.py", "--checkpoint", checkpoint, "--driving", coefficients, "--save-motion", motion, "--out", tmp_path / "o.mp4", *QUICK)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.array_equal(np.load(motion), values)
    result = run("reenact.py", "--checkpoint", checkpoint, "--driving", coefficients, "--save-motion", coefficients, "--out", tmp_path / "p.mp4", *QUICK)
    assert result.returncode != 0 and np.array_equal(np.load(coefficients), values)  # never over an input


def test_portrait_camera_and_motion_from_landmarks(setup, tmp_path):
    _, checkpoint, _ = setup
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    result = run("invert.py", "--checkpoint", checkpoint, "--portrait", photo, "--out", tmp_path / "avatar.pt", *QUICK)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "motion from landmarks (rest expression, PnP head pose), camera from PnP head pose (landmarks)" in result.stdout
    avatar = torch.load(tmp_path / "avatar.pt", weights_only=True)
    motion = avatar["motion"][0, :, 13]
    assert torch.allclose(motion[:6], torch.tensor([0.0, 0.0, 0.1, 0.1, 0.0, 0.0])) and motion[69] < -3
    assert not torch.equal(avatar["camera"][0, :16].view(4, 4)[:3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])))  # not the frontal default
