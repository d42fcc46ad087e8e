"""Pretraining the tiny generator on synthetic heads: the role EG3D's FFHQ weights play at full scale.

Adversarial training does not converge in two CPU hours, so the generator is trained as a
conditional auto-decoder. The synthetic head is analytic, so its occupancy and colour at any 3D point
are known in closed form (:func:`otavatar.data.synthetic.head_fields`): the first ``field_iterations``
supervise the tri-plane decoder directly at sampled points (near the visible surface, with its colour,
and along the view rays, with the occupancy), without ray marching, at a tenth of an image iteration's
cost. Then multi-view image reconstruction trains the neural renderer and
super-resolution (the field term stays on with ``field_weight``): every sample is a freshly rendered
synthetic head (random identity, expression and pose, :mod:`otavatar.data.synthetic`) seen from its
camera and from two extra yaws. Its known parameters (10 identity + 6 expression) go through a
learned embedding to z, the mapping network (conditioned on the frontal camera, so w does not depend
on the view) gives w, and G_eg renders every view with its exact camera; the loss is L1 against the
renders at the neural-rendering resolution and after super-resolution, plus (``region_weight``, from
iteration ``region_start``) the animation loss's L1 on RoI-aligned eye and mouth boxes, without which
the few pixels that carry expression are learnt last. Heads are drawn at random
every step, so no identity is ever seen twice and the dataset's held-out identities stay unseen;
w varies with expression, which gives the motion controller directions to use. At the end w_avg is
set to the mean w of many random heads: inversion starts from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.camera import LANDMARK_REFERENCE_SIZE, TRACKER_FOCAL, head_pose_camera, look_at_camera
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, IDENTITY_PARAMETERS, HeadModel, head_fields, sample_identity, sample_talking_sequence, surface_points
from otavatar.data.synthetic_video import EXTRA_VIEW_YAWS, render_video
from otavatar.losses.region import LANDMARK_GROUPS, RegionLoss
from otavatar.models.eg3d import TriPlaneGenerator
from otavatar.training.checkpointing import restore_rng_state, rng_state

NUM_PARAMETERS = len(IDENTITY_PARAMETERS) + len(EXPRESSION_PARAMETERS)


@dataclass
class PretrainSettings:
    """The recipe of ``pretrained/tiny_generator.pt``; configs/pretrain.yaml saves these defaults (a test holds them equal)."""

    iterations: int = 5250  # in all: the field iterations, then image iterations
    batch_size: int = 4
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.99)
    raw_weight: float = 1.0
    region_weight: float = 0.1
    region_start: int = 0  # the iteration from which the region term counts
    extra_view_yaws: tuple[float, ...] = EXTRA_VIEW_YAWS
    w_avg_samples: int = 2048
    field_iterations: int = 5000  # the first iterations train on closed-form fields only (no rendering)
    field_lr: float | None = 3e-2  # the learning rate of those iterations (None: lr) ...
    field_lr_end: float | None = 1e-3  # ... annealed (cosine) to this one by their end (None: held)
    field_weight: float = 0.5  # the field term's weight in the image iterations
    field_points: int = 8192  # points per head: half near the surface, half along view rays
    field_region_fraction: float = 0.5  # of the surface points, drawn in the eye and mouth boxes
    image_batch_size: int | None = 2  # heads per image iteration (None: batch_size); rendering costs more per head


class ParameterEmbedding(nn.Module):
    """Known head parameters ``(B, 16)`` → z ``(B, 512)``: the auto-decoder's latent."""

    def __init__(self, z_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(NUM_PARAMETERS, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, z_dim))

    def forward(self, parameters: torch.Tensor) -> torch.Tensor:
        return self.net(parameters)


# The field term compares a point's opacity over a depth with its occupancy. Occupied points must be
# opaque within a few fine samples; empty ones transparent over a long stretch of a ray, or the
# faint density left in empty space adds up along it into a coloured haze.
OCCUPIED_DEPTH = 0.02
EMPTY_DEPTH = 0.5
# Rays per side cast from each view, and the depth jitter of the points around the surface they hit.
FIELD_RAYS = 48
SURFACE_JITTER = 0.03


# The animation loss's regions (eyes and mouth), as boxes around their landmarks in head coordinates,
# padded in x and y by these margins; only the face side (z > 0) counts.
FEATURE_PADDING = {"left_eye": 0.025, "right_eye": 0.025, "mouth": 0.015}


