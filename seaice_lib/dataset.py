"""Torch datasets over the patch store: dict samples, consistent augmentation, balanced sampling.

A sample (one patch of one target scene) is a dict keyed by modality::

    sar            (T, C, P, P) float32  standard-scaled, 0 where masked; T steps, the target last
    sar_mask       (T, P, P)    bool
    days_before    (T,)         float32  days from each acquisition to the target's
    day_of_year    (T,)         int64    1..366 (0 is kept for padding)
    amsr2          (14, G, G)   float32  native 2 km cells under the patch
    era5           (6, G, G)    float32
    grid2km_offset (2,)         int64    patch pixel (i, j) lies in cell ((off + (i, j) * ds) // 25)
    labels         {"SIC", "SOD", "FLOE"}: (P, P) int64, 255 = no label
    scene          ()           int64    index into ``dataset.scene_ids``
    origin         (2,)         int64    80 m pixel of the patch's top-left in the target scene

:func:`collate` pads ``T`` to the longest sequence of a batch and adds ``step_mask`` (B, T).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset, Sampler

from . import schema

_U, _V = schema.ERA5_VARIABLES.index("u10m_rotated"), schema.ERA5_VARIABLES.index("v10m_rotated")
_IMAGES = ("sar", "sar_mask")


class PatchDataset(Dataset):
    """Patches of a store (``seaice_lib.patches``), optionally only those of some target scenes.

    Args:
        store: the zarr patch store (its ``index`` built by ``consolidate``).
        scenes: scene ids to keep (a split); None keeps all.
        augment: random flips and 90-degree rotations, the same for every modality and the labels.
        seed: seeds the augmentation with the epoch (``set_epoch``) and the sample index.
    """

    def __init__(self, store: str | Path, scenes: Sequence[str] | None = None, augment: bool = False,
                 seed: int = 0):
        self.store = Path(store)
        root = zarr.open_group(zarr.storage.LocalStore(self.store, read_only=True), mode="r")
        self.settings = dict(root.attrs)
        index = root["index"]
        self.scene_ids: list[str] = list(index.attrs["scene_ids"])
        scene, patch = index["scene"][...], index["patch"][...]
        keep = np.ones(len(scene), bool) if scenes is None else \
            np.isin(np.asarray(self.scene_ids)[scene] if len(scene) else [], list(scenes))
        self.scene_of, self.patch_of = scene[keep].astype(np.int64), patch[keep].astype(np.int64)
        self.histograms = index["histograms"][...][keep]
        self.sequence = {}
        for sid in sorted({self.scene_ids[i] for i in np.unique(self.scene_of)}):
            attrs = root[f"scenes/{sid}"].attrs
            self.sequence[sid] = (torch.tensor(attrs["days_before"], dtype=torch.float32),
                                  torch.tensor(attrs["day_of_year"], dtype=torch.int64),
                                  attrs["region"])
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.downsample = int(self.settings["downsample"])
        self.cell = int(self.settings["cell"])
        self._groups: dict[str, zarr.Group] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.scene_of)

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations in the next epoch (call before each, as with DDP samplers)."""
        self.epoch = epoch

    def _group(self, sid: str) -> zarr.Group:
        if self._pid != os.getpid():  # handles do not survive a fork into DataLoader workers
            self._groups, self._pid = {}, os.getpid()
        if sid not in self._groups:
            store = zarr.storage.LocalStore(self.store, read_only=True)
            self._groups[sid] = zarr.open_group(store, mode="r", path=f"scenes/{sid}")
        return self._groups[sid]

    def __getitem__(self, i: int) -> dict:
        sid = self.scene_ids[self.scene_of[i]]
        k = int(self.patch_of[i])
        g = self._group(sid)
        days_before, day_of_year, _ = self.sequence[sid]
        labels = torch.from_numpy(g["labels"][k].astype(np.int64))
        sample = {
            "sar": torch.from_numpy(g["sar"][k].astype(np.float32)),
            "sar_mask": torch.from_numpy(g["sar_mask"][k]),
            "days_before": days_before.clone(),
            "day_of_year": day_of_year.clone(),
            "amsr2": torch.from_numpy(g["amsr2"][k].astype(np.float32)),
            "era5": torch.from_numpy(g["era5"][k].astype(np.float32)),
            "grid2km_offset": torch.from_numpy(g["grid2km_offset"][k].astype(np.int64)),
            "labels": dict(zip(schema.CHARTS, labels)),
            "scene": torch.tensor(int(self.scene_of[i])),
            "origin": torch.from_numpy(g["origin"][k].astype(np.int64)),
        }
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            sample = dihedral(sample, int(rng.integers(8)), self.downsample, self.cell)
        return sample


