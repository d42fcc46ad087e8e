"""Decoupling-by-inverting trainer: schedule, freezing, gradient averaging across processes."""

import copy
import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.multiprocessing as mp

from otavatar.training import checkpointing
from otavatar.training.schedule import inner_schedule
from otavatar.config import build_animator
from otavatar.errors import InputError
from otavatar.training.motion_targets import MotionTargetBuffer, regression_loss
from otavatar.training.trainer import DecouplingTrainer, NonFiniteLossError
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import HostReads, nano_animator, nano_config, pixel_loss, random_batch


def settings(**overrides) -> TrainerSettings:
    base = dict(identity_steps=3, motion_steps=2, sr_steps=1, deterministic_rendering=True)
    base.update(overrides)
    return TrainerSettings(**base)


def test_schedules():
    successive = inner_schedule(90, 10, "successive", 10)
    assert [s.update_controller for s in successive] == [False] * 90 + [True] * 10
    assert not any(s.update_identity for s in successive[90:]) and all(s.update_identity for s in successive[:90])
    assert [s.super_resolve for s in successive] == [False] * 90 + [True] * 10
    alternating = inner_schedule(90, 10, "alternating", 10)
    assert [s.index for s in alternating if s.update_controller] == list(range(9, 100, 10))
    joint = inner_schedule(90, 10, "joint", 10)
    assert all(s.update_controller and s.update_identity for s in joint)
    with pytest.raises(ValueError, match="trainer.schedule: expected one of"):
        inner_schedule(1, 1, "random", 0)


def test_controller_frozen_during_identity_steps_and_identity_frozen_during_motion_steps():
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_steps=2, motion_steps=2))
    snapshots = []

    def record(step, identity_code, correction):
        controller = torch.cat([p.detach().flatten().clone() for p in animator.controller.parameters()])
        snapshots.append((step, identity_code.clone(), correction.clone(), controller))

    generator_before = copy.deepcopy(trainer.ema.generator.state_dict())
    identity_code, correction, _ = trainer.invert_identity(random_batch(0, frames=1), on_step=record)
    snapshots.append((None, identity_code, correction, torch.cat([p.detach().flatten() for p in animator.controller.parameters()])))
    for (step, w0, k0, c0), (_, w1, k1, c1) in zip(snapshots, snapshots[1:]):
        if step.update_identity:
            assert not torch.equal(w0, w1) and not torch.equal(k0, k1)
            assert torch.equal(c0, c1), f"controller changed during identity sub-step {step.index}"
        else:
            assert torch.equal(w0, w1) and torch.equal(k0, k1), f"identity code changed during motion sub-step {step.index}"
            assert not torch.equal(c0, c1)
    # The inversion renders with the EMA generator, which never trains.
    for name, value in trainer.ema.generator.state_dict().items():
        assert torch.equal(value, generator_before[name]), name
    assert identity_code.shape == (2, 1, 512)


def test_w_plus_identity_and_frozen_generator():
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_space="w_plus", finetune_generator=False, identity_steps=1, motion_steps=1))
    before = copy.deepcopy(animator.generator.state_dict())
    batch = random_batch(1, frames=1)
    identity_code, _, _ = trainer.invert_identity(batch)
    assert identity_code.shape == (2, animator.generator.num_ws, 512)
    trainer.refine(batch, identity_code, torch.zeros(2, 18))
    assert all(torch.equal(v, before[k]) for k, v in animator.generator.state_dict().items())


