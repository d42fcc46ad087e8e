"""reenact.py --driving CLIP on a model that reads the synthetic heads' parameters: offline, every frame, the audio,
--save-motion for every reader, frames without a face counted; a portrait's camera and motion from landmarks.

reenact.py runs in-process through its ``main(argv)`` (its real process: tests/test_invert_reenact_scripts.py)."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from otavatar.avatar_file import save_avatar
from otavatar.data.synthetic import sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import render_video
from otavatar.pipeline import Pipeline, PipelineSettings
from otavatar.portraits import portrait_target
from otavatar.videos import has_audio, write_video
from tests.helpers import micro_checkpoint, nano_config, random_batch, refused, run_script


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    """A synthetic-space nano model, an avatar of it (what reenact.py drives) and a driving video."""
    folder = tmp_path_factory.mktemp("drive")
    checkpoint, _ = micro_checkpoint(folder, motion_space="synthetic", config=nano_config())
    pipeline = Pipeline.load(PipelineSettings(checkpoint=str(checkpoint), w_steps=1, w_plus_steps=0), log=lambda line: None)
    avatar = save_avatar(folder / "avatar.pt", pipeline.build_avatar({key: value[:, 0] for key, value in random_batch(0, 1, 1).items()}))
    generator = torch.Generator().manual_seed(2)
    video = render_video(sample_identity(generator), *sample_talking_sequence(10, generator), 160, extra_view_yaws=())
    frames = list((video.images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    frames += [np.full_like(frames[0], 255)] * 2  # the head leaves the picture: no face in the last two frames
    tone = folder / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(tone)], check=True)
    driving = write_video(frames, folder / "driving.mp4", fps=10, audio_source=tone)
    return folder, checkpoint, avatar, driving, pipeline.model_config


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("OTAVATAR_PRETRAINED", "/nonexistent")  # no Deep3DFaceRecon: what a fresh offline machine has


def test_drive_with_a_video_and_save_the_motion(setup, capsys):
    folder, checkpoint, avatar, driving, _ = setup
    out, motion = folder / "out.mp4", folder / "motion.npy"
    run_script("reenact", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", driving, "--save-motion", motion, "--side-by-side",
               "--out", out)
    printed = capsys.readouterr().out
    assert "driving: 12 frames, motion and cameras read by landmarks" in printed
    assert "2 without a detected face repeat the last reading" in printed
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 12 and has_audio(out)
    reader = imageio_ffmpeg.read_frames(str(out))
    assert next(reader)["size"] == (256, 128)  # driver | avatar
    reader.close()
    saved = np.load(motion)
    assert saved.shape == (12, 70) and saved.dtype == np.float32
    assert np.all(saved[:, 6:64] == 0)  # the synthetic parameters' columns, as the synthetic dataset writes them
    assert np.all((saved[:, 0] >= 0) & (saved[:, 0] <= 1)) and saved[:, 0].std() > 0.02  # jaw_open moves
    assert np.abs(saved[:, 64:67]).max() < 0.5 and np.all(saved[:, 69] < -3)  # angles (radians), depth near the data's


def test_save_motion_of_a_coefficient_file(setup, tmp_path, capsys):
    _, checkpoint, avatar, _, _ = setup
    coefficients, motion = tmp_path / "in.npy", tmp_path / "out.npy"
    values = np.random.default_rng(0).normal(size=(5, 70)).astype(np.float32)
    np.save(coefficients, values)
    run_script("reenact", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", coefficients, "--save-motion", motion,
               "--out", tmp_path / "o.mp4")
    assert np.array_equal(np.load(motion), values)
    capsys.readouterr()
    line = refused(capsys, "reenact", "--checkpoint", checkpoint, "--avatar", avatar, "--driving", coefficients,
                   "--save-motion", coefficients, "--out", tmp_path / "p.mp4")
    assert "is also --driving" in line and np.array_equal(np.load(coefficients), values)  # never over an input


def test_portrait_camera_and_motion_from_landmarks(setup, tmp_path):
    *_, model_config = setup
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    portrait = portrait_target(photo, model_config)
    assert (portrait.motion_source, portrait.camera_source) == ("landmarks (rest expression, PnP head pose)", "PnP head pose (landmarks)")
    motion = portrait.target["motion"][0, :, 13]
    assert torch.allclose(motion[:6], torch.tensor([0.0, 0.0, 0.1, 0.1, 0.0, 0.0])) and motion[69] < -3
    assert not torch.equal(portrait.target["camera"][0, :16].view(4, 4)[:3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])))  # not the frontal default
