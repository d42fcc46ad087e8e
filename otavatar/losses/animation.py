"""The animation loss L(I, Î) of paper §3.4, as one module built from the config's weights.

Terms on the raw (neural-rendering-resolution) image always, and on the super-resolved image in
the sub-steps that use it: perceptual + style (VGG19), region L1 (eyes, mouth), pixel SmoothL1,
identity (ArcFace). Per frame once: TV and monotonic density regularisers, L1 on w_x. A term whose
weight is 0 is not computed, and its network is not even loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from otavatar.assets import asset_path
from otavatar.losses.identity import IdentityLoss, load_arcface
from otavatar.losses.perceptual import PerceptualLoss, load_vgg19_features
from otavatar.losses.region import RegionLoss
from otavatar.losses.regularisers import monotonic_density_loss, motion_code_l1, tv_density_loss


@dataclass
class LossWeights:
    """Weights and switches of the animation loss; defaults are the release's ``trainer.loss_weight``.

    Release-vs-paper switches: ``release_eye_bug`` (False: the eye terms compare prediction and
    target, as the paper intends); ``monotonic_detach`` (EG3D's variant; the release detaches
    nothing); ``motion_code``: an L1 on the motion code w_x = C(x), otavatar's option (weight 0, as
    neither the paper nor the release has it; the paper's L1 is on C's parameters, ``trainer.controller_l1``).
    ``raw_scales``/``sr_scales``: perceptual scales on the raw and super-resolved images.
    ``vgg19_path``/``arcface_path``: explicit weight files (None: see :mod:`otavatar.assets`).
    ``pixel_l1``: L1 over the whole image, not a release term: without the perceptual loss (no ImageNet
    VGG19 offline) the region terms dominate and inversion leaves the rest of the face unfitted.
    """

    perceptual: float = 1.0
    style_to_perceptual: float = 250.0
    region: float = 10.0
    pixel: float = 1.0
    pixel_l1: float = 0.0
    identity: float = 1.0
    tv: float = 1.0
    monotonic: float = 1.0
    motion_code: float = 0.0
    raw_scales: int = 2
    sr_scales: int = 4
    release_eye_bug: bool = False
    monotonic_detach: bool = False
    regulariser_points: int = 2000
    vgg19_path: str | None = None
    arcface_path: str | None = None


def missing_weight_files(config: Mapping) -> list[str]:
    """The pretrained files a loss config needs and that are not there: VGG19 for a perceptual term, ArcFace for an identity term."""
    needed = [("vgg19", config.get("perceptual", 0.0), config.get("vgg19_path")), ("arcface", config.get("identity", 0.0), config.get("arcface_path"))]
    return [str(asset_path(name, path)) for name, weight, path in needed if weight and not asset_path(name, path).is_file()]


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SmoothL1 (β = 1) against the target area-resized to the prediction's size."""
    return F.smooth_l1_loss(prediction, _resize(target, prediction), beta=1.0)


