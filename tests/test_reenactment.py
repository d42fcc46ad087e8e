"""Reenactment rendering and video writing."""

import subprocess

import imageio
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from otavatar.reenactment import reenact
from otavatar.videos import has_audio, to_uint8_frames, write_video
from tests.helpers import frontal_cameras, micro_animator


@pytest.fixture(scope="module")
def animator():
    return micro_animator().eval()


def test_reenact_renders_every_frame_in_batches(animator):
    identity = animator.generator.w_avg.reshape(1, 1, -1).clone()
    windows = torch.randn(7, 70, 27) * 0.1
    cameras = frontal_cameras(7, 1)[:, 0]
    batches = list(reenact(animator, identity, windows, cameras, batch_size=3))
    assert [b["image"].shape[0] for b in batches] == [3, 3, 1]
    assert batches[0]["image"].shape[1:] == (3, 128, 128)
    # Batching does not change the result.
    single = next(reenact(animator, identity, windows[:1], cameras[:1], batch_size=1))
    assert torch.allclose(single["image"], batches[0]["image"][:1], atol=1e-5)


def test_a_still_pose_from_moving_cameras_shares_one_tri_plane(animator, monkeypatch):
    identity = animator.generator.w_avg.reshape(1, 1, -1).clone()
    windows = torch.zeros(4, 70, 27)
    cameras = frontal_cameras(4, 1)[:, 0]
    cameras[:, 3] = torch.linspace(-0.3, 0.3, 4)
    sizes = []
    original = animator.generator.synthesize_planes
    monkeypatch.setattr(animator.generator, "synthesize_planes", lambda ws, **k: sizes.append(ws.shape[0]) or original(ws, **k))
    out = next(reenact(animator, identity, windows, cameras, batch_size=4))
    assert sizes == [1]
    assert out["image"].shape[0] == 4 and not torch.allclose(out["image"][0], out["image"][3])


def test_reenact_rejects_mismatched_lengths(animator):
    with pytest.raises(ValueError, match="3 motion windows but 2 cameras"):
        next(reenact(animator, torch.zeros(1, 1, 512), torch.zeros(3, 70, 27), torch.zeros(2, 25)))


def test_video_round_trip_with_audio(tmp_path):
    tone = tmp_path / "tone.m4a"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:a", "aac", str(tone)],
        check=True,
    )
    images = torch.linspace(-1, 1, 30).reshape(30, 1, 1, 1).expand(30, 3, 64, 80)
    path = write_video(iter(to_uint8_frames(images)), tmp_path / "out.mp4", fps=15, audio_source=tone)
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (30, 2.0)
    frames = [frame for frame in imageio.get_reader(str(path), "ffmpeg")]
    assert len(frames) == 30 and frames[0].shape == (64, 80, 3)
    assert abs(int(frames[-1].mean()) - 255) <= 3
    assert has_audio(path)
    silent = write_video(iter(to_uint8_frames(images)), tmp_path / "silent.mp4", fps=15)
    assert not has_audio(silent)
    assert not list(tmp_path.glob(".*.mp4")), "temporary files must not be left behind"


def test_video_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        write_video(iter([np.zeros((8, 8, 3), np.uint8)]), tmp_path / "missing" / "out.mp4", fps=10)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(iter([]), tmp_path / "out.mp4", fps=10)
    assert not (tmp_path / "out.mp4").exists()
