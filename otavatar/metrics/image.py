"""Per-image quality against ground truth: PSNR, region PSNR and SSIM on images in [−1, 1], computed at 8-bit scale.

PSNR = 20·log10(255 / √MSE) per image (the release's ``_compute_metrics`` uses the same formula on
[0, 255] images, but over the whole batch at once). Region PSNR is the same over the pixels inside
the union of the mouth and eye boxes of the ground truth's 68 landmarks (the region loss's boxes),
where expression lives. SSIM follows Wang et al. 2004 as scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)`` computes it: 11×11 Gaussian window, K1 = 0.01, K2 = 0.03, mean over the valid
(unpadded) area and over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from otavatar.losses.region import CROP_SIZES, region_box

DATA_RANGE = 255.0
REGIONS = tuple(CROP_SIZES)  # the region loss's boxes: mouth, left eye, right eye


def to_8bit_scale(images: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 255] in float64 (no quantisation, so identical inputs give exactly 0 error)."""
    return (images.double().clamp(-1, 1) + 1) * (DATA_RANGE / 2)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB ``(B,)`` of ``(B, 3, H, W)`` images in [−1, 1]; inf where identical."""
    mse = (to_8bit_scale(prediction) - to_8bit_scale(target)).square().flatten(1).mean(1)
    return 10 * torch.log10(DATA_RANGE**2 / mse)


def region_mask(keypoints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixels ``(B, H, W)`` (bool) inside the union of the ``REGIONS`` boxes of landmarks ``(B, 68, 2)`` in pixels of the image.

    A box (x1, y1, x2, y2) of :func:`~otavatar.losses.region.region_box` spans pixel centres, both ends
    included. Non-finite landmarks give an empty mask.
    """
    height, width = size
    rows = torch.arange(height, dtype=keypoints.dtype, device=keypoints.device)
    columns = torch.arange(width, dtype=keypoints.dtype, device=keypoints.device)
    mask = torch.zeros(keypoints.shape[0], height, width, dtype=torch.bool, device=keypoints.device)
    for region in REGIONS:
        x1, y1, x2, y2 = region_box(keypoints, region, (height, width)).unbind(1)
        inside_rows = (rows >= y1[:, None]) & (rows <= y2[:, None])
        inside_columns = (columns >= x1[:, None]) & (columns <= x2[:, None])
        mask |= inside_rows[:, :, None] & inside_columns[:, None, :]
    return mask


def region_psnr(prediction: torch.Tensor, target: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB ``(B,)`` over the eye and mouth boxes (:func:`region_mask`) of ``target``'s landmarks.

    ``prediction``, ``target`` ``(B, 3, H, W)`` in [−1, 1]; ``keypoints`` ``(B, 68, 2)`` in pixels of
    the images. The MSE averages the masked pixels' channels; inf where they are identical, NaN where
    the landmarks are not finite (no box).
    """
    mask = region_mask(keypoints.double(), tuple(target.shape[-2:])).to(target.device)
    squared = (to_8bit_scale(prediction) - to_8bit_scale(target)).square().sum(1)
    mse = (squared * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * target.shape[1])
    return 10 * torch.log10(DATA_RANGE**2 / mse)


def _gaussian_window(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(3.5 * sigma + 0.5)  # scikit-image's truncate=3.5: 11 taps for sigma 1.5
    coordinates = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    window = torch.exp(-coordinates.square() / (2 * sigma**2))
    return window / window.sum()


def ssim(prediction: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM ``(B,)`` of ``(B, C, H, W)`` images in [−1, 1] (Gaussian window; see the module docstring)."""
    x, y = to_8bit_scale(prediction), to_8bit_scale(target)
    channels = x.shape[1]
    window = _gaussian_window(sigma, x.dtype, x.device)
    size = window.numel()
    if min(x.shape[-2:]) < size:
        raise ValueError(f"SSIM: images of {tuple(x.shape[-2:])} are smaller than the {size}×{size} window")
    vertical = window.view(1, 1, size, 1).expand(channels, 1, size, 1)
    horizontal = window.view(1, 1, 1, size).expand(channels, 1, 1, size)

    def blur(images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(images, vertical, groups=channels), horizontal, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x.square()
    sigma_yy = blur(y * y) - mu_y.square()
    sigma_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x.square() + mu_y.square() + c1) * (sigma_xx + sigma_yy + c2))
    return index.flatten(1).mean(1)