def test_warm_started_identity_resumes_each_persons_last_code_and_survives_a_checkpoint(tmp_path):
    def starting_code(trainer, batch):
        start = []
        trainer.invert_identity(batch, on_step=lambda step, code, correction: start.append((code.clone(), correction.clone())) if step.index == 0 else None)
        return start[0]

    warm = settings(identity_warm_start=True, identity_steps=1, motion_steps=1)
    trainer = DecouplingTrainer(nano_animator(), pixel_loss, warm)
    w_avg = trainer.ema.generator.w_avg
    first = random_batch(0, frames=1) | {"person": torch.tensor([4, 7])}
    start, _ = starting_code(trainer, first)
    assert torch.equal(start, w_avg.expand(2, 1, -1)), "a person seen for the first time starts from w_avg"
    reached, reached_correction, _ = trainer.invert_identity(first)
    second = random_batch(1, frames=1) | {"person": torch.tensor([9, 4])}
    # Through a checkpoint file, read back as every checkpoint is (weights_only: nothing in it can run).
    saved = checkpointing.save_checkpoint({**trainer.state_dict(), "rng": [checkpointing.rng_state()], "config": {}}, tmp_path, 1, keep=1)
    restored = DecouplingTrainer(nano_animator(), pixel_loss, warm)
    restored.load_state_dict(checkpointing.load_checkpoint(saved))
    start, correction = starting_code(restored, second)
    assert torch.equal(start[0], w_avg.reshape(1, -1)) and torch.equal(correction[0], torch.zeros(18))
    assert torch.equal(start[1], reached[0]) and torch.equal(correction[1], reached_correction[0])
    assert not torch.equal(reached[0], w_avg.reshape(1, -1))
    # Without the switch (the paper and the release) every batch starts afresh.
    fresh = DecouplingTrainer(nano_animator(), pixel_loss, settings(identity_steps=1, motion_steps=1))
    fresh.load_state_dict(trainer.state_dict())
    start, _ = starting_code(fresh, second)
    assert torch.equal(start, w_avg.expand(2, 1, -1))
    with pytest.raises(ValueError, match="identity_warm_start: the batch has no 'person' key"):
        trainer.invert_identity(random_batch(2, frames=1))


@pytest.mark.parametrize("layer_offsets", [True, False])
def test_fitted_motion_targets_teach_the_controller_by_regression(tmp_path, layer_offsets):
    """motion_target_steps: each frame's w_x is fitted from C(x) with w_id and C frozen (the rendering loss falls),
    stored with x, and C's motion sub-steps regress onto the stored codes; the refinement then finetunes G alone."""
    torch.manual_seed(0)
    config = nano_config()
    config.controller.layer_offsets = layer_offsets
    animator = build_animator(config)
    animator.generator.backbone.mapping.w_avg.normal_(0, 0.5)
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_steps=1, motion_target_steps=4, motion_target_lr=0.005, motion_steps=3, sr_steps=0))
    batch = random_batch(0)
    fitted_losses = []

    def fit_losses(step, identity_code, correction):
        if step.index == trainer.settings.identity_steps:
            with torch.no_grad():
                codes = torch.stack([animator.controller(batch["motion"][:, f]) for f in range(2)], 1)
                fitted_losses.append(float(trainer._frames_loss(trainer.ema, identity_code, correction, batch, False, range(2), motion_codes=codes)[0]))

    identity_code, correction, terms = trainer.invert_identity(batch, on_step=fit_losses)
    buffer = trainer.motion_targets
    layers = animator.generator.num_ws if layer_offsets else 1
    assert len(buffer) == 4 and buffer.code[:4].shape == (4, layers, 512)
    assert torch.equal(buffer.motion[:4], batch["motion"].flatten(0, 1))
    fitted = buffer.code[:4].reshape(2, 2, layers, 512).expand(-1, -1, animator.generator.num_ws, -1)
    with torch.no_grad():
        after = float(trainer._frames_loss(trainer.ema, identity_code, correction, batch, False, range(2), motion_codes=fitted)[0])
    assert after < fitted_losses[0]
    assert {"motion_target/raw", "motion_target/regression"} <= set(terms)
    # Regression steps move C toward the fitted codes.
    with torch.no_grad():
        before = regression_loss(animator.controller(buffer.motion[:4]), buffer.code[:4])
    for _ in range(20):
        trainer._regress_controller(8)
    with torch.no_grad():
        assert regression_loss(animator.controller(buffer.motion[:4]), buffer.code[:4]) < 0.5 * before
    # The refinement finetunes G and leaves C to the targets.
    controller_state = copy.deepcopy(animator.controller.state_dict())
    generator_state = copy.deepcopy(animator.generator.state_dict())
    trainer.refine(batch, identity_code, correction)
    assert all(torch.equal(v, controller_state[k]) for k, v in animator.controller.state_dict().items())
    assert any(not torch.equal(v, generator_state[k]) for k, v in animator.generator.state_dict().items())
    # The buffer survives a checkpoint file.
    saved = checkpointing.save_checkpoint({**trainer.state_dict(), "rng": [checkpointing.rng_state()], "config": {}}, tmp_path, 1, keep=1)
    restored = DecouplingTrainer(build_animator(config), pixel_loss, settings(identity_steps=1, motion_target_steps=4, motion_target_lr=0.005, motion_steps=3, sr_steps=0))
    restored.load_state_dict(checkpointing.load_checkpoint(saved))
    assert restored.motion_targets.count == 4 and torch.equal(restored.motion_targets.code, buffer.code)
    with pytest.raises(InputError, match="trainer.motion_target_steps: fitted motion targets need schedule 'successive' or 'joint', found 'alternating'"):
        settings(motion_target_steps=4, schedule="alternating")
    with pytest.raises(InputError, match="trainer.identity_steps: with fitted motion targets the joint schedule fits w_id within the motion_target_steps; expected 0, found 3"):
        settings(motion_target_steps=4, schedule="joint")
    with pytest.raises(InputError, match="trainer.motion_target_buffer: expected an integer ≥ 1, found 0"):
        settings(motion_target_steps=4, motion_target_buffer=0)
    with pytest.raises(InputError, match="trainer.motion_target_buffer: expected an integer ≥ 1, found 2.5"):
        settings(motion_target_steps=4, motion_target_buffer=2.5)
    with pytest.raises(InputError, match="trainer.motion_target_steps: expected an integer ≥ 0, found -1"):
        settings(motion_target_steps=-1)


