"""Procedural 3D talking heads with exact ground truth, rendered in PyTorch on the CPU.

A head is a union of ellipsoids in a canonical frame (centre at the origin, +y up, the face looking
toward +z): skull, chin, neck, ears, nose, eyes with irises and eyelids, brows, lips, the mouth
opening and a hair cap. Identity parameters shape and colour it; expression parameters move the
jaw, lips, eyelids and brows. Rays are intersected with every ellipsoid in closed form, the nearest
hit wins and is shaded with a light fixed to the head. Head pose is realised, as in the reference
data, by moving the camera around the canonical head (cameras from :mod:`otavatar.camera`), so the
ground truth of any identity × motion × view is one render away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from otavatar.camera import FRONTAL_TRANSLATION_Z, LANDMARK_REFERENCE_SIZE
from otavatar.models.rendering.rays import ray_bundle

IDENTITY_PARAMETERS = (
    "head_width", "face_length", "skin_tone", "hair_colour", "hair_volume",
    "eye_colour", "eye_spacing", "nose_size", "mouth_width", "ear_size",
)
EXPRESSION_PARAMETERS = ("jaw_open", "smile", "right_eyelid", "left_eyelid", "brows", "lip_pucker")

# Part ids of the label map.
BACKGROUND, SKIN, HAIR, EYE_WHITE, IRIS, MOUTH, LIPS = range(7)
PART_NAMES = ("background", "skin", "hair", "eye_white", "iris", "mouth", "lips")
# White, what a tri-plane renderer with white_back shows where a ray meets nothing: empty space is
# then empty everywhere, so the generator needs no opaque backdrop of its own.
BACKGROUND_COLOUR = (1.0, 1.0, 1.0)
LIGHT = (0.35, 0.45, 0.82)
HEAD_SCALE = 0.86
# Which face of a part a ray meets: its ellipsoid, or one of the hair cap's two flat cuts.
SHELL, HAIR_LINE_FACE, HAIR_BACK_FACE = range(3)


def _lerp(a, b, t):
    return tuple(x + (y - x) * t for x, y in zip(a, b))


@dataclass
class Ellipsoid:
    centre: torch.Tensor  # (F, 3)
    radii: torch.Tensor  # (F, 3)
    colour: tuple[float, float, float]
    part: int
    hair_clip: bool = False


def sample_identity(generator: torch.Generator) -> torch.Tensor:
    """Identity parameters ``(10,)`` uniform in [−1, 1] (names: ``IDENTITY_PARAMETERS``)."""
    return torch.rand(len(IDENTITY_PARAMETERS), generator=generator) * 2 - 1


def _smooth_curve(frames: int, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    """A sum of two random sinusoids over ``frames``, scaled to [low, high]."""
    t = torch.arange(frames, dtype=torch.float32)
    frequency = 0.05 + 0.25 * torch.rand(2, generator=generator)
    phase = 2 * math.pi * torch.rand(2, generator=generator)
    wave = 0.6 * torch.sin(frequency[0] * t + phase[0]) + 0.4 * torch.sin(frequency[1] * t + phase[1])
    return low + (high - low) * (wave + 1) / 2


def sample_talking_sequence(frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A smooth "talking" sequence.

    Returns:
        expression ``(F, 6)`` (``EXPRESSION_PARAMETERS``), pose angles ``(F, 3)`` (pitch, yaw, roll in
        the 3DMM convention) and translations ``(F, 3)`` in tracker units.
    """
    t = torch.arange(frames, dtype=torch.float32)
    syllables = 0.25 + 0.35 * torch.rand(1, generator=generator)
    jaw = (torch.sin(syllables * t + 6 * torch.rand(1, generator=generator)).abs() * _smooth_curve(frames, generator, 0.2, 1.0)).clamp(0, 1)
    blink_every = int(12 + 10 * torch.rand(1, generator=generator))
    blink_phase = int(blink_every * torch.rand(1, generator=generator))
    blink = ((t + blink_phase) % blink_every < 2).float()
    expression = torch.stack(
        [
            jaw,
            _smooth_curve(frames, generator, -0.8, 1.0),
            (0.1 + 0.9 * blink).clamp(0, 1),
            (0.1 + 0.9 * blink + _smooth_curve(frames, generator, -0.1, 0.3)).clamp(0, 1),
            _smooth_curve(frames, generator, -1.0, 1.0),
            _smooth_curve(frames, generator, -0.6, 0.8).clamp(min=0),
        ],
        dim=1,
    )
    angles = torch.stack(
        [_smooth_curve(frames, generator, -0.15, 0.15), _smooth_curve(frames, generator, -0.35, 0.35), _smooth_curve(frames, generator, -0.08, 0.08)],
        dim=1,
    )
    translation = torch.stack(
        [_smooth_curve(frames, generator, -0.08, 0.08), _smooth_curve(frames, generator, -0.08, 0.08),
         FRONTAL_TRANSLATION_Z + _smooth_curve(frames, generator, -0.15, 0.15)],
        dim=1,
    )
    return expression, angles, translation


