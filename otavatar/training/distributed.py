"""Process groups under torchrun and gradient averaging across processes.

The release wraps its nets in DDP but calls the unwrapped modules, so its GPUs never average
gradients. Here the gradients of C and G are all-reduced explicitly after every backward pass
(the controller and generator run several times per step, which DDP's one-forward-one-backward
contract does not fit), while identity codes stay local to each sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterable, TypeVar

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from otavatar.errors import InputError


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group that torchrun describes (NCCL on CUDA, Gloo on CPU); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise InputError(f"device={device}: expected auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise InputError(f"device={device}: CUDA is not available on this machine; use device=cpu (or auto)")
    torch_device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=torch_device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(parameters: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """All-reduce the gradients of ``parameters`` to their mean over processes, in one flat bucket."""
    if world_size <= 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


T = TypeVar("T")


def main_process_first(context: DistributedContext, work: Callable[[bool], T], timeout: timedelta) -> T:
    """``work(True)`` on the main process, then ``work(False)`` on the others once it has returned.

    The others wait on a Gloo group of their own with ``timeout``, not in a collective of the training's
    process group: a long ``work`` (generating a dataset) would exceed its timeout (NCCL: 10 minutes).
    """
    if not context.enabled:
        return work(True)
    group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        if context.is_main:
            result = work(True)
        dist.barrier(group=group)
        if not context.is_main:
            result = work(False)
    finally:
        dist.destroy_process_group(group)
    return result


def sum_over_processes(count: torch.Tensor, world_size: int) -> int:
    """The sum over processes of a 0-dim integer tensor, read on the host (a collective: every process calls it)."""
    if world_size > 1:
        dist.all_reduce(count)
    return int(count.item())


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Start every process from rank ``src``'s parameters and buffers."""
    if not dist.is_initialized():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src)
