import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def one_thread():
    """The machine is shared: one intra-op thread is faster here than contending for two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reference() -> dict:
    """Tensors produced by the public release with random weights (shared/fixtures, copied here)."""
    return torch.load(FIXTURES / "reference_small_seed0.pt", weights_only=True)


@pytest.fixture(scope="session")
def eg3d_manifest() -> dict:
    return json.loads((FIXTURES / "eg3d_ffhq512_64_manifest.json").read_text())


@pytest.fixture(scope="session")
def controller_manifest() -> dict:
    return json.loads((FIXTURES / "controller_manifest.json").read_text())


@pytest.fixture(scope="session")
def reference_generator(reference):
    from otavatar.models.eg3d import TriPlaneGenerator

    generator = TriPlaneGenerator(**reference["generator_kwargs"]).eval()
    generator.load_state_dict(reference["state_dict"], strict=True)
    return generator


@pytest.fixture(scope="session")
def reference_controller(reference):
    from otavatar.models.controller import MotionController

    controller = MotionController.from_reference_config(reference["controller_kwargs"]).eval()
    controller.load_state_dict(reference["controller_state_dict"], strict=True)
    return controller
