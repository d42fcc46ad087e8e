"""AED, APD and AKD: expression, pose and keypoint distances between generated and reference frames.

The release's authors (issue #27): AED / APD = L1 distance between the expression (64) / pose
coefficients Deep3DFaceRecon reads from the two frames; AKD = distance between 68-point landmarks.
Left open by them (issue #30) and stated here in every output: per frame, AED and APD are the
**mean** absolute difference over coefficient dimensions (``reduction='sum'`` gives the summed
variant); APD uses the 6 pose coefficients (3 angles in radians + 3 translations) and
``apd_angles`` the 3 angles alone. AKD is the mean Euclidean distance of the 68 landmarks in pixels
of a 512² frame (coordinates are rescaled to 512 whatever the render size).
"""

from __future__ import annotations

import torch

from otavatar.camera import LANDMARK_REFERENCE_SIZE
from otavatar.motion import ANGLES, EXPRESSION, TRANSLATION
from otavatar.preprocess.coefficients import CoefficientRegressor
from otavatar.preprocess.landmarks import five_from_68
from otavatar.videos import to_uint8_frames

AKD_RESOLUTION = LANDMARK_REFERENCE_SIZE  # AKD is in the stored landmarks' pixels
REDUCTIONS = ("mean", "sum")


class Deep3DMotionReader:
    """Expression ``(B, 64)``, angles ``(B, 3)``, translation ``(B, 3)`` from Deep3DFaceRecon, aligned by the 68 landmarks."""

    needs_landmarks = True

    def __init__(self, regressor: CoefficientRegressor) -> None:
        self.regressor = regressor
        self.name = CoefficientRegressor.name

    def __call__(self, images: torch.Tensor, landmarks: torch.Tensor | None) -> dict[str, torch.Tensor]:
        points = five_from_68(landmarks.numpy())
        coefficients, _ = self.regressor(to_uint8_frames(images), points)
        coefficients = torch.from_numpy(coefficients)
        return {"expression": coefficients[:, EXPRESSION], "angles": coefficients[:, ANGLES], "translation": coefficients[:, TRANSLATION]}


def coefficient_distance(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-frame L1 distance ``(B,)`` of ``(B, D)`` coefficients, averaged or summed over D."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, found {reduction!r}")
    difference = (a - b).abs()
    return difference.mean(1) if reduction == "mean" else difference.sum(1)


def motion_distances(prediction: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], reduction: str = "mean") -> dict[str, torch.Tensor]:
    """``aed``, ``apd`` (angles + translation) and ``apd_angles`` per frame ``(B,)``."""
    def pose(values: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([values["angles"], values["translation"]], dim=1)

    return {
        "aed": coefficient_distance(prediction["expression"], reference["expression"], reduction),
        "apd": coefficient_distance(pose(prediction), pose(reference), reduction),
        "apd_angles": coefficient_distance(prediction["angles"], reference["angles"], reduction),
    }


def keypoint_distance(prediction: torch.Tensor, reference: torch.Tensor, image_size: int) -> torch.Tensor:
    """AKD per frame ``(B,)``: mean Euclidean distance of ``(B, 68, 2)`` landmarks, in pixels of a 512² frame (NaN where a face is missing)."""
    return (prediction - reference).norm(dim=-1).mean(-1) * (AKD_RESOLUTION / image_size)


def describe(reduction: str) -> dict[str, str]:
    """The definitions written into every result file."""
    how = "mean" if reduction == "mean" else "sum"
    return {
        "aed": f"{how} |Δ| over the expression coefficients per frame, averaged over frames",
        "apd": f"{how} |Δ| over the 6 pose coefficients (3 angles in radians, 3 translations) per frame, averaged over frames",
        "apd_angles": f"{how} |Δ| over the 3 pose angles (radians) per frame, averaged over frames",
        "akd": f"mean Euclidean distance of the 68 landmarks in pixels at {AKD_RESOLUTION}², averaged over frames",
        "psnr": "20·log10(255/√MSE) per frame at 8 bits, averaged over frames",
        "region_psnr": "PSNR over the pixels inside the union of the mouth and eye boxes of the ground truth's 68 landmarks "
        "(the region loss's boxes), per frame at 8 bits, averaged over frames",
        "ssim": "Gaussian 11×11 (σ 1.5) SSIM at 8 bits per frame (as scikit-image), averaged over frames",
        "lpips": "LPIPS AlexNet v0.1 per frame, averaged over frames",
        "csim": "cosine of ArcFace embeddings, source portrait vs each frame",
        "csim_dlib": "cosine of dlib face descriptors, source portrait vs each frame (not comparable with ArcFace CSIM)",
        "fid": "Fréchet distance of Inception pool3 statistics, all generated vs all reference frames",
    }
