"""Animation losses: perceptual/style, regions, identity, pixel, density regularisers, the combined loss."""

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from skimage.transform import SimilarityTransform
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from otavatar.assets import REPO_ROOT
from otavatar.losses.animation import AnimationLoss, LossWeights, pixel_loss
from otavatar.losses.identity import (
    ARCFACE_TEMPLATE,
    IdentityLoss,
    ResNetArcFace,
    align_faces,
    arcface_embedding,
    five_points,
    load_arcface,
    similarity_transform,
)
from otavatar.losses.perceptual import PerceptualLoss, gram_matrix, load_vgg19_features
from otavatar.losses.region import RegionLoss, landmark_boxes, region_box
from otavatar.losses.regularisers import monotonic_density_loss, motion_code_l1, tv_density_loss
from tests.helpers import TensorConstructions

CPU = torch.device("cpu")
# skimage ≥ 0.26 deprecates ``estimate`` for ``from_estimate``; the former works on every supported version.
SKIMAGE_ESTIMATE = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random weights in the real formats: torchvision's VGG19 state dict, GFPGAN's ArcFace state dict."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    vgg = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    vgg["classifier.6.bias"] = torch.zeros(1000)  # the real file also holds the classifier, which is ignored
    torch.save(vgg, folder / "vgg19.pth")
    arcface = ResNetArcFace()
    for module in arcface.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(arcface.state_dict(), folder / "arcface.pth")
    return folder


@pytest.fixture(scope="module")
def vgg_features(weight_files):
    return load_vgg19_features(weight_files / "vgg19.pth")


@pytest.fixture(scope="module")
def arcface(weight_files):
    return load_arcface(weight_files / "arcface.pth")


def face_landmarks(batch: int = 2, size: int = 64) -> torch.Tensor:
    """68 plausible landmarks: jaw, brows, nose, eyes, mouth placed like a frontal face."""
    points = torch.zeros(68, 2)
    points[0:17] = torch.stack([torch.linspace(0.2, 0.8, 17), 0.5 + 0.3 * torch.sin(torch.linspace(0, 3.14, 17))], 1)
    points[17:27] = torch.stack([torch.linspace(0.25, 0.75, 10), torch.full((10,), 0.3)], 1)
    points[27:36] = torch.stack([torch.full((9,), 0.5), torch.linspace(0.35, 0.55, 9)], 1)
    points[36:42] = torch.stack([torch.linspace(0.3, 0.42, 6), torch.full((6,), 0.4)], 1)
    points[42:48] = torch.stack([torch.linspace(0.58, 0.7, 6), torch.full((6,), 0.4)], 1)
    points[48:68] = torch.stack([torch.linspace(0.38, 0.62, 20), 0.68 + 0.03 * torch.sin(torch.linspace(0, 6.28, 20))], 1)
    return (points * size).expand(batch, -1, -1).clone()


def noisy_copy(image: torch.Tensor, scale: float = 0.1) -> torch.Tensor:
    return (image + scale * torch.randn_like(image)).requires_grad_(True)


# -- perceptual and style ----------------------------------------------------------------------


def test_gram_matrix_by_hand():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    # F = [[1,2,3,4],[0,1,0,1]]; F Fᵀ = [[30, 6], [6, 2]]; / (C·H·W = 8)
    assert torch.allclose(gram_matrix(features), torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8)


