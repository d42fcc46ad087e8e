"""Synthetic heads, the reference LMDB layout, cameras and datasets."""

import numpy as np
import pytest
import torch

from otavatar.camera import (FRONTAL_TRANSLATION_Z, camera_to_condition, condition_to_camera, frontal_camera, head_pose_camera, look_at_camera,
                             rotation_from_angles, angles_from_rotation)
from otavatar.data import synthetic, synthetic_video
from otavatar.data.datasets import FrameSource, TrainingPairs
from otavatar.data.lmdb import LmdbLayoutError, VideoLmdb, VideoLmdbWriter, encode_image
from otavatar.data.synthetic_dataset import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic_dataset(root, identities=3, videos=2, frames=6, resolution=64, seed=1, progress=False)
    return root


def test_frontal_look_at_camera_is_eg3ds(reference):
    camera = look_at_camera(0.0, 0.0)
    assert torch.allclose(camera[0, :16], reference["c"][0, :16], atol=1e-5)
    assert camera[0, 16] == pytest.approx(4.2647)
    assert torch.allclose(frontal_camera(), camera, atol=1e-6)  # the exact frontal camera is the same view


def test_rotation_angles_round_trip():
    angles = torch.tensor([[0.1, -0.4, 0.2], [-0.3, 0.5, -0.1]])
    assert torch.allclose(angles_from_rotation(rotation_from_angles(angles)), angles, atol=1e-6)


def test_condition_camera_round_trip_and_smoothing():
    g = torch.Generator().manual_seed(0)
    condition = torch.cat([torch.rand(5, 3, generator=g) * 0.6 - 0.3, torch.rand(5, 2, generator=g) * 0.1,
                           torch.full((5, 1), FRONTAL_TRANSLATION_Z), torch.full((5, 1), 1100.0)], 1)
    camera = condition_to_camera(condition, smoothing="none")
    assert (camera_to_condition(camera) - condition).abs().max() <= 1e-4
    release = condition_to_camera(condition, smoothing="release")
    fixed = condition_to_camera(condition, smoothing="fixed")
    # The release never uses the last frame: its last camera is frame 3's window [3, 4).
    assert torch.allclose(release[4], condition_to_camera(condition[3:4], smoothing="none")[0], atol=1e-6)
    assert not torch.allclose(fixed[4], release[4])
    assert torch.allclose(fixed[:3], release[:3])  # windows that do not reach the end agree
    with pytest.raises(ValueError, match=r"no frame to average for frame 0 of 1"):
        condition_to_camera(condition[:1], smoothing="release")
    with pytest.raises(ValueError, match=r"condition: expected shape \(N, 7\)"):
        condition_to_camera(torch.zeros(3, 6))


def test_frontal_tracker_pose_gives_a_camera_at_distance_2_7():
    camera = condition_to_camera(torch.tensor([[0, 0, 0, 0, 0, FRONTAL_TRANSLATION_Z, 1050.0]]), smoothing="none")
    assert camera[0, 11] == pytest.approx(2.7, abs=1e-5)
    assert camera[0, 16] == pytest.approx(4.2647)


def test_synthetic_generation_is_deterministic_per_seed():
    def render(seed):
        g = torch.Generator().manual_seed(seed)
        return synthetic_video.make_video(synthetic.sample_identity(g), 3, 64, g)

    a, b, c = render(5), render(5), render(6)
    assert torch.equal(a.images, b.images) and torch.equal(a.keypoints, b.keypoints)
    assert not torch.equal(a.images, c.images)
    assert a.view_images.shape == (2, 3, 3, 64, 64) and a.view_keypoints.shape == (2, 3, 68, 2)
    # A view with no extra yaw would see the landmarks where the main camera does.
    same = synthetic_video.render_video(a.identity, a.expression, a.angles, a.translation, 64, extra_view_yaws=(0.0,))
    assert torch.allclose(same.view_keypoints[0], same.keypoints)


