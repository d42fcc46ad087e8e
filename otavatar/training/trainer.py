"""Decoupling-by-inverting training (paper §3.2, §4.1).

Per batch: a fresh identity code w_id (one per sample, from w_avg; or, with ``identity_warm_start``,
from the code this person's last batch reached) is inverted with the EMA
generator and the live controller — N_id sub-steps on w_id and the intrinsics correction with C
frozen, then N_mo sub-steps on C with w_id frozen (super-resolved losses in the last ones) — then
each frame refines C and G_eg once, and both EMAs are updated. With ``motion_target_steps`` (off by
default; :mod:`otavatar.training.motion_targets`) the N_mo sub-steps regress C onto motion codes
fitted to the batch's frames instead, and the refinement finetunes G_eg alone; with the ``joint`` schedule (and
N_id = 0) that fit updates w_id and the intrinsics correction together with the codes. Gradients of C and G are averaged
over processes; identity codes stay local. As in the release, the density regularisers of the
inversion sample the EMA generator's tri-planes through the live generator's decoder.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Mapping

import torch

from otavatar.errors import InputError
from otavatar.inversion import IdentityOptimizer, correct_intrinsics, initial_identity_code
from otavatar.models.animator import Animator
from otavatar.training.distributed import average_gradients, sum_over_processes
from otavatar.training.ema import update_ema
from otavatar.training.motion_targets import MotionTargetBuffer, regression_loss
from otavatar.training.schedule import SubStep, inner_schedule
from otavatar.training.trainer_settings import CONTROLLER_OPTIMIZERS, TrainerSettings, trainable_generator_parameters

FrameLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


class NonFiniteLossError(RuntimeError):
    """A loss term or a gradient became NaN or infinite in some process; every process stops before
    the controller or the generator is updated with it."""


class DecouplingTrainer:
    """Owns the live and EMA animators, the optimisers and one training iteration.

    Args:
        animator: live G_eg and C (trained).
        frame_loss: ``frame_loss(output, target, super_resolve=..., generator=...)`` → (total, named terms); ``generator``
            samples the density terms (:meth:`otavatar.losses.animation.AnimationLoss.forward`).
        settings: the schedule and optimiser choices.
        world_size: processes averaging gradients.
    """

    def __init__(self, animator: Animator, frame_loss: FrameLoss, settings: TrainerSettings, world_size: int = 1) -> None:
        self.animator = animator
        self.ema = copy.deepcopy(animator).eval()
        self.ema.requires_grad_(False)
        self.frame_loss = frame_loss
        self.settings = settings
        self.world_size = world_size
        self.generator_parameters = trainable_generator_parameters(animator.generator, settings.generator_trainable)
        self.controller_optimizer = CONTROLLER_OPTIMIZERS[settings.controller_optimizer](
            animator.controller.parameters(), lr=settings.controller_lr, betas=settings.controller_betas,
            weight_decay=settings.controller_weight_decay,
        )
        self.generator_optimizer = torch.optim.Adam(self.generator_parameters, lr=settings.generator_lr, betas=settings.generator_betas)
        animator.generator.requires_grad_(False)
        for parameter in self.generator_parameters:
            parameter.requires_grad_(settings.finetune_generator)
        self.iteration = 0
        self.last_identity: tuple[torch.Tensor, torch.Tensor] | None = None
        # person index → (w_id, intrinsics correction) its last inversion reached; used with identity_warm_start.
        self.identity_memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.grad_norms: dict[str, torch.Tensor] = {}
        self.motion_targets = MotionTargetBuffer(settings.motion_target_buffer) if settings.motion_target_steps else None

    # -- rendering -----------------------------------------------------------------------------

    def _render_frame(self, animator: Animator, identity_code, correction, batch, frame: int, super_resolve: bool, motion_code=None) -> dict:
        camera = correct_intrinsics(batch["camera"][:, frame], correction)
        return animator.render(
            identity_code, batch["motion"][:, frame], camera, noise_mode="const", clamp=self.settings.clamp_ws,
            neural_rendering_resolution=self.settings.neural_rendering_resolution, super_resolve=super_resolve,
            deterministic=self.settings.deterministic_rendering, motion_code=motion_code,
        )

    def _frames_loss(
        self, animator: Animator, identity_code, correction, batch, super_resolve: bool, frames: Iterable[int], density_generator=None,
        motion_codes: torch.Tensor | None = None,
    ):
        """Summed loss of ``frames``; the density terms use ``density_generator``'s decoder (default: ``animator``'s);
        ``motion_codes`` ``(B, F, num_ws, 512)`` replace C(x) when given."""
        total = 0.0
        terms: dict[str, torch.Tensor] = {}
        device_type = batch["image"].device.type
        # bf16 autocast (CUDA mixed precision) needs no loss scaling; parameters and optimisers stay fp32.
        autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.settings.amp == "bf16" and device_type == "cuda")
        for frame in frames:
            with autocast:
                output = self._render_frame(
                    animator, identity_code, correction, batch, frame, super_resolve, None if motion_codes is None else motion_codes[:, frame]
                )
                target = {"image": batch["image"][:, frame], "keypoints": batch["keypoints"][:, frame]}
                loss, frame_terms = self.frame_loss(output, target, super_resolve=super_resolve, generator=animator.generator if density_generator is None else density_generator)
            total = total + loss.float()
            for name, value in frame_terms.items():
                terms[name] = terms.get(name, 0.0) + value.detach()
        return total, terms

    def _with_controller_l1(self, loss: torch.Tensor, terms: dict) -> torch.Tensor:
        """``loss`` plus the paper's L1 on C's parameters (logged as ``controller_l1``) when its weight is set."""
        if not self.settings.controller_l1:
            return loss
        penalty = self.settings.controller_l1 * sum(parameter.abs().sum() for parameter in self.animator.controller.parameters())
        terms["controller_l1"] = penalty.detach()
        return loss + penalty

    def _require_finite(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor], grad_norms: Mapping[str, torch.Tensor]) -> None:
        """Raise :class:`NonFiniteLossError` in every process if the loss or a gradient norm is not
        finite in any process; call it before an optimiser step of C or G, in all processes alike.

        Its one device→host read is the only one of an optimiser step. Identity-only sub-steps are not
        checked: they update the batch's own w_id, and a non-finite w_id makes the next checked loss
        non-finite.
        """
        local = torch.stack([loss.detach().float().reshape(()), *(norm.float() for norm in grad_norms.values())])
        if sum_over_processes((~torch.isfinite(local)).sum(), self.world_size) == 0:
            return
        if not math.isfinite(float(loss.detach())):
            bad = [name for name, value in terms.items() if not math.isfinite(float(value))]
            problem = f"non-finite loss in term(s) {bad or ['total']}"
        elif bad := [name for name, norm in grad_norms.items() if not math.isfinite(float(norm))]:
            averaged = " (gradients of C and G are averaged over processes)" if self.world_size > 1 else ""
            problem = f"finite loss, non-finite gradient of {bad}{averaged}"
        else:
            problem = "non-finite loss or gradient in another process"
        raise NonFiniteLossError(f"{problem}; training stopped in every process, the last checkpoint is kept")

    # -- one iteration -------------------------------------------------------------------------

    def invert_identity(
        self, batch: Mapping[str, torch.Tensor], on_step: Callable[[SubStep, torch.Tensor, torch.Tensor], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The inner loop: returns the inverted w_id, the intrinsics correction and the last terms.

        ``on_step(step, identity_code, correction)`` is called before every sub-step.
        """
        settings = self.settings
        num_frames = batch["image"].shape[1]
        # Inversion renders with the EMA generator and the live controller, as the release does.
        inverting = Animator(self.ema.generator, self.animator.controller, self.animator.clamp_radius)
        if settings.identity_warm_start and "person" not in batch:
            raise InputError("trainer.identity_warm_start: the batch has no 'person' key (a dataset of TrainingPairs gives it)")
        # Read once per batch: on a GPU each read of the indices waits for the device.
        persons = batch["person"].tolist() if settings.identity_warm_start else []
        identity_code, correction = self._starting_identity(batch, persons)
        fit = IdentityOptimizer(identity_code, correction, settings.identity_lr, settings.camera_lr if settings.optimize_camera else None)
        controller_parameters = list(self.animator.controller.parameters())
        terms: dict = {}
        for step in inner_schedule(settings.identity_steps, settings.motion_steps, settings.schedule, settings.sr_steps):
            if on_step is not None:
                on_step(step, identity_code.detach(), correction.detach())
            fit.requires_grad_(step.update_identity)
            self.animator.controller.requires_grad_(step.update_controller)
            if step.update_controller and self.motion_targets is not None:
                if step.index == settings.identity_steps:
                    terms = self._fit_motion_targets(inverting, identity_code, correction, batch, fit if step.update_identity else None)
                terms["motion_target/regression"] = self._regress_controller(2 * batch["image"].shape[0] * num_frames)
                continue
            loss, terms = self._frames_loss(inverting, identity_code, correction, batch, step.super_resolve, range(num_frames), self.animator.generator)
            if step.update_controller:
                loss = self._with_controller_l1(loss, terms)
            fit.zero_grad()
            self.controller_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norms = {}
            if step.update_identity:
                norms["identity_code"] = fit.clip_identity_gradient(settings.identity_grad_clip)
            if step.update_controller:
                average_gradients(controller_parameters, self.world_size)
                norms["inversion_controller"] = torch.nn.utils.clip_grad_norm_(controller_parameters, settings.controller_grad_clip)
                self._require_finite(loss, terms, norms)
            if step.update_identity:
                fit.step()
            if step.update_controller:
                self.controller_optimizer.step()
            self.grad_norms.update(norms)
        self.animator.controller.requires_grad_(True)
        if settings.identity_warm_start:
            for person, code, corrected in zip(persons, identity_code.detach(), correction.detach()):
                self.identity_memory[person] = (code.clone(), corrected.clone())
        return identity_code.detach(), correction.detach(), terms

    def _fit_motion_targets(self, animator: Animator, identity_code, correction, batch, identity_fit: IdentityOptimizer | None) -> dict:
        """Fit each frame's w_x by ``motion_target_steps`` Adam steps on the neural-rendering loss from C(x) (C frozen;
        w_id and the correction frozen too unless ``identity_fit`` steps them alongside: the joint schedule)
        and store them with x; returns the last step's terms."""
        settings = self.settings
        frames = batch["image"].shape[1]
        num_ws = animator.generator.num_ws
        layers = num_ws if animator.controller.layer_offsets else 1
        with torch.no_grad():
            start = torch.stack([animator.controller(batch["motion"][:, frame]) for frame in range(frames)], 1)
        code = start[:, :, :layers].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([code], lr=settings.motion_target_lr)
        for _ in range(settings.motion_target_steps):
            motion_codes = code.expand(-1, -1, num_ws, -1)
            loss, terms = self._frames_loss(animator, identity_code, correction, batch, False, range(frames), self.animator.generator, motion_codes)
            optimizer.zero_grad(set_to_none=True)
            if identity_fit is not None:
                identity_fit.zero_grad()
            loss.backward()
            if identity_fit is not None:
                self.grad_norms["identity_code"] = identity_fit.clip_identity_gradient(settings.identity_grad_clip)
                identity_fit.step()
            optimizer.step()
        self.motion_targets.add(batch["motion"].flatten(0, 1), code.detach().flatten(0, 1))
        return {f"motion_target/{name}": value for name, value in terms.items()}

    def _regress_controller(self, pairs: int) -> torch.Tensor:
        """One step of C toward ``pairs`` fitted codes drawn from the buffer."""
        motion, target = self.motion_targets.sample(pairs)
        controller_parameters = list(self.animator.controller.parameters())
        loss = regression_loss(self.animator.controller(motion), target)
        terms: dict = {}
        loss = self._with_controller_l1(loss, terms)
        self.controller_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(controller_parameters, self.world_size)
        norms = {"inversion_controller": torch.nn.utils.clip_grad_norm_(controller_parameters, self.settings.controller_grad_clip)}
        self._require_finite(loss, terms, norms)
        self.controller_optimizer.step()
        self.grad_norms.update(norms)
        return loss.detach()

    def _starting_identity(self, batch: Mapping[str, torch.Tensor], persons: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """w_id ``(B, 1 or num_ws, 512)`` and correction ``(B, 18)`` the inversion starts from: w_avg and zeros,
        then for each of ``persons`` (the batch's, with ``identity_warm_start``) that is remembered, its last code and correction."""
        batch_size = batch["image"].shape[0]
        identity_code = initial_identity_code(self.ema.generator, batch_size, self.settings.identity_space)
        correction = torch.zeros(batch_size, 18, device=batch["image"].device)
        for row, person in enumerate(persons):
            if person in self.identity_memory:
                identity_code[row], correction[row] = self.identity_memory[person]
        return identity_code, correction

    def refine(self, batch: Mapping[str, torch.Tensor], identity_code: torch.Tensor, correction: torch.Tensor) -> dict:
        """One step of C (and G_eg when finetuned) per frame with w_id fixed, on the live networks; with fitted
        motion targets, of G_eg alone (C learns only from the targets)."""
        settings = self.settings
        terms: dict = {}
        refine_controller = self.motion_targets is None
        if not (refine_controller or settings.finetune_generator):
            return terms
        controller_parameters = list(self.animator.controller.parameters())
        self.animator.controller.requires_grad_(refine_controller)
        for frame in range(batch["image"].shape[1]):
            loss, terms = self._frames_loss(self.animator, identity_code, correction, batch, settings.refine_super_resolve, [frame])
            norms = {}
            if refine_controller:
                loss = self._with_controller_l1(loss, terms)
                self.controller_optimizer.zero_grad(set_to_none=True)
            self.generator_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if refine_controller:
                average_gradients(controller_parameters, self.world_size)
                norms["controller"] = torch.nn.utils.clip_grad_norm_(controller_parameters, settings.controller_grad_clip)
            if settings.finetune_generator:
                average_gradients(self.generator_parameters, self.world_size)
                norms["generator"] = torch.nn.utils.clip_grad_norm_(self.generator_parameters, settings.generator_grad_clip)
            self._require_finite(loss, terms, norms)
            if refine_controller:
                self.controller_optimizer.step()
            if settings.finetune_generator:
                self.generator_optimizer.step()
            self.grad_norms.update(norms)
        self.animator.controller.requires_grad_(True)
        return terms

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """One iteration: invert, refine, update the EMAs.

        Returns scalar logs: loss terms and gradient norms as 0-dim tensors on the device (read them
        on logging steps only, e.g. with :func:`host_scalars`), learning rates as floats.
        """
        identity_code, correction, inversion_terms = self.invert_identity(batch)
        self.last_identity = (identity_code, correction)
        refine_terms = self.refine(batch, identity_code, correction)
        update_ema(self.ema.controller, self.animator.controller, self.settings.ema_decay)
        update_ema(self.ema.generator, self.animator.generator, self.settings.ema_decay if self.settings.generator_ema else 0.0)
        self.iteration += 1
        logs: dict[str, torch.Tensor | float] = {f"inversion/{k}": v for k, v in inversion_terms.items()}
        logs.update({f"refine/{k}": v for k, v in refine_terms.items()})
        logs.update({f"grad_norm/{k}": v.detach() for k, v in self.grad_norms.items()})
        logs["lr/controller"] = self.controller_optimizer.param_groups[0]["lr"]
        logs["lr/generator"] = self.generator_optimizer.param_groups[0]["lr"]
        return logs

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "generator": self.animator.generator.state_dict(),
            "controller": self.animator.controller.state_dict(),
            "generator_ema": self.ema.generator.state_dict(),
            "controller_ema": self.ema.controller.state_dict(),
            "optimizers": {
                "controller": self.controller_optimizer.state_dict(),
                "generator": self.generator_optimizer.state_dict(),
            },
            "trainer_iteration": self.iteration,
            "identity_memory": dict(self.identity_memory),
            **({"motion_targets": self.motion_targets.state_dict()} if self.motion_targets is not None else {}),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.animator.generator.load_state_dict(state["generator"])
        self.animator.controller.load_state_dict(state["controller"])
        self.ema.generator.load_state_dict(state["generator_ema"])
        self.ema.controller.load_state_dict(state["controller_ema"])
        self.controller_optimizer.load_state_dict(state["optimizers"]["controller"])
        self.generator_optimizer.load_state_dict(state["optimizers"]["generator"])
        self.iteration = int(state["trainer_iteration"])
        # Checkpoints written before identity_warm_start existed have no memory: warm starts begin afresh.
        device = self.animator.generator.w_avg.device
        self.identity_memory = {
            int(person): (code.to(device), correction.to(device)) for person, (code, correction) in state.get("identity_memory", {}).items()
        }
        if self.motion_targets is not None and "motion_targets" in state:
            self.motion_targets.load_state_dict(state["motion_targets"])


def host_scalars(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Scalar logs as Python floats, the device tensors among them read in one transfer."""
    tensors = {name: value for name, value in values.items() if torch.is_tensor(value)}
    read = dict(zip(tensors, torch.stack([value.detach().float().reshape(()) for value in tensors.values()]).tolist())) if tensors else {}
    return {name: read[name] if name in read else float(value) for name, value in values.items()}