def test_the_joint_fit_of_motion_targets_updates_the_identity_code_with_the_codes():
    """The fitted recipe's joint counterpart (schedule joint, N_id 0): the identity code and the correction move
    during the motion-target fit, which lowers the rendering loss; C then only regresses."""
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(schedule="joint", identity_steps=0, motion_target_steps=4, motion_target_lr=0.005, motion_steps=2, sr_steps=0))
    batch = random_batch(0)
    seen = []
    identity_code, correction, terms = trainer.invert_identity(batch, on_step=lambda step, code, corrected: seen.append((step, code.clone(), corrected.clone())))
    assert [step.index for step, _, _ in seen] == [0, 1] and all(step.update_identity and step.update_controller for step, _, _ in seen)
    start_code, start_correction = seen[0][1], seen[0][2]
    assert not torch.equal(start_code, seen[1][1]) and not torch.equal(start_correction, seen[1][2])
    assert torch.equal(seen[1][1], identity_code), "the regression steps leave w_id where the fit put it"
    fitted = trainer.motion_targets.code[:4].unflatten(0, (2, 2)).expand(-1, -1, animator.generator.num_ws, -1)
    with torch.no_grad():
        codes = torch.stack([animator.controller(batch["motion"][:, f]) for f in range(2)], 1)
        before = float(trainer._frames_loss(trainer.ema, start_code, start_correction, batch, False, range(2), motion_codes=codes)[0])
        after = float(trainer._frames_loss(trainer.ema, identity_code, correction, batch, False, range(2), motion_codes=fitted)[0])
    assert after < before and "grad_norm/identity_code" in {f"grad_norm/{k}" for k in trainer.grad_norms}
    assert {"motion_target/raw", "motion_target/regression"} <= set(terms)


def test_motion_target_buffer_keeps_the_most_recent_pairs():
    buffer = MotionTargetBuffer(3)
    with pytest.raises(ValueError, match="nothing stored yet"):
        buffer.sample(1)
    for value in range(5):
        buffer.add(torch.full((1, 70, 27), float(value)), torch.full((1, 1, 512), float(value)))
    assert len(buffer) == 3 and buffer.count == 5
    assert sorted(buffer.code[:, 0, 0].tolist()) == [2.0, 3.0, 4.0]
    motion, code = buffer.sample(16)
    assert motion.shape == (16, 70, 27) and code.shape == (16, 1, 512)
    assert torch.equal(motion[:, 0, 0], code[:, 0, 0]) and set(code[:, 0, 0].tolist()) <= {2.0, 3.0, 4.0}