def dihedral(sample: dict, which: int, downsample: int, cell: int) -> dict:
    """One of the 8 flips/rotations of a sample (0 = identity), applied to every modality.

    ``which`` bits: 1 transposes (lines <-> samples), 2 flips lines, 4 flips samples, in that order.
    The 2 km blocks and their offset follow so that ``(offset + i * downsample) // cell`` still
    names the cell under each pixel, and the ERA5 winds (``u`` along samples, ``v`` along lines)
    turn with the image axes.
    """
    out = dict(sample)
    labels = torch.stack([sample["labels"][c] for c in schema.CHARTS])
    images = {k: sample[k] for k in _IMAGES} | {"labels": labels}
    grids = {"amsr2": sample["amsr2"], "era5": sample["era5"].clone()}
    offset = sample["grid2km_offset"].clone()
    p = labels.shape[-1]
    g = grids["amsr2"].shape[-1]
    if which & 1:
        images = {k: v.transpose(-1, -2) for k, v in images.items()}
        grids = {k: v.transpose(-1, -2) for k, v in grids.items()}
        offset = offset.flip(0)
        era5 = grids["era5"].clone()
        era5[[_U, _V]] = grids["era5"][[_V, _U]]
        grids["era5"] = era5
    for bit, axis in ((2, 0), (4, 1)):
        if which & bit:
            images = {k: v.flip(-2 + axis) for k, v in images.items()}
            grids = {k: v.flip(-2 + axis) for k, v in grids.items()}
            offset[axis] = g * cell - 1 - offset[axis] - (p - 1) * downsample
            era5 = grids["era5"].clone()
            era5[_V if axis == 0 else _U] *= -1
            grids["era5"] = era5
    out.update({k: images[k].contiguous() for k in _IMAGES})
    out["labels"] = dict(zip(schema.CHARTS, images["labels"].contiguous()))
    out.update({k: v.contiguous() for k, v in grids.items()})
    out["grid2km_offset"] = offset
    return out


def collate(samples: Sequence[dict]) -> dict:
    """Stack samples into a batch, padding the time dim to the longest sequence.

    Padded steps have zero SAR, a False ``sar_mask``, ``day_of_year`` 0 and ``days_before`` 0;
    ``step_mask`` (B, T) is True for real steps.
    """
    t_max = max(s["sar"].shape[0] for s in samples)

    def pad(x: torch.Tensor) -> torch.Tensor:
        missing = t_max - x.shape[0]
        return x if missing == 0 else torch.cat([x, x.new_zeros((missing,) + x.shape[1:])])

    batch = {key: torch.stack([pad(s[key]) for s in samples])
             for key in ("sar", "sar_mask", "days_before", "day_of_year")}
    batch["step_mask"] = torch.stack([torch.arange(t_max) < s["sar"].shape[0] for s in samples])
    for key in ("amsr2", "era5", "grid2km_offset", "scene", "origin"):
        batch[key] = torch.stack([s[key] for s in samples])
    batch["labels"] = {c: torch.stack([s["labels"][c] for s in samples]) for c in schema.CHARTS}
    return batch


