"""The 3D animator: G_eg(w_id + C(x)) rendered from camera p (paper Eq. 4–7)."""

from __future__ import annotations

import torch
from torch import nn

from otavatar.models.controller import MotionController
from otavatar.models.eg3d import TriPlaneGenerator


class Animator(nn.Module):
    """Identity code w_id + motion code w_x = C(x) → tri-plane → image from camera p.

    Args:
        generator: G_eg.
        controller: C, with ``num_ws`` equal to the generator's.
        clamp_radius: half-width of the optional element-wise clamp of ws to w_avg ± r that the
            release applies during training and inversion (its ws_std is all ones, so r = 5).
    """

    def __init__(self, generator: TriPlaneGenerator, controller: MotionController, clamp_radius: float = 5.0) -> None:
        super().__init__()
        if controller.num_ws != generator.num_ws:
            raise ValueError(f"animator: controller makes {controller.num_ws} ws, generator needs {generator.num_ws}")
        self.generator = generator
        self.controller = controller
        self.clamp_radius = clamp_radius

    def compose(
        self, identity_code: torch.Tensor, motion: torch.Tensor, clamp: bool = False, motion_code: torch.Tensor | None = None
    ) -> torch.Tensor:
        """w = w_id + C(x).

        Args:
            identity_code: w_id ``(B, 1, 512)`` in W or ``(B, num_ws, 512)`` in W+.
            motion: x ``(B, 70, 27)``.
            clamp: clamp w element-wise to w_avg ± ``clamp_radius``.
            motion_code: C(x) when already computed.

        Returns:
            ws ``(B, num_ws, 512)``.
        """
        if identity_code.dim() != 3 or identity_code.shape[1] not in (1, self.generator.num_ws):
            raise ValueError(
                f"identity code: expected (B, 1, 512) or (B, {self.generator.num_ws}, 512), found {tuple(identity_code.shape)}"
            )
        ws = identity_code + (self.controller(motion) if motion_code is None else motion_code)
        if clamp:
            w_avg = self.generator.w_avg
            ws = torch.maximum(torch.minimum(ws, w_avg + self.clamp_radius), w_avg - self.clamp_radius)
        return ws

    def planes(
        self, identity_code: torch.Tensor, motion: torch.Tensor, clamp: bool = False, noise_mode: str = "const",
        motion_code: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws ``(B, num_ws, 512)`` and tri-plane ``(B, 96, R, R)``; reuse them to render other cameras."""
        ws = self.compose(identity_code, motion, clamp, motion_code)
        return ws, self.generator.synthesize_planes(ws, noise_mode=noise_mode)

    def render(
        self,
        identity_code: torch.Tensor,
        motion: torch.Tensor,
        camera: torch.Tensor,
        noise_mode: str = "const",
        deterministic: bool = False,
        clamp: bool = False,
        neural_rendering_resolution: int | None = None,
        super_resolve: bool = True,
        planes: tuple[torch.Tensor, torch.Tensor] | None = None,
        motion_code: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render w_id + C(x) from camera p.

        Args:
            identity_code: w_id ``(B, 1, 512)`` or ``(B, num_ws, 512)``.
            motion: x ``(B, 70, 27)``.
            camera: p ``(B, 25)``.
            super_resolve: False skips the super-resolution module (no ``image`` in the output).
            planes: ``(ws, planes)`` from :meth:`planes` for the same identity and motion, to render
                a new camera without running the synthesis network again.
            motion_code: C(x) ``(B, num_ws, 512)`` when already computed (a frozen controller and a
                fixed x, as in inversion).

        Returns:
            The generator's dict: ``image`` ``(B, 3, H, W)``, ``image_raw`` ``(B, 3, r, r)``,
            ``image_depth`` ``(B, 1, r, r)``, ``image_feature``, ``planes``, ``ws`` and, unless
            ``planes`` were given, the motion code w_x ``motion_code`` ``(B, num_ws, 512)``.
        """
        if planes is None:
            motion_code = self.controller(motion) if motion_code is None else motion_code
            planes = self.planes(identity_code, motion, clamp, noise_mode, motion_code)
        else:
            motion_code = None
        ws, tri_plane = planes
        out = self.generator.render_image(tri_plane, ws, camera, neural_rendering_resolution, deterministic, super_resolve)
        out["planes"] = tri_plane
        out["ws"] = ws
        if motion_code is not None:
            out["motion_code"] = motion_code
        return out
