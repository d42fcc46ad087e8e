"""invert.py --portrait and reenact.py with a driving video: a real photo (skimage's astronaut) on the micro model."""

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

from otavatar.preprocess.coefficients import ReconNet
from otavatar.videos import has_audio, write_video
from tests.helpers import micro_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portrait")
    checkpoint, _ = micro_checkpoint(folder)
    photo = folder / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(photo, quality=95)
    # Deep3DFaceRecon weights in the release's format (random values), found through OTAVATAR_PRETRAINED.
    pretrained = folder / "pretrained"
    (pretrained / "deep3dfacerecon").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"net_recon": ReconNet().state_dict(), "epoch": 20}, pretrained / "deep3dfacerecon" / "epoch_20.pth")
    tone = folder / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(tone)], check=True)
    image = Image.fromarray(skimage.data.astronaut())
    frames = [np.asarray(image.crop((30 + 3 * k, 20, 430 + 3 * k, 420)).resize((256, 256))) for k in range(10)]
    driving = write_video(frames, folder / "driving.mp4", fps=10, audio_source=tone)
    return folder, checkpoint, photo, pretrained, driving


def run(script: str, *args, pretrained: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["OTAVATAR_PRETRAINED"] = str(pretrained) if pretrained else "/nonexistent"
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True, text=True, env=env)


def test_invert_a_photo_with_pivotal_tuning(setup):
    folder, checkpoint, photo, _, _ = setup
    avatar = folder / "avatar.pt"
    result = run("invert.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 6, "--w-plus-steps", 3,
                 "--lr", 0.05, "--pti", "--pti-steps", 3, "--out", avatar)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "neutral expression and the head pose fitted to its landmarks" in result.stderr  # no coefficients: warned, not silent
    assert "motion from neutral default, camera from PnP head pose (landmarks)" in result.stdout
    content = torch.load(avatar, weights_only=True)
    assert content["source_image"].shape == (1, 3, 128, 128) and content["keypoints"].shape == (1, 68, 2)
    assert len(content["loss_curve"]) == 12 and content["generator"] is not None
    assert Image.open(avatar.with_name("avatar_preview.png")).size[0] > 128  # source | reconstruction
    # The same command is deterministic under --seed.
    again = folder / "again.pt"
    run("invert.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 6, "--w-plus-steps", 3,
        "--lr", 0.05, "--pti", "--pti-steps", 3, "--out", again)
    assert torch.equal(torch.load(again, weights_only=True)["identity_w_plus"], content["identity_w_plus"])


def test_portrait_and_driving_video_in_one_command(setup):
    folder, checkpoint, photo, pretrained, driving = setup
    out = folder / "talk.mp4"
    result = run("reenact.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 2, "--w-plus-steps", 1,
                 "--driving", driving, "--side-by-side", "--depth", "--out", out, pretrained=pretrained)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 frames in" in result.stdout
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 10
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert meta["size"] == (256, 128) and meta["fps"] == 10  # driving | result at the driving frame rate
    reader.close()
    assert has_audio(out)
    assert imageio_ffmpeg.count_frames_and_secs(str(folder / "talk_depth.mp4"))[0] == 10


def test_errors_say_what_to_do(setup, tmp_path):
    folder, checkpoint, photo, _, driving = setup
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    result = run("invert.py", "--checkpoint", checkpoint, "--portrait", broken)
    assert result.returncode != 0 and "broken.jpg: not a readable image" in result.stderr
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(grey)
    result = run("invert.py", "--checkpoint", checkpoint, "--portrait", grey)
    assert result.returncode != 0 and "grey.png: no face found" in result.stderr
    result = run("reenact.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 0, "--driving", driving)
    # A 3DMM model without Deep3DFaceRecon's weights: one line naming the file and the alternatives, no traceback.
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "reads 3DMM coefficients" in result.stderr and "deep3dfacerecon/epoch_20.pth" in result.stderr
    assert "--driving motion.npy" in result.stderr and "synthetic heads' parameters" in result.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    coefficients = tmp_path / "motion.npy"
    np.save(coefficients, np.zeros((4, 70), np.float32))
    if not os.access(locked, os.W_OK):  # root ignores permissions
        result = run("reenact.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 0,
                     "--driving", coefficients, "--out", locked / "x.mp4")
        assert result.returncode != 0 and "is not writable" in result.stderr
    result = run("reenact.py", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 0,
                 "--driving", coefficients, "--out", tmp_path / "no" / "such" / "x.mp4")
    assert result.returncode != 0 and "does not exist" in result.stderr