def test_train_step_updates_live_networks_and_emas():
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_steps=1, motion_steps=1))
    ema_before = copy.deepcopy(trainer.ema.generator.state_dict())
    live_before = copy.deepcopy(animator.generator.state_dict())
    logs = trainer.train_step(random_batch(2))
    assert "refine/raw" in logs and "inversion/sr" in logs
    assert logs["lr/controller"] == 1e-3 and logs["lr/generator"] == 1e-4
    assert {"grad_norm/identity_code", "grad_norm/controller", "grad_norm/generator"} <= set(logs)
    changed = [k for k, v in animator.generator.state_dict().items() if not torch.equal(v, live_before[k])]
    assert changed
    # EMA moved 5 % of the way towards the live weights.
    key = changed[0]
    expected = ema_before[key].lerp(animator.generator.state_dict()[key], 0.05)
    assert torch.allclose(trainer.ema.generator.state_dict()[key], expected, atol=1e-7)


def test_non_finite_loss_names_the_term():
    def broken_loss(output, target, super_resolve, generator):
        value = output["image_raw"].mean() * float("nan")
        return value, {"identity": value}

    trainer = DecouplingTrainer(nano_animator(), broken_loss, settings(identity_steps=1, motion_steps=1))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss in term\(s\) \['identity'\]"):
        trainer.train_step(random_batch(3))


def test_one_host_read_per_optimiser_step_of_c_or_g(monkeypatch):
    """Losses and gradient norms stay on the device; the finiteness check before each step of C
    (motion sub-steps, refinement) is the only read. Identity-only sub-steps read nothing."""
    trainer = DecouplingTrainer(nano_animator(), pixel_loss, settings(identity_steps=1, motion_steps=2))
    batch = random_batch(4, batch=1, frames=2)
    reads = HostReads(monkeypatch)
    logs = trainer.train_step(batch)
    assert [call[:2] for call in reads.calls] == [("item", "sum_over_processes")] * (2 + 2), reads.calls
    reads.clear()
    from otavatar.training.trainer import host_scalars

    scalars = host_scalars(logs)
    assert len(reads.calls) == 1 and all(isinstance(v, float) for v in scalars.values())


def test_finite_loss_with_non_finite_gradients_stops_training():
    def nan_gradient_loss(output, target, super_resolve, generator):
        loss, terms = pixel_loss(output, target, super_resolve, generator)
        return loss + NaNGradient.apply(output["image_raw"]).sum() * 0, terms

    # Motion sub-steps only: in identity sub-steps the NaN gradient would first make w_id, then the loss, NaN.
    trainer = DecouplingTrainer(nano_animator(), nan_gradient_loss, settings(identity_steps=0))
    before = copy.deepcopy(trainer.animator.controller.state_dict())
    with pytest.raises(NonFiniteLossError, match=r"finite loss, non-finite gradient of \['inversion_controller'\]"):
        trainer.train_step(random_batch(3))
    assert all(torch.equal(v, before[k]) for k, v in trainer.animator.controller.state_dict().items())


class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# Every two-process scenario runs in one pair of processes, one scenario after the other, each in a process group
# of its own; each writes its outcome into its own folder, where its test reads it (a scenario that raises leaves
# error_<rank>.txt instead). The pair is forked from this process: a spawned interpreter's start-up and imports
# would be most of what the scenarios cost. Each child runs torch on one thread (as DataLoader's forked workers do).
FAULTS = ("nan_loss_in_an_identity_step", "nan_gradient_in_a_motion_step")


