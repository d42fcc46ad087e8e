"""One-shot avatar construction: inverting portraits to the identity code w_id (paper §3.3).

The identity code starts from w_avg, in W ``(B, 1, 512)`` or W+ ``(B, num_ws, 512)``; a learned
correction of the normalised intrinsics absorbs the crop and focal mismatch of real data.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Mapping

import torch

from otavatar.errors import check_integer, check_positive
from otavatar.models.animator import Animator
from otavatar.models.eg3d import TriPlaneGenerator


def initial_identity_code(generator: TriPlaneGenerator, batch_size: int, space: str = "w") -> torch.Tensor:
    """w_avg repeated: ``(B, 1, 512)`` for W or ``(B, num_ws, 512)`` for W+ (a fresh leaf tensor)."""
    layers = {"w": 1, "w_plus": generator.num_ws}
    if space not in layers:
        raise ValueError(f"identity space: expected 'w' or 'w_plus', found {space!r}")
    return generator.w_avg.detach().reshape(1, 1, -1).repeat(batch_size, layers[space], 1).clone()


def correct_intrinsics(camera_label: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
    """Apply the release's learned intrinsics correction: K ← K · (1 + tanh s) + t on all 9 entries.

    Args:
        camera_label: p ``(B, 25)``.
        correction: ``(B, 18)`` = s (9) ++ t (9); zeros leave the camera unchanged.
    """
    if correction.shape != (camera_label.shape[0], 18):
        raise ValueError(f"intrinsics correction: expected shape ({camera_label.shape[0]}, 18), found {tuple(correction.shape)}")
    intrinsics = camera_label[:, 16:] * (1 + torch.tanh(correction[:, :9])) + correction[:, 9:]
    return torch.cat([camera_label[:, :16], intrinsics], dim=1)


FrameLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


def camera_optimizer(correction: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    """The release's AdamW on the intrinsics correction (betas 0.9, 0.9999; no weight decay)."""
    return torch.optim.AdamW([correction], lr=lr, betas=(0.9, 0.9999), weight_decay=0.0)


class IdentityOptimizer:
    """The release's optimisers of an identity fit, in one-shot construction, camera refits and training alike:
    Adam on w_id (betas 0.9, 0.999) and :func:`camera_optimizer` on the intrinsics correction, stepped together.

    Args:
        identity_code: w_id ``(B, 1 | num_ws, 512)``, a leaf tensor.
        correction: ``(B, 18)``, a leaf tensor.
        lr: w_id's learning rate; None keeps w_id frozen (a camera refit).
        camera_lr: the correction's; None keeps it frozen.
    """

    def __init__(self, identity_code: torch.Tensor, correction: torch.Tensor, lr: float | None, camera_lr: float | None) -> None:
        self.identity_code = identity_code
        self.correction = correction
        self.identity = torch.optim.Adam([identity_code], lr=lr, betas=(0.9, 0.999)) if lr is not None else None
        self.camera = camera_optimizer(correction, camera_lr) if camera_lr is not None else None
        self.optimizers = [each for each in (self.identity, self.camera) if each is not None]
        self.requires_grad_(True)

    def requires_grad_(self, enabled: bool) -> None:
        """Let the next backward reach the optimised tensors (``enabled``) or neither."""
        self.identity_code.requires_grad_(enabled and self.identity is not None)
        self.correction.requires_grad_(enabled and self.camera is not None)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def clip_identity_gradient(self, max_norm: float) -> torch.Tensor:
        """Clip w_id's gradient to ``max_norm``; returns its norm before clipping."""
        return torch.nn.utils.clip_grad_norm_([self.identity_code], max_norm)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def chosen_identity(identity_w: torch.Tensor, identity_w_plus: torch.Tensor | None, space: str = "w_plus") -> torch.Tensor:
    """w_id in W+ ``(B, num_ws, 512)`` when ``space`` asks for it and it was inverted there, else in W ``(B, 1, 512)``."""
    return identity_w_plus if space == "w_plus" and identity_w_plus is not None else identity_w