def test_landmarks_fall_on_the_rendered_mouth_and_eyes():
    g = torch.Generator().manual_seed(3)
    identity = synthetic.sample_identity(g)
    expression = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]])  # mouth half open, eyes open
    for yaw in (0.0, 0.25):
        video = synthetic_video.render_video(identity, expression, torch.tensor([[0.0, yaw, 0.0]]),
                                       torch.tensor([[0.0, 0.0, FRONTAL_TRANSLATION_Z]]), 256, extra_view_yaws=())
        pixels = (video.keypoints[0] * 256 / 512).floor().long()
        labels = video.labels[0]
        mouth = torch.isin(labels, torch.tensor([synthetic.MOUTH, synthetic.LIPS]))
        eyes = torch.isin(labels, torch.tensor([synthetic.EYE_WHITE, synthetic.IRIS]))
        near = lambda mask: torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0].bool()  # noqa: E731 - 2-pixel tolerance
        on_mouth = near(mouth)[pixels[48:68, 1], pixels[48:68, 0]]
        on_eyes = near(eyes)[pixels[36:48, 1], pixels[36:48, 0]]
        # Seen from the front every mouth point is on the mouth; turned, a corner may hide behind the cheek.
        assert on_mouth.float().mean() >= (1.0 if yaw == 0 else 0.9), (yaw, on_mouth)
        assert on_eyes.float().mean() >= 0.9, (yaw, on_eyes)
        # ... and the jaw and nose do not.
        assert not near(mouth)[pixels[0:17, 1], pixels[0:17, 0]].any()


def test_written_dataset_reads_back(dataset):
    database = VideoLmdb(dataset, 64)
    assert database.splits["train"] == ["synth0000#00", "synth0000#01", "synth0001#00", "synth0001#01"]
    assert database.splits["test"] == ["synth0002#00", "synth0002#01"]
    video = "synth0001#01"
    assert database.length(video) == 6
    assert database.array(video, "coeff_3dmm").shape == (6, 260)
    assert database.array(video, "keypoint").shape == (6, 68, 2)
    assert database.array(video, "view_camera").shape == (2, 6, 25)
    image = database.image(video, 2)
    assert image.shape == (3, 64, 64) and -1 <= image.min() and image.max() <= 1
    assert (dataset / "contact_sheet.png").is_file()
    # The reference conversion of the written condition reproduces the ground-truth cameras.
    condition = torch.from_numpy(database.array(video, "condition"))
    truth = torch.from_numpy(database.array(video, "camera"))
    assert (condition_to_camera(condition, smoothing="none") - truth).abs().max() <= 1e-4


def test_a_reference_layout_lmdb_written_by_hand_loads(tmp_path):
    writer = VideoLmdbWriter(tmp_path, 512)
    frames = 3
    writer.write_video(
        "WRA_Test_000",
        [encode_image(np.full((512, 512, 3), 100, np.uint8), "JPEG")] * frames,
        {"coeff_3dmm": np.zeros((frames, 260)), "condition": np.tile([0, 0, 0, 0, 0, FRONTAL_TRANSLATION_Z, 1100.0], (frames, 1)),
         "keypoint": np.full((frames, 68, 2), 256.0), "id": np.zeros(80)},
    )
    writer.finish(["WRA_Test_000"], [])
    source = FrameSource(VideoLmdb(tmp_path, 512), image_size=128)
    frame = source.frame("WRA_Test_000", 1)
    assert frame["image"].shape == (3, 128, 128)
    assert frame["motion"].shape == (70, 27) and frame["camera"].shape == (25,)
    assert torch.allclose(frame["keypoints"], torch.full((68, 2), 64.0))


def test_missing_layout_parts_are_named(tmp_path, dataset):
    with pytest.raises(LmdbLayoutError, match="missing train_list.txt"):
        VideoLmdb(tmp_path, 64)
    database = VideoLmdb(dataset, 64)
    with pytest.raises(LmdbLayoutError, match="video 'nobody#00' has no 'length' key"):
        database.check_videos(["nobody#00"])
    with pytest.raises(LmdbLayoutError, match="key 'synth0000#00-0000099' is missing"):
        database.image("synth0000#00", 99)
    with pytest.raises(ValueError, match=r"'keypoint' has shape \(2, 5, 2\), expected \(1, 68, 2\)"):
        VideoLmdbWriter(tmp_path / "w", 64).write_video("v", [b"x"], {"keypoint": np.zeros((2, 5, 2))})


def test_training_pairs(dataset):
    pairs = TrainingPairs(FrameSource(VideoLmdb(dataset, 64), camera_source="ground_truth"), repeat=2)
    assert len(pairs) == 4  # 2 training persons × 2
    item = pairs[1]
    assert item["image"].shape == (2, 3, 64, 64) and item["motion"].shape == (2, 70, 27)
    assert item["camera"].shape == (2, 25) and item["keypoints"].shape == (2, 68, 2)
    # Which person the item shows: index 1 and index 3 (its repeat) are the same person.
    assert int(item["person"]) == 1 and int(pairs[3]["person"]) == 1 and int(pairs[0]["person"]) == 0


