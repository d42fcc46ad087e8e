"""Exponential moving averages of network weights."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · live, over parameters; buffers (e.g. w_avg) are copied."""
    for ema_param, live_param in zip(ema.parameters(), live.parameters()):
        ema_param.lerp_(live_param.detach(), 1 - decay)
    for ema_buffer, live_buffer in zip(ema.buffers(), live.buffers()):
        ema_buffer.copy_(live_buffer)
