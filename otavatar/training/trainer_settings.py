"""The choices of decoupling-by-inverting training (configs/trainer presets are saved instances of
:class:`TrainerSettings`): the inner schedule, the optimisers of w_id, C and G_eg, EMA, and fitted motion targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from otavatar.errors import InputError, check_integer, check_positive
from otavatar.training.schedule import inner_schedule


CONTROLLER_OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


@dataclass
class TrainerSettings:
    """Every choice of the schedule (defaults: the release's, reference §4)."""

    identity_steps: int = 90
    motion_steps: int = 10
    schedule: str = "successive"
    sr_steps: int = 10
    identity_space: str = "w"
    identity_lr: float = 0.01
    identity_grad_clip: float = 1.0
    identity_warm_start: bool = False  # True: each person's inversion resumes from its last code (needs ``person`` in the batch)
    camera_lr: float = 0.01
    optimize_camera: bool = True
    controller_optimizer: str = "adamw"  # adamw (the release) | adam (the paper)
    controller_lr: float = 1e-3
    controller_betas: tuple[float, float] = (0.5, 0.999)
    controller_weight_decay: float = 1.0
    controller_grad_clip: float = 1.0
    controller_l1: float = 0.0  # the paper's L1 regulariser on C's parameters: weight × Σ|θ_c| on every step of C
    finetune_generator: bool = True
    generator_lr: float = 1e-4
    generator_betas: tuple[float, float] = (0.9, 0.9999)
    generator_grad_clip: float = 1.0
    generator_trainable: str = "all"
    ema_decay: float = 0.95
    generator_ema: bool = True  # the release averages G as well as C; False: the EMA copy of G is the live G
    clamp_ws: bool = True
    neural_rendering_resolution: int | None = None
    refine_super_resolve: bool = True
    deterministic_rendering: bool = False
    amp: str = "none"
    motion_target_steps: int = 0  # k > 0: C regresses onto per-frame w_x fitted by k Adam steps (the paper: 0, C learns through the renderer); joint schedule: w_id is fitted with them
    motion_target_lr: float = 0.05
    motion_target_buffer: int = 512  # fitted (x, w_x) pairs C regresses onto, the most recent kept

    def __post_init__(self) -> None:
        if self.identity_space not in ("w", "w_plus"):
            raise InputError(f"trainer.identity_space: expected 'w' or 'w_plus', found {self.identity_space!r}")
        if self.generator_trainable not in ("all", "superresolution", "decoder", "synthesis"):
            raise InputError(
                "trainer.generator_trainable: expected 'all', 'synthesis', 'decoder' or 'superresolution', "
                f"found {self.generator_trainable!r}"
            )
        if self.controller_optimizer not in CONTROLLER_OPTIMIZERS:
            raise InputError(f"trainer.controller_optimizer: expected one of {sorted(CONTROLLER_OPTIMIZERS)}, found {self.controller_optimizer!r}")
        if self.amp not in ("none", "bf16"):
            raise InputError(f"trainer.amp: expected 'none' or 'bf16', found {self.amp!r}")
        inner_schedule(self.identity_steps, self.motion_steps, self.schedule, self.sr_steps)
        check_integer("trainer.motion_target_steps", self.motion_target_steps, 0)
        check_positive("trainer.motion_target_lr", self.motion_target_lr)
        check_integer("trainer.motion_target_buffer", self.motion_target_buffer, 1)
        if self.motion_target_steps and self.schedule == "alternating":
            raise InputError("trainer.motion_target_steps: fitted motion targets need schedule 'successive' or 'joint', found 'alternating'")
        if self.motion_target_steps and self.schedule == "joint" and self.identity_steps:
            raise InputError(
                f"trainer.identity_steps: with fitted motion targets the joint schedule fits w_id within the motion_target_steps; "
                f"expected 0, found {self.identity_steps}"
            )


def trainable_generator_parameters(generator: nn.Module, which: str) -> list[nn.Parameter]:
    if which == "all":
        return list(generator.parameters())
    module = {"superresolution": generator.superresolution, "decoder": generator.decoder, "synthesis": generator.backbone.synthesis}[which]
    return list(module.parameters())
