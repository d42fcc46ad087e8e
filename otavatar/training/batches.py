"""A resumable, rank-sharded stream of training batches whose content depends only on the iteration.

Each item is fetched with its random generators seeded from (seed, iteration, position), so the
batch of iteration i is the same whether the run started at 0 or resumed at i, with any number
of loader workers.
"""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class SeededItems(Dataset):
    """Wraps a dataset; ``items[(index, seed)]`` fetches ``dataset[index]`` under seeded RNGs.

    The caller's global RNG states are restored afterwards, so fetching data in the main process
    does not disturb the training's own randomness.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        try:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(states[0])
            np.random.set_state(states[1])
            random.setstate(states[2])


class IterationBatchSampler(Sampler):
    """Batches of ``(index, item_seed)`` for iterations ``start, start + 1, ...`` of one rank.

    Every epoch is a permutation drawn from ``seed + epoch``; like DistributedSampler it is padded
    to a multiple of ``world_size × batch_size`` and rank r takes every world_size-th batch slot.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_iteration: int = 0, rank: int = 0, world_size: int = 1, end_iteration: int | None = None) -> None:
        if num_items < 1:
            raise ValueError("training data: the dataset is empty")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_iteration = start_iteration
        self.end_iteration = end_iteration
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        self.iterations_per_epoch = max(num_items // self.global_batch, 1)

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        epoch, position = divmod(iteration, self.iterations_per_epoch)
        order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))
        order = order.repeat((self.iterations_per_epoch * self.global_batch) // self.num_items + 1)
        first = position * self.global_batch + self.rank * self.batch_size
        indices = order[first : first + self.batch_size].tolist()
        base = (self.seed * 1_000_003 + iteration) * 4096 + self.rank * self.batch_size
        return [(index, base + offset) for offset, index in enumerate(indices)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start_iteration
        while self.end_iteration is None or iteration < self.end_iteration:
            yield self.batch(iteration)
            iteration += 1

    def __len__(self) -> int:
        if self.end_iteration is None:
            raise TypeError("an unbounded batch stream has no length")
        return self.end_iteration - self.start_iteration


def training_batches(
    dataset: Dataset, batch_size: int, seed: int, start_iteration: int, end_iteration: int,
    rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """The batches of iterations ``start_iteration … end_iteration − 1`` for ``rank``.

    ``pin_memory``: page-locked batches, so the copies to an accelerator (``non_blocking=True``) overlap computation.
    """
    sampler = IterationBatchSampler(len(dataset), batch_size, seed, start_iteration, rank, world_size, end_iteration)
    # An explicit generator keeps the loader from drawing its base seed from the global RNG, which
    # would shift the training's randomness after a resume.
    generator = torch.Generator().manual_seed(seed + start_iteration)
    return DataLoader(
        SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers, persistent_workers=num_workers > 0,
        generator=generator, pin_memory=pin_memory,
    )