@dataclass
class InversionSettings:
    """An inversion schedule; the defaults are the release's (reference §7): 100 steps in W, then 100
    in W+, the super-resolved terms in the last 10 steps of each phase.

    ``sr_steps``: steps at the end of each phase whose loss includes the super-resolved image
    (None: every step). Presets: ``configs/inversion`` (:func:`otavatar.config.load_inversion_preset`).
    """

    w_steps: int = 100
    w_plus_steps: int = 100
    lr: float = 0.01
    camera_lr: float = 0.01
    optimize_camera: bool = True
    sr_steps: int | None = 10
    grad_clip: float | None = None
    clamp: bool = True
    deterministic: bool = False
    # False redoes the release's per-step work (C(x), the target's VGG/ArcFace features and region
    # crops on every step): same result, for benchmarks.
    reuse_static_work: bool = True

    def __post_init__(self) -> None:
        check_integer("w_steps", self.w_steps, 1)  # 0 W steps leave identity_w at w_avg, a generic head
        check_integer("w_plus_steps", self.w_plus_steps, 0)
        check_positive("lr", self.lr)
        check_positive("camera_lr", self.camera_lr)
        if self.sr_steps is not None:
            check_integer("sr_steps", self.sr_steps, 0)

    @property
    def steps(self) -> int:
        return self.w_steps + self.w_plus_steps


@dataclass
class InversionResult:
    identity_w: torch.Tensor
    identity_w_plus: torch.Tensor | None
    correction: torch.Tensor
    reconstruction: torch.Tensor
    loss_curve: list[float] = field(default_factory=list)

    @property
    def identity(self) -> torch.Tensor:
        """The final w_id: in W+ ``(B, num_ws, 512)`` when W+ steps ran, else in W ``(B, 1, 512)``."""
        return chosen_identity(self.identity_w, self.identity_w_plus)


def invert(
    animator: Animator,
    target: Mapping[str, torch.Tensor],
    frame_loss: FrameLoss,
    settings: InversionSettings = InversionSettings(),
    on_step: Callable[[str, int, torch.Tensor], None] | None = None,
) -> InversionResult:
    """Invert portraits to w_id with the controller applied to their own motion (so w_id is motion-free).

    Args:
        animator: G_eg and C (frozen here).
        target: ``image`` ``(B, 3, H, W)`` in [−1, 1], ``keypoints`` ``(B, 68, 2)`` in pixels of H,
            ``motion`` x ``(B, 70, 27)``, ``camera`` p ``(B, 25)``.
        frame_loss: ``frame_loss(output, target, super_resolve=..., generator=...)`` → (total, terms).
        on_step: called as ``on_step(phase, step, loss)`` after every step (progress bars, logs);
            ``loss`` is a 0-dim tensor on the device, and reading it waits for the device: read it
            every few steps.

    Returns:
        w_id in W ``(B, 1, 512)``, in W+ ``(B, num_ws, 512)`` (None without W+ steps), the intrinsics
        correction ``(B, 18)``, the final reconstruction and the loss of every step.
    """
    with _frozen(animator):
        return _invert(animator, target, frame_loss, settings, on_step)


@contextlib.contextmanager
def _frozen(animator: Animator) -> Iterator[None]:
    """G_eg and C frozen for an identity fit; the parameters that were trainable are again afterwards."""
    trainable = [p for p in animator.parameters() if p.requires_grad]
    animator.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def _invert(animator, target, frame_loss, settings, on_step) -> InversionResult:
    batch_size = target["image"].shape[0]
    correction = torch.zeros(batch_size, 18, device=target["image"].device)
    curve: list[torch.Tensor] = []  # read once at the end: a read per step would wait for the device every step
    target = _static_work(animator, target, settings)
    identity = initial_identity_code(animator.generator, batch_size, "w")
    identity_w = _optimise(animator, identity, correction, target, frame_loss, settings, settings.w_steps, "W", curve, on_step)
    identity_w_plus = None
    if settings.w_plus_steps > 0:
        identity = identity_w.repeat(1, animator.generator.num_ws, 1)
        identity_w_plus = _optimise(animator, identity, correction, target, frame_loss, settings, settings.w_plus_steps, "W+", curve, on_step)
    with torch.no_grad():
        output = _render(animator, chosen_identity(identity_w, identity_w_plus), correction, target, settings, super_resolve=True)
    return InversionResult(identity_w, identity_w_plus, correction.detach(), output["image"], torch.stack(curve).tolist() if curve else [])