def _gloo_worker(rank: int, world_size: int, ports: list[int], out_dir: str) -> None:
    import traceback

    import torch.distributed as dist

    torch.set_num_threads(1)
    for scenario, port in zip((_averaging_scenario, _non_finite_scenario, _slow_main_scenario), ports):
        folder = os.path.join(out_dir, scenario.__name__.strip("_").removesuffix("_scenario"))
        os.makedirs(folder, exist_ok=True)
        try:
            scenario(rank, world_size, port, folder)
        except Exception:  # noqa: BLE001 - recorded for the scenario's test; the next scenarios still run
            with open(os.path.join(folder, f"error_{rank}.txt"), "w") as handle:
                handle.write(traceback.format_exc())
            if dist.is_initialized():
                dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The folder where the two processes wrote every scenario's outcome."""
    out = tmp_path_factory.mktemp("two_processes")
    context = mp.start_processes(_gloo_worker, args=(2, _free_ports(3), str(out)), nprocs=2, join=False, start_method="fork")
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not finish within 240 s (hang)")
    return out


def _scenario_folder(out, name: str):
    folder = out / name
    errors = [path.read_text() for path in sorted(folder.glob("error_*.txt"))]
    assert not errors, "\n".join(errors)
    return folder


def _averaging_scenario(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank))
    from otavatar.training.distributed import init_distributed, shutdown_distributed

    context = init_distributed("cpu")
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_steps=1, motion_steps=1), world_size=context.world_size)
    batch = random_batch(10 + rank, batch=1, frames=1)
    trainer.refine(batch, torch.zeros(1, 1, 512) + animator.generator.w_avg, torch.zeros(1, 18))
    torch.save({"controller": animator.controller.state_dict(), "generator": animator.generator.state_dict()},
               os.path.join(out_dir, f"refine_{rank}.pt"))
    trainer.train_step(random_batch(20 + rank, batch=1, frames=1))
    torch.save({"controller": animator.controller.state_dict(), "generator": animator.generator.state_dict()},
               os.path.join(out_dir, f"step_{rank}.pt"))
    shutdown_distributed()


def test_two_process_gloo_training_averages_gradients(two_processes):
    folder = _scenario_folder(two_processes, "averaging")
    rank0, rank1 = (torch.load(folder / f"step_{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("controller", "generator"):
        for name, value in rank0[part].items():
            assert torch.equal(value, rank1[part][name]), f"{part}.{name} differs between ranks"

    # One refinement step on the average of the two ranks' gradients, computed in one process
    # (single-threaded like the workers, so the convolutions sum in the same order).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_one_step_on_the_averaged_gradient(folder)
    finally:
        torch.set_num_threads(threads)


def _check_one_step_on_the_averaged_gradient(folder):
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, settings(identity_steps=1, motion_steps=1))
    identity = torch.zeros(1, 1, 512) + animator.generator.w_avg
    parameters = list(animator.controller.parameters()) + trainer.generator_parameters
    gradients = []
    for rank in (0, 1):
        trainer.controller_optimizer.zero_grad(set_to_none=True)
        trainer.generator_optimizer.zero_grad(set_to_none=True)
        loss, _ = trainer._frames_loss(animator, identity, torch.zeros(1, 18), random_batch(10 + rank, batch=1, frames=1), True, [0])
        loss.backward()
        gradients.append([p.grad.clone() if p.grad is not None else None for p in parameters])
    for parameter, g0, g1 in zip(parameters, *gradients):
        parameter.grad = None if g0 is None else (g0 + g1) / 2
    torch.nn.utils.clip_grad_norm_(list(animator.controller.parameters()), 1.0)
    trainer.controller_optimizer.step()
    torch.nn.utils.clip_grad_norm_(trainer.generator_parameters, 1.0)
    trainer.generator_optimizer.step()
    distributed = torch.load(folder / "refine_0.pt", weights_only=True)
    for part, module in (("controller", animator.controller), ("generator", animator.generator)):
        for name, value in module.state_dict().items():
            assert (value - distributed[part][name]).abs().max() <= 1e-6, (f"{part}.{name}", (value - distributed[part][name]).abs().max())


def _non_finite_scenario(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """For each fault in turn (a fresh trainer each), rank 1 injects it; every rank records how its train_step ended."""
    import torch.distributed as dist

    from otavatar.training.distributed import DistributedContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=30))
    for fault in FAULTS:
        calls = []

        def loss(output, target, super_resolve, generator):
            value, terms = pixel_loss(output, target, super_resolve, generator)
            calls.append(len(calls))
            if rank == 1 and fault == "nan_loss_in_an_identity_step" and len(calls) == 1:
                terms["raw"] = terms["raw"] * float("nan")
                return sum(terms.values()), terms
            if rank == 1 and fault == "nan_gradient_in_a_motion_step" and len(calls) == 3:
                return value + NaNGradient.apply(output["image_raw"]).sum() * 0, terms
            return value, terms

        context = DistributedContext(rank, rank, world_size, torch.device("cpu"))
        trainer = DecouplingTrainer(nano_animator(), loss, settings(identity_steps=2, motion_steps=1), world_size=context.world_size)
        try:
            trainer.train_step(random_batch(30 + rank, batch=1, frames=1))
            outcome = "finished"
        except NonFiniteLossError as error:
            outcome = f"NonFiniteLossError: {error}"
        except Exception as error:  # noqa: BLE001 - recorded for the test's message
            outcome = f"{type(error).__name__}: {error}"
        networks = (trainer.animator, trainer.ema)
        finite = all(torch.isfinite(p).all() for network in networks for p in network.parameters())
        with open(os.path.join(out_dir, f"{fault}_{rank}.txt"), "w") as handle:
            handle.write(f"{'finite' if finite else 'NON-FINITE'} parameters; {outcome}")
    dist.destroy_process_group()


