"""Preprocessing on real pixels: skimage's astronaut, and a short video made from it with a tone as audio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from otavatar.assets import AssetFormatError, MissingAssetError
from otavatar.camera import condition_to_camera, rotation_from_angles
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import LmdbLayoutError, VideoLmdb
from otavatar.preprocess.cameras import condition_from_coefficients, head_pixel
from otavatar.preprocess.coefficients import CoefficientRegressor, ReconNet, align_face, load_reconnet
from otavatar.preprocess.crop import crop_box
from otavatar.preprocess.detection import FaceDetector, NoFaceError
from otavatar.preprocess.landmarks import LandmarkPredictor, five_from_68
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings, align_portrait, write_dataset
from otavatar.preprocess.reading import MediaReadError, open_media
from otavatar.videos import has_audio, write_video

EYES, MOUTH = list(range(36, 48)), list(range(48, 68))
FRAMES = 6  # of the talking video


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def recon_weights(tmp_path_factory) -> Path:
    """A Deep3DFaceRecon checkpoint in the release's format ({'net_recon': state dict, ...}), random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pretrained") / "epoch_20.pth"
    torch.save({"net_recon": ReconNet().state_dict(), "epoch": 20}, path)
    return path


@pytest.fixture(scope="module")
def talking_video(tmp_path_factory) -> Path:
    """The astronaut drifting and zooming slightly, FRAMES frames at 12 fps, with a 440 Hz tone."""
    folder = tmp_path_factory.mktemp("video")
    tone = folder / "tone.wav"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(tone)], check=True
    )
    image = Image.fromarray(skimage.data.astronaut())
    frames = [np.asarray(image.crop((20 + 2 * k, 10 + k, 420 + 2 * k - k, 410)).resize((320, 320))) for k in range(FRAMES)]
    return write_video(frames, folder / "astronaut#talk.mp4", fps=12, audio_source=tone)


def test_astronaut_detected_aligned_and_landmarked(astronaut_file):
    image = skimage.data.astronaut()
    face = FaceDetector().detect([image])[0][0]
    assert face.score > 0.99
    landmarks = LandmarkPredictor().predict(image, face.box)
    x0, y0, x1, y1 = face.box
    for index in EYES + MOUTH:
        x, y = landmarks[index]
        assert x0 <= x <= x1 and y0 <= y <= y1, f"landmark {index} at {(x, y)} outside the face box {face.box}"
    # The portrait path crops the same face: its landmarks, mapped back, agree with the full-image ones.
    portrait = align_portrait(astronaut_file, PreprocessSettings(size=256))
    assert portrait.image.shape == (256, 256, 3)
    side = portrait.box[2] - portrait.box[0]
    back = portrait.keypoints * side / 256 + portrait.box[:2]
    assert np.abs(back - landmarks).mean() < 3.0
    assert portrait.coefficients is None and "deep3dfacerecon/epoch_20.pth" in portrait.missing


def test_portrait_errors(tmp_path):
    with pytest.raises(MediaReadError, match="not a readable image"):
        (tmp_path / "broken.jpg").write_bytes(b"not an image")
        align_portrait(tmp_path / "broken.jpg")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(NoFaceError, match="grey.png: no face found"):
        align_portrait(tmp_path / "grey.png")


def test_crop_box_is_square_around_the_union():
    box = crop_box(np.array([[100, 100, 150, 200], [110, 90, 160, 190]]), increase=0.1)
    assert box[2] - box[0] == pytest.approx(box[3] - box[1]) == pytest.approx(110 * 1.2)
    assert (box[0] + box[2]) / 2 == pytest.approx(130) and (box[1] + box[3]) / 2 == pytest.approx(145)


def test_deep3dfacerecon_loader(recon_weights, tmp_path):
    network = load_reconnet(recon_weights)
    image = skimage.data.astronaut()
    face = FaceDetector().detect([image])[0][0]
    points = five_from_68(LandmarkPredictor().predict(image, face.box))
    aligned, transform = align_face(image, points)
    assert aligned.shape == (224, 224, 3) and transform[:2].tolist() == [512, 512]
    with torch.no_grad():
        raw = network(torch.from_numpy(np.stack([aligned, aligned[:, ::-1].copy()])).permute(0, 3, 1, 2).float() / 255)
    assert raw.shape == (2, 257) and torch.isfinite(raw).all()
    coefficients, _ = CoefficientRegressor(network)([image], points[None])
    assert coefficients.shape == (1, 260) and np.allclose(coefficients[0, 257:], transform[2:], rtol=1e-6)
    with pytest.raises(MissingAssetError, match=r"deep3dfacerecon/epoch_20.pth.*Deep3DFaceRecon_pytorch"):
        load_reconnet(tmp_path / "deep3dfacerecon" / "epoch_20.pth")
    state = network.state_dict()
    torch.save(state, tmp_path / "bare.pth")
    state["backbone.conv1.weight"] = torch.zeros(1)
    torch.save({"net_recon": state}, tmp_path / "bad.pth")
    with pytest.raises(AssetFormatError, match=r"backbone.conv1.weight: expected shape \(64, 3, 7, 7\), found \(1,\)"):
        load_reconnet(tmp_path / "bad.pth")
    with pytest.raises(AssetFormatError, match="key 'net_recon'"):
        load_reconnet(tmp_path / "bare.pth")


