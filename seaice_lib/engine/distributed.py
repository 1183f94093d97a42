"""Where a training process runs and its random streams: the rank, world size and device torchrun
describes (:func:`init_distributed`), seeding per rank, and the RNG states a checkpoint keeps so a
resumed run draws what an uninterrupted one would (docs/models.md, "Training")."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch


@dataclass
class Distributed:
    """Where this process runs: rank, world size, device, and whether it opened the process group."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def environment_int(name: str, default: int) -> int:
    """The whole number >= 0 in environment variable ``name`` (torchrun's), else ``default``;
    ValueError naming the variable."""
    value = os.environ.get(name, str(default))
    if not value.isdigit():
        raise ValueError(f"environment variable {name}={value!r}: must be a whole number >= 0 (torchrun sets it)")
    return int(value)


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group torchrun describes (env ``WORLD_SIZE`` > 1), else a single process.

    Backend NCCL on CUDA, gloo on CPU; each rank uses ``cuda:LOCAL_RANK``. A group initialised
    by the caller is used as it is (and left open).
    """
    dist = torch.distributed
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available here (use device: cpu or auto)")
    world = environment_int("WORLD_SIZE", 1)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    if use_cuda:
        local = environment_int("LOCAL_RANK", 0)
        torch.cuda.set_device(local)
        return Distributed(rank, world, torch.device("cuda", local), owns)
    return Distributed(rank, world, torch.device("cpu"), owns)


def rng_states(device: torch.device) -> dict:
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy form, a tuple
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict, device: torch.device) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    name, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def seed_everything(seed: int, rank: int | None = None) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device: torch.manual_seed does both).

    Without ``rank``, with ``seed`` itself (model initialisation: the same on every rank). With
    ``rank``, with a seed drawn from (``seed``, ``rank``): each DDP rank its own dropout and
    modality-dropout masks, none of them the initialisation's stream.
    """
    if rank is not None:
        seed = int(np.random.SeedSequence((seed, rank)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
