"""The torch dataset over the patch store: dict samples keyed by modality, and their batching.

A sample (one patch of one target scene) is a dict keyed by modality, in the format
:mod:`seaice_lib.sample_format` defines once (keys, dims, dtypes, which modality each comes with)::

    sar            (T, C, P, P) float32  standard-scaled, 0 where masked; T steps, the target last
    sar_mask       (T, P, P)    bool     True = data
    days_before    (T,)         float32  days from each acquisition to the target's (target: 0)
    day_of_year    (T,)         int64    1..366 (0 is kept for padding)
    amsr2          (14, G, G)   float32  native 2 km cells under the patch
    era5           (6, G, G)    float32  u10m_rotated along samples, v10m_rotated along lines
    grid2km_offset (2,)         int64    see :mod:`seaice_lib.grid` (the cell rule)
    labels         {"SIC", "SOD", "FLOE"}: (P, P) int64, 255 = no label
    scene          ()           int64    index into ``dataset.scene_ids``
    origin         (2,)         int64    80 m pixel of the patch's top-left in the target scene

``sar``, ``sar_mask``, ``days_before`` and ``day_of_year`` come with the ``"sar"`` modality,
``amsr2`` and ``era5`` with their own, ``grid2km_offset`` with either of them; the offset follows
the cell rule of :mod:`seaice_lib.grid` and stays exact through the flips and rotations of
:mod:`.transforms`. :func:`collate` pads ``T`` to the longest sequence of a batch and adds
``step_mask`` (B, T); :meth:`PatchDataset.__getitems__` reads that batch whole, straight into
its buffers (what a DataLoader calls). Samplers and splits live in :mod:`.samplers` and :mod:`.splits`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import zarr
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from .. import sample_format, schema
from ..sample_format import MODALITIES, MODALITY_KEYS, OPTIONAL_MODALITIES, SEQUENCE_KEYS
from .shards import ShardReader
from .store import check_store, node_attrs, open_scene_arrays, rebuild_command, shapes_problem, subarray, subgroup
from .transforms import N_DIHEDRAL, dihedral


def keep_modalities(batch: dict, modalities: Sequence[str]) -> dict:
    """``batch`` without the keys of the modalities not in ``modalities`` (what a model trained on
    those modalities was given: :class:`PatchDataset` leaves the others out the same way)."""
    dropped = {key for m, keys in MODALITY_KEYS.items() if m not in modalities for key in keys}
    return {k: v for k, v in batch.items() if k not in dropped} if dropped else batch


class StoredSequence(NamedTuple):
    """The acquisitions of one target scene, oldest first, as the store lists them."""

    days_before: torch.Tensor  # (T,) float32
    day_of_year: torch.Tensor  # (T,) int64
    region: str


class _OpenScene(NamedTuple):
    """A scene group's image arrays, read one patch at a time, and its (N, 2) per-patch vectors, whole."""

    arrays: dict[str, ShardReader]
    vectors: dict[str, np.ndarray]


def open_store_group(store: str | Path, path: str = "") -> zarr.Group:
    """A patch store's root (or the group at ``path`` in it), read-only.

    The root is opened only when the store is finished: a store without its index, or whose index
    lists a scene group that is gone, raises ValueError naming the store and the scene and saying
    how to rebuild (:func:`.store.check_store`).
    """
    if not path:
        check_store(store)
    return zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path=path)


