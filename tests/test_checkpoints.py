"""Loading released weights: EG3D .pkl (restricted unpickler), .pth, OTAvatar's training checkpoint."""

import os
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from otavatar.checkpoints import CheckpointError, load_generator, load_release_animator, read_eg3d_pickle
from otavatar.config import load_model_preset
from otavatar.models.eg3d import TriPlaneGenerator
from tests.eg3d_pickle import eg3d_pickle_bytes
from tests.helpers import micro_config


@pytest.fixture(scope="module")
def eg3d_pickle(tmp_path_factory, reference, reference_generator):
    """A pickle in NVIDIA's structure with the fixture's weights and the extra ``dataset_label_std`` buffer."""
    reference_generator.register_buffer("dataset_label_std", torch.ones(25))
    try:
        data = eg3d_pickle_bytes(reference_generator, reference["generator_kwargs"])
    finally:
        del reference_generator._buffers["dataset_label_std"]
    path = tmp_path_factory.mktemp("eg3d") / "ffhq-small.pkl"
    path.write_bytes(data)
    return path


def test_pickle_yields_the_state_dict_in_order_without_running_its_code(eg3d_pickle, reference):
    content = read_eg3d_pickle(eg3d_pickle)
    names = [k for k in content["state_dict"] if k != "dataset_label_std"]
    assert names == list(reference["state_dict"])
    assert all(torch.equal(content["state_dict"][k], reference["state_dict"][k]) for k in names)
    assert content["init_kwargs"]["channel_base"] == 2048
    assert content["neural_rendering_resolution"] == 64


def test_generator_loads_from_the_pickle_and_matches_the_fixture(eg3d_pickle, reference):
    generator = load_generator(eg3d_pickle).eval()
    with torch.no_grad():
        out = generator.synthesis(reference["ws"][:1], reference["c"][:1], deterministic=True)
    assert (out["image_raw"] - reference["image_raw"][:1]).abs().max() <= 1e-4


def test_generator_loads_from_pth_and_bare_state_dicts(tmp_path, reference):
    wrapped, bare = tmp_path / "g.pth", tmp_path / "bare.pt"
    torch.save({"G_ema": {**reference["state_dict"], "dataset_label_std": torch.ones(25)}}, wrapped)
    torch.save(reference["state_dict"], bare)
    for path in (wrapped, bare):
        generator = load_generator(path, reference["generator_kwargs"])
        assert torch.equal(generator.decoder.net[0].weight, reference["state_dict"]["decoder.net.0.weight"])
    with pytest.raises(CheckpointError, match="does not record its architecture"):
        load_generator(bare)


def test_pickle_with_a_foreign_global_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": os.system}, protocol=4))
    with pytest.raises(CheckpointError, match=r"evil.pkl: refusing to load global posix.system"):
        read_eg3d_pickle(path)


def test_truncated_and_wrong_files_name_the_file(tmp_path, eg3d_pickle, reference):
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(eg3d_pickle.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated.pkl: not a readable EG3D pickle"):
        read_eg3d_pickle(truncated)
    no_network = tmp_path / "empty.pkl"
    no_network.write_bytes(pickle.dumps({"D": None}))
    with pytest.raises(CheckpointError, match=r"empty.pkl: expected a dict with key 'G_ema', found \['D'\]"):
        read_eg3d_pickle(no_network)
    with pytest.raises(FileNotFoundError, match="missing.pth: file does not exist"):
        load_generator(tmp_path / "missing.pth", reference["generator_kwargs"])


def test_missing_key_and_shape_mismatch_are_listed(tmp_path, reference):
    state = dict(reference["state_dict"])
    del state["decoder.net.2.bias"]
    state["decoder.net.0.weight"] = torch.zeros(64, 16)
    path = tmp_path / "broken.pth"
    torch.save({"G_ema": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_generator(path, reference["generator_kwargs"])
    message = str(error.value)
    assert "broken.pth: the generator weights do not fit the model" in message
    assert "decoder.net.2.bias: missing (expected shape (33,))" in message
    assert "decoder.net.0.weight: expected shape (64, 32), found (64, 16)" in message


def _release_checkpoint(reference, path, live_offset=0.0):
    controller = reference["controller_state_dict"]
    generator = reference["state_dict"]
    torch.save(
        {
            "net_Warp": {f"module.{k}": v + live_offset for k, v in controller.items()},
            "net_Warp_ema": controller,
            "opt_Warp": None,
            "sch_Warp": None,
            "net_G": {f"module.{k}": v for k, v in generator.items()},
            "net_G_ema": generator,
            "opt_G": None,
            "sch_G": None,
            "current_epoch": 5,
            "current_iteration": 2000,
        },
        path,
    )


def test_release_training_checkpoint_gives_the_ema_animator(tmp_path, reference):
    path = tmp_path / "epoch_00005_iteration_000002000_checkpoint.pt"
    _release_checkpoint(reference, path, live_offset=1.0)
    controller_kwargs = dict(load_model_preset("eg3d_ffhq512").controller)
    animator = load_release_animator(path, reference["generator_kwargs"], controller_kwargs).eval()
    with torch.no_grad():
        w_x = animator.controller(reference["motion"])
        out = animator.render(reference["ws"][:, :1], reference["motion"], reference["c"], deterministic=True, super_resolve=False)
    assert (w_x - reference["w_x"]).abs().max() <= 1e-5
    assert (out["image_raw"] - reference["animated_image_raw"]).abs().max() <= 1e-4
    live = load_release_animator(path, reference["generator_kwargs"], controller_kwargs, use_ema=False)
    assert torch.equal(live.controller.direction.weight, reference["controller_state_dict"]["direction.weight"] + 1.0)


def test_a_file_that_is_not_a_release_checkpoint_is_refused(tmp_path, reference):
    path = tmp_path / "other.pt"
    torch.save({"net_G": {}}, path)
    with pytest.raises(CheckpointError, match=r"other.pt: not an OTAvatar training checkpoint; missing keys \['net_Warp'"):
        load_release_animator(path, reference["generator_kwargs"], {})


def test_a_generator_trained_for_another_preset_names_the_differing_options(tmp_path):
    """A pretrained file that records its architecture says which preset options differ, in one line."""
    trained_with = OmegaConf.to_container(micro_config().generator, resolve=True)
    generator = TriPlaneGenerator(**trained_with)
    path = tmp_path / "older.pt"
    torch.save({"G_ema": generator.state_dict(), "model": {"generator": trained_with}}, path)
    asked = {**trained_with, "plane_resolution": 2 * trained_with["plane_resolution"]}
    with pytest.raises(CheckpointError) as error:
        load_generator(path, asked)
    message = str(error.value)
    assert "\n" not in message
    assert f"plane_resolution: {trained_with['plane_resolution']} → {asked['plane_resolution']}" in message
    assert "neural_rendering_resolution" not in message
    assert "scripts/pretrain_generator.py" in message
    assert isinstance(load_generator(path, trained_with), TriPlaneGenerator)
