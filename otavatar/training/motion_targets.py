"""Fitted motion codes as C's teacher: a trainer option (``motion_target_steps``), off by default.

The paper teaches C through the renderer: each motion sub-step backpropagates the rendering loss
into C's weights. With ``motion_target_steps`` k > 0 the motion phase of a batch instead fits every
frame's motion code w_x by k Adam steps on the rendering loss (w_id and C frozen, starting from
C(x)), and C regresses onto the fitted codes of this and recent batches. Adam's per-coordinate steps
on w_x point at the expression far more consistently than the gradient that reaches C's weights
through the renderer (tiny generator: cosine with the true offsets ≈ 0.45 after 8 steps, against
0.1–0.3 for one gradient), and regressing on a buffer averages their noise over batches.
"""

from __future__ import annotations

import torch


class MotionTargetBuffer:
    """The last ``capacity`` pairs of motion window x ``(70, 27)`` and fitted code w_x ``(L, 512)``
    (L = 1 for a controller with one offset for all layers, num_ws otherwise); the oldest are replaced first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.motion: torch.Tensor | None = None
        self.code: torch.Tensor | None = None
        self.count = 0  # pairs ever added; the next one goes to row count % capacity

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def add(self, motion: torch.Tensor, code: torch.Tensor) -> None:
        """Store ``motion (N, 70, 27)`` with ``code (N, L, 512)``."""
        if self.motion is None:
            self.motion = motion.new_zeros(self.capacity, *motion.shape[1:])
            self.code = code.new_zeros(self.capacity, *code.shape[1:])
        rows = (self.count + torch.arange(len(motion), device=motion.device)) % self.capacity
        self.motion[rows] = motion.detach()
        self.code[rows] = code.detach()
        self.count += len(motion)

    def sample(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` stored pairs drawn uniformly with replacement: x ``(size, 70, 27)``, w_x ``(size, L, 512)``."""
        if not len(self):
            raise ValueError("motion target buffer: nothing stored yet")
        rows = torch.randint(len(self), (size,), device=self.motion.device)
        return self.motion[rows], self.code[rows]

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "count": self.count, "motion": self.motion, "code": self.code}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"motion target buffer: the checkpoint's holds {state['capacity']} pairs, this one {self.capacity}")
        self.count, self.motion, self.code = int(state["count"]), state["motion"], state["code"]


def regression_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared distance between C's codes ``(N, num_ws, 512)`` and fitted ones ``(N, L, 512)`` (L = 1: every
    layer's offset is the same), summed over the code and averaged over pairs."""
    return (predicted[:, : target.shape[1]] - target).pow(2).sum((1, 2)).mean()
