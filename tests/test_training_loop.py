"""The training run: resumable batches, checkpoints, resume equality, config checks."""

import pytest
import torch
from torch.utils.data import Dataset

from otavatar.training.batches import IterationBatchSampler, SeededItems, training_batches
from otavatar.training.distributed import DistributedContext
from otavatar.training.loop import ConfigMismatchError, RunSettings, train
from otavatar.training.trainer import DecouplingTrainer
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import frontal_cameras, nano_animator, pixel_loss

SINGLE = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


class RandomPairs(Dataset):
    """Stand-in data whose items draw from the global RNG, as real datasets do when sampling frames."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> dict:
        image = torch.rand(2, 3, 128, 128) * 2 - 1
        return {
            "image": image + index * 0.01,
            "motion": torch.randn(2, 70, 27) * 0.1,
            "camera": frontal_cameras(1, 2)[0],
            "keypoints": torch.rand(2, 68, 2) * 128,
        }


def test_batches_depend_only_on_the_iteration():
    full = list(IterationBatchSampler(7, 2, seed=3, start_iteration=0, end_iteration=6))
    resumed = list(IterationBatchSampler(7, 2, seed=3, start_iteration=4, end_iteration=6))
    assert full[4:] == resumed
    ranks = [IterationBatchSampler(7, 2, seed=3, rank=r, world_size=2).batch(0) for r in (0, 1)]
    assert not set(i for i, _ in ranks[0]) & set(i for i, _ in ranks[1])
    a = next(iter(training_batches(RandomPairs(), 2, 0, 3, 4)))
    torch.rand(5)  # the caller's RNG use does not change what the stream yields
    b = next(iter(training_batches(RandomPairs(), 2, 0, 3, 4, num_workers=1)))
    assert torch.equal(a["image"], b["image"])


def test_seeded_items_leave_the_callers_rng_alone():
    items = SeededItems(RandomPairs())
    state = torch.get_rng_state()
    first = items[(1, 42)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(items[(1, 42)]["motion"], first["motion"])


def _run(tmp_path, iterations, **overrides):
    settings = TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=1)
    run = RunSettings(run_dir=tmp_path, iterations=iterations, batch_size=1, checkpoint_every=2, log_every=1, image_every=2, **overrides)
    config = {"model": {"name": "micro"}, "trainer": {"identity_steps": 1, "motion_steps": 1}}
    animator = nano_animator()
    path = train(animator, pixel_loss, RandomPairs(), settings, run, config, SINGLE)
    return animator, path


def test_training_2_iterations_equals_1_then_resume_then_1(tmp_path):
    """The resumed run restores weights, both optimisers' states, the EMAs and the RNG states (the rendering
    jitter draws from it) and fetches iteration 2's batch: its networks equal the straight run's."""
    straight, path = _run(tmp_path / "straight", 2)
    assert path.name == "checkpoint_000000002.pt"
    _, first = _run(tmp_path / "resumed", 1)
    assert first.name == "checkpoint_000000001.pt"  # the last iteration is saved whatever checkpoint_every says
    resumed, _ = _run(tmp_path / "resumed", 2)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert (a - b).abs().max() <= 1e-6, name
    assert (tmp_path / "straight" / "images" / "iteration_000000002.png").is_file()
    assert "iteration 2" in (tmp_path / "straight" / "log.txt").read_text()
    assert any((tmp_path / "straight" / "tensorboard").iterdir())


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    _, path = _run(tmp_path, 0)  # a run of no iterations still saves its starting point
    assert path.name == "checkpoint_000000000.pt"
    settings = TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=1)
    run = RunSettings(run_dir=tmp_path, iterations=4, batch_size=1)
    config = {"model": {"name": "other"}, "trainer": {"identity_steps": 1, "motion_steps": 1}}
    with pytest.raises(ConfigMismatchError, match="model.name: 'micro' in the checkpoint, 'other' now"):
        train(nano_animator(), pixel_loss, RandomPairs(), settings, run, config, SINGLE)


def test_batches_are_pinned_when_the_model_is_on_an_accelerator(tmp_path, monkeypatch):
    """Pinned host memory lets the loop's non_blocking copies overlap computation (a meta device stands in for CUDA)."""
    from otavatar.training import loop

    seen = {}

    class Stop(Exception):
        pass

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(loop, "training_batches", record)
    accelerator = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("meta"))
    run = RunSettings(run_dir=tmp_path, iterations=1, batch_size=2)
    with pytest.raises(Stop):
        train(nano_animator(), pixel_loss, RandomPairs(), TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0), run, {}, accelerator)
    assert seen["pin_memory"] is True
    with pytest.raises(Stop):
        train(nano_animator(), pixel_loss, RandomPairs(), TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0), run, {}, SINGLE)
    assert seen["pin_memory"] is False


def _optimiser_states(trainer):
    return [state for optimizer in (trainer.controller_optimizer, trainer.generator_optimizer) for state in optimizer.state.values()]


# Copying weights into meta parameters is a no-op that torch warns about; the device is only a stand-in.
@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_resuming_onto_an_accelerator_restores_rng_states_from_the_cpu(tmp_path):
    """The GPU resume crash, emulated: the networks on the meta device stand in for CUDA. RNG states
    must stay CPU byte tensors (``torch.set_rng_state`` refuses others), so the checkpoint is read to
    the CPU; ``load_state_dict`` moves weights and optimiser states to the networks' device."""
    from otavatar.training import checkpointing
    from otavatar.training.loop import _resume
    from tests.helpers import random_batch

    settings = TrainerSettings(identity_steps=1, motion_steps=1, sr_steps=0)
    config = {"model": {"name": "micro"}, "trainer": {"identity_steps": 1}}
    with torch.random.fork_rng(devices=[]):
        trained = DecouplingTrainer(nano_animator(), pixel_loss, settings)
        trained.train_step(random_batch(0, batch=1, frames=1))
        state = {**trained.state_dict(), "rng": [checkpointing.rng_state()], "config": config}
        checkpointing.save_checkpoint(state, tmp_path, 1, keep=1)
        accelerator = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("meta"))
        resumed = DecouplingTrainer(nano_animator().to(accelerator.device), pixel_loss, settings)
        start, path = _resume(resumed, RunSettings(run_dir=tmp_path, iterations=2, batch_size=1), config, accelerator, lambda _: None)
    assert start == 1 and path == tmp_path / "checkpoint_000000001.pt" and resumed.iteration == 1
    states = _optimiser_states(resumed)
    assert states and all(
        value.device.type == "meta" for state in states for name, value in state.items() if torch.is_tensor(value) and name != "step"
    )


def test_the_seed_draws_the_initial_networks_whatever_the_process_did_before(one_thread):
    from otavatar.config import compose_config
    from otavatar.training.from_config import build_training_animator

    composed = compose_config()  # composed once: only the seed differs between the runs

    def controller(seed: int) -> dict[str, torch.Tensor]:
        torch.rand(7)  # other work in the same process (e.g. the previous benchmark variant) moves the global RNG
        cfg = composed.copy()
        cfg.seed = seed
        return {name: p.detach().clone() for name, p in build_training_animator(cfg).controller.named_parameters()}

    first, again, other = controller(0), controller(0), controller(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    weights = [name for name in first if name.endswith("weight")]  # the biases start at zero whatever the seed
    assert len(weights) == 7 and not any(torch.equal(first[name], other[name]) for name in weights)