def in_feature_boxes(head: HeadModel, points: torch.Tensor) -> torch.Tensor:
    """Whether points ``(..., 3)`` of a one-frame ``head`` lie in its eye or mouth box: ``(...)`` bool."""
    inside = torch.zeros(points.shape[:-1], dtype=torch.bool)
    for region, padding in FEATURE_PADDING.items():
        landmarks = head.landmarks[0, list(LANDMARK_GROUPS[region][0]), :2]
        low, high = landmarks.min(0).values - padding, landmarks.max(0).values + padding
        inside |= ((points[..., :2] >= low) & (points[..., :2] <= high)).all(-1)
    return inside & (points[..., 2] > 0)


def field_samples(identity: torch.Tensor, expression: torch.Tensor, cameras: torch.Tensor, count: int,
                  generator: torch.Generator, depth_range: tuple[float, float], region_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    """Closed-form supervision for a head (identity ``(10,)``, expression ``(6,)``) seen by cameras p ``(V, 25)``:
    ``points (count, 3)``, ``occupancy (count,)``, ``colour (count, 3)`` and ``colour_mask (count,)``.

    Half the points lie on view rays within ``SURFACE_JITTER`` of the visible surface and carry the
    closed-form colour there, on both sides (:func:`head_fields` with ``colour_outside``: the
    renderer averages neighbouring samples' colours), one colour per 3D point whichever view sees
    it; ``region_fraction`` of them are drawn from the rays that meet the head in its eye and mouth
    boxes (:func:`in_feature_boxes`), where expression lives, the rest from all rays that meet it.
    The other half lie on view rays at uniform depths of the renderer's ``depth_range``, where
    the renderer queries, and carry the head's occupancy: empty space must stay transparent (the
    renderer's white background shows through it).
    """
    view_head = HeadModel(identity, expression.expand(len(cameras), -1))
    hits, hit, directions = surface_points(view_head, cameras, FIELD_RAYS)
    origins = cameras[:, :16].view(-1, 4, 4)[:, None, :3, 3].expand_as(directions)
    head = HeadModel(identity, expression[None])
    surface, along = count // 2, count - count // 2
    features = hit & in_feature_boxes(head, hits)
    regional = int(surface * region_fraction) if features.any() else 0
    pick = torch.randint(int(hit.sum()), (surface - regional,), generator=generator)
    feature_pick = torch.randint(max(int(features.sum()), 1), (regional,), generator=generator)
    hit_points = torch.cat([hits[hit][pick], hits[features][feature_pick]])
    hit_directions = torch.cat([directions[hit][pick], directions[features][feature_pick]])
    jitter = (torch.rand(surface, 1, generator=generator) * 2 - 1) * SURFACE_JITTER
    ray = torch.randint(directions.shape[0] * directions.shape[1], (along,), generator=generator)
    depth = depth_range[0] + (depth_range[1] - depth_range[0]) * torch.rand(along, 1, generator=generator)
    ray_points = origins.reshape(-1, 3)[ray] + depth * directions.reshape(-1, 3)[ray]
    points = torch.cat([hit_points + jitter * hit_directions, ray_points])
    occupancy, colour = head_fields(head, points[None], colour_outside=True)
    return {
        "points": points, "occupancy": occupancy[0], "colour": colour[0],
        "colour_mask": torch.cat([torch.ones(surface, dtype=torch.bool), torch.zeros(along, dtype=torch.bool)]),
    }


def sample_heads(batch_size: int, resolution: int, generator: torch.Generator, extra_view_yaws=EXTRA_VIEW_YAWS,
                 field_points: int = 0, images: bool = True, depth_range: tuple[float, float] = (2.25, 3.3),
                 region_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    """Random synthetic heads: ``parameters (B, 16)``, ``cameras (B, V, 25)``; with ``images``, ``images (B, V, 3, R, R)``
    in [−1, 1] and ``keypoints (B, V, 68, 2)`` in 512-pixel coordinates; with ``field_points`` N, the
    :func:`field_samples` of every head, stacked ``(B, N, …)``."""
    samples = []
    for _ in range(batch_size):
        identity = sample_identity(generator)
        expression, angles, translation = sample_talking_sequence(16, generator)
        frame = int(torch.randint(16, (1,), generator=generator))
        pick = slice(frame, frame + 1)
        cameras = torch.cat([head_pose_camera(angles[pick] + torch.tensor([0.0, yaw, 0.0]), translation[pick], TRACKER_FOCAL)
                             for yaw in (0.0, *extra_view_yaws)])
        sample = {"parameters": torch.cat([identity, expression[frame]]), "cameras": cameras}
        if images:
            video = render_video(identity, expression[pick], angles[pick], translation[pick], resolution, extra_view_yaws)
            sample["images"] = torch.cat([video.images, video.view_images[:, 0]]) * 2 - 1
            sample["keypoints"] = torch.cat([video.keypoints, video.view_keypoints[:, 0]])
        if field_points:
            sample.update(field_samples(identity, expression[frame], cameras, field_points, generator, depth_range, region_fraction))
        samples.append(sample)
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


def field_learning_rate(settings: PretrainSettings, iteration: int) -> float:
    """The field iterations' learning rate at ``iteration``: ``field_lr``, annealed along a half cosine to
    ``field_lr_end`` at the last field iteration if that is set. A high rate draws the features early
    (eyes and an open mouth appear on one head at 3e-2, not at 2e-3) but leaves the fit noisy: lowered
    to 3e-3 after 3000 iterations at 3e-2, 300 more raise the held-out PSNR from 20.5 to 22.4 dB."""
    if settings.field_lr_end is None:
        return settings.field_lr
    progress = iteration / max(settings.field_iterations - 1, 1)
    return settings.field_lr_end + (settings.field_lr - settings.field_lr_end) * 0.5 * (1 + math.cos(math.pi * progress))


def frontal_condition(batch_size: int, generator: TriPlaneGenerator) -> torch.Tensor:
    """The mapping network's conditioning camera: frontal, for every head."""
    return look_at_camera(torch.zeros(batch_size), torch.zeros(batch_size)).to(generator.w_avg.device)


def render_views(generator: TriPlaneGenerator, ws: torch.Tensor, cameras: torch.Tensor, planes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render ws ``(B, num_ws, 512)`` (or their ``planes``) from cameras ``(B, V, 25)``: ``image (B·V, 3, H, W)`` and ``image_raw``."""
    views = cameras.shape[1]
    planes = (generator.synthesize_planes(ws) if planes is None else planes).repeat_interleave(views, dim=0)
    ws_views = ws.repeat_interleave(views, dim=0)
    return generator.render_image(planes, ws_views, cameras.reshape(-1, cameras.shape[-1]))


def reconstruction_loss(output: dict[str, torch.Tensor], images: torch.Tensor, raw_weight: float,
                        keypoints: torch.Tensor | None = None, region_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of the super-resolved image, (weighted) of the raw render against the area-downsampled
    target and (weighted, needs ``keypoints (B, V, 68, 2)`` at 512²) of the eye and mouth boxes."""
    target = images.reshape(-1, *images.shape[-3:])
    image = (output["image"] - target).abs().mean()
    raw = (output["image_raw"] - F.interpolate(target, size=output["image_raw"].shape[-2:], mode="area")).abs().mean()
    loss, terms = image + raw_weight * raw, {"l1_image": image.item(), "l1_raw": raw.item()}
    if region_weight:
        scale = target.shape[-1] / LANDMARK_REFERENCE_SIZE
        region = RegionLoss()(output["image"], target, keypoints.reshape(-1, 68, 2).to(target) * scale)
        loss, terms = loss + region_weight * region, {**terms, "l1_regions": region.item()}
    return loss, terms


def field_loss(generator: TriPlaneGenerator, planes: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the decoder's opacity against the closed-form occupancy (over ``OCCUPIED_DEPTH`` where
    occupied, ``EMPTY_DEPTH`` where empty), plus L1 of its colour where the colour is known
    (``field_samples``), at points ``(B, N, 3)``."""
    out = generator.sample_points(planes, batch["points"])
    sigma = F.softplus(out["sigma"][..., 0] - 1)
    occupied = batch["occupancy"]
    # −log(1 − opacity) of an empty point is σ·depth; −log(opacity) of an occupied one, written stably.
    empty_loss = sigma * EMPTY_DEPTH
    occupied_loss = -torch.log((-torch.expm1(-sigma * OCCUPIED_DEPTH)).clamp_min(1e-6))
    occupancy = torch.where(occupied, occupied_loss, empty_loss).mean()
    colour = (out["rgb"][..., :3] - batch["colour"]).abs()[batch["colour_mask"]].mean()
    return occupancy + colour, {"field_occupancy": occupancy.item(), "field_colour": colour.item()}


@torch.no_grad()
def mean_w(generator: TriPlaneGenerator, embedding: ParameterEmbedding, samples: int, seed: int) -> torch.Tensor:
    """The mean w ``(512,)`` of ``samples`` random heads' parameters."""
    g = torch.Generator().manual_seed(seed)
    parameters = []
    for _ in range(samples):
        identity = sample_identity(g)
        expression, _, _ = sample_talking_sequence(16, g)
        parameters.append(torch.cat([identity, expression[int(torch.randint(16, (1,), generator=g))]]))
    parameters = torch.stack(parameters).to(generator.w_avg.device)
    ws = generator.mapping(embedding(parameters), frontal_condition(samples, generator))
    return ws[:, 0].mean(0)


class GeneratorPretrainer:
    """One optimiser over G_eg and the parameter embedding; ``step()`` trains on one batch of random heads."""

    def __init__(self, generator: TriPlaneGenerator, settings: PretrainSettings, seed: int = 0) -> None:
        self.generator = generator
        self.settings = settings
        self.embedding = ParameterEmbedding(generator.z_dim).to(generator.w_avg.device)
        self.optimizer = torch.optim.Adam([*generator.parameters(), *self.embedding.parameters()], lr=settings.lr, betas=settings.betas)
        self.data_generator = torch.Generator().manual_seed(seed)
        self.iteration = 0

    def step(self) -> dict[str, float]:
        device = self.generator.w_avg.device
        settings = self.settings
        fields_only = self.iteration < settings.field_iterations
        field_weight = 1.0 if fields_only else settings.field_weight
        batch_size = settings.batch_size if fields_only else settings.image_batch_size or settings.batch_size
        for group in self.optimizer.param_groups:
            group["lr"] = field_learning_rate(settings, self.iteration) if fields_only and settings.field_lr else settings.lr
        batch = sample_heads(batch_size, self.generator.img_resolution, self.data_generator, settings.extra_view_yaws,
                             field_points=settings.field_points if field_weight else 0, images=not fields_only,
                             depth_range=(self.generator.rendering_kwargs["ray_start"], self.generator.rendering_kwargs["ray_end"]),
                             region_fraction=settings.field_region_fraction)
        batch = {key: value.to(device) for key, value in batch.items()}
        ws = self.generator.mapping(self.embedding(batch["parameters"]), frontal_condition(batch_size, self.generator))
        planes = self.generator.synthesize_planes(ws)
        loss, terms = torch.zeros((), device=device), {}
        if not fields_only:
            output = render_views(self.generator, ws, batch["cameras"], planes)
            region_weight = settings.region_weight if self.iteration >= settings.region_start else 0.0
            loss, terms = reconstruction_loss(output, batch["images"], settings.raw_weight, batch["keypoints"], region_weight)
        if field_weight:
            fields, field_terms = field_loss(self.generator, planes, batch)
            loss, terms = loss + field_weight * fields, {**terms, **field_terms}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return {"loss": loss.item(), **terms}

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(), "embedding": self.embedding.state_dict(),
            "optimizer": self.optimizer.state_dict(), "iteration": self.iteration, "data_rng": self.data_generator.get_state(),
            "rng": rng_state(),  # the renderer's stratified samples draw from the global generators
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.embedding.load_state_dict(state["embedding"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
        self.data_generator.set_state(state["data_rng"])
        restore_rng_state(state["rng"])

    def initialise_from(self, state: dict) -> None:
        """Continue from an earlier recipe's output (``G_ema``, and its ``embedding`` if it has one); fresh optimiser."""
        self.generator.load_state_dict(state["G_ema"])
        if "embedding" in state:
            self.embedding.load_state_dict(state["embedding"])

    def finish(self, seed: int) -> None:
        """Set w_avg to the mean w of random heads (the start of every inversion)."""
        self.generator.backbone.mapping.w_avg.copy_(mean_w(self.generator, self.embedding, self.settings.w_avg_samples, seed))


def pretrain(
    trainer: GeneratorPretrainer,
    on_checkpoint: Callable[[GeneratorPretrainer], None],
    checkpoint_every: int,
    log: Callable[[int, dict[str, float], float], None],
) -> None:
    """Run to ``settings.iterations`` from wherever ``trainer`` is, checkpointing every ``checkpoint_every``."""
    started = time.perf_counter()
    while trainer.iteration < trainer.settings.iterations:
        terms = trainer.step()
        log(trainer.iteration, terms, time.perf_counter() - started)
        if trainer.iteration % checkpoint_every == 0 or trainer.iteration == trainer.settings.iterations:
            on_checkpoint(trainer)