def _resize(target: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    if target.shape[-2:] == prediction.shape[-2:]:
        return target
    return F.interpolate(target, size=prediction.shape[-2:], mode="area")


class AnimationLoss(nn.Module):
    """``loss(output, target, super_resolve, generator)`` → (total, {term: value}).

    ``output`` is the animator's dict (``image_raw``, ``image`` when super-resolved, ``planes``,
    ``motion_code``); ``target`` has ``image`` ``(B, 3, H, W)`` and ``keypoints`` ``(B, 68, 2)`` in
    pixels of H.
    """

    def __init__(self, weights: LossWeights, use_regularisers: bool = True) -> None:
        super().__init__()
        self.weights = weights
        self.use_regularisers = use_regularisers
        features = load_vgg19_features(weights.vgg19_path) if weights.perceptual else None
        self.perceptual_raw = PerceptualLoss(features, weights.raw_scales, weights.style_to_perceptual) if features is not None else None
        self.perceptual_sr = PerceptualLoss(features, weights.sr_scales, weights.style_to_perceptual) if features is not None else None
        self.identity = IdentityLoss(load_arcface(weights.arcface_path)) if weights.identity else None
        self.region = RegionLoss(weights.release_eye_bug)

    @classmethod
    def from_config(cls, config: Mapping, use_regularisers: bool = True) -> AnimationLoss:
        """From a ``loss`` config block (configs/loss/*.yaml): the fields of :class:`LossWeights`."""
        known = {field.name for field in fields(LossWeights)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"loss config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(LossWeights(**dict(config)), use_regularisers)

    def image_terms(
        self, prediction: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor, suffix: str, cache: dict | None = None
    ) -> dict[str, torch.Tensor]:
        """Image terms of one resolution; the target and its landmarks are resized to the prediction's.

        ``cache``: where the resized target, its network features and its landmark-box crops are kept between calls.
        """
        w = self.weights
        keypoints = keypoints * (prediction.shape[-1] / target.shape[-1])
        wanted = cache.get(suffix) if cache is not None else None
        if wanted is None:
            wanted = self._target_entry(prediction, target, keypoints, suffix)
            if cache is not None:
                cache[suffix] = wanted
        target = wanted["image"]
        terms = {}
        if w.perceptual:
            perceptual = self.perceptual_raw if suffix == "raw" else self.perceptual_sr
            terms[f"perceptual_{suffix}"] = w.perceptual * perceptual(prediction, target_features=wanted["perceptual"])
        if w.region:
            terms[f"region_{suffix}"] = w.region * self.region(prediction, target, keypoints, target_crops=wanted["region"])
        if w.pixel:
            terms[f"pixel_{suffix}"] = w.pixel * pixel_loss(prediction, target)
        if w.pixel_l1:
            terms[f"l1_{suffix}"] = w.pixel_l1 * (prediction - target).abs().mean()
        if w.identity:
            terms[f"identity_{suffix}"] = w.identity * self.identity(prediction, None, keypoints, target_embedding=wanted["identity"])
        return terms

    def _target_entry(self, prediction: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor, suffix: str) -> dict:
        image = _resize(target, prediction)
        perceptual = self.perceptual_raw if suffix == "raw" else self.perceptual_sr
        return {
            "image": image,
            "perceptual": perceptual.target_features(image) if self.weights.perceptual else None,
            "identity": self.identity.target_embedding(image, keypoints) if self.weights.identity else None,
            "region": self.region.target_crops(image, keypoints) if self.weights.region else None,
        }

    def forward(
        self, output: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], super_resolve: bool, generator: nn.Module | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total and each weighted term, named ``<term>_raw`` / ``<term>_sr``, ``tv``, ``monotonic``, ``motion_code``.

        Args:
            output: ``image_raw`` ``(B, 3, r, r)``; ``image`` ``(B, 3, H', H')`` when ``super_resolve``;
                ``planes`` ``(B, 96, R, R)`` for the density terms; ``motion_code`` w_x ``(B, num_ws, 512)``
                for its L1 (skipped when absent, i.e. when the planes were reused without the controller).
            target: ``image`` ``(B, 3, H, H)`` in [−1, 1] and ``keypoints`` ``(B, 68, 2)`` in pixels of H;
                optionally a ``cache`` dict in which the target's resized images, VGG/ArcFace features and region crops
                are kept from the first call on (for a target that does not change, as in inversion).
            generator: the TriPlaneGenerator (``sample_density``, ``rendering_kwargs``) for the density
                terms; unused (may be None) when they are off.
        """
        w = self.weights
        image, keypoints = target["image"], target["keypoints"]
        cache = target.get("cache")
        terms = self.image_terms(output["image_raw"], image, keypoints, "raw", cache)
        if super_resolve:
            terms.update(self.image_terms(output["image"], image, keypoints, "sr", cache))
        if self.use_regularisers and (w.tv or w.monotonic):
            planes = output["planes"]
            sigma_fn = partial(generator.sample_density, planes)
            batch, device = planes.shape[0], planes.device
            if w.tv:
                terms["tv"] = w.tv * tv_density_loss(
                    sigma_fn, batch, device, w.regulariser_points,
                    generator.rendering_kwargs["density_reg_p_dist"], generator.rendering_kwargs["density_reg"],
                )
            if w.monotonic:
                terms["monotonic"] = w.monotonic * monotonic_density_loss(
                    sigma_fn, batch, device, w.regulariser_points, generator.rendering_kwargs["box_warp"], w.monotonic_detach
                )
        if w.motion_code and "motion_code" in output:
            terms["motion_code"] = w.motion_code * motion_code_l1(output["motion_code"])
        return sum(terms.values(), output["image_raw"].new_zeros(())), terms