class PatchDataset(Dataset):
    """Patches of a store (:mod:`seaice_lib.data.patches`), optionally only those of some target scenes.

    Arrays are opened lazily and cached per process, so the dataset can be pickled into
    DataLoader workers (fork, spawn or forkserver) before or after it has been read from. A sample
    reads one chunk of each image array (SAR, masks, labels, 2 km blocks) through a
    :class:`~.shards.ShardReader`; a scene's small ``origin`` and ``grid2km_offset`` arrays are
    read whole when the scene is first opened. A DataLoader reads whole batches
    (:meth:`__getitems__`).

    Args:
        store: the zarr patch store (its ``index`` built by ``consolidate``).
        scenes: target scene ids to keep (a split); None keeps all.
        augment: one of the 8 flips/rotations per sample (:func:`dihedral`), the same for every
            modality and the labels, drawn from (``seed``, epoch, index).
        seed: seeds the augmentation.
        modalities: inputs to read, a subset of ``("sar", "amsr2", "era5")``.
        compact: serve the store's dtypes (float16 ``sar``, ``amsr2``, ``era5``; uint8 labels), half
            the bytes to hand from a worker and to copy to a GPU; :func:`widen` casts them on the
            device (the training and evaluation loops do).
    """

    def __init__(self, store: str | Path, scenes: Sequence[str] | None = None, augment: bool = False,
                 seed: int = 0, modalities: Sequence[str] = MODALITIES, compact: bool = False):
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
        self.store = Path(store)
        self.modalities = tuple(m for m in MODALITIES if m in modalities)
        root = open_store_group(self.store)
        self.settings = node_attrs(root)
        index = subgroup(root, "index")
        self.scene_ids: list[str] = list(node_attrs(index)["scene_ids"])
        scene = np.asarray(subarray(index, "scene")[...]).astype(np.int64)
        if scenes is None:
            keep = np.ones(len(scene), bool)
        else:
            missing = set(scenes) - set(self.scene_ids)
            if missing:
                raise ValueError(f"scenes not in {self.store}: {sorted(missing)}")
            keep = np.isin(np.asarray(self.scene_ids), list(scenes))[scene]
        self.scene_of = scene[keep]
        self.patch_of = np.asarray(subarray(index, "patch")[...]).astype(np.int64)[keep]
        self.histograms = np.asarray(subarray(index, "histograms")[...])[keep]
        self.sequence: dict[str, StoredSequence] = {}
        for s in np.unique(self.scene_of):
            attrs = node_attrs(subgroup(root, f"scenes/{self.scene_ids[s]}"))
            self.sequence[self.scene_ids[s]] = StoredSequence(
                torch.tensor(attrs["days_before"], dtype=torch.float32),
                torch.tensor(attrs["day_of_year"], dtype=torch.int64), attrs["region"])
        self.augment, self.seed, self.epoch, self.compact = augment, seed, 0, compact
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
            images = ["labels"] + [key for m in self.modalities for key in MODALITY_KEYS[m]]
            vectors = ["origin"] + (["grid2km_offset"] if set(self.modalities) & set(OPTIONAL_MODALITIES) else [])
            arrays = open_scene_arrays(self.store, sid, images + vectors)  # every shard on disk
            if (problem := shapes_problem(self.settings, {name: arrays[name].shape for name in images})) is not None:
                raise ValueError(f"{self.store}: scene group scenes/{sid}: {problem}; cut it again with "
                                 f"`{rebuild_command(self.store)}`")  # batches are sized by the store's patches
            folder = self.store / "scenes" / sid
            self._scenes[sid] = _OpenScene({name: ShardReader(arrays[name], folder / name) for name in images},
                                           {name: np.asarray(arrays[name][...]).astype(np.int64) for name in vectors})
        return self._scenes[sid]

    def _where(self, i: int) -> tuple[int, str, int]:
        """(scene index, scene id, patch index in its group) of sample ``i``."""
        s = int(self.scene_of[i])
        return s, self.scene_ids[s], int(self.patch_of[i])

    def __getitem__(self, i: int) -> dict:
        i = range(len(self))[i]  # bounds-checked, non-negative: it seeds the augmentation
        s, sid, k = self._where(i)
        scene = self._scene(sid)
        read = {name: reader.read(k) for name, reader in scene.arrays.items()}  # one chunk per array
        read |= {name: v[k] for name, v in scene.vectors.items()}
        turned = dihedral(read, self.augmentation(i), self.downsample, self.cell)
        return patch_sample(turned, self.sequence[sid], self.compact) | {"scene": torch.tensor(s)}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        """The batch ``collate([self[i] for i in indices])``, equal in keys, values and dtypes.

        Each chunk is decompressed into a scratch buffer reused for every sample, then copied once
        into its row of the batch, turned (:func:`dihedral` as a view) and cast in the same pass.
        The batch's tensors share one block of memory (:func:`_batch_tensors`). DataLoaders call
        this for every batch (:func:`collate` passes the batch through).
        """
        indices = [range(len(self))[i] for i in indices]
        where = [self._where(i) for i in indices]
        scenes = {sid: self._scene(sid) for _, sid, _ in where}
        steps = [len(self.sequence[sid].days_before) for _, sid, _ in where]
        b, t_max = len(indices), max(steps)
        readers, vectors = scenes[where[0][1]].arrays, scenes[where[0][1]].vectors
        scratch = {name: np.empty((t_max, *r.shape[2:]) if name in SEQUENCE_KEYS else r.shape[1:], r.dtype)
                   for name, r in readers.items()}
        dtypes = _served_dtypes(self.compact)
        specs = {name: ((b, t_max, *r.shape[2:]) if name in SEQUENCE_KEYS else (b, *r.shape[1:]), dtypes[name])
                 for name, r in readers.items() if name != "labels"}
        specs |= {c: ((b, *readers["labels"].shape[2:]), dtypes["labels"]) for c in schema.CHARTS}
        specs |= {name: ((b, 2), dtypes[name]) for name in vectors} | {"scene": ((b,), dtypes["scene"])}
        if "sar" in readers:
            specs |= {name: ((b, t_max), dtypes[name]) for name in ("step_mask", "days_before", "day_of_year")}
        batch: dict[str, Any] = _batch_tensors(specs)  # "labels" becomes a dict of tensors
        rows = {name: v.numpy() for name, v in batch.items()}
        for row, (i, (s, sid, k), t) in enumerate(zip(indices, where, steps)):
            patch = {}
            for name, reader in scenes[sid].arrays.items():
                patch[name] = scratch[name][:t] if name in SEQUENCE_KEYS else scratch[name]
                reader.read_into(k, patch[name])
            patch |= {name: v[k] for name, v in scenes[sid].vectors.items()}
            turned = dihedral(patch, self.augmentation(i), self.downsample, self.cell)
            turned |= dict(zip(schema.CHARTS, turned.pop("labels")))
            if "sar" in readers:
                dates = self.sequence[sid]
                turned |= {"days_before": dates.days_before.numpy(), "day_of_year": dates.day_of_year.numpy(),
                           "step_mask": True}
            for name, value in turned.items():
                if name in SEQUENCE_KEYS or name == "step_mask":
                    rows[name][row, :t] = value
                    rows[name][row, t:] = 0
                else:
                    rows[name][row] = value
            rows["scene"][row] = s
        batch["labels"] = {c: batch.pop(c) for c in schema.CHARTS}
        return batch


