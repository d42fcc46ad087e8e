"""Multiface: a small capture written in its public layout (synthetic heads seen by KRT cameras, a
moving tracked head), read back into exact EG3D labels, and the multiview protocol over it."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from otavatar.camera import camera_to_condition
from otavatar.data.datasets import FrameSource
from otavatar.data.lmdb import VideoLmdb
from otavatar.preprocess.multiface import (
    HeadFrame, MultifaceCapture, MultifaceLayoutError, crop_label, default_frontal_camera, read_krt, write_multiface_dataset,
)
from otavatar.data.synthetic import HeadModel, project_points, render_heads, sample_identity, sample_talking_sequence
from otavatar.evaluation.runner import EvaluationSettings, protocol_source, run_evaluation
from otavatar.evaluation.scoring import build_extractors
from otavatar.metrics.suite import MetricSuite
from otavatar.pipeline import Pipeline, PipelineSettings
from otavatar.preprocess.crop import crop_image
from tests.helpers import micro_checkpoint, refused

WIDTH, HEIGHT = 208, 320  # portrait frames, as Multiface's 1334 × 2048
FRAMES = ["000102", "000105", "000108"]
SENTENCE = "SEN_a_quick_test"
# name: (yaw, pitch) of the camera around the head at the reference frame, distance factor, intrinsics (fx, fy, cx, cy)
RIG = {
    "400002": ((0.5, 0.1), 1.05, (760.0, 766.0, 100.4, 163.4)),
    "400001": ((0.0, 0.0), 1.0, (768.0, 768.0, 103.0, 159.0)),
    "400003": ((-0.45, -0.15), 0.95, (780.0, 776.0, 105.2, 156.2)),
}


def rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


# The capture's own conventions, unknown to the reader: head coordinates in millimetres with other
# axes than EG3D's, the head centre off their origin, the world somewhere else again.
AXES = rotation(0, 1.1) @ rotation(2, -0.7)  # rows: EG3D x, y, z in head coordinates
CENTRE = np.array([12.0, -30.0, 25.0])
SCALE = 2.7 / 1000  # EG3D units per millimetre: cameras 1 m from the head
WORLD_FROM_HEAD = [(rotation(1, 0.3) @ rotation(0, 0.05 * f) @ rotation(2, -0.04 * f), np.array([40.0 + 3 * f, 1600.0 - 2 * f, -20.0 + 5 * f])) for f in range(3)]


def look_at(centre: np.ndarray) -> np.ndarray:
    """cam → EG3D rotation of a camera at ``centre`` looking at the origin, world up +y (EG3D's look-at, in float64)."""
    forward = -centre / np.linalg.norm(centre)
    right = -np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    return np.stack([right, up / np.linalg.norm(up), forward], axis=1)


def eg3d_camera(world_rotation: np.ndarray, world_centre: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """A world camera (cam → world rotation, centre) in EG3D's world at ``frame``: the true conversion."""
    head_rotation, head_translation = WORLD_FROM_HEAD[frame]
    in_head = head_rotation.T @ world_rotation, head_rotation.T @ (world_centre - head_translation)
    return AXES @ in_head[0], SCALE * AXES @ (in_head[1] - CENTRE)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Write the capture; return its folder, the head model, the true per-camera (K, world rotation, world centre), the expressions."""
    root = tmp_path_factory.mktemp("multiface") / "m--20180227--0000--6795937--GHS"
    generator = torch.Generator().manual_seed(7)
    identity = sample_identity(generator)
    expression = sample_talking_sequence(len(FRAMES), generator)[0]
    head = HeadModel(identity, expression)
    truth, krt = {}, []
    head_rotation, head_translation = WORLD_FROM_HEAD[0]
    for name, ((yaw, pitch), distance, (fx, fy, cx, cy)) in RIG.items():
        centre = 2.7 * distance * np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        eg3d_rotation = look_at(centre)
        # EG3D → head (p_h = Aᵀ p / s + o) → world at the reference frame, where the rig was set up.
        world_rotation = head_rotation @ AXES.T @ eg3d_rotation
        world_centre = head_rotation @ (AXES.T @ centre / SCALE + CENTRE) + head_translation
        intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        truth[name] = (intrinsics, world_rotation, world_centre)
        extrinsics = np.concatenate([world_rotation.T, (-world_rotation.T @ world_centre)[:, None]], axis=1)
        krt += [name, *(" ".join(f"{v:.17g}" for v in row) for row in intrinsics), "0 0 0 0 0",
                *(" ".join(f"{v:.17g}" for v in row) for row in extrinsics), ""]
        # Render each frame from the camera as the head moves: a square render whose top-left is the frame.
        side = max(WIDTH, HEIGHT)
        labels = []
        for frame in range(len(FRAMES)):
            cam_rotation, cam_centre = eg3d_camera(world_rotation, world_centre, frame)
            cam2world = np.eye(4)
            cam2world[:3, :3], cam2world[:3, 3] = cam_rotation, cam_centre
            normalised = np.array([[fx, 0.0, cx + 0.5], [0.0, fy, cy + 0.5], [0.0, 0.0, side]]) / side
            labels.append(np.concatenate([cam2world.reshape(16), normalised.reshape(9)]))
        images = render_heads(head, torch.tensor(np.stack(labels), dtype=torch.float32), side)[0][:, :, :HEIGHT, :WIDTH]
        folder = root / "images" / SENTENCE / name
        folder.mkdir(parents=True)
        for frame, image in zip(FRAMES, images):
            Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{frame}.png")
    (root / "KRT").write_text("\n".join(krt) + "\n")
    poses = root / "tracked_mesh" / SENTENCE
    poses.mkdir(parents=True)
    for frame, (head_rotation, head_translation) in zip(FRAMES, WORLD_FROM_HEAD):
        np.savetxt(poses / f"{frame}_transform.txt", np.concatenate([head_rotation, head_translation[:, None]], axis=1), fmt="%.17g")
    return root, head, truth, expression


def true_pixels(head: HeadModel, truth, name: str) -> np.ndarray:
    """The 68 landmarks of every frame projected by the KRT camera (OpenCV pinhole, pixel-centre coordinates)."""
    intrinsics, world_rotation, world_centre = truth[name]
    pixels = []
    for frame in range(len(FRAMES)):
        cam_rotation, cam_centre = eg3d_camera(world_rotation, world_centre, frame)
        in_camera = (head.landmarks[frame].double().numpy() - cam_centre) @ cam_rotation
        projected = in_camera @ intrinsics.T
        pixels.append(projected[:, :2] / projected[:, 2:])
    return np.stack(pixels)


def test_the_layout_is_read_back(capture, tmp_path):
    root, _, truth, _ = capture
    reader = MultifaceCapture(root)
    assert sorted(reader.cameras) == sorted(RIG) and reader.sentences() == [SENTENCE]
    assert reader.frames(SENTENCE, ["400001", "400002"]) == FRAMES
    for name, (intrinsics, world_rotation, world_centre) in truth.items():
        assert np.allclose(reader.cameras[name].intrinsics, intrinsics, atol=1e-12)
        assert np.allclose(reader.cameras[name].centre, world_centre, atol=1e-9)
    assert reader.image(SENTENCE, "400001", FRAMES[0]).shape == (HEIGHT, WIDTH, 3)
    assert np.allclose(reader.head_pose(SENTENCE, FRAMES[2])[:, :3], WORLD_FROM_HEAD[2][0], atol=1e-12)
    broken = tmp_path / "KRT"
    broken.write_text("400001\n1 0 0\n0 1\n0 0 1\n0 0 0 0 0\n1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(MultifaceLayoutError, match=r"KRT file .*KRT, line 3: expected 3 numbers, found '0 1'"):
        read_krt(broken)


def test_the_head_frame_comes_from_the_rig(capture):
    root, _, _, _ = capture
    reader = MultifaceCapture(root)
    assert default_frontal_camera(reader, SENTENCE, FRAMES[0], sorted(RIG)) == "400001"
    head = HeadFrame.from_cameras(reader, SENTENCE, FRAMES[0], "400001", sorted(RIG))
    assert np.allclose(head.axes, AXES, atol=1e-9) and np.allclose(head.centre, CENTRE, atol=1e-6)
    assert head.scale == pytest.approx(SCALE, rel=1e-9)


def test_recovered_labels_reproduce_every_stored_view(capture):
    root, model, truth, _ = capture
    reader = MultifaceCapture(root)
    head = HeadFrame.from_cameras(reader, SENTENCE, FRAMES[0], "400001", sorted(RIG))
    size = 64
    for name in RIG:
        boxes, labels = zip(*(crop_label(reader.cameras[name], reader.head_pose(SENTENCE, frame), head) for frame in FRAMES))
        labels = torch.tensor(np.stack(labels))
        assert torch.allclose(labels[:, 16], torch.tensor(4.2647)) and all(b[2] - b[0] == pytest.approx(truth[name][0][0, 0] / 4.2647) for b in boxes)
        # Landmarks: the label's projection in the crop = the KRT camera's, moved into the crop (corner coordinates).
        expected = np.stack([(pixels + 0.5 - box[:2]) * size / (box[2] - box[0]) for pixels, box in zip(true_pixels(model, truth, name), boxes)])
        found = project_points(model.landmarks, labels, size).numpy()
        assert np.abs(found - expected).max() < 1e-3, name
        # Images: rendering the head from the recovered label reproduces the crop of the stored frame, at
        # under half the error of the same label shifted by half a crop pixel (measured: 0.006-0.007 vs 0.016).
        stored = torch.stack([
            torch.tensor(crop_image(reader.image(SENTENCE, name, frame), box, size)).permute(2, 0, 1) / 255.0 for frame, box in zip(FRAMES, boxes)
        ])
        rendered = render_heads(model, labels, size)[0]
        shifted = labels.clone()
        shifted[:, 18] += 0.5 / size
        error, shifted_error = (rendered - stored).abs().mean(), (render_heads(model, shifted, size)[0] - stored).abs().mean()
        assert error < 0.5 * shifted_error, (name, float(error), float(shifted_error))


def test_multiview_protocol_runs_on_the_converted_capture(capture, tmp_path):
    root, model, _, expression = capture
    size = 128
    reader = MultifaceCapture(root)
    head = HeadFrame.from_cameras(reader, SENTENCE, FRAMES[0], "400001", sorted(RIG))
    frontal = torch.from_numpy(np.stack([crop_label(reader.cameras["400001"], reader.head_pose(SENTENCE, f), head)[1] for f in FRAMES]))

    def annotate(crops, name):
        """The truth in place of Deep3DFaceRecon and dlib: the head's expression, the frontal view's pose as the
        synthetic data's tracker would give it, and the landmarks in the crops."""
        coefficients = np.zeros((len(crops), 260), dtype=np.float32)
        condition = camera_to_condition(frontal).numpy()
        coefficients[:, 80:86], coefficients[:, 224:227], coefficients[:, 254:257] = expression.numpy(), condition[:, :3], condition[:, 3:6]
        return coefficients, project_points(model.landmarks, frontal, size).numpy()

    dataset = write_multiface_dataset(reader, tmp_path / "multiface", annotate, size=size, frontal="400001")
    database = VideoLmdb(dataset, size)
    video = f"{root.name}#{SENTENCE}"
    assert database.splits == {"train": [], "test": [video]}
    assert np.allclose(database.array(video, "camera"), frontal.numpy()) and database.array(video, "view_camera").shape == (2, 3, 25)
    assert database.get(video, "cameras").decode() == "400001 400002 400003"
    frame = FrameSource(database, "ground_truth", image_size=size).frame(video, 0)
    assert torch.allclose(frame["keypoints"], project_points(model.landmarks[:1], frame["camera"][None], size)[0], atol=0.01)

    # The protocol as scripts/evaluate.py --protocol multiview runs it: the stored exact cameras, one episode per extra view.
    checkpoint, _ = micro_checkpoint(tmp_path)
    pipeline = Pipeline.load(PipelineSettings(checkpoint=str(checkpoint), schedule="release", w_steps=2, w_plus_steps=1), log=lambda _: None)
    source = protocol_source(dataset, "multiview", pipeline.model_config)
    assert source.camera_source == "ground_truth"
    extractors = build_extractors("deep3d", faces=False, fid=False)
    suites = {method: MetricSuite(extractors) for method in ("otavatar", "static")}
    settings = EvaluationSettings("multiview", baselines=("static",), inversion=pipeline.inversion)
    per_video = run_evaluation(pipeline.animator, source, settings, suites, pipeline.frame_loss, log=lambda _: None)
    assert set(per_video["otavatar"]) == set(per_video["static"]) == {f"{video}@view0", f"{video}@view1"}
    assert isinstance(suites["otavatar"].summary()["psnr"], float) and isinstance(suites["static"].summary()["psnr"], float)


def test_conversion_without_deep3dfacerecon_stops_in_one_line(capture, tmp_path, monkeypatch, capsys):
    root, _, _, _ = capture
    monkeypatch.setenv("OTAVATAR_PRETRAINED", str(tmp_path))
    message = refused(capsys, "preprocess", "multiface", root, "--out", tmp_path / "out")
    assert message.startswith("error: Multiface: the motion of the frontal camera's frames needs 3DMM coefficients") and "epoch_20.pth" in message
    assert not (tmp_path / "out").exists()
