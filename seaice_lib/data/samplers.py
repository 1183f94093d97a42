"""Samplers over a :class:`~seaice_lib.data.dataset.PatchDataset`: patches with rare classes drawn
more often, on one process or sharded across DDP ranks; and the class shares they yield."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from .. import schema
from .dataset import PatchDataset


def patch_weights(histograms: np.ndarray, chart: str = "SOD", power: float = 0.5) -> np.ndarray:
    """Sampling weight per patch, (N, 24) histograms -> (N,).

    A class weighs ``(rarest share / share)^power``, its share of the labelled ``chart`` pixels of
    all patches; a patch weighs the mean of its pixels' class weights. Patches with no ``chart``
    label weigh as the lightest labelled patch; ``power`` 0 weighs every patch 1.
    """
    counts = np.asarray(histograms, np.float64)[:, schema.HISTOGRAM_SLICES[chart]]
    totals = counts.sum(axis=0)
    class_weight = np.zeros_like(totals)
    seen = totals > 0
    # relative to the rarest class (weight 1) so that no power overflows
    class_weight[seen] = (totals[seen] / totals[seen].min()) ** -power
    labelled = counts.sum(axis=1)
    w = (counts @ class_weight) / np.maximum(labelled, 1)
    floor = w[labelled > 0].min() if (labelled > 0).any() else 1.0
    return np.where(labelled > 0, w, floor)


class ClassBalancedSampler(Sampler[int]):
    """Draws patches with replacement, those with rare classes of ``chart`` more often.

    Weights from :func:`patch_weights` (``power`` 0: uniform, 1: every class equally often in
    expectation, as far as patches mixing classes allow). The draw depends on (``seed``, epoch).
    """

    def __init__(self, dataset: PatchDataset, chart: str = "SOD", power: float = 0.5,
                 num_samples: int | None = None, seed: int = 0):
        if chart not in schema.CHARTS:
            raise ValueError(f"chart must be one of {schema.CHARTS}, not {chart!r}")
        self.chart, self.power, self.seed, self.epoch = chart, power, seed, 0
        self.weights = patch_weights(dataset.histograms, chart, power)
        self.num_samples = len(dataset) if num_samples is None else num_samples

    @property
    def probabilities(self) -> np.ndarray:
        """(N,) probability of each patch per draw."""
        return self.weights / self.weights.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self, n: int) -> np.ndarray:
        """The epoch's first ``n`` draws: (n,) patch indices."""
        rng = np.random.default_rng((self.seed, self.epoch))
        return rng.choice(len(self.weights), size=n, p=self.probabilities)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw(self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples


class DistributedClassBalancedSampler(ClassBalancedSampler):
    """The balanced draw for DDP: every rank draws the same epoch sequence and takes ``rank::world``.

    ``num_samples`` counts draws over all ranks (default: the dataset's size), rounded up so that
    every rank gets ``ceil(num_samples / world)``. World size and rank default to
    ``torch.distributed``'s when it is initialised, else 1 and 0.
    """

    def __init__(self, dataset: PatchDataset, chart: str = "SOD", power: float = 0.5,
                 num_samples: int | None = None, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None):
        super().__init__(dataset, chart, power, num_samples, seed)
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else \
            (dist.get_world_size() if ready else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if ready else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} outside 0..{self.num_replicas - 1}")
        self.per_rank = math.ceil(self.num_samples / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        draw = self.draw(self.per_rank * self.num_replicas)
        return iter(draw[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank


def class_shares(dataset: PatchDataset, sampler: ClassBalancedSampler, chart: str | None = None):
    """Expected shares (%) of labelled ``chart`` pixels per class, uniform draws vs ``sampler``'s.

    A pandas DataFrame indexed by class name, columns ``uniform`` and ``balanced``; ``chart``
    defaults to the sampler's.
    """
    import pandas as pd  # only here: training processes need not load it

    chart = chart or sampler.chart
    counts = np.asarray(dataset.histograms, np.float64)[:, schema.HISTOGRAM_SLICES[chart]]
    uniform, balanced = counts.sum(axis=0), sampler.probabilities @ counts
    return pd.DataFrame({"uniform": 100 * uniform / max(uniform.sum(), 1),
                         "balanced": 100 * balanced / max(balanced.sum(), 1e-12)},
                        index=pd.Index(schema.CLASSES[chart].names, name="class"))