def test_perceptual_and_style_terms_by_hand():
    """A 1×1-conv 'network' on 2×2 images: every number below is worked out on paper."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))

    def loss(style_weight):
        module = PerceptualLoss(nn.Sequential(conv), num_scales=1, style_weight=style_weight, layers=(0,))
        module.mean.zero_()  # normalisation (x + 1) / 2: features are the first two channels mapped to [0, 1]
        module.std.fill_(1.0)
        return module

    prediction = torch.ones(1, 3, 2, 2)
    prediction[0, 0] = torch.tensor([[1.0, 3.0], [-1.0, 1.0]])  # features channel 0: [[1, 2], [0, 1]], channel 1: ones
    target = torch.ones(1, 3, 2, 2)  # features: all ones
    # L1 of features: channel 0 |[[0, 1], [1, 0]]| sums to 2, channel 1 to 0; mean over 8 values = 0.25.
    assert loss(0.0)(prediction, target).item() == pytest.approx(0.25)
    # Gram(prediction): F = [[1, 2, 0, 1], [1, 1, 1, 1]] → F Fᵀ / 8 = [[6, 4], [4, 4]] / 8; Gram(target) = [[4, 4], [4, 4]] / 8.
    # L1 of the Grams: |6 − 4| / 8 / 4 entries = 0.0625; × 250 = 15.625.
    assert loss(250.0)(prediction, target).item() == pytest.approx(0.25 + 15.625)


def test_perceptual_loss_matches_a_hand_computation():
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1), nn.ReLU())
    loss = PerceptualLoss(features, num_scales=2, style_weight=250.0, layers=(1, 3))
    torch.manual_seed(1)
    prediction, target = torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(x):
        x = ((x + 1) / 2 - mean) / std
        a = features[1](features[0](x))
        return [a, features[3](features[2](a))]

    halve = lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear")  # noqa: E731
    expected = 0.0
    for scale, (p, t) in enumerate([(prediction, target), (halve(prediction), halve(target))]):
        for fp, ft in zip(feats(p), feats(t)):
            expected = expected + (fp - ft).abs().mean()
            if scale == 0:
                expected = expected + 250 * (gram_matrix(fp) - gram_matrix(ft)).abs().mean()
    assert torch.allclose(loss(prediction, target), expected)


def test_vgg_perceptual_is_zero_for_identical_images_and_reaches_the_prediction(vgg_features):
    loss = PerceptualLoss(vgg_features, num_scales=2)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(target, target) == 0
    prediction = noisy_copy(target)
    value = loss(prediction, target)
    value.backward()
    assert value > 0 and prediction.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in vgg_features.parameters())


def test_perceptual_refuses_scales_below_the_network_size(vgg_features):
    with pytest.raises(ValueError, match=r"3 scales of a \(32, 32\) image go down to 8 px; the feature network needs at least 16"):
        PerceptualLoss(vgg_features, num_scales=3)(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


# -- regions -----------------------------------------------------------------------------------


def test_landmark_boxes_are_padded_and_clipped():
    keypoints = torch.zeros(1, 68, 2)
    keypoints[0, 48:68] = torch.tensor([[100.7, 300.2], [140.0, 320.9]]).repeat(10, 1)
    # min (100.7, 300.2) → (100, 300) − 10; max (140, 320.9) → (140, 320) + 10.
    assert region_box(keypoints, "mouth", 512).tolist() == [[90.0, 290.0, 150.0, 330.0]]
    keypoints[0, 36:42] = torch.tensor([[3.0, 5.0], [30.0, 20.0]]).repeat(3, 1)
    assert region_box(keypoints, "left_eye", 512).tolist() == [[0.0, 0.0, 50.0, 40.0]]  # clipped at 0
    keypoints[0, 42:48] = torch.tensor([[60.0, 60.0], [63.5, 62.0]]).repeat(3, 1)
    # At 64²: padding int(20/512·64) = 2; right and bottom edges are clipped to 63.
    assert region_box(keypoints, "right_eye", 64).tolist() == [[58.0, 58.0, 63.0, 63.0]]
    keypoints[0, 27:36] = torch.tensor([[31.2, 20.0], [33.9, 40.5]]).repeat(5, 1)[:9]
    # Nose at 64²: padding int(10/512·64) = 1.
    assert region_box(keypoints, "nose", 64).tolist() == [[30.0, 19.0, 34.0, 41.0]]
    # Non-square images clip x to the width and y to the height (padding follows the height: int(20/512·128) = 5).
    assert landmark_boxes(keypoints, range(42, 48), 20, (128, 62)).tolist() == [[55.0, 55.0, 61.0, 67.0]]
    with pytest.raises(KeyError, match="unknown face region 'ear'"):
        region_box(keypoints, "ear", 64)


def test_region_loss_and_the_release_eye_bug():
    keypoints = face_landmarks(1, 64)
    target = torch.zeros(1, 3, 64, 64)
    assert RegionLoss()(target, target, keypoints) == 0
    eyes_differ = target.clone()
    eyes_differ[:, :, 22:30, 16:30] = 1.0  # only around the left eye
    assert RegionLoss()(eyes_differ, target, keypoints) > 0
    assert RegionLoss(release_eye_bug=True)(eyes_differ, target, keypoints) == 0
    mouth_differs = target.clone()
    mouth_differs[:, :, 40:48, 24:40] = 1.0
    assert RegionLoss(release_eye_bug=True)(mouth_differs, target, keypoints) > 0
    outside = target.clone()
    outside[:, :, :8] = 1.0  # above the eyes: no region sees it
    assert RegionLoss()(outside, target, keypoints) == 0


def test_region_loss_is_one_l1_per_region_and_reaches_the_prediction():
    keypoints = face_landmarks(1, 64)
    target = torch.zeros(1, 3, 64, 64)
    prediction = torch.full((1, 3, 64, 64), 0.5, requires_grad=True)
    value = RegionLoss()(prediction, target, keypoints)
    assert value.item() == pytest.approx(3 * 0.5)  # mouth, left eye, right eye, each L1 = 0.5
    value.backward()
    assert prediction.grad.abs().sum() > 0


# -- identity and pixel ------------------------------------------------------------------------


@SKIMAGE_ESTIMATE
def test_similarity_transform_recovers_a_known_transform_and_matches_skimage():
    angle = torch.tensor(0.3)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    torch.manual_seed(2)
    source = torch.rand(1, 5, 2) * 100
    destination = 1.7 * source @ rotation.T + torch.tensor([5.0, -3.0])
    matrix = similarity_transform(source, destination).float()
    assert torch.allclose(matrix[0, :, :2], 1.7 * rotation, atol=1e-5)
    assert torch.allclose(matrix[0, :, 2], torch.tensor([5.0, -3.0]), atol=1e-3)
    # Noisy points: the least-squares estimate is skimage's (what the release uses).
    noisy = destination + torch.randn_like(destination)
    reference = SimilarityTransform()
    reference.estimate(source[0].double().numpy(), noisy[0].double().numpy())
    assert np.allclose(similarity_transform(source, noisy)[0].numpy(), reference.params[:2], atol=1e-6)


def test_alignment_puts_the_five_points_on_the_template():
    """A face whose five points are the template scaled by 1.5 and shifted lands back on the template."""
    points = ARCFACE_TEMPLATE * 1.5 + torch.tensor([20.0, 10.0])
    keypoints = torch.zeros(1, 68, 2)
    for indices, point in zip(([36, 39], [42, 45], [30], [48], [54]), points):
        keypoints[0, indices] = point
    assert torch.allclose(five_points(keypoints), points[None])
    image = torch.full((1, 3, 256, 256), -1.0)
    for x, y in points.round().long().tolist():
        image[:, :, y - 2 : y + 3, x - 2 : x + 3] = 1.0
    aligned = align_faces(image, keypoints)
    assert aligned.shape == (1, 1, 128, 128)
    for x, y in ARCFACE_TEMPLATE.round().long().tolist():
        assert aligned[0, 0, y, x] > 0.5, (x, y)


@SKIMAGE_ESTIMATE
def test_alignment_matches_the_release_pipeline():
    """skimage similarity estimate + grey conversion + kornia warp_affine to 128², as the release does."""
    torch.manual_seed(3)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    keypoints = face_landmarks(2, 64) + torch.randn(2, 68, 2)
    matrices = []
    for sample in range(2):
        transform = SimilarityTransform()
        transform.estimate(five_points(keypoints)[sample].double().numpy(), ARCFACE_TEMPLATE.double().numpy())
        matrices.append(torch.from_numpy(transform.params[:2]).float())
    grey = (images * torch.tensor([0.2989, 0.5870, 0.1140]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    expected = kornia.geometry.transform.warp_affine(grey, torch.stack(matrices), dsize=(128, 128))
    assert torch.allclose(align_faces(images, keypoints), expected, atol=1e-4)


def test_identity_loss(arcface):
    loss = IdentityLoss(arcface)
    keypoints = face_landmarks(2, 64)
    torch.manual_seed(4)
    target = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(target, target, keypoints).abs() < 1e-6
    prediction = torch.rand(2, 3, 64, 64, requires_grad=True)
    value = loss(prediction * 2 - 1, target, keypoints)
    value.backward()
    assert value > 0 and prediction.grad.abs().sum() > 0
    embedding = arcface_embedding(arcface, target, keypoints)
    assert embedding.shape == (2, 512)
    expected = 1 - F.cosine_similarity(arcface_embedding(arcface, prediction * 2 - 1, keypoints), embedding).mean()
    assert value.item() == pytest.approx(expected.item(), abs=1e-6)


def test_pixel_loss_resizes_the_target():
    target = torch.ones(1, 3, 8, 8)
    assert pixel_loss(torch.ones(1, 3, 4, 4), target) == 0
    assert pixel_loss(torch.zeros(1, 3, 4, 4), target) == pytest.approx(0.5)  # SmoothL1(1) = 0.5·1²
    prediction = torch.full((1, 3, 4, 4), 3.0, requires_grad=True)
    value = pixel_loss(prediction, target)
    assert value.item() == pytest.approx(1.5)  # |2| − 0.5
    value.backward()
    assert prediction.grad.abs().sum() > 0


# -- density regularisers and w_x --------------------------------------------------------------


def test_density_regularisers():
    constant = lambda points: torch.ones(*points.shape[:2], 1)  # noqa: E731
    assert tv_density_loss(constant, 2, CPU) == 0
    assert monotonic_density_loss(constant, 2, CPU) == 0
    rising_with_z = lambda points: points[..., 2:]  # noqa: E731 - denser in front: violates monotonicity
    assert monotonic_density_loss(rising_with_z, 2, CPU) == pytest.approx(1 / 256, rel=1e-4)
    assert monotonic_density_loss(rising_with_z, 2, CPU, box_warp=2.0) == pytest.approx(2 / 256, rel=1e-4)
    falling_with_z = lambda points: -points[..., 2:]  # noqa: E731
    assert monotonic_density_loss(falling_with_z, 2, CPU) == 0
    assert tv_density_loss(rising_with_z, 2, CPU) > 0
    assert motion_code_l1(torch.zeros(1, 14, 512)) == 0
    assert motion_code_l1(torch.full((1, 14, 512), -0.5)) == 0.5


def test_density_regularisers_by_hand_and_reproducible():
    seen = []

    def sigma_x(points):
        seen.append(points)
        return points[..., :1]

    value = tv_density_loss(sigma_x, 1, CPU, num_points=500, perturbation=0.004, density_reg=0.25, generator=torch.Generator().manual_seed(5))
    points = seen[0]
    assert points.shape == (1, 1000, 3) and points[:, :500].abs().max() <= 1
    # L1 between x and x + 0.004·n, × 0.25.
    assert value.item() == pytest.approx(((points[:, :500, 0] - points[:, 500:, 0]).abs().mean() * 0.25).item())
    again = tv_density_loss(sigma_x, 1, CPU, num_points=500, generator=torch.Generator().manual_seed(5))
    assert torch.equal(seen[1], points) and again == value
    assert (points[:, 500:] - points[:, :500]).std().item() == pytest.approx(0.004, rel=0.1)


def test_monotonic_gradient_with_and_without_detach():
    scale = torch.tensor(1.0, requires_grad=True)
    sigma = lambda points: scale * points[..., 2:]  # noqa: E731
    monotonic_density_loss(sigma, 1, CPU, num_points=100, generator=torch.Generator().manual_seed(6)).backward()
    # relu(s·z − s·(z − 1/256)) = s/256 → d/ds = 1/256.
    assert scale.grad.item() == pytest.approx(1 / 256, rel=1e-4)
    scale.grad = None
    seen = []
    tracked = lambda points: seen.append(points) or scale * points[..., 2:]  # noqa: E731
    monotonic_density_loss(tracked, 1, CPU, num_points=100, detach_front=True, generator=torch.Generator().manual_seed(6)).backward()
    # Only σ_behind = s·(z − 1/256) carries gradient: d/ds = −mean(z − 1/256).
    behind = seen[0][0, 100:, 2]
    assert scale.grad.item() == pytest.approx(-behind.mean().item(), rel=1e-4)


# -- the combined loss -------------------------------------------------------------------------


def _outputs(target: torch.Tensor, planes: torch.Tensor) -> dict:
    return {
        "image_raw": F.interpolate(target, size=(32, 32), mode="area").requires_grad_(True),
        "image": target.clone().requires_grad_(True),
        "planes": planes,
        "motion_code": torch.zeros(1, 10, 512),
    }


def test_animation_loss_terms(weight_files):
    from tests.helpers import micro_animator

    generator = micro_animator().generator
    weights = LossWeights(
        vgg19_path=str(weight_files / "vgg19.pth"), arcface_path=str(weight_files / "arcface.pth"),
        motion_code=0.1, sr_scales=2, regulariser_points=200,
    )
    loss = AnimationLoss(weights)
    torch.manual_seed(7)
    target = {"image": torch.rand(1, 3, 64, 64) * 2 - 1, "keypoints": face_landmarks(1, 64)}
    planes = torch.randn(1, 96, 64, 64, requires_grad=True)
    output = _outputs(target["image"], planes)
    total, terms = loss(output, target, super_resolve=True, generator=generator)
    image_terms = {f"{t}_{r}" for t in ("perceptual", "region", "pixel", "identity") for r in ("raw", "sr")}
    assert set(terms) == image_terms | {"tv", "monotonic", "motion_code"}
    for name in image_terms | {"motion_code"}:
        assert terms[name].abs() < 1e-5, name
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    total.backward()
    assert planes.grad.abs().sum() > 0

    output = _outputs(target["image"], planes)
    output["image"] = noisy_copy(target["image"])
    output["image_raw"] = noisy_copy(output["image_raw"].detach())
    output["motion_code"] = torch.full((1, 10, 512), 0.5)
    total, terms = loss(output, target, super_resolve=True, generator=generator)
    for name in image_terms | {"motion_code"}:
        assert terms[name] > 0, name
    assert terms["motion_code"].item() == pytest.approx(0.1 * 0.5)
    total.backward()
    assert output["image"].grad.abs().sum() > 0 and output["image_raw"].grad.abs().sum() > 0


def test_animation_loss_rescales_keypoints_and_skips_zero_weights():
    """Only the mouth differs: with landmarks in pixels of the 128² target, both resolutions see it."""
    loss = AnimationLoss(LossWeights(perceptual=0, identity=0, tv=0, monotonic=0, pixel=0))
    assert loss.perceptual_raw is None and loss.identity is None  # their networks are not even loaded
    keypoints = face_landmarks(1, 128)
    target = torch.zeros(1, 3, 128, 128)
    mouth_differs = target.clone()
    mouth_differs[:, :, 84:92, 56:72] = 1.0
    output = {"image": mouth_differs, "image_raw": F.interpolate(mouth_differs, size=(32, 32), mode="area")}
    total, terms = loss(output, {"image": target, "keypoints": keypoints}, super_resolve=True, generator=None)
    assert set(terms) == {"region_raw", "region_sr"}
    assert terms["region_raw"] > 0 and terms["region_sr"] > 0
    # Landmarks left in 128-px units would put the 32² mouth box outside the image: the term would vanish.
    assert RegionLoss()(output["image_raw"], F.interpolate(target, size=(32, 32), mode="area"), keypoints) == 0
    outside = target.clone()
    outside[:, :, :16] = 1.0
    _, terms = loss({"image_raw": F.interpolate(outside, size=(32, 32), mode="area")}, {"image": target, "keypoints": keypoints}, False, None)
    assert terms["region_raw"] == 0
    nothing = AnimationLoss(LossWeights(perceptual=0, identity=0, tv=0, monotonic=0, pixel=0, region=0))
    total, terms = nothing({"image_raw": torch.zeros(1, 3, 8, 8)}, {"image": target, "keypoints": keypoints}, False, None)
    assert terms == {} and isinstance(total, torch.Tensor) and total == 0


def test_animation_loss_from_the_config_presets(weight_files):
    release = OmegaConf.load(REPO_ROOT / "configs/loss/release.yaml")
    release.vgg19_path, release.arcface_path = str(weight_files / "vgg19.pth"), str(weight_files / "arcface.pth")
    loss = AnimationLoss.from_config(release)
    assert loss.weights.region == 10 and loss.weights.style_to_perceptual == 250 and not loss.weights.release_eye_bug
    assert loss.perceptual_raw.num_scales == 2 and loss.perceptual_sr.num_scales == 4
    with pytest.raises(ValueError, match=r"loss config: unknown keys \['locall'\]"):
        AnimationLoss.from_config({"locall": 10})


def test_offline_l1_preset_adds_whole_image_l1():
    from otavatar.config import load_loss_preset
    from otavatar.losses.animation import AnimationLoss

    loss = AnimationLoss.from_config(load_loss_preset("offline_l1"), use_regularisers=False)
    g = torch.Generator().manual_seed(0)
    target = {"image": torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, "keypoints": 16 + 32 * torch.rand(1, 68, 2, generator=g)}
    output = {"image_raw": torch.rand(1, 3, 64, 64, generator=g) * 2 - 1}
    _, terms = loss(output, target, super_resolve=False, generator=None)
    assert set(terms) == {"region_raw", "pixel_raw", "l1_raw"}
    assert torch.allclose(terms["l1_raw"], 30 * (output["image_raw"] - target["image"]).abs().mean())


# -- host-device traffic per call (GPU readiness) ----------------------------------------------


def test_region_and_density_losses_build_no_tensors_from_python_data(monkeypatch):
    """Each such tensor is a host-to-device copy on a GPU, every sub-step."""
    keypoints = face_landmarks(2, 64)
    prediction, target = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    constructions = TensorConstructions(monkeypatch)
    RegionLoss()(prediction, target, keypoints)
    sigma = lambda points: points[..., 2:] * 2  # noqa: E731
    monotonic_density_loss(sigma, 2, CPU, num_points=10)
    tv_density_loss(sigma, 2, CPU, num_points=10)
    assert constructions.calls == []


def test_identity_loss_keeps_the_alignment_template_on_its_device(monkeypatch, arcface):
    loss = IdentityLoss(arcface)
    assert torch.equal(loss.template, ARCFACE_TEMPLATE) and "template" not in loss.state_dict()
    keypoints = face_landmarks(2, 64)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    expected = loss(images, images.flip(-1), keypoints)
    constructions = TensorConstructions(monkeypatch)
    # The module-level CPU template is not used (it would be copied to the device on every call).
    monkeypatch.setattr("otavatar.losses.identity.ARCFACE_TEMPLATE", None)
    assert torch.equal(loss(images, images.flip(-1), keypoints), expected)
    assert constructions.calls == []
