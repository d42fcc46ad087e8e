"""The web page (gradio): a portrait and a driving clip in, a talking 3D avatar out.

:class:`AvatarApp` holds one loaded :class:`~otavatar.pipeline.Pipeline` (the model is loaded once) and runs one
job at a time (gradio's queue shows the others their position): invert the portrait or the embedded sample,
read the driving video or coefficient file or the embedded sample, and write the reenactment beside the driver
with its audio, the reconstruction preview, an orbit of the avatar and the avatar file. Bad input stops the job
with the package's one-line message. ``scripts/app.py`` serves it with :func:`serve`.
"""

from __future__ import annotations

import html
import itertools
import math
import os
import shutil
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import gradio as gr
import torch
from torchvision.utils import save_image

from otavatar.avatar_file import save_avatar
from otavatar.camera_paths import camera_path
from otavatar.config import inversion_presets
from otavatar.driving import Driving, check_driving_file, coefficients_first, read_driving
from otavatar.errors import InputError, check_integer, check_positive
from otavatar.files import atomic_write
from otavatar.metrics.image import psnr
from otavatar.pipeline import Pipeline
from otavatar.portraits import portrait_target, sample_target
from otavatar.preprocess.reading import open_media
from otavatar.reenactment_video import ReenactmentOutputs, write_reenactment
from otavatar.speed import SPEED_MODES

CAMERAS = ("driving", "source", "orbit", "yaw/pitch")
ORBIT_TURN = 100  # frames of one turn of camera_paths' orbit (the release's --rotate)
MEGABYTE = 10**6
PACKAGE = Path(__file__).parent

INTRO = """# otavatar: a talking 3D avatar from one portrait
Upload a portrait photo and a driving video (or a coefficient file, N × 257/260/70); leave either empty for the
embedded samples. The portrait is inverted to an avatar, then driven by the clip's motion from the chosen camera.
The embedded model only knows synthetic heads: a real face becomes a blurred synthetic head that follows the
driver's pose. One job runs at a time; uploads are deleted when their job ends (upload again to run again)."""


@dataclass(frozen=True)
class AppSettings:
    """The page's limits: ``max_upload_mb`` per uploaded file (MB = 10⁶ bytes), ``max_frames`` of the driver rendered
    (a longer clip is cut, and the summary says so), ``orbit_frames`` of the orbit video, ``batch_size`` frames
    rendered at once."""

    max_upload_mb: float = 50.0
    max_frames: int = 300
    orbit_frames: int = 25
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_positive("max_upload_mb", self.max_upload_mb)
        for name in ("max_frames", "orbit_frames", "batch_size"):
            check_integer(name, getattr(self, name), 1)


def _escape(text: str) -> str:
    """Text shown as HTML by gradio (error messages) or Markdown (the summary): file names may hold ``<`` or ``&``."""
    return html.escape(text, quote=False)


def _without_folder(text: str, folder: str) -> str:
    """``text`` naming the job's uploads by their own names (the job folder's name means nothing to the user)."""
    for role in ("portrait", "driving"):
        text = text.replace(os.path.join(folder, role, ""), "")
    return text


def _cut(driving: Driving, frames: int) -> Driving:
    """The first ``frames`` of ``driving`` (its windows were read on the whole clip, so the cut changes no motion)."""
    if driving.windows.shape[0] <= frames:
        return driving
    first = {name: getattr(driving, name)[:frames] if getattr(driving, name) is not None else None for name in ("windows", "cameras", "images")}
    return replace(driving, **first, description=f"{driving.description}; the first {frames} of {driving.windows.shape[0]} frames rendered")