def test_condition_sees_the_fitted_head_where_the_crop_shows_it():
    coefficients = np.zeros((2, 260))
    coefficients[:, 224:227] = [[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]]
    coefficients[:, 254:257] = [[0.3, -0.2, 0.5], [0.0, 0.0, 0.0]]
    coefficients[:, 257:260] = [[0.45, 250.0, 270.0], [0.4, 255.5, 255.5]]
    condition = condition_from_coefficients(coefficients, 512, smoothing_radius=0)
    camera = condition_to_camera(torch.from_numpy(condition), smoothing="none").double()
    cam2world, intrinsics = camera[:, :16].view(-1, 4, 4), camera[:, 16:].view(-1, 3, 3)
    origin = (cam2world[:, :3, :3].transpose(1, 2) @ -cam2world[:, :3, 3:]).squeeze(-1)
    projected = (intrinsics @ origin.unsqueeze(-1)).squeeze(-1)
    pixels = projected[:, :2] / projected[:, 2:] * 512 - 0.5
    expected, _ = head_pixel(coefficients, 512)
    assert np.abs(pixels.numpy() - expected).max() < 0.05
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    wanted = rotation_from_angles(torch.from_numpy(coefficients[:, 224:227]).float()).double()
    assert torch.allclose(cam2world[:, :3, :3] @ flip, wanted, atol=1e-5)


def test_video_to_training_dataset(talking_video, recon_weights, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    root = tmp_path / "dataset"
    settings = PreprocessSettings(size=128, coefficient_weights=str(recon_weights), batch_size=4)  # two batches
    extractors = Extractors(settings)
    messages = []
    summary = write_dataset([broken, talking_video], root, settings, test_fraction=0.0, extractors=extractors, log=messages.append, progress=False)
    assert summary.written == ["astronaut#talk"] and str(broken) in summary.failed and summary.frames == FRAMES
    assert any("broken.mp4" in message for message in messages)
    database = VideoLmdb(root, 128)
    assert database.splits == {"train": ["astronaut#talk"], "test": []}
    assert database.array("astronaut#talk", "coeff_3dmm").shape == (FRAMES, 260)
    assert database.get("astronaut#talk", "fps").decode() == "12"
    assert has_audio(Path(database.get("astronaut#talk", "source").decode()))
    keypoints = database.array("astronaut#talk", "keypoint")
    assert keypoints.shape == (FRAMES, 68, 2) and 100 < keypoints[..., 0].mean() < 412  # 512-pixel coordinates
    source = FrameSource(database)
    frame = source.frame("astronaut#talk", 5)
    assert frame["image"].shape == (3, 128, 128) and frame["motion"].shape == (70, 27) and frame["camera"].shape == (25,)
    assert torch.isfinite(frame["camera"]).all()
    # Re-running resumes: the finished video is skipped, the lists keep it.
    again = write_dataset([talking_video], root, settings, extractors=extractors, progress=False)
    assert again.skipped == ["astronaut#talk"] and not again.written
    assert VideoLmdb(root, 128).splits["train"] == ["astronaut#talk"]


def test_missing_coefficient_weights_are_recorded(talking_video, tmp_path):
    root = tmp_path / "dataset"
    settings = PreprocessSettings(size=64, coefficient_weights=str(tmp_path / "nowhere" / "epoch_20.pth"))
    messages = []
    summary = write_dataset([talking_video], root, settings, log=messages.append, progress=False)
    assert summary.written == ["astronaut#talk"] and "epoch_20.pth" in summary.missing_motion
    assert "continuing without coefficients" in messages[0]
    database = VideoLmdb(root, 64)
    assert database.array("astronaut#talk", "keypoint").shape == (FRAMES, 68, 2)
    with pytest.raises(LmdbLayoutError, match="no 'coeff_3dmm' key: coeff_3dmm and condition not extracted.*epoch_20.pth"):
        database.check_videos(["astronaut#talk"])


def test_open_media_reports_bad_inputs(tmp_path, talking_video):
    assert open_media(talking_video).fps == 12 and open_media(talking_video).has_audio
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaReadError, match="holds no image files"):
        open_media(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MediaReadError, match="unknown media type '.txt'"):
        open_media(tmp_path / "notes.txt")
