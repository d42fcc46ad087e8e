"""The asset registry and the frozen feature networks' weight loading: found, missing, mismatched."""

import re

import pytest
import torch
from torchvision.models import alexnet
from torchvision.models.vgg import cfgs, make_layers

from otavatar.assets import ASSETS, REPO_ROOT, AssetFormatError, MissingAssetError, asset_path, require_asset
from otavatar.losses.identity import ResNetArcFace, load_arcface
from otavatar.metrics.lpips import load_lpips
from otavatar.losses.perceptual import load_vgg19_features


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def empty_asset_folders(tmp_path, monkeypatch):
    """No real asset can leak in from the machine: both look-up folders point at empty directories."""
    monkeypatch.setenv("OTAVATAR_PRETRAINED", str(tmp_path / "pretrained"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def vgg_state() -> dict:
    torch.manual_seed(0)
    return {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}


def test_readme_lists_every_asset():
    readme = (REPO_ROOT / "pretrained" / "README.md").read_text()
    for asset in ASSETS.values():
        assert f"`{asset.filename}`" in readme, asset.filename
        assert asset.source and asset.format and asset.used_by
        assert asset.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", asset.sha256)
        if asset.sha256_prefix:
            assert asset.sha256_prefix in asset.filename and f"`{asset.sha256_prefix}…`" in readme


def test_look_up_order(tmp_path):
    with pytest.raises(KeyError, match="unknown asset 'vgg16'"):
        require_asset("vgg16")
    hub_file = tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"x")
    assert require_asset("vgg19") == hub_file  # torchvision's cache, when pretrained/ has nothing
    own = tmp_path / "pretrained" / "vgg19-dcbb9e9d.pth"
    own.parent.mkdir()
    own.write_bytes(b"x")
    assert require_asset("vgg19") == own  # the project's folder comes first
    assert asset_path("arcface") == tmp_path / "pretrained" / "arcface_resnet18.pth"
    with pytest.raises(MissingAssetError):
        require_asset("arcface")  # not a torch hub file: the cache is not searched
    (tmp_path / "torch_home" / "hub" / "checkpoints" / "arcface_resnet18.pth").write_bytes(b"x")
    with pytest.raises(MissingAssetError):
        require_asset("arcface")
    explicit = tmp_path / "elsewhere.pth"
    explicit.write_bytes(b"x")
    assert require_asset("vgg19", explicit) == explicit


def test_missing_files_say_what_to_put_where(tmp_path):
    expected = tmp_path / "pretrained" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(MissingAssetError) as error:
        load_vgg19_features()
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for part in ("vgg19-dcbb9e9d.pth", f"Put it at {expected}", "hub/checkpoints/vgg19-dcbb9e9d.pth",
                 "download.pytorch.org/models/vgg19-dcbb9e9d.pth", "pretrained/README.md"):
        assert part in message, part
    with pytest.raises(MissingAssetError, match=r"arcface_resnet18.pth .*looked at .*none.pth.*GFPGAN.*pretrained/README.md"):
        load_arcface(tmp_path / "none.pth")
    with pytest.raises(MissingAssetError, match=r"alexnet-owt-7be5be79.pth .*LPIPS.*lpips package"):
        load_lpips()


def test_vgg19_loads_torchvision_weights(tmp_path):
    state = vgg_state()
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "vgg19.pth")
    features = load_vgg19_features(tmp_path / "vgg19.pth")
    assert len(features) == 30 and isinstance(features[29], torch.nn.ReLU)  # up to relu5_1
    reference = make_layers(cfgs["E"])
    reference.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(features(image), reference[:30](image))


