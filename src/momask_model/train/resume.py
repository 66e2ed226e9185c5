"""What makes a training run repeatable and resumable: every RNG's state, seeding, a data order that
is a pure function of (seed, epoch), and the process layout under ``torchrun``.

A resumed run restores the RNG states saved in its checkpoint and skips, without loading them, the
batches of the epoch it already consumed (`ResumableSampler.set_epoch` with ``start``).
"""
from __future__ import annotations

import math
import os
import random
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ResumableSampler", "distributed_env", "rng_state", "seed_everything", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class ResumableSampler(Sampler[int]):
    """Shuffled indices that depend only on (seed, epoch), split across DDP ranks like
    ``DistributedSampler`` (padded to a multiple of the world size), with a start offset so a resumed
    epoch skips what was already consumed without loading it."""

    def __init__(self, n: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        order += order[: self.per_rank * self.world_size - self.n]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return self.per_rank - self.start


def distributed_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world
