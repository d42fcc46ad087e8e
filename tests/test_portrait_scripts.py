"""invert.py --portrait and reenact.py with a driving video: a real photo (skimage's astronaut) on the nano model.

The scripts run in-process through their ``main(argv)``; a real process of each is tested in
tests/test_bad_inputs.py (invert.py) and tests/test_invert_reenact_scripts.py (reenact.py)."""

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from otavatar.preprocess.coefficients import ReconNet
from otavatar.videos import has_audio, write_video
from tests.helpers import micro_checkpoint, nano_config, refused, run_script

pytestmark = pytest.mark.usefixtures("one_thread")

DRIVING_FRAMES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portrait")
    checkpoint, _ = micro_checkpoint(folder, config=nano_config())
    photo = folder / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(photo, quality=95)
    # Deep3DFaceRecon weights in the release's format (random values), found through OTAVATAR_PRETRAINED.
    pretrained = folder / "pretrained"
    (pretrained / "deep3dfacerecon").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"net_recon": ReconNet().state_dict(), "epoch": 20}, pretrained / "deep3dfacerecon" / "epoch_20.pth")
    tone = folder / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(tone)], check=True)
    image = Image.fromarray(skimage.data.astronaut())
    frames = [np.asarray(image.crop((30 + 3 * k, 20, 430 + 3 * k, 420)).resize((256, 256))) for k in range(DRIVING_FRAMES)]
    driving = write_video(frames, folder / "driving.mp4", fps=10, audio_source=tone)
    return folder, checkpoint, photo, pretrained, driving


def test_invert_a_photo_with_pivotal_tuning(setup, capsys, monkeypatch):
    folder, checkpoint, photo, _, _ = setup
    monkeypatch.setenv("OTAVATAR_PRETRAINED", "/nonexistent")
    command = ["--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 2, "--w-plus-steps", 1, "--lr", 0.05, "--pti", "--pti-steps", 2]
    avatar, again = folder / "avatar.pt", folder / "again.pt"
    with pytest.warns(UserWarning, match="neutral expression and the head pose fitted to its landmarks"):  # no coefficients: warned, not silent
        run_script("invert", *command, "--out", avatar)
    assert "motion from neutral default, camera from PnP head pose (landmarks)" in capsys.readouterr().out
    content = torch.load(avatar, weights_only=True)
    assert content["source_image"].shape == (1, 3, 128, 128) and content["keypoints"].shape == (1, 68, 2)
    assert len(content["loss_curve"]) == 5 and content["generator"] is not None and content["pti"]["steps"] == 2
    assert Image.open(avatar.with_name("avatar_preview.png")).size[0] > 128  # source | reconstruction
    # The same command is deterministic under --seed: pivotal tuning renders with random jitter, so its
    # losses and the tuned generator repeat only if the run is seeded (here after the first run moved the RNG).
    with pytest.warns(UserWarning):
        run_script("invert", *command, "--out", again)
    repeated = torch.load(again, weights_only=True)
    assert torch.equal(repeated["identity_w_plus"], content["identity_w_plus"]) and torch.equal(repeated["loss_curve"], content["loss_curve"])
    assert all(torch.equal(value, content["generator"][key]) for key, value in repeated["generator"].items())


def test_portrait_and_driving_video_in_one_command(setup, capsys, monkeypatch):
    folder, checkpoint, photo, pretrained, driving = setup
    monkeypatch.setenv("OTAVATAR_PRETRAINED", str(pretrained))
    out = folder / "talk.mp4"
    run_script("reenact", "--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 1, "--driving", driving,
               "--side-by-side", "--depth", "--out", out)
    assert f"{DRIVING_FRAMES} frames in" in capsys.readouterr().out
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == DRIVING_FRAMES
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert meta["size"] == (256, 128) and meta["fps"] == 10  # driving | result at the driving frame rate
    reader.close()
    assert has_audio(out)
    assert imageio_ffmpeg.count_frames_and_secs(str(folder / "talk_depth.mp4"))[0] == DRIVING_FRAMES


def test_errors_say_what_to_do(setup, tmp_path, capsys, monkeypatch):
    """Each is one line with exit status 2 (a photo without a face: tests/test_bad_inputs.py)."""
    folder, checkpoint, photo, _, driving = setup
    monkeypatch.setenv("OTAVATAR_PRETRAINED", "/nonexistent")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    assert "broken.jpg: not a readable image" in refused(capsys, "invert", "--checkpoint", checkpoint, "--portrait", broken,
                                                         "--out", tmp_path / "a.pt")
    # A 3DMM model without Deep3DFaceRecon's weights: the line names the file and the alternatives.
    quick = ["--checkpoint", checkpoint, "--portrait", photo, "--w-steps", 1, "--w-plus-steps", 0]
    line = refused(capsys, "reenact", *quick, "--driving", driving, "--out", tmp_path / "a.mp4")
    assert "reads 3DMM coefficients" in line and "deep3dfacerecon/epoch_20.pth" in line
    assert "--driving motion.npy" in line and "synthetic heads' parameters" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    coefficients = tmp_path / "motion.npy"
    np.save(coefficients, np.zeros((4, 70), np.float32))
    if not os.access(locked, os.W_OK):  # root ignores permissions
        assert "is not writable" in refused(capsys, "reenact", *quick, "--driving", coefficients, "--out", locked / "x.mp4")
    assert "does not exist" in refused(capsys, "reenact", *quick, "--driving", coefficients, "--out", tmp_path / "no" / "such" / "x.mp4")
    assert not any(path.name.startswith("a.") for path in tmp_path.iterdir())
