"""LPIPS (AlexNet, linear heads v0.1) from the ``lpips`` package, with its ImageNet backbone read from a local file.

The linear heads ship inside the lpips wheel; the AlexNet backbone is torchvision's
``alexnet-owt-7be5be79.pth`` (an asset, see :mod:`otavatar.assets`), which lpips would otherwise
download. lpips keeps torchvision's layer indices inside its slices (``slice2.3`` is ``features.3``),
so the file's keys map one to one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips
from torch import nn

from otavatar.assets import load_asset_state_dict, require_asset


def load_lpips(path: str | Path | None = None) -> nn.Module:
    """Frozen ``lpips.LPIPS(net='alex')``; call it with two ``(B, 3, H, W)`` images in [−1, 1] → ``(B, 1, 1, 1)``."""
    path = require_asset("alexnet", path)  # before building the network: fail fast
    with warnings.catch_warnings():
        # lpips builds its backbone with torchvision's deprecated ``pretrained=`` argument.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    backbone = model.net
    key_map = {key: "features." + key.split(".", 1)[1] for key in backbone.state_dict()}
    load_asset_state_dict("alexnet", backbone, path, key_map=key_map, ignore_unexpected=True)
    return model.eval().requires_grad_(False)