class HeadModel:
    """The ellipsoids and 68 landmarks of one identity under F expressions.

    Args:
        identity: ``(10,)`` identity parameters in [−1, 1].
        expression: ``(F, 6)`` expression parameters.
    """

    def __init__(self, identity: torch.Tensor, expression: torch.Tensor) -> None:
        p = dict(zip(IDENTITY_PARAMETERS, identity.tolist()))
        e = {name: expression[:, i] for i, name in enumerate(EXPRESSION_PARAMETERS)}
        frames = expression.shape[0]
        self.frames = frames
        one = torch.ones(frames)

        def vec(x, y, z):
            return torch.stack([torch.as_tensor(v, dtype=torch.float32) * one for v in (x, y, z)], dim=1)

        rx, ry, rz = 0.19 + 0.025 * p["head_width"], 0.25 + 0.03 * p["face_length"], 0.22
        self.head_radii = (rx, ry, rz)
        skin = _lerp((0.95, 0.79, 0.68), (0.46, 0.31, 0.22), (p["skin_tone"] + 1) / 2)
        shade = tuple(c * 0.85 for c in skin)
        hair_t = (p["hair_colour"] + 1) / 2
        hair = _lerp((0.07, 0.05, 0.04), (0.47, 0.29, 0.13), min(hair_t * 2, 1)) if hair_t < 0.5 else _lerp((0.47, 0.29, 0.13), (0.86, 0.72, 0.42), hair_t * 2 - 1)
        iris = _lerp((0.18, 0.38, 0.78), (0.33, 0.19, 0.09), (p["eye_colour"] + 1) / 2)
        volume = 1.06 + 0.07 * (p["hair_volume"] + 1) / 2

        def surface_z(x, y):
            inside = (1 - (x / rx) ** 2 - (y / ry) ** 2)
            return rz * (inside.clamp(min=0.02) if torch.is_tensor(inside) else max(inside, 0.02)) ** 0.5

        # Features are sized to be legible at a 64² neural rendering (embedded-measurements.md):
        # an eye spans ~6 rays, the mouth ~12, and every expression moves several rays' worth.
        eye_x = 0.08 + 0.01 * p["eye_spacing"]
        eye_y = 0.04
        eye_r = 0.034
        eye_z = surface_z(eye_x, eye_y) - 0.008
        mouth_y = -0.118 + 0.008 * e["smile"].clamp(min=0)
        mouth_half = (0.064 + 0.01 * p["mouth_width"]) * (rx / 0.19) * (1 + 0.3 * e["smile"]) * (1 - 0.4 * e["lip_pucker"])
        opening = 0.004 + 0.045 * e["jaw_open"]
        mouth_y = mouth_y - 0.5 * (opening - 0.004)  # the jaw carries the opening down, away from the nose
        jaw_drop = 0.04 * e["jaw_open"]
        mouth_z = surface_z(0.0, -0.118) - 0.008 + 0.02 * e["lip_pucker"]
        lip_h = 0.013 * (1 - 0.3 * e["smile"].clamp(min=0)) * (1 + 0.5 * e["lip_pucker"])
        nose_scale = 1 + 0.25 * p["nose_size"]
        ear_scale = 1 + 0.3 * p["ear_size"]
        brow_y = eye_y + 0.058 + 0.022 * e["brows"]

        self.parts: list[Ellipsoid] = [
            Ellipsoid(vec(0, 0, 0), vec(rx, ry, rz), skin, SKIN),
            Ellipsoid(vec(0, -0.15 - jaw_drop, 0.03), vec(rx * 0.62, 0.09, rz * 0.72), skin, SKIN),
            Ellipsoid(vec(0, -0.32, -0.04), vec(0.085, 0.16, 0.085), shade, SKIN),
            Ellipsoid(vec(-rx * 0.98, 0.0, -0.01), vec(0.022 * ear_scale, 0.05 * ear_scale, 0.035 * ear_scale), shade, SKIN),
            Ellipsoid(vec(rx * 0.98, 0.0, -0.01), vec(0.022 * ear_scale, 0.05 * ear_scale, 0.035 * ear_scale), shade, SKIN),
            Ellipsoid(vec(0, -0.025, surface_z(0.0, -0.025) + 0.005), vec(0.024 * nose_scale, 0.042 * nose_scale, 0.035 * nose_scale), skin, SKIN),
            Ellipsoid(vec(0, 0.05, -0.035), vec(rx * volume, ry * volume * 0.98, rz * volume), hair, HAIR, hair_clip=True),
        ]
        for side in (-1, 1):
            closure = e["right_eyelid"] if side < 0 else e["left_eyelid"]
            self.parts += [
                Ellipsoid(vec(side * eye_x, eye_y, eye_z), vec(eye_r, eye_r * 0.8, eye_r), (0.96, 0.96, 0.94), EYE_WHITE),
                Ellipsoid(vec(side * eye_x, eye_y, eye_z + eye_r * 0.7), vec(eye_r * 0.58, eye_r * 0.58, eye_r * 0.36), iris, IRIS),
                # An open lid slides up and back into the skull; a closed one covers the eye.
                Ellipsoid(vec(side * eye_x, eye_y + 0.04 * (1 - closure), eye_z + 0.002 - 0.03 * (1 - closure)), vec(eye_r * 1.12, eye_r * 1.05, eye_r * 1.08), shade, SKIN),
                Ellipsoid(vec(side * eye_x, brow_y, surface_z(eye_x, brow_y) - 0.003), vec(0.044, 0.011, 0.014), hair, HAIR),
            ]
        self.parts += [
            Ellipsoid(vec(0, mouth_y, mouth_z), torch.stack([mouth_half * 0.9, opening, one * 0.02], 1), (0.25, 0.05, 0.07), MOUTH),
            # Upper teeth, seen when the jaw opens.
            Ellipsoid(vec(0, mouth_y + opening * 0.55, mouth_z + 0.004), torch.stack([mouth_half * 0.62, opening * 0.4 + 0.001, one * 0.02], 1), (0.93, 0.92, 0.86), MOUTH),
            Ellipsoid(vec(0, mouth_y + opening + lip_h * 0.6, mouth_z + 0.012), torch.stack([mouth_half, lip_h, one * 0.018], 1), (0.72, 0.3, 0.32), LIPS),
            Ellipsoid(vec(0, mouth_y - opening - lip_h * 0.7, mouth_z + 0.01), torch.stack([mouth_half * 0.92, lip_h * 1.2, one * 0.018], 1), (0.72, 0.3, 0.32), LIPS),
        ]
        landmarks = self._landmarks(rx, ry, surface_z, eye_x, eye_y, eye_r, eye_z, e, mouth_y, mouth_half, opening, lip_h, mouth_z, jaw_drop, brow_y, nose_scale)
        # The head is modelled at a convenient size, then scaled to leave a margin in the frame.
        for part in self.parts:
            part.centre, part.radii = part.centre * HEAD_SCALE, part.radii * HEAD_SCALE
        self.landmarks = landmarks * HEAD_SCALE
        self.hair_line = 0.155 * HEAD_SCALE  # above the raised brows
        self.hair_back = -0.02 * HEAD_SCALE

    @staticmethod
    def _landmarks(rx, ry, surface_z, eye_x, eye_y, eye_r, eye_z, e, mouth_y, mouth_half, opening, lip_h, mouth_z, jaw_drop, brow_y, nose_scale) -> torch.Tensor:
        """68 points ``(F, 68, 3)`` in the iBUG order; index 0 and the first eye/brow are the subject's right (−x)."""
        frames = mouth_half.shape[0]
        points = torch.zeros(frames, 68, 3)
        # Jaw 0–16: from the right ear round the chin to the left ear.
        angle = torch.linspace(-math.pi / 2 * 0.95, math.pi / 2 * 0.95, 17)
        jaw_x = rx * 0.93 * torch.sin(angle)
        jaw_y = -max(ry, 0.25) * 0.93 * torch.cos(angle)  # the chin, not the skull, bounds a short face
        points[:, 0:17, 0] = jaw_x
        points[:, 0:17, 1] = jaw_y - jaw_drop[:, None] * torch.cos(angle) ** 2
        points[:, 0:17, 2] = torch.tensor([surface_z(x, y) for x, y in zip(jaw_x.tolist(), jaw_y.tolist())]) * 0.85
        # Brows 17–26.
        for start, side in ((17, -1), (22, 1)):
            points[:, start : start + 5, 0] = side * eye_x + torch.linspace(-0.034, 0.034, 5)
            points[:, start : start + 5, 1] = brow_y[:, None] + 0.006
            points[:, start : start + 5, 2] = surface_z(eye_x, brow_y)[:, None] + 0.008
        # Nose 27–35: bridge down to the tip, then the base from right to left.
        bridge_y = torch.linspace(eye_y, -0.025 - 0.03 * nose_scale, 4)
        points[:, 27:31, 1] = bridge_y
        points[:, 27:31, 2] = torch.stack([torch.as_tensor(surface_z(0.0, float(y))) for y in bridge_y]) + torch.linspace(0.0, 0.04 * nose_scale, 4)
        points[:, 31:36, 0] = torch.linspace(-0.024, 0.024, 5) * nose_scale
        points[:, 31:36, 1] = -0.025 - 0.038 * nose_scale
        points[:, 31:36, 2] = surface_z(0.0, -0.065) + 0.012
        # Eyes 36–47, each clockwise in the image from its leftmost corner: two upper-lid points,
        # the rightmost corner, two lower-lid points.
        offsets = torch.tensor([-1.0, -0.4, 0.4, 1.0, 0.4, -0.4]) * eye_r * 0.72
        for start, side, closure in ((36, -1, e["right_eyelid"]), (42, 1, e["left_eyelid"])):
            open_height = eye_r * 0.75 * (1 - closure)
            below = -eye_r * 0.6 * torch.ones(frames)
            lids = torch.stack([torch.zeros(frames), open_height, open_height, torch.zeros(frames), below, below], 1)
            points[:, start : start + 6, 0] = side * eye_x + offsets
            points[:, start : start + 6, 1] = eye_y + lids * 0.85
            points[:, start : start + 6, 2] = eye_z + eye_r * 0.95
        # Mouth 48–59 outer lip (right corner, upper lip, left corner, lower lip), 60–67 inner.
        outer = torch.tensor([-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0, 0.6, 0.25, 0.0, -0.25, -0.6])
        upper = torch.tensor([0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool)
        lower = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
        points[:, 48:60, 0] = mouth_half[:, None] * outer * 0.88
        points[:, 48:60, 1] = mouth_y[:, None]
        points[:, 48:60, 1] += upper * (opening + lip_h * 1.3)[:, None] * (1 - 0.3 * outer.abs())
        points[:, 48:60, 1] -= lower * (opening + lip_h * 1.5)[:, None] * (1 - 0.3 * outer.abs())
        points[:, 48:60, 2] = mouth_z[:, None] + 0.024
        inner = torch.tensor([-1.0, -0.4, 0.0, 0.4, 1.0, 0.4, 0.0, -0.4])
        inner_sign = torch.tensor([0.0, 1, 1, 1, 0, -1, -1, -1])
        points[:, 60:68, 0] = mouth_half[:, None] * inner * 0.8
        points[:, 60:68, 1] = mouth_y[:, None] + inner_sign * opening[:, None] * 0.8
        points[:, 60:68, 2] = mouth_z[:, None] + 0.02
        return points


def _stacked(parts: list[Ellipsoid]) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and radii of the parts, ``(F, P, 3)`` each."""
    return torch.stack([p.centre for p in parts], 1), torch.stack([p.radii for p in parts], 1)


def _shading(normal: torch.Tensor) -> torch.Tensor:
    """Lambertian shading ``(…)`` of unit normals ``(…, 3)`` under the light fixed to the head, with ambient."""
    return 0.38 + 0.62 * (normal @ torch.nn.functional.normalize(torch.tensor(LIGHT), dim=0)).clamp(min=0)


def _intersect(parts: list[Ellipsoid], origins: torch.Tensor, directions: torch.Tensor, hair_line: float, hair_back: float):
    """Nearest ray–solid hits. origins/directions ``(F, M, 3)`` → depth ``(F, M)``, part index ``(F, M)`` and
    the face that was hit ``(F, M)``: ``SHELL`` (the ellipsoid) or a flat face of the hair cap (``HAIR_LINE_FACE``,
    ``HAIR_BACK_FACE``).

    All rays of a frame start at the camera centre, so with o' = (o − c)/r and d' = d/r the
    quadratic's coefficients a = d'·d', b = o'·d', c = o'·o' − 1 are two matrix products and a
    per-(frame, part) constant. The hair cap is a solid, the ellipsoid where y > hair_line or
    z < hair_back: a ray entering the ellipsoid in the cut-away part enters the cap where it crosses
    one of those planes, so every view sees the same solid (a volume renderer can only show solids).
    """
    centres, radii = _stacked(parts)  # (F, P, 3)
    camera = origins[:, 0]  # (F, 3)
    offset = camera[:, None] - centres  # (F, P, 3)
    a = directions.square() @ (1 / radii.square()).transpose(1, 2)  # (F, M, P)
    b = directions @ (offset / radii.square()).transpose(1, 2)
    c = (offset.square() / radii.square()).sum(-1)[:, None, :] - 1
    disc = b * b - a * c
    root = disc.clamp(min=0).sqrt()
    t = (-b - root) / a
    valid = (disc > 0) & (t > 0)
    face = torch.full_like(t, SHELL, dtype=torch.long)
    for index, part in enumerate(parts):
        if part.hair_clip:
            t_in, t_out = t[..., index], (-b[..., index] + root[..., index]) / a[..., index]
            dy, dz = directions[..., 1], directions[..., 2]
            y0, z0 = camera[:, None, 1], camera[:, None, 2]
            # Where the ray, heading up or back, crosses into the kept half-spaces.
            t_line = torch.where(dy > 0, (hair_line - y0) / dy, torch.full_like(dy, float("inf")))
            t_back = torch.where(dz < 0, (hair_back - z0) / dz, torch.full_like(dz, float("inf")))
            kept_at_entry = (y0 + t_in * dy > hair_line) | (z0 + t_in * dz < hair_back)
            t_line = torch.where((t_line > t_in) & (t_line < t_out), t_line, torch.full_like(t_line, float("inf")))
            t_back = torch.where((t_back > t_in) & (t_back < t_out), t_back, torch.full_like(t_back, float("inf")))
            t_plane = torch.minimum(t_line, t_back)
            t[..., index] = torch.where(kept_at_entry, t_in, t_plane)
            face[..., index] = torch.where(kept_at_entry, SHELL, torch.where(t_line <= t_back, HAIR_LINE_FACE, HAIR_BACK_FACE))
            valid[..., index] &= kept_at_entry | torch.isfinite(t_plane)
    t = torch.where(valid, t, torch.full_like(t, float("inf")))
    depth, index = t.min(-1)
    return depth, index, face.gather(-1, index[..., None])[..., 0]


def _face_normals(face: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """The outward normals ``(…, 3)`` of the hair cap's flat faces where ``face`` ``(…)`` names one, else ``normal``."""
    normal = torch.where((face == HAIR_LINE_FACE)[..., None], torch.tensor([0.0, -1.0, 0.0]), normal)
    return torch.where((face == HAIR_BACK_FACE)[..., None], torch.tensor([0.0, 0.0, 1.0]), normal)


def head_fields(head: HeadModel, points: torch.Tensor, colour_outside: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's occupancy and colour in closed form at world points ``(F, M, 3)`` (frame f of the head).

    Returns:
        occupancy ``(F, M)`` (bool) and colour ``(F, M, 3)`` in [0, 1], background where empty (with
        ``colour_outside``, the colour of the nearest part's surface: a volume renderer averages
        neighbouring samples, so the samples in front of a surface must carry its colour too).
        Inside several parts the one listed last owns the point: features are listed after what
        they sit on and are visible where they stick out of it (an iris stands 2 thousandths in
        front of its eyeball), so a point a volume renderer samples behind the visible surface
        carries the colour that surface shows. It is shaded with the owner's normal at the point
        (the ellipsoid's, or the hair cap's flat cut's where that is nearer); shading is fixed to
        the head, so colour does not depend on the view.
    """
    centres, radii = _stacked(head.parts)  # (F, P, 3)
    relative = (points[:, :, None] - centres[:, None]) / radii[:, None]  # (F, M, P, 3)
    level = relative.square().sum(-1)
    gradient = 2 * relative / radii[:, None]
    inside = level < 1
    clip = torch.tensor([p.hair_clip for p in head.parts])
    above_line, behind_back = points[..., 1] - head.hair_line, head.hair_back - points[..., 2]  # (F, M)
    kept = ~clip | ((above_line > 0) | (behind_back > 0))[..., None]
    inside &= kept
    occupancy = inside.any(-1)
    owner = (inside * torch.arange(1, len(head.parts) + 1)).argmax(-1)
    # First-order distance to each part's surface, positive inside.
    depth = (1 - level) / gradient.norm(dim=-1).clamp_min(1e-9)
    if colour_outside:
        owner = torch.where(occupancy, owner, torch.where(kept, depth.abs(), torch.inf).argmin(-1))
    normal = torch.nn.functional.normalize(gradient.gather(2, owner[..., None, None].expand(-1, -1, 1, 3))[:, :, 0], dim=-1)
    # In the cap, the nearer of the shell and the one cut the point is kept by.
    shell_distance = depth.gather(2, owner[..., None])[..., 0]
    cut = torch.where(above_line > 0, torch.where(behind_back > 0, SHELL, HAIR_LINE_FACE), HAIR_BACK_FACE)
    cut_distance = torch.where(cut == HAIR_LINE_FACE, above_line, behind_back)
    in_cap = clip[owner] & (cut != SHELL) & (cut_distance < shell_distance)
    normal = _face_normals(torch.where(in_cap, cut, SHELL), normal)
    colours = torch.tensor([p.colour for p in head.parts])
    colour = colours[owner] * _shading(normal)[..., None]
    if colour_outside:
        return occupancy, colour
    return occupancy, torch.where(occupancy[..., None], colour, torch.tensor(BACKGROUND_COLOUR))


def surface_points(head: HeadModel, cameras: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the rays of cameras p ``(F, 25)`` (``resolution²`` each) first meet the head.

    Returns:
        points ``(F, R², 3)``, hit ``(F, R²)`` (bool) and unit ray directions ``(F, R², 3)``.
    """
    origins, directions = ray_bundle(cameras, resolution)
    depth, _, _ = _intersect(head.parts, origins, directions, head.hair_line, head.hair_back)
    hit = torch.isfinite(depth)
    return origins + depth.clamp(max=10)[..., None] * directions, hit, directions


def render_heads(head: HeadModel, cameras: torch.Tensor, resolution: int, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every frame of ``head`` from its camera p ``(F, 25)``.

    Returns:
        images ``(F, 3, R, R)`` in [0, 1] and part labels ``(F, R, R)`` (``PART_NAMES``).
    """
    frames = cameras.shape[0]
    colours = torch.tensor([p.colour for p in head.parts])
    part_ids = torch.tensor([p.part for p in head.parts])
    images = torch.empty(frames, 3, resolution, resolution)
    labels = torch.empty(frames, resolution, resolution, dtype=torch.long)
    background = torch.tensor(BACKGROUND_COLOUR)
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        parts = [Ellipsoid(p.centre[start:stop], p.radii[start:stop], p.colour, p.part, p.hair_clip) for p in head.parts]
        origins, directions = ray_bundle(cameras[start:stop], resolution)
        depth, index, face = _intersect(parts, origins, directions, head.hair_line, head.hair_back)
        hit = torch.isfinite(depth)
        point = origins + depth.clamp(max=10)[..., None] * directions
        centres, radii = _stacked(parts)
        centre = centres.gather(1, index[..., None].expand(-1, -1, 3))
        radius = radii.gather(1, index[..., None].expand(-1, -1, 3))
        normal = (point - centre) / radius**2
        normal = _face_normals(face, normal * normal.square().sum(-1, keepdim=True).clamp_min(1e-12).rsqrt())
        shading = _shading(normal)
        colour = colours[index] * shading[..., None]
        colour = torch.where(hit[..., None], colour, background)
        label = torch.where(hit, part_ids[index], torch.zeros_like(index))
        images[start:stop] = colour.permute(0, 2, 1).reshape(-1, 3, resolution, resolution)
        labels[start:stop] = label.reshape(-1, resolution, resolution)
    return images.clamp(0, 1), labels


def project_points(points: torch.Tensor, cameras: torch.Tensor, image_size: float = LANDMARK_REFERENCE_SIZE) -> torch.Tensor:
    """World points ``(F, K, 3)`` → pixel coordinates ``(F, K, 2)`` of an ``image_size`` image seen by p ``(F, 25)``."""
    cam2world = cameras[:, :16].view(-1, 4, 4)
    intrinsics = cameras[:, 16:].view(-1, 3, 3)
    local = (points - cam2world[:, None, :3, 3]) @ cam2world[:, :3, :3]
    uv = local[..., :2] / local[..., 2:3]
    u = intrinsics[:, None, 0, 0] * uv[..., 0] + intrinsics[:, None, 0, 1] * uv[..., 1] + intrinsics[:, None, 0, 2]
    v = intrinsics[:, None, 1, 1] * uv[..., 1] + intrinsics[:, None, 1, 2]
    return torch.stack([u, v], -1) * image_size