_SERVED = {compact: {name: getattr(torch, dtype) for name, dtype in sample_format.dtypes(compact).items()}
           for compact in (False, True)}


def _served_dtypes(compact: bool) -> dict[str, torch.dtype]:
    """Torch dtype of each key a sample or batch serves (the store's when ``compact``), made once."""
    return _SERVED[bool(compact)]


def _batch_tensors(specs: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """Uninitialised tensors ``{name: (shape, dtype)}``, views of one block of memory. In a
    DataLoader worker the block is shared memory from the start, so that handing the batch to the
    trainer is one file and no copy (torch's own collate makes one shared tensor per key)."""
    sizes = {name: -(-math.prod(shape) * dtype.itemsize // 64) * 64 for name, (shape, dtype) in specs.items()}
    total = sum(sizes.values())
    storage = (torch.UntypedStorage._new_shared(total) if torch.utils.data.get_worker_info() is not None
               else torch.UntypedStorage(total))
    tensors, offset = {}, 0
    for name, (shape, dtype) in specs.items():
        # stride left out (torch's default): torch's stubs lack that form of set_
        tensors[name] = torch.empty(0, dtype=dtype).set_(storage, offset // dtype.itemsize, shape)  # type: ignore[call-overload]
        offset += sizes[name]
    return tensors


def widen(batch: Mapping) -> dict:
    """A compact batch (``PatchDataset(compact=True)``) in the model's dtypes: float16 -> float32,
    uint8 labels -> int64; other tensors as they are. Call it where the batch is, e.g. on the GPU."""
    wider = {torch.float16: torch.float32, torch.uint8: torch.int64}
    return {k: widen(v) if isinstance(v, Mapping) else
            (v.to(wider[v.dtype]) if isinstance(v, torch.Tensor) and v.dtype in wider else v)
            for k, v in batch.items()}


def patch_sample(patch: dict[str, np.ndarray], sequence: StoredSequence, compact: bool = False) -> dict:
    """A sample (without ``scene``) from one patch's arrays in the store's layout and dtypes.

    ``patch`` holds ``labels`` and any of ``sar``, ``sar_mask``, ``amsr2``, ``era5``, ``origin``,
    ``grid2km_offset`` (others, such as ``histograms``, are left out), possibly turned views;
    ``sequence`` gives the dates; ``compact`` keeps the store's dtypes (see :class:`PatchDataset`).
    """
    dtypes = sample_format.dtypes(compact)

    def tensor(name: str) -> torch.Tensor:  # C-contiguous, in the served dtype
        return torch.from_numpy(np.ascontiguousarray(patch[name], dtypes[name]))

    sample: dict[str, Any] = {"labels": dict(zip(schema.CHARTS, tensor("labels").unbind(0)))}
    sample |= {name: tensor(name) for name in ("origin", "grid2km_offset") if name in patch}
    if "sar" in patch:
        sample |= {"sar": tensor("sar"), "sar_mask": tensor("sar_mask"),
                   "days_before": sequence.days_before.clone(), "day_of_year": sequence.day_of_year.clone()}
    sample |= {name: tensor(name) for name in ("amsr2", "era5") if name in patch}
    return sample


def collate(samples: Sequence[dict]) -> dict:
    """Stack samples into a batch, padding the time dim to the longest sequence.

    Padded steps have zero SAR, a False ``sar_mask``, ``day_of_year`` 0 and ``days_before`` 0;
    ``step_mask`` (B, T) is True for real steps. Labels stay a dict: ``{chart: (B, P, P)}``.
    A batch already read whole (:meth:`PatchDataset.__getitems__`) is returned as it is.
    """
    if isinstance(samples, Mapping):
        return dict(samples)
    first = samples[0]
    batch: dict[str, Any] = {}
    if "sar" in first:
        lengths = torch.tensor([s["sar"].shape[0] for s in samples])
        for key in SEQUENCE_KEYS:
            batch[key] = pad_sequence([s[key] for s in samples], batch_first=True)
        batch["step_mask"] = torch.arange(int(lengths.max())) < lengths[:, None]
    for key in first:
        if key not in SEQUENCE_KEYS and key != "labels":
            batch[key] = torch.stack([s[key] for s in samples])
    batch["labels"] = {c: torch.stack([s["labels"][c] for s in samples]) for c in first["labels"]}
    return batch
