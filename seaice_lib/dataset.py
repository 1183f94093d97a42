"""Torch datasets over the patch store: dict samples, consistent augmentation, balanced sampling.

A sample (one patch of one target scene) is a dict keyed by modality::

    sar            (T, C, P, P) float32  standard-scaled, 0 where masked; T steps, the target last
    sar_mask       (T, P, P)    bool     True = data
    days_before    (T,)         float32  days from each acquisition to the target's (target: 0)
    day_of_year    (T,)         int64    1..366 (0 is kept for padding)
    amsr2          (14, G, G)   float32  native 2 km cells under the patch
    era5           (6, G, G)    float32  u10m_rotated along samples, v10m_rotated along lines
    grid2km_offset (2,)         int64    patch pixel (i, j) lies in cell ((offset + (i, j) * ds) // 25)
    labels         {"SIC", "SOD", "FLOE"}: (P, P) int64, 255 = no label
    scene          ()           int64    index into ``dataset.scene_ids``
    origin         (2,)         int64    80 m pixel of the patch's top-left in the target scene

``sar``, ``sar_mask``, ``days_before`` and ``day_of_year`` come with the ``"sar"`` modality,
``amsr2`` and ``era5`` with their own, ``grid2km_offset`` with either of them.

The offset follows the store (:mod:`seaice_lib.patches`): it locates the *sample pixel* of patch
pixel (0, 0), the 80 m pixel its label was taken from, ``downsample // 2`` past its top-left
corner. That pixel maps to a pixel under every flip and rotation, so one rule, ``(offset + i * ds)
// cell``, stays exact through :func:`dihedral` (a corner-based offset would be one 80 m pixel off
after a flip when ``ds`` is even).

:func:`collate` pads ``T`` to the longest sequence of a batch and adds ``step_mask`` (B, T).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import zarr
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from . import schema

MODALITIES = ("sar", "amsr2", "era5")
N_DIHEDRAL = 8
_U, _V = schema.ERA5_VARIABLES.index("u10m_rotated"), schema.ERA5_VARIABLES.index("v10m_rotated")
_SEQUENCE_KEYS = ("sar", "sar_mask", "days_before", "day_of_year")


class StoredSequence(NamedTuple):
    """The acquisitions of one target scene, oldest first, as the store lists them."""

    days_before: torch.Tensor  # (T,) float32
    day_of_year: torch.Tensor  # (T,) int64
    region: str


class _OpenScene(NamedTuple):
    """A scene group's arrays, read one patch at a time, and its (N, 2) per-patch vectors, whole."""

    arrays: dict[str, zarr.Array]
    vectors: dict[str, np.ndarray]


def _open(store: Path, path: str = "") -> zarr.Group:
    return zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path=path)


def store_regions(store: str | Path) -> dict[str, str]:
    """Region of every target scene in a consolidated store, by scene id (the index's order)."""
    root = _open(Path(store))
    return {sid: root[f"scenes/{sid}"].attrs["region"] for sid in root["index"].attrs["scene_ids"]}


