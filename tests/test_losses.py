"""Animation losses: perceptual/style, regions, identity, pixel, density regularisers, weight loading."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg19

from otavatar.assets import MissingAssetError
from otavatar.losses.animation import AnimationLoss, LossWeights, pixel_loss
from otavatar.losses.identity import ARCFACE_TEMPLATE, IdentityLoss, ResNetArcFace, align_faces, load_arcface, similarity_transform
from otavatar.losses.perceptual import PerceptualLoss, gram_matrix, load_vgg19_features
from otavatar.losses.region import RegionLoss, landmark_boxes
from otavatar.losses.regularisers import monotonic_density_loss, motion_code_l1, tv_density_loss


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random weights in the real formats: torchvision's VGG19 features, GFPGAN's ArcFace (with a DDP prefix)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}, folder / "vgg19.pth")
    arcface = ResNetArcFace()
    for module in arcface.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save({f"module.{k}": v for k, v in arcface.state_dict().items()}, folder / "arcface.pth")
    return folder


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


def test_gram_matrix_by_hand():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    # F = [[1,2,3,4],[0,1,0,1]]; F Fᵀ = [[30, 6], [6, 2]]; / (C·H·W = 8)
    assert torch.allclose(gram_matrix(features), torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8)


def test_perceptual_loss_matches_a_hand_computation():
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1), nn.ReLU())
    loss = PerceptualLoss(features, num_scales=2, style_weight=250.0, layers=(1, 3))
    torch.manual_seed(1)
    prediction, target = torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1

    def feats(x):
        x = ((x + 1) / 2 - loss.mean) / loss.std
        a = features[1](features[0](x))
        return [a, features[3](features[2](a))]

    expected = 0.0
    for scale, (p, t) in enumerate([(prediction, target), (F.interpolate(prediction, scale_factor=0.5, mode="bilinear"), F.interpolate(target, scale_factor=0.5, mode="bilinear"))]):
        for fp, ft in zip(feats(p), feats(t)):
            expected = expected + (fp - ft).abs().mean()
            if scale == 0:
                expected = expected + 250 * (gram_matrix(fp) - gram_matrix(ft)).abs().mean()
    assert torch.allclose(loss(prediction, target), expected)


def test_vgg_perceptual_is_zero_for_identical_images_and_reaches_the_prediction(weight_files):
    loss = PerceptualLoss(load_vgg19_features(weight_files / "vgg19.pth"), num_scales=2)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(target, target) == 0
    prediction = target.clone().add_(0.1 * torch.randn_like(target)).requires_grad_(True)
    value = loss(prediction, target)
    value.backward()
    assert value > 0 and prediction.grad.abs().sum() > 0


def test_landmark_boxes_are_padded_and_clipped():
    keypoints = torch.zeros(1, 68, 2)
    keypoints[0, 48:68] = torch.tensor([[100.7, 300.2], [140.0, 320.9]]).repeat(10, 1)
    box = landmark_boxes(keypoints, range(48, 68), 10, 512)
    assert box.tolist() == [[90.0, 290.0, 150.0, 330.0]]
    keypoints[0, 36:42] = torch.tensor([[3.0, 5.0], [30.0, 20.0]]).repeat(3, 1)
    assert landmark_boxes(keypoints, range(36, 42), 20, 512).tolist() == [[0.0, 0.0, 50.0, 40.0]]
    keypoints[0, 42:48] = torch.tensor([[60.0, 60.0], [63.5, 62.0]]).repeat(3, 1)
    # At 64²: padding int(20/512·64) = 2; the right edge is clipped to 63.
    assert landmark_boxes(keypoints, range(42, 48), 20, 64).tolist() == [[58.0, 58.0, 63.0, 63.0]]


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


def test_similarity_transform_recovers_a_known_transform():
    angle = torch.tensor(0.3)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    source = torch.rand(1, 5, 2) * 100
    destination = 1.7 * source @ rotation.T + torch.tensor([5.0, -3.0])
    matrix = similarity_transform(source, destination).float()
    assert torch.allclose(matrix[0, :, :2], 1.7 * rotation, atol=1e-5)
    assert torch.allclose(matrix[0, :, 2], torch.tensor([5.0, -3.0]), atol=1e-3)


def test_alignment_puts_the_five_points_on_the_template():
    """A face whose five points are the template scaled by 1.5 and shifted lands back on the template."""
    points = ARCFACE_TEMPLATE * 1.5 + torch.tensor([20.0, 10.0])
    keypoints = torch.zeros(1, 68, 2)
    for indices, point in zip(([36, 39], [42, 45], [30], [48], [54]), points):
        keypoints[0, indices] = point
    image = torch.full((1, 3, 256, 256), -1.0)
    for x, y in points.round().long().tolist():
        image[:, :, y - 2 : y + 3, x - 2 : x + 3] = 1.0
    aligned = align_faces(image, keypoints)
    assert aligned.shape == (1, 1, 128, 128)
    for x, y in ARCFACE_TEMPLATE.round().long().tolist():
        assert aligned[0, 0, y, x] > 0.5, (x, y)


def test_identity_loss(weight_files):
    loss = IdentityLoss(load_arcface(weight_files / "arcface.pth"))
    keypoints = face_landmarks(2, 64)
    target = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(target, target, keypoints).abs() < 1e-6
    prediction = torch.rand(2, 3, 64, 64, requires_grad=True)
    value = loss(prediction * 2 - 1, target, keypoints)
    value.backward()
    assert value > 0 and prediction.grad.abs().sum() > 0


def test_pixel_loss_resizes_the_target():
    target = torch.ones(1, 3, 8, 8)
    assert pixel_loss(torch.ones(1, 3, 4, 4), target) == 0
    assert pixel_loss(torch.zeros(1, 3, 4, 4), target) == pytest.approx(0.5)


def test_density_regularisers():
    constant = lambda points: torch.ones(*points.shape[:2], 1)  # noqa: E731
    assert tv_density_loss(constant, 2, torch.device("cpu")) == 0
    assert monotonic_density_loss(constant, 2, torch.device("cpu")) == 0
    rising_with_z = lambda points: points[..., 2:]  # noqa: E731 - denser in front: violates monotonicity
    assert monotonic_density_loss(rising_with_z, 2, torch.device("cpu")) == pytest.approx(1 / 256, rel=1e-4)
    assert tv_density_loss(rising_with_z, 2, torch.device("cpu")) > 0
    assert motion_code_l1(torch.full((1, 14, 512), -0.5)) == 0.5


def test_missing_and_mismatched_weight_files_say_what_to_do(tmp_path):
    with pytest.raises(MissingAssetError, match=r"vgg19-dcbb9e9d.pth .* not found at .*nope.pth.*download.pytorch.org.*pretrained/README.md"):
        load_vgg19_features(tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match=r"wrong.pth: not torchvision VGG19 weights:\n  features.0.weight: missing"):
        load_vgg19_features(wrong)
    state = ResNetArcFace().state_dict()
    state["fc5.weight"] = torch.zeros(512, 100)
    torch.save(state, wrong)
    with pytest.raises(ValueError, match=r"fc5.weight: expected shape \(512, 32768\), found \(512, 100\)"):
        load_arcface(wrong)
    with pytest.raises(MissingAssetError, match="arcface_resnet18.pth .*GFPGAN"):
        load_arcface(tmp_path / "none.pth")


def test_animation_loss_terms(weight_files):
    from tests.helpers import micro_animator

    generator = micro_animator().generator
    weights = LossWeights(vgg19_path=str(weight_files / "vgg19.pth"), arcface_path=str(weight_files / "arcface.pth"), motion_code=0.1)
    loss = AnimationLoss(weights)
    target = {"image": torch.rand(1, 3, 128, 128) * 2 - 1, "keypoints": face_landmarks(1, 128)}
    planes = torch.randn(1, 96, 64, 64, requires_grad=True)
    output = {
        "image_raw": F.interpolate(target["image"], size=(32, 32), mode="area").requires_grad_(True),
        "image": target["image"].clone().requires_grad_(True),
        "planes": planes,
        "motion_code": torch.zeros(1, 10, 512),
    }
    total, terms = loss(output, target, super_resolve=True, generator=generator)
    assert set(terms) == {f"{t}_{r}" for t in ("perceptual", "region", "pixel", "identity") for r in ("raw", "sr")} | {"tv", "monotonic", "motion_code"}
    for name in terms:
        if name not in ("tv", "monotonic"):
            assert terms[name].abs() < 1e-5, name
    total.backward()
    assert planes.grad is not None
    without = AnimationLoss(LossWeights(perceptual=0, identity=0, tv=0, monotonic=0))
    _, terms = without(output, target, super_resolve=False, generator=generator)
    assert set(terms) == {"region_raw", "pixel_raw"}
