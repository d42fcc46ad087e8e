import json
import os
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the cores are shared among the workers: one worker's torch (and the scripts
    it starts) oversubscribing them costs more than it gains."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // workers)
        torch.set_num_threads(threads)
        # numpy's BLAS was loaded (and sized) before this hook: its threads spinning against the other worker cost
        # several times the CPU of one thread (FID's 2048² eigendecompositions); the environment is for the scripts tests start.
        threadpool_limits(threads, user_api="blas")
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="module")
def one_thread():
    """The machine is shared: one intra-op thread (torch's and numpy's BLAS) is faster here than contending for two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
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