class AvatarApp:
    """The page over ``pipeline``. ``cache``: where results are written (the server passes gradio's folder, so they
    are served without another copy and deleted with its cache); uploads are moved into a job folder under it."""

    def __init__(self, pipeline: Pipeline, settings: AppSettings = AppSettings(), cache: str | Path | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.cache = Path(cache or tempfile.gettempdir())
        self._pipelines = {(pipeline.settings.schedule, pipeline.settings.speed): pipeline}
        self._jobs = itertools.count(1)

    def _pipeline(self, schedule: str, speed: str) -> Pipeline:
        """The loaded model with another schedule or speed mode: the animator is shared, nothing is loaded again."""
        if (schedule, speed) not in self._pipelines:
            base = self.pipeline
            settings = replace(base.settings, schedule=schedule, speed=speed)
            self._pipelines[schedule, speed] = Pipeline(base.animator, base.model_config, base.checkpoint_sha256, settings, base.log)
        return self._pipelines[schedule, speed]

    def _receive(self, upload: str | None, folder: Path) -> Path | None:
        """Move an upload into ``folder`` (deleted with the job's), refusing one over the size limit."""
        if not upload:
            return None
        folder.mkdir()
        path = folder / Path(upload).name
        try:
            shutil.move(upload, path)
        except FileNotFoundError:
            raise InputError(f"{Path(upload).name}: the upload is gone (uploads are deleted when their job ends); upload it again") from None
        size, limit = path.stat().st_size / MEGABYTE, self.settings.max_upload_mb
        if size > limit:
            raise InputError(f"{path}: {size:.1f} MB, over the page's limit of {limit:g} MB per file (scripts/app.py --max-upload-mb)")
        return path

    def run(self, portrait: str | None, driving: str | None, camera: str = "driving", yaw: float = 0.0, pitch: float = 0.0,
            schedule: str | None = None, speed: str | None = None, progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str, str]:
        """One job: the uploaded ``portrait`` (None: the embedded sample) driven by ``driving`` (a video or a coefficient
        file; None: the embedded sample) from ``camera`` (``yaw``/``pitch`` in degrees for ``yaw/pitch``). Returns the
        reenactment mp4, the preview PNG (portrait | reconstruction), the orbit mp4, the avatar file and a summary
        (Markdown). The uploads are moved into a temporary folder removed when the job ends, whatever its outcome; bad
        input raises :class:`gradio.Error` with the package's one-line message."""
        job = next(self._jobs)
        with tempfile.TemporaryDirectory(prefix=f"otavatar-job{job}-", dir=self.cache) as folder:
            try:
                # One folder per input: a portrait and a driver of the same name stay two files.
                inputs = [self._receive(upload, Path(folder, role)) for upload, role in ((portrait, "portrait"), (driving, "driving"))]
                pipeline = self._pipeline(schedule or self.pipeline.settings.schedule, speed or self.pipeline.settings.speed)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    results, summary = self._job(pipeline, *inputs, camera, (yaw, pitch), progress)
                # The package's warnings about the input (several faces, no coefficients), not the libraries' own
                # nor ResourceWarnings, which Python attributes to wherever the garbage collector ran.
                ours = [str(found.message) for found in caught
                        if issubclass(found.category, UserWarning) and Path(found.filename).is_relative_to(PACKAGE)]
                notes = "".join(f"\n- warning: {_escape(message)}" for message in ours)
                outputs = [results / name for name in ("reenactment.mp4", "preview.png", "orbit.mp4", "avatar.pt")]
                return (*map(str, outputs), _without_folder(summary + notes, folder))
            except InputError as error:
                # duration=None: the message stays until closed, as a job may end while the user looks elsewhere.
                raise gr.Error(_escape(_without_folder(str(error), folder)), duration=None, print_exception=False) from None

    def _job(self, pipeline: Pipeline, portrait: Path | None, driving: Path | None, camera: str, angles: tuple[float, float],
             progress: Callable) -> tuple[Path, str]:
        started = time.perf_counter()
        config = pipeline.model_config
        if driving:
            check_driving_file(driving)
        # The files are probed (images, videos) or read and checked (coefficients: shape, finite values) before any network loads.
        coefficients = coefficients_first(driving)
        for media in (portrait, None if coefficients is not None else driving):
            if media:
                open_media(media)
        progress(0, desc="finding the face in the portrait")
        if portrait:
            found = portrait_target(portrait, config)
            target, source = found.target, f"{portrait.name} (motion from {found.motion_source}, camera from {found.camera_source})"
        else:
            target, source = sample_target(config), "the embedded sample portrait"
        progress(0, desc="reading the driving motion")
        motion = _cut(read_driving(driving, config, pipeline.settings.device, coefficients), self.settings.max_frames)
        if camera == "driving":
            camera = motion.default_camera  # a coefficient file has no cameras
        mode = ",".join(str(math.radians(angle)) for angle in angles) if camera == "yaw/pitch" else camera
        cameras = camera_path(mode, motion.windows.shape[0], motion.cameras, target["camera"])

        steps, inverting = pipeline.inversion_steps, time.perf_counter()
        avatar = pipeline.build_avatar(target, lambda phase, step, loss: progress((min(step + 1, steps), steps), desc=f"inverting ({phase})"))
        inverted = time.perf_counter()
        results = Path(tempfile.mkdtemp(prefix="otavatar-results-", dir=self.cache))
        save_avatar(results / "avatar.pt", avatar)
        pair = torch.cat([avatar["source_image"], avatar["reconstruction"]])
        atomic_write(results / "preview.png", lambda handle: save_image(pair, handle, format="png", normalize=True, value_range=(-1, 1)))
        outputs = ReenactmentOutputs(results / "reenactment.mp4", motion.fps or 25.0, motion.images, motion.audio)
        self._render(pipeline, avatar, motion.windows, cameras, outputs, "rendering", progress)
        turn = camera_path("orbit", ORBIT_TURN, None, avatar["camera"])
        orbit = turn[:: max(1, ORBIT_TURN // self.settings.orbit_frames)][: self.settings.orbit_frames]
        windows = avatar["motion"].repeat(len(orbit), 1, 1)  # the portrait's own expression all around
        self._render(pipeline, avatar, windows, orbit, ReenactmentOutputs(results / "orbit.mp4", 25.0), "rendering the orbit", progress)
        finished = time.perf_counter()
        quality = psnr(avatar["reconstruction"], avatar["source_image"]).item()
        return results, (
            f"- **avatar** of {_escape(source)}: {pipeline.settings.schedule} schedule ({steps} step{'s' * (steps != 1)}), reconstruction "
            f"PSNR {quality:.2f} dB, inverted in {inverted - inverting:.0f} s\n"
            f"- {_escape(motion.description)}\n"
            f"- **rendered** {motion.windows.shape[0]} frames from the {_escape(camera)} camera and {len(orbit)} orbit frames "
            f"({pipeline.settings.speed} speed) in {finished - inverted:.0f} s; {finished - started:.0f} s in all"
        )

    def _render(self, pipeline: Pipeline, avatar: dict, windows: torch.Tensor, cameras: torch.Tensor, outputs: ReenactmentOutputs,
                what: str, progress: Callable) -> None:
        done = 0

        def advance(frames: int) -> None:
            nonlocal done
            done += frames
            progress((done, windows.shape[0]), desc=what)

        write_reenactment(pipeline.drive(avatar, windows, cameras, batch_size=self.settings.batch_size), outputs, advance)

    def blocks(self) -> gr.Blocks:
        """The page: inputs on the left, results on the right; one job at a time."""
        settings = self.pipeline.settings
        with gr.Blocks(title="otavatar", analytics_enabled=False, delete_cache=(600, 3600)) as page:
            gr.Markdown(INTRO)
            with gr.Row():
                with gr.Column():
                    portrait = gr.File(label="Portrait photo (empty: the embedded sample)", elem_id="portrait")
                    driving = gr.File(label="Driving video or coefficient file (empty: the embedded sample)", elem_id="driving")
                    camera = gr.Radio(list(CAMERAS), value="driving", label="Camera (driving: the driver's head pose)", elem_id="camera")
                    with gr.Row():
                        yaw = gr.Slider(-30, 30, value=0, step=1, label="yaw ° (camera yaw/pitch)")
                        pitch = gr.Slider(-20, 20, value=0, step=1, label="pitch ° (camera yaw/pitch)")
                    schedule = gr.Radio(inversion_presets(), value=settings.schedule, label="Inversion schedule (fast: 55 steps; release: 200)")
                    speed = gr.Radio(sorted(SPEED_MODES), value=settings.speed, label="Speed mode", elem_id="speed")
                    run = gr.Button("Make it talk", variant="primary", elem_id="run")
                with gr.Column():
                    video = gr.Video(label="Driver | avatar", elem_id="result")
                    with gr.Row():
                        preview = gr.Image(label="Portrait | reconstruction", type="filepath", height=240, elem_id="preview")
                        orbit = gr.Video(label="Orbit of the avatar", height=240, elem_id="orbit")
                    avatar = gr.File(label="Avatar file (scripts/reenact.py --avatar)", elem_id="avatar")
                    summary = gr.Markdown(elem_id="summary")
            uploads = [gr.State(), gr.State()]
            # The job takes the uploads away (they are deleted when it ends), so the page forgets them as it starts.
            run.click(lambda *files: (*files, None, None), [portrait, driving], [*uploads, portrait, driving], queue=False).then(
                self.run, [*uploads, camera, yaw, pitch, schedule, speed], [video, preview, orbit, avatar, summary])
        page.queue(default_concurrency_limit=1)
        return page


def serve(pipeline: Pipeline, settings: AppSettings = AppSettings(), host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until interrupted (Ctrl-C or SIGTERM); uploads and results live in a temporary folder removed then."""
    with tempfile.TemporaryDirectory(prefix="otavatar-app-") as folder:
        os.environ["GRADIO_TEMP_DIR"] = folder  # gradio keeps its uploads and served files there
        page = AvatarApp(pipeline, settings, folder).blocks()
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # a SIGTERM stops gradio as Ctrl-C does, and the folder goes
        print(f"uploads and results: {folder} (removed when the server stops); at most {settings.max_upload_mb:g} MB per file")
        # System fonts: the page loads nothing from outside this server.
        fonts = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
        try:
            page.launch(server_name=host, server_port=port, max_file_size=int(settings.max_upload_mb * MEGABYTE), theme=fonts)
        except OSError as error:
            raise InputError(f"--host {host} --port {port}: cannot serve there ({error})") from None