def patch_weights(histograms: np.ndarray, chart: str = "SOD", power: float = 0.5) -> np.ndarray:
    """Sampling weight per patch: the histogram-weighted mean of class weights (1 / share)^power.

    Patches with no label of ``chart`` keep the smallest weight of the labelled ones.
    """
    counts = np.asarray(histograms, np.float64)[:, schema.HISTOGRAM_SLICES[chart]]
    totals = counts.sum(axis=0)
    share = totals / max(totals.sum(), 1)
    class_weight = np.where(share > 0, np.maximum(share, 1e-12) ** -power, 0.0)
    labelled = counts.sum(axis=1)
    w = (counts @ class_weight) / np.maximum(labelled, 1)
    floor = w[labelled > 0].min() if (labelled > 0).any() else 1.0
    return np.where(labelled > 0, w, floor)


class ClassBalancedSampler(Sampler[int]):
    """Draws patches with replacement, rare classes of ``chart`` more often (``power`` 0: uniform)."""

    def __init__(self, dataset: PatchDataset, chart: str = "SOD", power: float = 0.5,
                 num_samples: int | None = None, seed: int = 0):
        self.weights = torch.as_tensor(patch_weights(dataset.histograms, chart, power))
        self.num_samples = num_samples or len(dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.multinomial(self.weights, n, replacement=True, generator=g)

    def __iter__(self) -> Iterator[int]:
        return iter(self._draw(self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples


class DistributedClassBalancedSampler(ClassBalancedSampler):
    """The balanced draw for DDP: every rank draws the same epoch sequence and takes its slice."""

    def __init__(self, dataset: PatchDataset, chart: str = "SOD", power: float = 0.5,
                 num_samples: int | None = None, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None):
        super().__init__(dataset, chart, power, num_samples, seed)
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas or (dist.get_world_size() if ready else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if ready else 0)
        self.per_rank = math.ceil(self.num_samples / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        draw = self._draw(self.per_rank * self.num_replicas)
        return iter(draw[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank


def class_shares(dataset: PatchDataset, sampler: ClassBalancedSampler, chart: str):
    """Expected shares (%) of labelled ``chart`` pixels per class, uniform draws vs ``sampler``'s,
    as a pandas DataFrame indexed by class name."""
    import pandas as pd  # only here: training processes need not load it

    counts = np.asarray(dataset.histograms, np.float64)[:, schema.HISTOGRAM_SLICES[chart]]
    p = sampler.weights.numpy() / sampler.weights.numpy().sum()
    uniform = counts.sum(axis=0)
    balanced = p @ counts
    return pd.DataFrame({"uniform": 100 * uniform / max(uniform.sum(), 1),
                         "balanced": 100 * balanced / max(balanced.sum(), 1e-12)},
                        index=pd.Index(schema.CLASSES[chart].names, name="class"))


def split_scenes(scene_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0,
                 by: str = "scene", regions: Sequence[str] | None = None
                 ) -> tuple[list[str], list[str]]:
    """Deterministic, disjoint train/validation split of target scenes.

    ``by="region"`` keeps every region whole (pass ``regions``, one per scene id), so that no
    validation chart shares a region, and so overlapping ice, with a training chart.
    """
    ids = sorted(scene_ids)
    if by == "scene":
        groups = {sid: sid for sid in ids}
    elif by == "region":
        if regions is None or len(regions) != len(scene_ids):
            raise ValueError("by='region' needs one region per scene id")
        groups = dict(zip(scene_ids, regions))
    else:
        raise ValueError(f"by must be 'scene' or 'region', not {by!r}")
    keys = sorted(set(groups.values()))
    rng = np.random.default_rng(seed)
    n_val = max(1, round(val_fraction * len(keys))) if len(keys) > 1 else 0
    val_keys = set(rng.permutation(keys)[:n_val].tolist())
    train = [s for s in ids if groups[s] not in val_keys]
    val = [s for s in ids if groups[s] in val_keys]
    return train, val


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