class PatchDataset(Dataset):
    """Patches of a store (``seaice_lib.patches``), optionally only those of some target scenes.

    Zarr handles are opened lazily and cached per process, so the dataset can be pickled into
    DataLoader workers (fork, spawn or forkserver) before or after it has been read from. A sample
    reads one slice of each image array (SAR, masks, labels, 2 km blocks); a scene's small
    ``origin`` and ``grid2km_offset`` arrays are read whole when the scene is first opened.

    Args:
        store: the zarr patch store (its ``index`` built by ``consolidate``).
        scenes: target scene ids to keep (a split); None keeps all.
        augment: one of the 8 flips/rotations per sample (:func:`dihedral`), the same for every
            modality and the labels, drawn from (``seed``, epoch, index).
        seed: seeds the augmentation.
        modalities: inputs to read, a subset of ``("sar", "amsr2", "era5")``.
    """

    def __init__(self, store: str | Path, scenes: Sequence[str] | None = None, augment: bool = False,
                 seed: int = 0, modalities: Sequence[str] = MODALITIES):
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
        self.store = Path(store)
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        root = _open(self.store)
        self.settings = dict(root.attrs)
        index = root["index"]
        self.scene_ids: list[str] = list(index.attrs["scene_ids"])
        scene = index["scene"][...].astype(np.int64)
        if scenes is None:
            keep = np.ones(len(scene), bool)
        else:
            missing = set(scenes) - set(self.scene_ids)
            if missing:
                raise ValueError(f"scenes not in {self.store}: {sorted(missing)}")
            keep = np.isin(np.asarray(self.scene_ids), list(scenes))[scene]
        self.scene_of = scene[keep]
        self.patch_of = index["patch"][...].astype(np.int64)[keep]
        self.histograms = index["histograms"][...][keep]
        self.sequence: dict[str, StoredSequence] = {}
        for s in np.unique(self.scene_of):
            attrs = root[f"scenes/{self.scene_ids[s]}"].attrs
            self.sequence[self.scene_ids[s]] = StoredSequence(
                torch.tensor(attrs["days_before"], dtype=torch.float32),
                torch.tensor(attrs["day_of_year"], dtype=torch.int64), attrs["region"])
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.downsample, self.cell = int(self.settings["downsample"]), int(self.settings["cell"])
        self._scenes: dict[str, _OpenScene] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.scene_of)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scenes": {}}

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations from now on (call before each epoch, as with DDP samplers).

        Workers copy the dataset when they start, so with ``persistent_workers=True`` they keep
        the epoch they started with.
        """
        self.epoch = epoch

    def augmentation(self, i: int) -> int:
        """Which of the 8 transforms (:func:`dihedral`) sample ``i`` gets this epoch; 0 = none."""
        if not self.augment:
            return 0
        return int(np.random.default_rng((self.seed, self.epoch, i)).integers(N_DIHEDRAL))

    def _scene(self, sid: str) -> _OpenScene:
        if self._pid != os.getpid():  # forked into a worker: open our own handles
            self._scenes, self._pid = {}, os.getpid()
        if sid not in self._scenes:
            group = _open(self.store, f"scenes/{sid}")
            grids = [m for m in ("amsr2", "era5") if m in self.modalities]
            images = ["labels"] + (["sar", "sar_mask"] if "sar" in self.modalities else []) + grids
            vectors = ["origin"] + (["grid2km_offset"] if grids else [])
            self._scenes[sid] = _OpenScene({name: group[name] for name in images},
                                           {name: group[name][...].astype(np.int64) for name in vectors})
        return self._scenes[sid]

    def __getitem__(self, i: int) -> dict:
        i = range(len(self))[i]  # bounds-checked, non-negative: it seeds the augmentation
        s = int(self.scene_of[i])
        sid = self.scene_ids[s]
        k = int(self.patch_of[i])
        scene = self._scene(sid)
        read = {name: arr[k] for name, arr in scene.arrays.items()}  # one slice per array
        read |= {name: v[k] for name, v in scene.vectors.items()}
        sample = patch_sample(read, self.sequence[sid]) | {"scene": torch.tensor(s)}
        return dihedral(sample, self.augmentation(i), self.downsample, self.cell)


def patch_sample(patch: dict[str, np.ndarray], sequence: StoredSequence) -> dict:
    """A sample (without ``scene``) from one patch's arrays in the store's layout and dtypes.

    ``patch`` holds ``labels`` and any of ``sar``, ``sar_mask``, ``amsr2``, ``era5``, ``origin``,
    ``grid2km_offset`` (others, such as ``histograms``, are left out); ``sequence`` gives the dates.
    """
    labels = torch.from_numpy(patch["labels"].astype(np.int64))
    sample = {"labels": dict(zip(schema.CHARTS, labels.unbind(0)))}
    sample |= {name: torch.from_numpy(np.asarray(patch[name], np.int64))
               for name in ("origin", "grid2km_offset") if name in patch}
    if "sar" in patch:
        sample |= {"sar": torch.from_numpy(patch["sar"].astype(np.float32)),
                   "sar_mask": torch.from_numpy(patch["sar_mask"]),
                   "days_before": sequence.days_before.clone(), "day_of_year": sequence.day_of_year.clone()}
    sample |= {name: torch.from_numpy(patch[name].astype(np.float32)) for name in ("amsr2", "era5")
               if name in patch}
    return sample


def _spatial(x: torch.Tensor, which: int) -> torch.Tensor:
    """Transform ``which`` on the last two dims of ``x``."""
    if which & 1:
        x = x.transpose(-2, -1)
    dims = [d for bit, d in ((2, -2), (4, -1)) if which & bit]
    return (x.flip(dims) if dims else x).contiguous()


def dihedral(sample: dict, which: int, downsample: int, cell: int = schema.CELL_80M) -> dict:
    """One of the 8 flips/rotations of a sample (``which`` in 0..7, 0 = identity), for every key.

    ``which`` bits, applied in this order: 1 transposes (lines <-> samples), 2 flips lines,
    4 flips samples. The 2 km blocks turn with the image and the offset follows, so that
    ``(offset + i * downsample) // cell`` still names the cell under each pixel's sample pixel: a
    flip of lines maps ``offset_r`` to ``G * cell - 1 - offset_r - (P - 1) * downsample``, a
    transpose swaps the two. The ERA5 winds (``u`` along samples, ``v`` along lines) turn with the
    image axes: a transpose swaps them, a flip of lines negates ``v``, of samples ``u``.
    """
    if not 0 <= which < N_DIHEDRAL:
        raise ValueError(f"which must be in 0..7, not {which}")
    if which == 0:
        return sample
    out = {key: _spatial(value, which) for key, value in sample.items()
           if key in ("sar", "sar_mask", "amsr2", "era5")}
    out["labels"] = {c: _spatial(v, which) for c, v in sample["labels"].items()}
    if "era5" in out:
        era5 = out["era5"]
        u, v = (era5[_V], era5[_U]) if which & 1 else (era5[_U], era5[_V])
        wind = torch.stack([-u if which & 4 else u, -v if which & 2 else v])
        out["era5"] = era5.index_copy(0, torch.tensor([_U, _V]), wind)  # a new tensor
    if "grid2km_offset" in sample:
        offset = sample["grid2km_offset"].clone()
        if which & 1:
            offset = offset.flip(0)
        block = (sample["amsr2"] if "amsr2" in sample else sample["era5"]).shape[-1] * cell
        patch = out["labels"][schema.CHARTS[0]].shape[-1]
        for bit, axis in ((2, 0), (4, 1)):
            if which & bit:
                offset[axis] = block - 1 - offset[axis] - (patch - 1) * downsample
        out["grid2km_offset"] = offset
    return sample | out


def collate(samples: Sequence[dict]) -> dict:
    """Stack samples into a batch, padding the time dim to the longest sequence.

    Padded steps have zero SAR, a False ``sar_mask``, ``day_of_year`` 0 and ``days_before`` 0;
    ``step_mask`` (B, T) is True for real steps. Labels stay a dict: ``{chart: (B, P, P)}``.
    """
    first = samples[0]
    batch = {}
    if "sar" in first:
        lengths = torch.tensor([s["sar"].shape[0] for s in samples])
        for key in _SEQUENCE_KEYS:
            batch[key] = pad_sequence([s[key] for s in samples], batch_first=True)
        batch["step_mask"] = torch.arange(int(lengths.max())) < lengths[:, None]
    for key in first:
        if key not in _SEQUENCE_KEYS and key != "labels":
            batch[key] = torch.stack([s[key] for s in samples])
    batch["labels"] = {c: torch.stack([s["labels"][c] for s in samples]) for c in first["labels"]}
    return batch


def patch_weights(histograms: np.ndarray, chart: str = "SOD", power: float = 0.5) -> np.ndarray:
    """Sampling weight per patch, (N, 24) histograms -> (N,).

    A class weighs ``(1 / share)^power``, its share of the labelled ``chart`` pixels of all
    patches; a patch weighs the mean of its pixels' class weights. Patches with no ``chart``
    label weigh as the lightest labelled patch; ``power`` 0 weighs every patch 1.
    """
    counts = np.asarray(histograms, np.float64)[:, schema.HISTOGRAM_SLICES[chart]]
    totals = counts.sum(axis=0)
    class_weight = np.zeros_like(totals)
    seen = totals > 0
    class_weight[seen] = (totals[seen] / totals.sum()) ** -power
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


def split_scenes(scenes: str | Path | Sequence[str], val_fraction: float = 0.2, seed: int = 0,
                 by: str = "scene", regions: Sequence[str] | None = None
                 ) -> tuple[list[str], list[str]]:
    """Deterministic, disjoint (train, validation) lists of target scene ids, each sorted.

    ``scenes`` is a store (its scene ids and regions are read) or a list of scene ids.
    ``by="region"`` keeps every region whole, so that no validation chart shares a region, and
    so overlapping ice, with a training chart; with plain ids pass ``regions``, one per id.
    ``val_fraction`` of the scenes (or regions) go to validation, at least one when > 0.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if isinstance(scenes, (str, os.PathLike)):
        if regions is not None:
            raise ValueError("regions are read from the store; pass them only with scene ids")
        region_of = store_regions(scenes)
        scenes, regions = list(region_of), list(region_of.values())
    if by == "scene":
        group = {sid: sid for sid in scenes}
    elif by == "region":
        if regions is None or len(regions) != len(scenes):
            raise ValueError("by='region' needs one region per scene id")
        group = dict(zip(scenes, regions))
    else:
        raise ValueError(f"by must be 'scene' or 'region', not {by!r}")
    keys = sorted(set(group.values()))
    n_val = min(max(1, round(val_fraction * len(keys))), len(keys) - 1) if val_fraction > 0 else 0
    val_keys = set(np.random.default_rng(seed).permutation(keys)[:n_val].tolist())
    ids = sorted(group)
    return [s for s in ids if group[s] not in val_keys], [s for s in ids if group[s] in val_keys]


def upsample_grid2km(grid: torch.Tensor, offset: torch.Tensor, patch: int, downsample: int,
                     cell: int = schema.CELL_80M) -> torch.Tensor:
    """Native 2 km blocks (B, C, G, G) onto the patch grid (B, C, P, P), each pixel taking its cell.

    Pixel (i, j) of sample b takes cell ``((offset[b, 0] + i * downsample) // cell,
    (offset[b, 1] + j * downsample) // cell)``: the store's rule, exact after augmentation too.
    """
    steps = torch.arange(patch, device=grid.device) * downsample
    rows = ((offset[:, 0, None] + steps) // cell).clamp(max=grid.shape[-2] - 1)  # (B, P)
    cols = ((offset[:, 1, None] + steps) // cell).clamp(max=grid.shape[-1] - 1)
    b = torch.arange(grid.shape[0], device=grid.device)[:, None, None]
    return grid.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
