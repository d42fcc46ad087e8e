"""Which parameters the decoupling-by-inverting inner loop updates at each sub-step.

Per batch the inner loop runs N_id + N_mo sub-steps on one fresh identity code:
- ``successive`` (the paper and the release): N_id steps on w_id (C frozen), then N_mo on C (w_id frozen);
- ``alternating``: the N_mo controller steps spread evenly among the N_id identity steps;
- ``joint`` (the paper's ablation): every step updates w_id and C together.
"""

from __future__ import annotations

from dataclasses import dataclass

from otavatar.errors import InputError

SCHEDULES = ("successive", "alternating", "joint")


@dataclass(frozen=True)
class SubStep:
    index: int
    update_identity: bool
    update_controller: bool
    super_resolve: bool


def inner_schedule(identity_steps: int, motion_steps: int, schedule: str, sr_steps: int) -> list[SubStep]:
    """The sub-steps of one batch; the last ``sr_steps`` also score the super-resolved image."""
    if schedule not in SCHEDULES:
        raise InputError(f"trainer.schedule: expected one of {SCHEDULES}, found {schedule!r}")
    if identity_steps < 0 or motion_steps < 0 or identity_steps + motion_steps == 0:
        raise InputError(f"trainer: N_id={identity_steps}, N_mo={motion_steps}; expected non-negative and not both 0")
    total = identity_steps + motion_steps
    steps = []
    for index in range(total):
        if schedule == "successive":
            controller = index >= identity_steps
        elif schedule == "alternating":
            # Step k is a controller step when it crosses the next multiple of total / N_mo.
            controller = (index + 1) * motion_steps // total > index * motion_steps // total
        else:
            controller = True
        identity = schedule == "joint" or not controller
        steps.append(SubStep(index, identity, controller, index >= total - sr_steps))
    return steps