def test_pair_sampling_follows_the_expression_weights(dataset):
    pairs = TrainingPairs(FrameSource(VideoLmdb(dataset, 64)), repeat=1)
    video = "synth0000#00"
    weights = pairs.source.video(video)["expression_norm"] + 1e-3
    torch.manual_seed(0)
    counts = torch.bincount(torch.cat([pairs.sample_frames(video) for _ in range(4000)]), minlength=6).float()
    assert torch.allclose(counts / counts.sum(), weights / weights.sum(), atol=0.02)


def test_expressions_are_legible_at_the_neural_rendering_resolution():
    """Each expression parameter changes many pixels of a 64² render, inside its own landmark box."""
    from otavatar.losses.region import region_box

    g = torch.Generator().manual_seed(4)
    identity = synthetic.sample_identity(g)
    neutral = torch.tensor([0.0, 0.0, 0.1, 0.1, 0.0, 0.0])
    changes = {"jaw_open": (0, 1.0), "smile": (1, 1.0), "right_eyelid": (2, 1.0), "left_eyelid": (3, 1.0), "brows": (4, 1.0), "lip_pucker": (5, 1.0)}
    region_of = {"jaw_open": "mouth", "smile": "mouth", "lip_pucker": "mouth", "right_eyelid": "left_eye", "left_eyelid": "right_eye"}
    expressions = torch.stack([neutral] + [neutral.clone().index_fill_(0, torch.tensor(i), v) for i, v in changes.values()])
    frames = len(expressions)
    video = synthetic_video.render_video(identity, expressions, torch.zeros(frames, 3),
                                   torch.tensor([[0.0, 0.0, FRONTAL_TRANSLATION_Z]]).expand(frames, -1), 64, extra_view_yaws=())
    for k, name in enumerate(changes, start=1):
        changed = (video.images[k] - video.images[0]).abs().amax(0) > 0.1
        assert changed.sum() >= 8, (name, int(changed.sum()))
        if name in region_of:  # the change lies in the box the region loss and region PSNR look at
            x1, y1, x2, y2 = (region_box(video.keypoints[k : k + 1] * 64 / 512, region_of[name], 64)[0]).long().tolist()
            inside = changed[y1 : y2 + 1, x1 : x2 + 1].sum()
            assert inside >= 0.6 * changed.sum(), (name, int(inside), int(changed.sum()))


def _three_rendered_frames(resolution: int):
    """A head's three frames: the head, its renders ``(3, R², 3)`` and labels ``(3, R²)``, and its surface points, hits and ray directions."""
    g = torch.Generator().manual_seed(1)
    expression, angles, translation = synthetic.sample_talking_sequence(3, g)
    head = synthetic.HeadModel(synthetic.sample_identity(g), expression)
    cameras = head_pose_camera(angles, translation)
    images, labels = synthetic.render_heads(head, cameras, resolution)
    return head, images.permute(0, 2, 3, 1).reshape(3, -1, 3), labels.reshape(3, -1), *synthetic.surface_points(head, cameras, resolution)


def test_closed_form_fields_agree_with_the_renderer():
    head, rendered, _, points, hit, directions = _three_rendered_frames(48)
    occupancy, colour = synthetic.head_fields(head, points + 0.001 * directions)
    assert occupancy[hit].float().mean() > 0.995 and not occupancy[~hit].any()
    error = (colour - rendered).abs().amax(-1)[hit]
    assert error.mean() < 0.01 and (error > 0.05).float().mean() < 0.02
    # Just in front of the surface is empty: the hair cap is a solid, entered through its cuts too.
    in_front, _ = synthetic.head_fields(head, points - 0.003 * directions)
    assert in_front[hit].float().mean() < 0.001


def test_closed_form_colour_holds_behind_thin_features():
    # A volume renderer's samples land a few thousandths behind the surface: an iris stands only
    # 2 thousandths in front of its eyeball, yet the colour there must still be the iris's.
    head, rendered, labels, points, hit, directions = _three_rendered_frames(96)
    _, colour = synthetic.head_fields(head, points + 0.005 * directions)
    error = (colour - rendered).abs().amax(-1)
    for part in (synthetic.IRIS, synthetic.LIPS, synthetic.EYE_WHITE, synthetic.HAIR):
        seen = labels == part
        assert seen.sum() > 100 and (error[seen] < 0.1).float().mean() > 0.6, synthetic.PART_NAMES[part]
    # In front of the surface, where the renderer averages empty samples with the first inside, the
    # colour asked for is the surface's.
    occupancy, colour = synthetic.head_fields(head, points - 0.003 * directions, colour_outside=True)
    error = (colour - rendered).abs().amax(-1)[hit]
    assert not occupancy[hit].any() and error.mean() < 0.02
