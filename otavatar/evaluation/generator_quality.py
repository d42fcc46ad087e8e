"""How well the pretrained generator draws held-out synthetic heads from their true parameters.

Each head is one of the synthetic dataset's held-out identities (configs/data/synthetic.yaml: the last
tenth of its identities, then the identity numbers after them, which no dataset of that size holds;
neither pretraining, which draws its own random heads, nor OTAvatar training sees them) with its
first video's talking sequence. Four frames of it are rendered — the first, the most open jaw, the
most closed eyes, and the expression farthest from the first — each from the head's own camera and
the extra yaws. The generator renders the same heads as the pretrainer does (z = embedding(identity
++ expression), w = mapping(z, frontal camera)), deterministically, and its super-resolved images
are scored against the synthetic renderer's at the generator's output resolution: PSNR over the whole
image and region PSNR over the eye and mouth boxes of the true landmarks. The expression gain is what
drawing the true expression adds over holding the first frame's (the demo's static baseline, done
perfectly): region PSNR of the three later frames minus that of the same frames rendered with the
first frame's expression. It bounds what any motion controller driving this generator can gain over a
static avatar in the eye and mouth boxes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from otavatar.assets import REPO_ROOT
from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.checkpoints import CheckpointError, file_sha256, generator_from_state, load_strict, read_generator_state
from otavatar.config import CONFIG_DIR, load_model_preset
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, HeadModel, head_fields, sample_identity, sample_talking_sequence
from otavatar.data.synthetic_video import EXTRA_VIEW_YAWS, render_video
from otavatar.data.synthetic_dataset import held_out_identity_count, identity_generator
from otavatar.evaluation.demo import contact_sheet
from otavatar.files import atomic_write, atomic_write_text
from otavatar.metrics.image import psnr, region_psnr
from otavatar.models.eg3d import TriPlaneGenerator
from otavatar.models.rendering.rays import ray_bundle
from otavatar.models.rendering.renderer import ImportanceRenderer
from otavatar.training.pretrain import ParameterEmbedding, frontal_condition

DEFAULT_GENERATOR = REPO_ROOT / "pretrained" / "tiny_generator.pt"  # committed with the repository
EXPRESSION_NAMES = ("first", "jaw", "eyes", "other")  # the frames picked by pick_frames, as labelled on the sheet


@dataclass
class HeldOutHead:
    """A held-out identity ``(10,)`` and its talking sequence: expression ``(F, E)``, angles ``(F, 3)``, translation ``(F, 3)``."""

    identity: torch.Tensor
    expression: torch.Tensor
    angles: torch.Tensor
    translation: torch.Tensor


@dataclass
class GeneratorQuality:
    """Mean PSNR and region PSNR (dB) over every render, the expression gain (dB, module docstring), the
    counts, the time taken, and the images for the contact sheet: ``truth`` and ``renders``
    ``(heads, expressions · views, 3, H, W)`` in [−1, 1]."""

    psnr: float
    region_psnr: float
    expression_gain: float
    heads: int
    expressions: int
    views: int
    seconds: float
    truth: torch.Tensor
    renders: torch.Tensor

    def summary(self) -> dict[str, float | int]:
        return {"psnr": self.psnr, "region_psnr": self.region_psnr, "expression_gain": self.expression_gain, "heads": self.heads,
                "expressions": self.expressions, "views": self.views, "seconds": self.seconds}


def held_out_heads(count: int) -> list[HeldOutHead]:
    """The first ``count`` held-out identities of the synthetic dataset's configuration, with their first video's sequence."""
    spec = OmegaConf.load(CONFIG_DIR / "data" / "synthetic.yaml").generate
    first = spec.identities - held_out_identity_count(spec.identities)
    heads = []
    for number in range(first, first + count):
        generator = identity_generator(spec.seed, number)  # draws as the dataset writer does: identity, then video 0
        identity = sample_identity(generator)
        heads.append(HeldOutHead(identity, *sample_talking_sequence(spec.frames, generator)))
    return heads


def pick_frames(expression: torch.Tensor) -> list[int]:
    """Four distinct frames of ``expression (F, E)``: the first, the most open jaw, the most closed eyes
    and the farthest (L1) from the first (``EXPRESSION_NAMES``)."""
    eyelids = [i for i, name in enumerate(EXPRESSION_PARAMETERS) if name.endswith("eyelid")]  # 1 = closed
    scores = (
        expression[:, EXPRESSION_PARAMETERS.index("jaw_open")],
        expression[:, eyelids].mean(1),
        (expression - expression[0]).abs().sum(1),
    )
    frames = [0]
    for score in scores:
        score = score.clone()
        score[frames] = -torch.inf
        frames.append(int(score.argmax()))
    return frames


class ClosedFormRenderer(ImportanceRenderer):
    """The tri-plane renderer with the head's closed-form field in place of planes and decoder: a
    density of ``density`` inside the head, the colour of the surface there and in front of it.
    What a perfect generator could render with the same rays and samples."""

    def __init__(self, head: HeadModel, density: float = 1000.0) -> None:
        super().__init__()
        self.head, self.density = head, density

    def run_model(self, planes, decoder, coordinates: torch.Tensor, options: dict) -> dict[str, torch.Tensor]:
        occupancy, colour = head_fields(self.head, coordinates, colour_outside=True)
        # Raw density whose softplus(· − 1) is ``density`` inside and ≈ 0 outside, as the decoder's.
        raw = torch.where(occupancy, torch.tensor(self.density + 1.0), torch.tensor(-20.0))
        return {"rgb": colour, "sigma": raw[..., None]}


def _render_closed_form(head: HeadModel, cameras: torch.Tensor, rendering_kwargs: dict, rays: int, resolution: int) -> torch.Tensor:
    """Frames of ``head`` seen by cameras p ``(F, 25)`` through :class:`ClosedFormRenderer` at ``rays``², resized
    bicubically to ``resolution``²: ``(F, 3, resolution, resolution)`` in [−1, 1]."""
    origins, directions = ray_bundle(cameras, rays)
    rgb, _, _ = ClosedFormRenderer(head)(None, None, origins, directions, rendering_kwargs, deterministic=True)
    image = rgb.permute(0, 2, 1).reshape(-1, 3, rays, rays)
    return image if rays == resolution else F.interpolate(image, size=resolution, mode="bicubic", align_corners=False)


class ClosedFormSettings(NamedTuple):
    """What :func:`evaluate_generator` renders the closed-form fields with: a preset's rendering options,
    rays per side, and the output resolution the renders are resized to."""

    options: dict
    rays: int
    resolution: int


def closed_form_settings(model: str, rays: int | None = None, samples: tuple[int, int] | None = None) -> ClosedFormSettings:
    """A model preset's (configs/model/) rendering options (with ``samples`` = (coarse, fine) per ray if
    given), ``rays`` per side (default: its neural rendering resolution) and output resolution."""
    generator = load_model_preset(model).generator
    options = OmegaConf.to_container(generator.rendering_kwargs)
    if samples:
        options["depth_resolution"], options["depth_resolution_importance"] = samples
    return ClosedFormSettings(options, rays or generator.neural_rendering_resolution, generator.img_resolution)


@torch.no_grad()
def evaluate_generator(generator: TriPlaneGenerator | None, embedding: ParameterEmbedding | None, heads: int = 8,
                       closed_form: ClosedFormSettings | None = None) -> GeneratorQuality:
    """Render ``heads`` held-out heads × 4 expressions × (own camera + ``EXTRA_VIEW_YAWS``) and score them (module docstring).

    With ``closed_form``, the heads' closed-form
    fields are rendered instead of a generator (:class:`ClosedFormRenderer`): the ceiling those
    rendering settings put on any generator.
    """
    if heads < 1:
        raise ValueError(f"heads: expected at least 1, found {heads}")
    started = time.perf_counter()
    resolution = closed_form.resolution if closed_form else generator.img_resolution
    truths, renders, scores, region_scores, gains = [], [], [], [], []
    for head in held_out_heads(heads):
        frames = pick_frames(head.expression)
        expression = head.expression[frames]
        video = render_video(head.identity, expression, head.angles[frames], head.translation[frames], resolution, EXTRA_VIEW_YAWS)
        # (E, V, ...): the head's own camera first, then the extra yaws, as the pretrainer's batches.
        truth = torch.cat([video.images[:, None], video.view_images.transpose(0, 1)], 1).flatten(0, 1) * 2 - 1
        cameras = torch.cat([video.cameras[:, None], video.view_cameras.transpose(0, 1)], 1)
        keypoints = torch.cat([video.keypoints[:, None], video.view_keypoints.transpose(0, 1)], 1).flatten(0, 1) * (resolution / LANDMARK_REFERENCE_SIZE)
        views = cameras.shape[1]
        image = _draw(generator, embedding, closed_form, head.identity, expression, cameras, resolution)
        # The first frame's expression seen by every later camera: one head, drawn (and its planes made) once.
        held = _draw(generator, embedding, closed_form, head.identity, expression[:1], cameras[1:].reshape(1, -1, cameras.shape[-1]), resolution)
        later = slice(views, None)  # every view of the frames after the first
        scores.append(psnr(image, truth))
        region_scores.append(region_psnr(image, truth, keypoints))
        gains.append(region_scores[-1][later] - region_psnr(held, truth[later], keypoints[later]))
        truths.append(truth)
        renders.append(image.clamp(-1, 1))
    return GeneratorQuality(
        psnr=torch.cat(scores).mean().item(), region_psnr=torch.cat(region_scores).mean().item(),
        expression_gain=torch.cat(gains).mean().item(), heads=heads,
        expressions=len(EXPRESSION_NAMES), views=views, seconds=time.perf_counter() - started,
        truth=torch.stack(truths), renders=torch.stack(renders),
    )


def _draw(generator: TriPlaneGenerator | None, embedding: ParameterEmbedding | None, closed_form: ClosedFormSettings | None,
          identity: torch.Tensor, expression: torch.Tensor, cameras: torch.Tensor, resolution: int) -> torch.Tensor:
    """``identity (10,)`` under each ``expression (E, 6)``, seen by its cameras p ``(E, V, 25)``, drawn by the
    generator (or the closed-form fields): ``(E · V, 3, resolution, resolution)`` in [−1, 1]."""
    views = cameras.shape[1]
    if closed_form:
        model = HeadModel(identity, expression.repeat_interleave(views, dim=0))
        return _render_closed_form(model, cameras.flatten(0, 1), closed_form.options, closed_form.rays, resolution)
    device = generator.w_avg.device
    parameters = torch.cat([identity.expand(len(expression), -1), expression], 1).to(device)
    ws = generator.mapping(embedding(parameters), frontal_condition(len(expression), generator))
    planes = generator.synthesize_planes(ws).repeat_interleave(views, dim=0)
    output = generator.synthesis(ws.repeat_interleave(views, dim=0), cameras.flatten(0, 1).to(device), deterministic=True, planes=planes)
    return output["image"].float().cpu()


def load_generator_and_embedding(path: Path, device: torch.device | str = "cpu") -> tuple[TriPlaneGenerator, ParameterEmbedding]:
    """The generator and parameter embedding of a file written by scripts/pretrain_generator.py (``{'G_ema', 'embedding', 'model', 'recipe'}``)."""
    content = read_generator_state(path)
    if content["embedding"] is None:
        raise CheckpointError(f"{path}: has no parameter 'embedding'; expected a file written by scripts/pretrain_generator.py")
    generator = generator_from_state(content, path)
    embedding = ParameterEmbedding(generator.z_dim)
    load_strict(embedding, content["embedding"], path, "embedding")
    return generator.eval().to(device), embedding.eval().to(device)


def sheet_image(result: GeneratorQuality) -> Image.Image:
    """Per head a ground-truth row above a render row; columns are expression/view (``EXPRESSION_NAMES``, own camera, yaws)."""
    views = ("own", *(f"{yaw:+.2f}" for yaw in EXTRA_VIEW_YAWS))
    labels = tuple(f"{expression}/{view}" for expression in EXPRESSION_NAMES for view in views)
    rows = torch.stack([result.truth, result.renders], 1).flatten(0, 1)  # (2 · heads, E · V, 3, H, W)
    return contact_sheet(torch.cat(rows.unbind(1), dim=-1), labels)


def write_generator_report(result: GeneratorQuality, checkpoint: Path | None, json_path: Path, sheet_path: Path) -> dict:
    """Write ``json_path`` (the summary with the checkpoint's path and sha256) and the contact sheet, each atomically; return the summary."""
    report = {**result.summary(), "checkpoint": str(checkpoint) if checkpoint else None,
              "sha256": file_sha256(checkpoint) if checkpoint else None}
    for path in (json_path, sheet_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    image = sheet_image(result)
    atomic_write(sheet_path, lambda handle: image.save(handle, format="PNG"))
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    return report
