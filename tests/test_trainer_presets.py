"""The paper's trainer preset (Adam on C, EMA of C only, L1 on C's parameters) and the release's
decoder for the inversion's density terms."""

import pytest
import torch

from otavatar.config import compose_config
from otavatar.losses.animation import AnimationLoss, LossWeights
from otavatar.training.from_config import trainer_settings
from otavatar.training.loop import ConfigMismatchError, RunSettings, train
from otavatar.training.trainer import DecouplingTrainer
from otavatar.training.trainer_settings import TrainerSettings
from tests.helpers import nano_animator, pixel_loss, random_batch
from tests.test_training_loop import SINGLE, RandomPairs


pytestmark = pytest.mark.usefixtures("one_thread")


def small(**overrides) -> TrainerSettings:
    return TrainerSettings(**{"identity_steps": 2, "motion_steps": 1, "sr_steps": 1, "deterministic_rendering": True, **overrides})


def test_paper_preset_composes_and_builds_adam_on_the_controller():
    paper = compose_config(["trainer=paper"])
    assert paper.trainer.controller_lr == 1e-4 and paper.trainer.controller_optimizer == "adam"
    assert paper.trainer.controller_weight_decay == 0.0 and paper.trainer.controller_l1 > 0 and not paper.trainer.generator_ema
    assert paper.trainer.identity_steps == 90  # what the paper does not change stays the release's
    experiment = compose_config(["experiment=paper"])
    assert experiment.batch_size == 6 and experiment.trainer.controller_lr == 1e-4 and experiment.model.name == "eg3d_ffhq512"
    trainer = DecouplingTrainer(nano_animator(), pixel_loss, trainer_settings(paper.trainer))
    assert type(trainer.controller_optimizer) is torch.optim.Adam
    group = trainer.controller_optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0.0
    release = DecouplingTrainer(nano_animator(), pixel_loss, trainer_settings(compose_config(["trainer=release"]).trainer))
    assert type(release.controller_optimizer) is torch.optim.AdamW and release.controller_optimizer.param_groups[0]["weight_decay"] == 1.0
    with pytest.raises(ValueError, match="trainer.controller_optimizer: expected one of"):
        small(controller_optimizer="sgd")


def test_controller_l1_adds_its_weight_times_the_sign_of_each_parameter_to_the_gradient():
    batch = random_batch(3, frames=1)  # one frame: one refinement step, whose gradients stay on the parameters
    identity, correction = torch.zeros(2, 1, 512), torch.zeros(2, 18)
    gradients, logs = {}, {}
    for weight in (0.0, 1e-3):
        animator = nano_animator()
        parameters = [p.detach().clone() for p in animator.controller.parameters()]
        trainer = DecouplingTrainer(animator, pixel_loss, small(controller_l1=weight, controller_grad_clip=1e9, finetune_generator=False))
        logs[weight] = trainer.refine(batch, identity + animator.generator.w_avg, correction)
        gradients[weight] = [p.grad.clone() for p in animator.controller.parameters()]
    for before, plain, penalised in zip(parameters, gradients[0.0], gradients[1e-3]):
        assert torch.allclose(penalised - plain, 1e-3 * before.sign(), atol=1e-6)
    assert "controller_l1" not in logs[0.0]
    assert logs[1e-3]["controller_l1"] == pytest.approx(1e-3 * sum(p.abs().sum().item() for p in parameters), rel=1e-5)


def test_without_a_generator_ema_the_inversion_generator_is_the_live_one():
    animator = nano_animator()
    trainer = DecouplingTrainer(animator, pixel_loss, small(generator_ema=False, identity_steps=1))
    trainer.train_step(random_batch(4, frames=1))
    live, ema = animator.generator.state_dict(), trainer.ema.generator.state_dict()
    assert all(torch.equal(value, ema[name]) for name, value in live.items())
    controllers = zip(animator.controller.state_dict().values(), trainer.ema.controller.state_dict().values())
    assert not all(torch.equal(a, b) for a, b in controllers)  # C keeps its EMA
    averaged = DecouplingTrainer(nano_animator(), pixel_loss, small(identity_steps=1))
    averaged.train_step(random_batch(4, frames=1))
    assert not all(torch.equal(v, averaged.ema.generator.state_dict()[k]) for k, v in averaged.animator.generator.state_dict().items())


def test_inversion_density_terms_use_the_live_decoder_on_the_ema_planes():
    loss = AnimationLoss(LossWeights(perceptual=0.0, identity=0.0, region=0.0, regulariser_points=64))
    seen = []

    def spy(output, target, super_resolve, generator):
        seen.append(generator)
        return loss(output, target, super_resolve, generator)

    animator = nano_animator()
    trainer = DecouplingTrainer(animator, spy, small(identity_steps=1))
    with torch.no_grad():  # the two decoders differ, as they do once training has moved G away from its EMA
        for parameter in animator.generator.decoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    trainer.invert_identity(random_batch(5, frames=1))
    assert seen and all(generator is animator.generator for generator in seen)
    # The density terms reach the live decoder's parameters (not its last bias: both terms compare two
    # densities, so a shift cancels); the EMA generator renders and gets none.
    gradients = [p.grad for p in animator.generator.decoder.parameters()]
    assert all(g is not None for g in gradients) and sum(g.abs().sum() for g in gradients) > 0
    assert all(p.grad is None for p in trainer.ema.generator.parameters())
    seen.clear()
    trainer.refine(random_batch(5, frames=1), torch.zeros(2, 1, 512), torch.zeros(2, 18))
    assert seen and all(generator is animator.generator for generator in seen)


def test_checkpoints_from_before_the_new_trainer_settings_resume_at_their_defaults(tmp_path):
    # The older run's checkpoint: its starting point (a run of no iterations), with a config without the newer settings.
    one_step = {"identity_steps": 1, "sr_steps": 0}
    run = RunSettings(run_dir=tmp_path, iterations=0, batch_size=1, checkpoint_every=2, log_every=1, image_every=100)
    old_config = {"model": {"name": "micro"}, "trainer": {"identity_steps": 1, "motion_steps": 1}}
    train(nano_animator(), pixel_loss, RandomPairs(), small(**one_step), run, old_config, SINGLE)
    current = {"identity_steps": 1, "motion_steps": 1, "controller_optimizer": "adamw", "controller_l1": 0.0, "generator_ema": True}
    run.iterations = 1
    path = train(nano_animator(), pixel_loss, RandomPairs(), small(**one_step), run, {"model": {"name": "micro"}, "trainer": current}, SINGLE)
    assert path.name == "checkpoint_000000001.pt"
    run.iterations = 2
    changed = {"model": {"name": "micro"}, "trainer": {**current, "controller_l1": 1e-5}}
    with pytest.raises(ConfigMismatchError, match="trainer.controller_l1: 0.0 in the checkpoint, 1e-05 now"):
        train(nano_animator(), pixel_loss, RandomPairs(), small(**one_step, controller_l1=1e-5), run, changed, SINGLE)
