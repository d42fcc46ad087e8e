"""How well the pretrained generator draws held-out synthetic heads from their true parameters.

Each head is one of the synthetic dataset's held-out identities (configs/data/synthetic.yaml: the last
tenth of its identities, then the identity numbers after them, which no dataset of that size holds;
neither pretraining, which draws its own random heads, nor OTAvatar training sees them) with its
first video's talking sequence. Four frames of it are rendered — the first, the most open jaw, the
most closed eyes, and the expression farthest from the first — each from the head's own camera and
the extra yaws. The generator renders the same heads as the pretrainer does (z = embedding(identity
++ expression), w = mapping(z, frontal camera)), deterministically, and its super-resolved images
are scored against the synthetic renderer's at the generator's output resolution: PSNR over the whole
image and region PSNR over the eye and mouth boxes of the true landmarks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from otavatar.checkpoints import CheckpointError, file_sha256, generator_from_state, load_strict, read_generator_state
from otavatar.config import CONFIG_DIR
from otavatar.data.synthetic import EXPRESSION_PARAMETERS, EXTRA_VIEW_YAWS, render_video, sample_identity, sample_talking_sequence
from otavatar.data.synthetic_dataset import held_out_identity_count, identity_generator
from otavatar.evaluation.demo import contact_sheet
from otavatar.files import atomic_write, atomic_write_text
from otavatar.metrics.image import psnr, region_psnr
from otavatar.models.eg3d import TriPlaneGenerator
from otavatar.training.pretrain import ParameterEmbedding, frontal_condition

DEFAULT_GENERATOR = Path("pretrained/tiny_generator.pt")
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
    """Mean PSNR and region PSNR (dB) over every render, the counts, the time taken, and the images for
    the contact sheet: ``truth`` and ``renders`` ``(heads, expressions · views, 3, H, W)`` in [−1, 1]."""

    psnr: float
    region_psnr: float
    heads: int
    expressions: int
    views: int
    seconds: float
    truth: torch.Tensor
    renders: torch.Tensor

    def summary(self) -> dict[str, float | int]:
        return {"psnr": self.psnr, "region_psnr": self.region_psnr, "heads": self.heads, "expressions": self.expressions,
                "views": self.views, "seconds": self.seconds}


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


@torch.no_grad()
def evaluate_generator(generator: TriPlaneGenerator, embedding: ParameterEmbedding, heads: int = 8) -> GeneratorQuality:
    """Render ``heads`` held-out heads × 4 expressions × (own camera + ``EXTRA_VIEW_YAWS``) and score them (module docstring)."""
    if heads < 1:
        raise ValueError(f"heads: expected at least 1, found {heads}")
    started = time.perf_counter()
    device = generator.w_avg.device
    resolution = generator.img_resolution
    truths, renders, scores, region_scores = [], [], [], []
    for head in held_out_heads(heads):
        frames = pick_frames(head.expression)
        expression = head.expression[frames]
        video = render_video(head.identity, expression, head.angles[frames], head.translation[frames], resolution, EXTRA_VIEW_YAWS)
        # (E, V, ...): the head's own camera first, then the extra yaws, as the pretrainer's batches.
        truth = torch.cat([video.images[:, None], video.view_images.transpose(0, 1)], 1).flatten(0, 1) * 2 - 1
        cameras = torch.cat([video.cameras[:, None], video.view_cameras.transpose(0, 1)], 1)
        keypoints = torch.cat([video.keypoints[:, None], video.view_keypoints.transpose(0, 1)], 1).flatten(0, 1) * (resolution / 512)
        views = cameras.shape[1]
        parameters = torch.cat([head.identity.expand(len(frames), -1), expression], 1).to(device)
        ws = generator.mapping(embedding(parameters), frontal_condition(len(frames), generator))
        planes = generator.synthesize_planes(ws).repeat_interleave(views, dim=0)
        output = generator.synthesis(ws.repeat_interleave(views, dim=0), cameras.flatten(0, 1).to(device), deterministic=True, planes=planes)
        image = output["image"].float().cpu()
        scores.append(psnr(image, truth))
        region_scores.append(region_psnr(image, truth, keypoints))
        truths.append(truth)
        renders.append(image.clamp(-1, 1))
    return GeneratorQuality(
        psnr=torch.cat(scores).mean().item(), region_psnr=torch.cat(region_scores).mean().item(), heads=heads,
        expressions=len(EXPRESSION_NAMES), views=views, seconds=time.perf_counter() - started,
        truth=torch.stack(truths), renders=torch.stack(renders),
    )


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