def _render(animator: Animator, identity, correction, target, settings: InversionSettings, super_resolve: bool) -> dict:
    camera = correct_intrinsics(target["camera"], correction)
    return animator.render(
        identity, target["motion"], camera, clamp=settings.clamp, deterministic=settings.deterministic, super_resolve=super_resolve,
        motion_code=target.get("motion_code"),
    )


def _optimise(animator, identity, correction, target, frame_loss, settings, steps, phase, curve, on_step, update_identity=True) -> torch.Tensor:
    """One phase of ``steps`` steps: Adam on the identity code (frozen unless ``update_identity``) and AdamW on
    the shared correction (when ``settings.optimize_camera``; updated in place); returns the identity code."""
    identity = identity.detach().clone()
    fit = IdentityOptimizer(identity, correction, settings.lr if update_identity else None,
                            settings.camera_lr if settings.optimize_camera else None)
    frame_target = {key: target[key] for key in ("image", "keypoints", "cache") if key in target}
    for step in range(steps):
        super_resolve = settings.sr_steps is None or step >= steps - settings.sr_steps
        output = _render(animator, identity, correction, target, settings, super_resolve)
        loss, _ = frame_loss(output, frame_target, super_resolve=super_resolve, generator=animator.generator)
        fit.zero_grad()
        loss.backward()
        if settings.grad_clip and update_identity:
            fit.clip_identity_gradient(settings.grad_clip)
        fit.step()
        curve.append(loss.detach())
        if on_step is not None:
            on_step(phase, step, curve[-1])
    fit.requires_grad_(False)
    return identity.detach()


def _static_work(animator: Animator, target: Mapping[str, torch.Tensor], settings: InversionSettings) -> dict:
    """``target`` with what does not change across steps computed once: C(x) (C is frozen, x fixed) and, through
    the loss's cache, the target's resized images and VGG/ArcFace features."""
    if not settings.reuse_static_work:
        return dict(target)
    with torch.no_grad():
        return {**target, "motion_code": animator.controller(target["motion"]), "cache": {}}


CAMERA_FIT_STEPS = 100  # the release's inversion loop, rerun by its --cam_optim


def fit_camera(
    animator: Animator,
    identity: torch.Tensor,
    target: Mapping[str, torch.Tensor],
    frame_loss: FrameLoss,
    settings: InversionSettings = InversionSettings(),
    steps: int = CAMERA_FIT_STEPS,
    sr_steps: int | None = 10,
    on_step: Callable[[str, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """The release's ``--cam_optim``: the intrinsics correction refitted from zero on ``target`` with w_id frozen.

    The release reruns its inversion loop (100 steps, the super-resolved terms in the last 10) on the
    first driving frame with the identity code fixed, so only the correction moves (AdamW at
    ``settings.camera_lr``); the result replaces the avatar's correction for the whole reenactment.

    Args:
        identity: w_id ``(B, 1 | num_ws, 512)`` (not changed).
        target: as for :func:`invert`: ``image``, ``keypoints``, ``motion``, ``camera``.

    Returns:
        the correction ``(B, 18)``.
    """
    correction = torch.zeros(identity.shape[0], 18, device=identity.device)
    refit = replace(settings, sr_steps=sr_steps, optimize_camera=True)
    with _frozen(animator):
        _optimise(animator, identity, correction, _static_work(animator, target, settings), frame_loss, refit, steps, "camera", [], on_step,
                  update_identity=False)
    return correction
