"""The web page's job (otavatar.app) in-process: each bad input stops it with the package's one-line message, its
uploads are deleted whatever the outcome, and the next job on the same loaded model works."""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from otavatar.app import AppSettings, AvatarApp
from otavatar.errors import InputError
from otavatar.pipeline import Pipeline, PipelineSettings
from otavatar.preprocess.reading import open_media


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # The embedded model with one inversion step: the job's wiring is under test, not the inversion's quality.
    pipeline = Pipeline.load(PipelineSettings(w_steps=1, w_plus_steps=0), log=lambda line: None)
    return AvatarApp(pipeline, AppSettings(max_upload_mb=1, max_frames=3, orbit_frames=2), tmp_path_factory.mktemp("cache"))


def _upload(folder: Path, name: str, write) -> str:
    """A file as gradio hands it to the job: a path in its own folder."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    return str(path)


def test_app_settings_are_checked():
    with pytest.raises(InputError, match="max_frames"):
        AppSettings(max_frames=0)
    with pytest.raises(InputError, match="max_upload_mb"):
        AppSettings(max_upload_mb=float("nan"))


def test_bad_inputs_give_one_line_each_then_a_job_works(app, tmp_path):
    uploads = tmp_path / "uploads"
    blank = lambda path: Image.new("RGB", (256, 256), (200, 200, 200)).save(path)  # noqa: E731
    cases = [  # (portrait, driving), the start of the message
        ((_upload(uploads, "photo.jpg", lambda p: p.write_bytes(b"not an image")), None), "photo.jpg: not a readable image"),
        ((_upload(uploads, "blank.png", blank), None), "blank.png: no face found"),
        ((None, _upload(uploads, "talk.mp4", lambda p: p.write_text("not a video"))), "talk.mp4: not a readable video"),
        ((None, _upload(uploads, "face.png", blank)), "--driving face.png: a '.png' file; expected a video"),
        ((_upload(uploads, "big.png", lambda p: p.write_bytes(bytes(1_200_000))), None), "big.png: 1.2 MB, over the page's limit of 1 MB"),
        ((None, _upload(uploads, "motion.npy", lambda p: np.save(p, np.full((4, 70), np.nan, np.float32)))),
         "coefficient file motion.npy: 280 NaN or infinite value(s)"),
        ((None, str(uploads / "gone.npy")), "gone.npy: the upload is gone"),
    ]
    for (portrait, driving), expected in cases:
        with pytest.raises(gr.Error) as raised:
            app.run(portrait, driving)
        message = html.unescape(raised.value.message)
        assert message.startswith(expected) and "\n" not in message, message
        assert str(app.cache) not in message  # the upload is named as it was called, not by its job folder
    assert not any(uploads.iterdir()), "every upload is deleted with its job"
    assert not list(app.cache.glob("otavatar-*")), "a refused job leaves no job or result folder"

    coefficients = _upload(uploads, "motion.npy", lambda p: np.save(p, np.zeros((5, 70), np.float32)))
    video, preview, orbit, avatar_file, summary = map(str, app.run(None, coefficients, camera="yaw/pitch", yaw=10, pitch=-5))
    assert not Path(coefficients).exists() and not list(app.cache.glob("otavatar-job*"))
    assert "embedded sample portrait" in summary and "from the yaw/pitch camera" in summary
    assert "the first 3 of 5 frames" in summary  # max_frames cuts the driver, and says so
    frames = list(open_media(video).frames())
    assert len(frames) == 3 and frames[0].shape == (128, 128, 3)  # no driver frames to put beside the result
    turn = list(open_media(orbit).frames())
    assert len(turn) == 2 and np.abs(turn[0].astype(int) - turn[1].astype(int)).mean() > 1  # the camera moves around the head
    width, height = Image.open(preview).size
    assert width >= 2 * 128 and 128 <= height < width / 1.5  # portrait | reconstruction side by side
    avatar = app.pipeline.load_avatar(avatar_file)  # refused unless the loaded model made it
    assert torch.isfinite(avatar["identity_w"]).all() and avatar["source_image"].shape == (1, 3, 128, 128)