@pytest.mark.parametrize(
    "fault, local_message",
    [
        ("nan_loss_in_an_identity_step", r"non-finite loss in term\(s\) \['raw', 'sr'\]"),
        ("nan_gradient_in_a_motion_step", r"finite loss, non-finite gradient of \['inversion_controller'\]"),
    ],
)
def test_a_non_finite_value_on_one_rank_stops_every_rank(two_processes, fault, local_message):
    """2 Gloo processes; rank 1 sees a NaN loss in an identity-only sub-step (not checked there, so
    the NaN w_id reaches the next motion step) or a finite loss with NaN gradients in a motion step.
    Both ranks must raise NonFiniteLossError together, instead of one raising while the other waits in
    all_reduce (NCCL: a hang) or NaN gradients being averaged into every rank."""
    folder = _scenario_folder(two_processes, "non_finite")
    outcomes = [(folder / f"{fault}_{rank}.txt").read_text() for rank in (0, 1)]
    assert all(outcome.startswith("finite parameters; NonFiniteLossError") for outcome in outcomes), outcomes
    assert "stopped in every process" in outcomes[0]
    import re

    assert re.search(local_message, outcomes[1]), outcomes[1]


def _slow_main_scenario(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from otavatar.training.distributed import DistributedContext, main_process_first

    # The training group's timeout is short here (NCCL's default is 10 minutes); the main process's work is twice as long.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=2))
    marker = os.path.join(out_dir, "dataset")

    def work(main: bool) -> str:
        if main:
            time.sleep(4)
            with open(marker, "w") as handle:
                handle.write("generated")
        with open(marker) as handle:
            return handle.read()

    context = DistributedContext(rank, rank, world_size, torch.device("cpu"))
    try:
        outcome = main_process_first(context, work, timeout=timedelta(seconds=120))
        dist.barrier()  # the training group still works afterwards
    except Exception as error:  # noqa: BLE001 - recorded for the test's message
        outcome = f"{type(error).__name__}: {error}"
    with open(os.path.join(out_dir, f"outcome_{rank}.txt"), "w") as handle:
        handle.write(outcome)
    dist.destroy_process_group()


def test_other_ranks_wait_for_the_main_process_beyond_the_group_timeout(two_processes):
    folder = _scenario_folder(two_processes, "slow_main")
    assert [(folder / f"outcome_{rank}.txt").read_text() for rank in (0, 1)] == ["generated", "generated"]
