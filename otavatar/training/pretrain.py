"""Pretraining the tiny generator on synthetic heads: the role EG3D's FFHQ weights play at full scale.

Adversarial training does not converge in two CPU hours, so the generator is trained as a
conditional auto-decoder with multi-view reconstruction: every sample is a freshly rendered
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

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.camera import look_at_camera
from otavatar.data.synthetic import (
    EXPRESSION_PARAMETERS,
    EXTRA_VIEW_YAWS,
    IDENTITY_PARAMETERS,
    render_video,
    sample_identity,
    sample_talking_sequence,
)
from otavatar.losses.region import RegionLoss
from otavatar.models.eg3d import TriPlaneGenerator
from otavatar.training.checkpointing import restore_rng_state, rng_state

NUM_PARAMETERS = len(IDENTITY_PARAMETERS) + len(EXPRESSION_PARAMETERS)


@dataclass
class PretrainSettings:
    """The recipe (configs/pretrain.yaml)."""

    iterations: int = 3000
    batch_size: int = 4
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.99)
    raw_weight: float = 1.0
    region_weight: float = 0.0
    region_start: int = 0  # the iteration from which the region term counts
    extra_view_yaws: tuple[float, ...] = EXTRA_VIEW_YAWS
    w_avg_samples: int = 2048


class ParameterEmbedding(nn.Module):
    """Known head parameters ``(B, 16)`` → z ``(B, 512)``: the auto-decoder's latent."""

    def __init__(self, z_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(NUM_PARAMETERS, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, z_dim))

    def forward(self, parameters: torch.Tensor) -> torch.Tensor:
        return self.net(parameters)


def sample_heads(batch_size: int, resolution: int, generator: torch.Generator, extra_view_yaws=EXTRA_VIEW_YAWS) -> dict[str, torch.Tensor]:
    """Random synthetic heads: ``parameters (B, 16)``, ``images (B, V, 3, R, R)`` in [−1, 1], ``cameras (B, V, 25)``,
    ``keypoints (B, V, 68, 2)`` in 512-pixel coordinates."""
    parameters, images, cameras, keypoints = [], [], [], []
    for _ in range(batch_size):
        identity = sample_identity(generator)
        expression, angles, translation = sample_talking_sequence(16, generator)
        frame = int(torch.randint(16, (1,), generator=generator))
        pick = slice(frame, frame + 1)
        video = render_video(identity, expression[pick], angles[pick], translation[pick], resolution, extra_view_yaws)
        parameters.append(torch.cat([identity, expression[frame]]))
        images.append(torch.cat([video.images, video.view_images[:, 0]]) * 2 - 1)
        cameras.append(torch.cat([video.cameras, video.view_cameras[:, 0]]))
        keypoints.append(torch.cat([video.keypoints, video.view_keypoints[:, 0]]))
    return {"parameters": torch.stack(parameters), "images": torch.stack(images), "cameras": torch.stack(cameras), "keypoints": torch.stack(keypoints)}


def frontal_condition(batch_size: int, generator: TriPlaneGenerator) -> torch.Tensor:
    """The mapping network's conditioning camera: frontal, for every head."""
    return look_at_camera(torch.zeros(batch_size), torch.zeros(batch_size)).to(generator.w_avg.device)


def render_views(generator: TriPlaneGenerator, ws: torch.Tensor, cameras: torch.Tensor) -> dict[str, torch.Tensor]:
    """Render ws ``(B, num_ws, 512)`` from cameras ``(B, V, 25)``: ``image (B·V, 3, H, W)`` and ``image_raw``."""
    views = cameras.shape[1]
    planes = generator.synthesize_planes(ws).repeat_interleave(views, dim=0)
    ws_views = ws.repeat_interleave(views, dim=0)
    output = generator.render_planes(planes, cameras.reshape(-1, cameras.shape[-1]))
    output["image"] = generator.super_resolve(output["image_raw"], output["image_feature"], ws_views)
    return output


def reconstruction_loss(output: dict[str, torch.Tensor], images: torch.Tensor, raw_weight: float,
                        keypoints: torch.Tensor | None = None, region_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of the super-resolved image, (weighted) of the raw render against the area-downsampled
    target and (weighted, needs ``keypoints (B, V, 68, 2)`` at 512²) of the eye and mouth boxes."""
    target = images.reshape(-1, *images.shape[-3:])
    image = (output["image"] - target).abs().mean()
    raw = (output["image_raw"] - F.interpolate(target, size=output["image_raw"].shape[-2:], mode="area")).abs().mean()
    loss, terms = image + raw_weight * raw, {"l1_image": image.item(), "l1_raw": raw.item()}
    if region_weight:
        scale = target.shape[-1] / 512
        region = RegionLoss()(output["image"], target, keypoints.reshape(-1, 68, 2).to(target) * scale)
        loss, terms = loss + region_weight * region, {**terms, "l1_regions": region.item()}
    return loss, terms


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
        batch = sample_heads(self.settings.batch_size, self.generator.img_resolution, self.data_generator, self.settings.extra_view_yaws)
        batch = {key: value.to(device) for key, value in batch.items()}
        ws = self.generator.mapping(self.embedding(batch["parameters"]), frontal_condition(self.settings.batch_size, self.generator))
        output = render_views(self.generator, ws, batch["cameras"])
        region_weight = self.settings.region_weight if self.iteration >= self.settings.region_start else 0.0
        loss, terms = reconstruction_loss(output, batch["images"], self.settings.raw_weight, batch["keypoints"], region_weight)
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