def test_mismatched_vgg19_files_name_the_key_and_shapes(tmp_path):
    wrong = tmp_path / "wrong.pth"
    state = vgg_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    del state["features.28.bias"]
    torch.save(state, wrong)
    with pytest.raises(AssetFormatError) as error:
        load_vgg19_features(wrong)
    message = str(error.value)
    assert message.startswith(f"{wrong}: does not fit the vgg19 network")
    assert "features.0.weight: expected shape (64, 3, 3, 3), found (64, 1, 3, 3)" in message
    assert "features.28.bias: missing (expected shape (512,))" in message
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AssetFormatError, match=r"garbage.pth: cannot be read as a vgg19 state dict"):
        load_vgg19_features(tmp_path / "garbage.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(AssetFormatError, match=r"tensor.pth: expected a state dict of tensors .*found Tensor"):
        load_vgg19_features(tmp_path / "tensor.pth")


def test_arcface_loads_gfpgan_names_and_rejects_others(tmp_path):
    torch.manual_seed(0)
    network = ResNetArcFace()
    state = network.state_dict()
    assert {"conv1.weight", "layer1.0.bn0.weight", "layer2.0.downsample.0.weight", "layer4.1.prelu.weight", "fc5.weight", "bn5.running_var"} <= set(state)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")  # a DDP-saved copy
    loaded = load_arcface(tmp_path / "ddp.pth")
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())
    face = torch.rand(2, 1, 128, 128)
    assert torch.equal(loaded(face), network.eval()(face))

    bad = dict(state)
    bad["fc5.weight"] = torch.zeros(512, 100)
    bad["se.fc.0.weight"] = torch.zeros(32, 512)  # an SE ArcFace (use_se=True) is not the reference's network
    torch.save(bad, tmp_path / "wrong.pth")
    with pytest.raises(AssetFormatError) as error:
        load_arcface(tmp_path / "wrong.pth")
    assert "fc5.weight: expected shape (512, 32768), found (512, 100)" in str(error.value)
    assert "se.fc.0.weight: unexpected key (shape (32, 512))" in str(error.value)


def test_lpips_uses_the_local_alexnet(tmp_path):
    torch.manual_seed(0)
    backbone = alexnet(weights=None).features
    torch.save({f"features.{k}": v for k, v in backbone.state_dict().items()}, tmp_path / "alexnet.pth")
    model = load_lpips(tmp_path / "alexnet.pth")
    assert torch.equal(getattr(model.net.slice2, "3").weight, backbone[3].weight)
    assert torch.equal(getattr(model.net.slice5, "10").bias, backbone[10].bias)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    assert model(image, image).item() == 0
    assert model(image, (image + 0.2 * torch.randn_like(image)).clamp(-1, 1)).item() > 0
    state = {f"features.{k}": v for k, v in backbone.state_dict().items()}
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(AssetFormatError, match=r"features.3.weight: expected shape \(192, 64, 5, 5\), found \(192, 64, 3, 3\)"):
        load_lpips(tmp_path / "wrong.pth")


def test_cached_target_features_give_the_same_loss(tmp_path):
    """Inversion keeps the target's VGG and ArcFace features and region crops in target['cache']: same values, computed once."""
    from otavatar.config import load_loss_preset
    from otavatar.losses.animation import AnimationLoss

    torch.save(vgg_state(), tmp_path / "vgg19.pth")
    torch.save(ResNetArcFace().state_dict(), tmp_path / "arcface.pth")
    config = load_loss_preset("release")
    config.vgg19_path, config.arcface_path = str(tmp_path / "vgg19.pth"), str(tmp_path / "arcface.pth")
    loss = AnimationLoss.from_config(config, use_regularisers=False)
    g = torch.Generator().manual_seed(0)
    target = {"image": torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, "keypoints": 32 + 64 * torch.rand(1, 68, 2, generator=g)}
    output = {"image_raw": torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, "image": torch.rand(1, 3, 128, 128, generator=g) * 2 - 1}
    expected, expected_terms = loss(output, target, super_resolve=True, generator=None)
    cached = {**target, "cache": {}}
    first, _ = loss(output, cached, super_resolve=True, generator=None)
    assert set(cached["cache"]) == {"raw", "sr"} and len(cached["cache"]["sr"]["perceptual"]) == loss.perceptual_sr.num_scales
    assert set(cached["cache"]["sr"]["region"]) == {"mouth", "left_eye", "right_eye"}
    second, terms = loss(output, cached, super_resolve=True, generator=None)
    assert {"perceptual_raw", "perceptual_sr", "identity_raw", "identity_sr", "region_raw", "region_sr"} <= set(terms)
    assert terms["region_sr"] == expected_terms["region_sr"] and terms["region_sr"] > 0
    assert torch.equal(first, expected) and torch.equal(second, expected)
