"""Spatio-temporal patches of target scenes in one zarr (v3) store, built scene by scene.

For each target scene (the one whose chart is the label) its sequence, co-registered at the store's
pixel spacing (80 m x ``downsample``) by :func:`~seaice_lib.data.sequences.co_register`, is cut into
patches. AMSR2 and ERA5 stay at their native 2 km cells, stored per patch with the exact offset of
the patch inside its first cell (the cell rule of :mod:`seaice_lib.grid`). Patches with too few
labelled pixels are skipped.

Store layout (``format = "seaice-patches/1"``)::

    STORE.zarr/                     root attrs: the extraction settings (patch, downsample, ...), their
                                    settings_sha256 (of each, by name) and scenes_dir, the absolute
                                    folder of the latest extraction
      scenes/<scene_id>/            one group per target scene; attrs: steps, days_before, day_of_year,
                                    inputs (the scene files it was cut from: name, bytes, mtime_ns, sha256),
                                    content_sha256 (of its arrays), attrs_sha256 (of the attrs read as data);
                                    same_as_unhashed where it replaced a group cut before content_sha256
                                    and holds the same patches (that group's written and inputs)
        sar            (N, T, C, P, P) float16  standard-scaled, 0 where masked (T: oldest first)
        sar_mask       (N, T, P, P)    bool
        labels         (N, 3, P, P)    uint8    SIC, SOD, FLOE; 255 = no label
        amsr2          (N, 14, G, G)   float16  native 2 km cells under the patch
        era5           (N, 6, G, G)    float16
        grid2km_offset (N, 2)          int32    80 m pixels from cell (0, 0)'s corner to pixel (0, 0)'s
                                                sample pixel (see below)
        histograms     (N, 24)         int32    labelled pixels per class: SIC 11 | SOD 6 | FLOE 7
        origin         (N, 2)          int32    80 m pixel of the patch's top-left in the scene
      index/                        written by :func:`consolidate`: every patch and class totals;
                                    index_sha256 (of its arrays and attrs)

Readers check what zarr would otherwise fill in silently (:mod:`seaice_lib.data.store`): a store
without ``index/`` (stopped before the end), a scene group the index lists but the disk lacks, an
array whose shard files are not all there (zarr reads a missing one as zeros). Each ends in a
ValueError naming the store, the scene and the array, and how to rebuild.

Patch pixel ``(i, j)`` covers the 80 m pixels from ``origin + (i, j) * downsample``; its label and
its 2 km cell are those of its sample pixel ``origin + (i, j) * downsample + downsample // 2``.

:func:`store_grid` and :func:`cut_patch` are the one definition of a patch's contents; full-scene
inference (:mod:`seaice_lib.engine.whole_scenes`) cuts its tiles with them. Each scene is one atomic
unit of work, skipped on a rerun while its input files are those it was cut from, this release cut
it, its arrays and attrs are as cut (their ``content_sha256``, ``attrs_sha256``) and its patches are
of the store's settings; else cut again (:func:`why_cut_again`), so SLURM array tasks can write
scenes in parallel (docs/data.md). :func:`check_up_to_date` makes the same judgement, with the same
function, for the stages that read a store (training, experiments, int8 calibration).

CLI: ``seaice patches --scenes DIR --out STORE.zarr [--scene NAME] ...`` (``--help``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypedDict

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from .. import logs, schema
from ..arguments import Parser
from ..atomic import LOCK_NAME, FolderBusy, atomic_path, folder_lock, out_folder, remove_stale
from ..grid import cells_per_patch, patch_cells
from ..provenance import another_release, file_sha256, provenance
from ..stages import STORE, other_stage
from ..walk import Walk
from .scene import Scene, SceneError, find_scenes, name_time, scan_scenes
from .sequences import MaskedStep, SceneInfo, SceneSequence, build_sequences, co_register, target_sequence
from .store import (
    HASHED_ATTRS,
    INDEX_SHA256,
    SAME_AS_UNHASHED,
    SCENES_DIR_ATTR,
    SETTINGS_SHA256,
    arrays_sha256,
    attrs_problem,
    attrs_sha256,
    group_attrs,
    group_content_problem,
    group_settings_problem,
    index_sha256,
    input_change,
    node_attrs,
    open_scene_arrays,
    rebuild_command,
    root_attrs,
    same_arrays,
    same_input,
    settings_sha256,
    store_lacking,
    store_scenes_dir,  # noqa: F401 (its public name is patches.store_scenes_dir too)
)

log = logging.getLogger(__name__)
FORMAT = "seaice-patches/1"
MAX_PATCH = 2048  # store pixels a side: 164 km at 80 m; one such patch of 3 steps is 150 MiB of float32
# groups of a store whose root records no settings_sha256 cut again to check its settings (:func:`record_settings`)
SETTINGS_CHECK_GROUPS = 2
# each chunk carries its CRC32C: a flipped bit is an error on read, never a silently wrong patch
_COMPRESSORS = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]


@dataclass(frozen=True)
class PatchConfig:
    """Extraction settings; stored in the root attrs and checked on every later run."""

    patch: int = 256  # pixels per side at the store's spacing
    stride: int | None = None  # between patch origins, store pixels (default: patch, no overlap)
    downsample: int = 10  # store spacing = 80 m x downsample
    max_steps: int = 4  # longest sequence, the target included
    window_days: float = 7.0
    min_overlap: float = 0.3  # share of the target an earlier scene must cover
    min_labelled: float = 0.05  # share of a patch's pixels with an SIC label, else skipped
    method: str = "bilinear"  # resampling of earlier acquisitions
    sar_variables: tuple[str, ...] = schema.SAR_GRID_VARIABLES[:3]
    shard_patches: int = 32  # patches per shard file

    def __post_init__(self):
        if self.patch < 1 or self.downsample < 1 or self.max_steps < 1:
            raise ValueError("patch, downsample and max_steps must be positive")
        if self.patch > MAX_PATCH:
            raise ValueError(f"patch must be at most {MAX_PATCH} store pixels a side, not {self.patch}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be positive (or unset: the patch size), not {self.stride}")
        for name in ("min_overlap", "min_labelled"):  # shares: outside [0, 1] they keep every patch or none
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a share in [0, 1], not {getattr(self, name)!r}")
        if not 0 <= self.window_days < math.inf:  # NaN fails too
            raise ValueError(f"window_days must be a finite number of days >= 0, not {self.window_days!r}")

    def tile_settings(self) -> dict:
        """The settings that decide what a tile of a scene holds (JSON-ready): a model is only
        given tiles cut with those it was trained on (recorded in its weights' spec)."""
        return {"patch": self.patch, "downsample": self.downsample, "max_steps": self.max_steps,
                "window_days": self.window_days, "min_overlap": self.min_overlap, "method": self.method,
                "sar_variables": list(self.sar_variables)}

    @property
    def grid_cells(self) -> int:
        """2 km cells per side stored for one patch (enough for any offset)."""
        return cells_per_patch(self.patch, self.downsample)

    def attrs(self) -> dict:
        return {"format": FORMAT, **{k: v for k, v in dataclasses.asdict(self).items()
                                     if k != "shard_patches"},
                "sar_variables": list(self.sar_variables), "cell": schema.CELL_80M,
                "grid_cells": self.grid_cells, "stride": self.stride or self.patch,
                "amsr2_variables": list(schema.AMSR2_CHANNELS),
                "era5_variables": list(schema.ERA5_VARIABLES)}


def config_from_store(store: str | Path) -> PatchConfig:
    """The :class:`PatchConfig` a store was built with, read back from its root attrs."""
    store = Path(store)
    attrs = root_attrs(store)
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{store}: format {attrs.get('format')!r}, expected {FORMAT!r}")
    fields = {f.name for f in dataclasses.fields(PatchConfig)} - {"shard_patches"}
    missing = fields - set(attrs)
    if missing:
        raise ValueError(f"{store}: root attrs lack the settings {sorted(missing)}")
    settings = {k: attrs[k] for k in fields}
    settings["sar_variables"] = tuple(settings["sar_variables"])
    return PatchConfig(**settings)


def patch_origins(n: int, patch: int, stride: int) -> list[int]:
    """Start positions along one axis covering ``n`` pixels; the last patch ends at the edge."""
    if n <= patch:
        return [0]
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] != n - patch:
        starts.append(n - patch)
    return starts


def _pad_to(a: np.ndarray, size: int, fill) -> np.ndarray:
    pad = [(0, 0)] * (a.ndim - 2) + [(0, max(0, size - a.shape[-2])), (0, max(0, size - a.shape[-1]))]
    return np.pad(a, pad, constant_values=fill)


def histogram(labels: np.ndarray) -> np.ndarray:
    """(24,) labelled-pixel counts per class of a (3, h, w) SIC/SOD/FLOE label block."""
    return np.concatenate([np.bincount(labels[i][labels[i] != schema.CHART_FILL].ravel(),
                                       minlength=schema.N_CLASSES[c])[: schema.N_CLASSES[c]]
                           for i, c in enumerate(schema.CHARTS)]).astype(np.int32)


# dtype of every array of a scene group
ARRAY_DTYPES = {"sar": np.float16, "sar_mask": bool, "labels": np.uint8, "amsr2": np.float16,
                "era5": np.float16, "grid2km_offset": np.int32, "histograms": np.int32,
                "origin": np.int32}


class StoreGrid(NamedTuple):
    """A target's sequence at the store's spacing, padded to at least one patch, and its 2 km grid."""

    sar: np.ndarray  # (T, C, h', w') float32, 0 where masked
    sar_mask: np.ndarray  # (T, h', w') bool
    labels: np.ndarray  # (3, h', w') uint8, 255 = no label
    grid2km: dict[str, np.ndarray]  # "amsr2" (14, n2r, n2c), "era5" (6, n2r, n2c): the whole scene
    shape: tuple[int, int]  # (h, w) store pixels before padding: the 80 m shape // downsample
    masked_history: tuple[MaskedStep, ...] = ()  # earlier steps whose masked values reach target pixels


def store_grid(seq: SceneSequence, cfg: PatchConfig, absent: Collection[str] = ()) -> StoreGrid:
    """Everything patches of ``seq``'s target are cut from (:func:`cut_patch`). The 2 km modalities
    in ``absent`` ("amsr2", "era5": a model charts without them) are not read: zeros stand in."""
    co = co_register(seq, cfg.downsample, cfg.sar_variables, cfg.method)
    shape = co.labels.shape[1:]
    p = cfg.patch
    with Scene(seq.target.path) as scene:
        cells = scene.grid2km_window()
        grid = {name: np.zeros((len(variables), cells.cells_rows.stop - cells.cells_rows.start,
                                cells.cells_cols.stop - cells.cells_cols.start), np.float32) if name in absent
                else scene.read_grid2km(variables)[0]
                for name, variables in (("amsr2", schema.AMSR2_CHANNELS), ("era5", schema.ERA5_VARIABLES))}
    return StoreGrid(_pad_to(co.sar, p, 0.0), _pad_to(co.sar_mask, p, False), _pad_to(co.labels, p, 255), grid,
                     shape, co.masked_history)


def grid2km_block(grid: np.ndarray, origin: np.ndarray, cfg: PatchConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The 2 km cells stored with a patch whose top-left 80 m pixel is ``origin`` (2,).

    ``grid`` is the scene's (C, n2r, n2c) 2 km grid. Returns the (C, G, G) block starting at the
    cell under ``origin`` (rows and columns past the grid's end repeat its last cell) and the
    (2,) offset from the block's corner to the sample pixel of patch pixel (0, 0).
    """
    g = cfg.grid_cells
    first, offset = patch_cells(origin, cfg.downsample)
    rows = np.clip(first[0] + np.arange(g), 0, grid.shape[1] - 1)
    cols = np.clip(first[1] + np.arange(g), 0, grid.shape[2] - 1)
    return grid[:, rows[:, None], cols[None, :]], offset


def cut_patch(grid: StoreGrid, r: int, c: int, cfg: PatchConfig) -> dict[str, np.ndarray]:
    """The patch at store pixel (``r``, ``c``) in the store's layout and dtypes (no histogram)."""
    p = cfg.patch
    origin = np.array([r, c]) * cfg.downsample
    amsr2, offset = grid2km_block(grid.grid2km["amsr2"], origin, cfg)
    era5, _ = grid2km_block(grid.grid2km["era5"], origin, cfg)
    patch = {"sar": grid.sar[:, :, r:r + p, c:c + p], "sar_mask": grid.sar_mask[:, r:r + p, c:c + p],
             "labels": grid.labels[:, r:r + p, c:c + p], "amsr2": amsr2, "era5": era5,
             "grid2km_offset": offset, "origin": origin}
    return {k: v.astype(ARRAY_DTYPES[k]) for k, v in patch.items()}


def sequence_attrs(seq: SceneSequence) -> dict:
    """A scene group's description of its sequence (as stored: days rounded to 1e-4)."""
    return {"scene_id": seq.target.scene_id, "region": seq.target.region,
            "time": seq.target.time.isoformat(), "steps": [s.scene_id for s in seq.steps],
            "days_before": [round(float(d), 4) for d in seq.days_before],
            "day_of_year": [int(d) for d in seq.day_of_year]}


class InputFiles:
    """The scene files groups are cut from, as recorded in a group's ``inputs`` attr: name, size
    (bytes), modification time (ns) and SHA-256; each file hashed at most once per extraction."""

    def __init__(self) -> None:
        self.digests: dict[tuple[Path, int, int], str] = {}

    def _sha256(self, path: Path, stat: os.stat_result) -> str:
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self.digests:
            self.digests[key] = file_sha256(path)
        return self.digests[key]

    def entry(self, path: Path, name: str | None = None) -> dict:
        """The record of the file ``path`` under ``name`` (default: the file's name)."""
        st = path.stat()
        return {"file": name or path.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                "sha256": self._sha256(path, st)}

    def record(self, seq: SceneSequence) -> list[dict]:
        """``seq``'s files, oldest first, as a group records them."""
        return [self.entry(s.path) for s in seq.steps]

    def change(self, recorded, seq: SceneSequence) -> str | None:
        """Why a group that ``recorded`` its inputs was not cut from ``seq``'s files as they are now
        (:func:`sequence_change`, or a file of another size and modification time and SHA-256); None
        when it was (a copy that lost its times is the same file). Groups from before inputs were
        recorded count as changed."""
        if (why := sequence_change(recorded, [s.path.name for s in seq.steps])) is not None:
            return why
        for r, step in zip(recorded, seq.steps):
            st = step.path.stat()
            if not same_input(r, st, lambda: self._sha256(step.path, st)):
                return "their input files changed"
        return None


def sequence_change(recorded, names: list[str]) -> str | None:
    """Why a group that ``recorded`` its inputs does not stand for a sequence of the files ``names``
    (oldest first, the target last): an earlier acquisition it was not cut with joined it (one that
    landed in the folder since; it may push the oldest step out), or a file it was cut from is not
    in it (gone, or left out now); None when they are the files it records, in order."""
    files = [r.get("file") if isinstance(r, dict) else None for r in recorded] if isinstance(recorded, list) else None
    if files == names:
        return None
    if files and files[-1] == names[-1] and set(names[:-1]) - set(files):
        return "an earlier acquisition joined their sequence"
    return "their input files changed"


def why_cut_again(store: Path, sid: str, attrs: Mapping, inputs_why: str | None, read_arrays: bool = True,
                  unhashed_ok: bool = False) -> str | None:
    """Why ``seaice patches`` would cut the existing group ``sid`` (of ``attrs``) again, or None to
    keep it: the one judgement of extraction and of the stages that read a store
    (:func:`check_up_to_date`). It records no inputs, or ``inputs_why`` (its input files or sequence
    are not the folder's now; None where not judged); another release cut it (a release may cut
    other patches; commits of one release are not told apart: a store is cut once per release, not
    once per commit); it records no ``content_sha256`` or ``attrs_sha256`` (cut before groups did,
    or dropped since: an edit could not be told; not a reason with ``unhashed_ok``); it holds
    patches of other settings than the store's (:func:`~.store.group_settings_problem`); or its
    attrs (``attrs_sha256``) or, with ``read_arrays`` (every array read once), its arrays
    (``content_sha256``) are not those it was cut with."""
    if not isinstance(attrs.get("inputs"), list):
        return "it records no inputs (the files it was cut from)"
    if inputs_why is not None:
        return inputs_why
    if (other := another_release(attrs.get("made_by"))) is not None:
        return f"made by {other}"
    for recorded in ("content_sha256", "attrs_sha256"):
        if recorded not in attrs and not unhashed_ok:
            return f"it records no {recorded} (cut before groups did, or dropped since: an edit could not be told)"
    if (problem := group_settings_problem(store, sid, root_attrs(store))) is not None:
        return problem
    return group_content_problem(store, sid, attrs) if read_arrays else attrs_problem(attrs)


def unhashed_only(store: Path, sid: str, attrs: Mapping, inputs_why: str | None) -> bool:
    """Whether the only reason to cut the group ``sid`` (of ``attrs``) again is that it records no
    ``content_sha256`` (cut before groups did): :func:`why_cut_again` keeps it but for that (its
    inputs those of the folder now, this release, the store's settings, attrs as hashed where
    recorded), and it records when it was ``written``, by which the store's identity stood in for it."""
    return "content_sha256" not in attrs and isinstance(attrs.get("written"), str) and \
        why_cut_again(store, sid, attrs, inputs_why, unhashed_ok=True) is None


def holds_same_cut(store: Path, sid: str, attrs: Mapping, arrays: Mapping[str, np.ndarray], described: Mapping
                   ) -> bool:
    """Whether the group ``sid`` (of ``attrs``) holds what was cut again as ``arrays`` and
    ``described``: its attrs :data:`~.store.HASHED_ATTRS` read as data (and no record of a group it
    replaced) and every array byte for byte (:func:`~.store.same_arrays`); False where its arrays
    cannot be read whole."""
    if attrs_sha256(attrs) != attrs_sha256(described):
        return False
    try:
        group = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path=f"scenes/{sid}")
        return same_arrays(open_scene_arrays(store, sid, sorted(group.array_keys())), arrays)
    except Exception:  # zarr and its codecs raise many kinds on damaged data
        return False


def same_as_unhashed(store: Path, sid: str, attrs: Mapping, inputs_why: str | None, arrays: Mapping[str, np.ndarray],
                     described: Mapping, content: str) -> dict | None:
    """What the group ``sid`` cut again over the group of ``attrs`` into ``arrays`` (their
    ``content`` SHA-256) and ``described`` records as :data:`~.store.SAME_AS_UNHASHED`, or None.
    Over a group that records no ``content_sha256`` and is cut again only for that
    (:func:`unhashed_only`), holding exactly the new cut (:func:`holds_same_cut`): that group's
    ``written`` and ``inputs``. Over a group that records one, as covered by its ``attrs_sha256``,
    cut from the same inputs (another release cut it, say), whose ``content_sha256`` and attrs are
    the new cut's: that record, carried on."""
    if unhashed_only(store, sid, attrs, inputs_why):
        return {"written": attrs["written"], "inputs": attrs["inputs"]} \
            if holds_same_cut(store, sid, attrs, arrays, described) else None
    record = attrs.get(SAME_AS_UNHASHED)
    if not isinstance(record, dict) or inputs_why is not None or "attrs_sha256" not in attrs \
            or attrs_problem(attrs) is not None or attrs.get("content_sha256") != content:
        return None
    return record if attrs_sha256(attrs) == attrs_sha256({**described, SAME_AS_UNHASHED: record}) else None


def record_settings(store: Path, root: zarr.Group, sequences: list[SceneSequence], infos: list[SceneInfo],
                    cfg: PatchConfig, bad: _BadScenes, inputs: InputFiles) -> list[str]:
    """Record the ``settings_sha256`` of a store root ``root`` that records none (cut before roots
    did; ``cfg`` its settings), once its groups are found cut with those settings: of the groups
    extraction would keep (:func:`why_cut_again`, their arrays not read; their input files are
    their ``sequences`` built with the root's window_days, min_overlap and max_steps), the
    :data:`SETTINGS_CHECK_GROUPS` of the most acquisitions (where the resampling method shows) are
    cut again with the root's settings and must hold the same patches, byte for byte, and the same
    attrs :data:`~.store.HASHED_ATTRS` (the variables, their order, the patch size, stride,
    downsample, min_labelled and method as those groups exercise them). Else a ValueError naming the
    store and the group, nothing recorded. Recorded at once where no group would be kept. Returns
    the scene ids of the groups cut again to check."""
    kept: list[tuple[SceneSequence, dict]] = []
    for seq in sorted(sequences, key=lambda s: (-len(s.steps), s.target.scene_id)):
        sid = seq.target.scene_id
        attrs = group_attrs(store / "scenes" / sid)
        if len(kept) < SETTINGS_CHECK_GROUPS and attrs and \
                why_cut_again(store, sid, attrs, inputs.change(attrs.get("inputs"), seq), read_arrays=False) is None:
            kept.append((seq, attrs))
    for seq, attrs in kept:
        sid = seq.target.scene_id
        try:
            seq, arrays = _extract_usable(seq, infos, cfg, bad)
            found = open_scene_arrays(store, sid, sorted(zarr.open_group(
                zarr.storage.LocalStore(store, read_only=True), mode="r", path=f"scenes/{sid}").array_keys()))
            same = same_arrays(found, arrays)
        except SceneError as err:
            raise ValueError(f"{store}: its settings cannot be checked against scene group scenes/{sid}, whose scene "
                             f"fails now ({err}); cut the store again into a new folder") from None
        described = json_round_trip({**sequence_attrs(seq), "n_patches": int(arrays["labels"].shape[0])})
        if not same or any(attrs.get(name) != described.get(name) for name in HASHED_ATTRS):
            raise ValueError(f"{store}: scene group scenes/{sid} is not what the settings in its zarr.json cut now "
                             "(other patches): the store's settings were edited since it was cut; put back the "
                             "settings it was cut with, or cut a new store with `seaice patches --scenes "
                             "SCENES_DIR --out NEW_STORE`")
    root.attrs[SETTINGS_SHA256] = settings_sha256(node_attrs(root))
    return [seq.target.scene_id for seq, _ in kept]


def extract_scene(seq: SceneSequence, cfg: PatchConfig) -> dict[str, np.ndarray]:
    """All kept patches of one target scene as arrays (the layout of a scene group)."""
    p = cfg.patch
    grid = store_grid(seq, cfg)
    hb, wb = grid.shape
    stride = cfg.stride or p
    out: dict[str, list] = {k: [] for k in ARRAY_DTYPES}
    for r in patch_origins(hb, p, stride):
        for c in patch_origins(wb, p, stride):
            if (grid.labels[0, r:r + p, c:c + p] != schema.CHART_FILL).mean() < cfg.min_labelled:
                continue
            patch = cut_patch(grid, r, c, cfg)
            patch["histograms"] = histogram(patch["labels"])
            for key, value in patch.items():
                out[key].append(value)
    t, n_c = grid.sar.shape[:2]
    g = cfg.grid_cells
    empty = {"sar": (0, t, n_c, p, p), "sar_mask": (0, t, p, p), "labels": (0, 3, p, p),
             "amsr2": (0, 14, g, g), "era5": (0, 6, g, g), "grid2km_offset": (0, 2),
             "histograms": (0, schema.N_HISTOGRAM_BINS), "origin": (0, 2)}
    return {k: (np.stack(v) if v else np.zeros(empty[k])).astype(ARRAY_DTYPES[k])
            for k, v in out.items()}


def _write_group(path: Path, arrays: dict[str, np.ndarray], attrs: dict, shard: int) -> None:
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=3)
    group.attrs.update(attrs)
    for name, values in arrays.items():
        chunks = (1,) + values.shape[1:]
        shards = (max(1, min(shard, values.shape[0])),) + values.shape[1:]
        arr = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks,
                                 shards=shards, compressors=_COMPRESSORS,
                                 config={"write_empty_chunks": True})  # an all-zero shard is data, not lost
        if values.size:
            arr[...] = values


def open_store(store: str | Path, cfg: PatchConfig, scenes_dir: str | None = None) -> zarr.Group:
    """Create the store's root (settings, their ``settings_sha256`` and ``scenes_dir`` in its attrs)
    or check that an existing one matches and holds the settings it was cut with
    (:func:`~.store.root_attrs`). A folder that holds files but no zarr.json is refused, never
    overwritten."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        # content comes only after zarr.json, so a folder with content and still no zarr.json is not ours
        # (its lock, a dot name, may come first: :func:`~seaice_lib.atomic.folder_lock`)
        if store.is_dir() and any(not p.name.startswith(".") for p in store.iterdir()) \
                and not (store / "zarr.json").exists():
            raise ValueError(f"{store}: a folder that is not a patch store (no zarr.json); give a new or empty one")
        settings = json_round_trip(cfg.attrs())
        _publish_root(store, settings | {SETTINGS_SHA256: settings_sha256(settings)}
                      | ({SCENES_DIR_ATTR: scenes_dir} if scenes_dir else {}))
    (store / "scenes").mkdir(exist_ok=True)
    root_attrs(store)  # settings edited since the store was cut: a ValueError naming them
    root = zarr.open_group(zarr.storage.LocalStore(store), mode="r+", zarr_format=3)
    found = {k: root.attrs.get(k) for k in cfg.attrs()}
    wanted = json_round_trip(cfg.attrs())
    if found != wanted:
        diff = {k: (found[k], wanted[k]) for k in wanted if found[k] != wanted[k]}
        raise ValueError(f"{store}: built with other settings (stored, asked): {diff}")
    return root


def _publish_root(store: Path, attrs: dict) -> None:
    """The root's zarr.json, with every attr, in one step. Extractions running side by side (a SLURM
    array task per scene) may all create the same store: the first link wins, the others find its
    settings; no process ever sees a root without them."""
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{store.name}.", suffix=".tmp", dir=store.parent))  # unique across nodes
    try:
        zarr.create_group(zarr.storage.LocalStore(tmp), attributes=attrs, zarr_format=3)
        os.link(tmp / "zarr.json", store / "zarr.json")
    except FileExistsError:
        pass  # another process published first; open_store checks its settings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_round_trip(attrs: dict) -> dict:
    """Attrs as they read back from zarr.json (tuples become lists)."""
    return json.loads(json.dumps(attrs))


class Extraction(TypedDict):
    """What :func:`extract_store` did, scene ids (``failed``: "FILE: why")."""

    written: list[str]
    again: dict[str, str]  # those of ``written`` cut over an existing group -> why (:func:`why_cut_again`)
    same_as_unhashed: list[str]  # those of ``again`` recording SAME_AS_UNHASHED (:func:`same_as_unhashed`)
    skipped: list[str]
    failed: list[str]
    removed: list[str]
    # a root that recorded no settings_sha256: the groups cut again to check its settings before it was
    # recorded (:func:`record_settings`); None where the root recorded it already (or with ``scene``)
    settings_checked: list[str] | None


def extract_store(scenes_dir: str | Path, store: str | Path, cfg: PatchConfig | None = None,
                  scene: str | None = None, progress: bool = True, consolidate_index: bool = True
                  ) -> Extraction:
    """Extract every target scene of ``scenes_dir`` (or only ``scene``) into ``store``.

    Finished scenes are skipped. A scene that cannot be used (unreadable or damaged, a name without
    a real date, no SAR data, charts out of range, ...) is reported in ``failed`` with its file and
    the problem, and left out of every sequence: an earlier step found bad is dropped and its
    target's sequence built again without it. The absolute ``scenes_dir`` is recorded in the root
    attrs (:func:`store_scenes_dir`; the latest folder holding scenes), so that training scores
    whole validation scenes without being told where they are. Returns the scene ids ``written``,
    ``again`` (those of them written over an existing group, with why), ``same_as_unhashed`` (those
    of ``again`` whose new cut holds exactly what a group cut before content hashes held: each
    records :data:`~.store.SAME_AS_UNHASHED` (:func:`same_as_unhashed`), so results on the store's
    former identity stay current), ``skipped`` (already there, as cut), ``failed`` (with reasons), ``removed``
    (set aside) and ``settings_checked`` (:func:`record_settings`).
    A ``scenes_dir`` that is missing or holds no ``*_prep.nc`` scenes, or an unknown ``scene``,
    raises ValueError before anything is written. A store this call made (no folder, or one holding
    only its writer's lock) that got no scene is removed again: a store of nothing looks complete
    (what it wrote into a folder that was there; the folder is left as it was).
    """
    cfg = cfg or PatchConfig()
    store, scenes_dir = Path(store), Path(scenes_dir)
    if not scenes_dir.is_dir():
        raise ValueError(f"{scenes_dir}: no such folder of scenes")
    found, unreadable = scan_scenes(scenes_dir)
    if not found:
        raise ValueError(f"no *_prep.nc scenes in {scenes_dir}")
    if scene is not None and not any(p.name.startswith(schema.scene_key(scene)) for p in found):
        raise ValueError(f"no scene {scene!r} in {scenes_dir}")
    folder = str(scenes_dir.resolve())
    existed = store.is_dir()  # an empty folder of the user's (or its writer's, held) stays a folder
    made = not store.exists() or (existed and {p.name for p in store.iterdir()} <= {LOCK_NAME})
    root = open_store(store, cfg, folder)
    walk = Walk("scenes", label="skipped")
    infos, bad = [], _BadScenes(walk)
    for err in unreadable:
        bad.report(err)
    for path in found:
        try:
            infos.append(SceneInfo.read(path))
        except SceneError as err:
            bad.report(err)
        except (ValueError, OSError) as err:  # not caught by the reader's checks: still this file's problem
            bad.report(SceneError(path, str(err)))
    if root.attrs.get(SCENES_DIR_ATTR) != folder:  # written only when it changes
        root.attrs[SCENES_DIR_ATTR] = folder
    sequences = [s for s in build_sequences(infos, cfg.window_days, cfg.min_overlap, cfg.max_steps)
                 if scene is None or s.target.scene_id == schema.scene_key(scene)]
    written, skipped, failing, kept_identity = [], [], [], []
    again: dict[str, str] = {}
    inputs = InputFiles()
    checked = record_settings(store, root, sequences, infos, cfg, bad, inputs) \
        if scene is None and SETTINGS_SHA256 not in root.attrs else None

    def extract(seq: SceneSequence) -> None:
        sid = seq.target.scene_id
        final = store / "scenes" / sid
        changed = (final / "zarr.json").exists()
        found = group_attrs(final)
        inputs_why = inputs.change(found.get("inputs"), seq) if changed else None
        why = why_cut_again(store, sid, found, inputs_why) if changed else None
        if changed and why is None:
            skipped.append(sid)
            return
        remove_stale(final)
        try:
            seq, arrays = _extract_usable(seq, infos, cfg, bad)
        except SceneError as err:
            bad.report(err)  # named once, and never used as an earlier step
            if changed:
                failing.append(sid)  # its group is of the scene's earlier files
            return
        described = json_round_trip({**sequence_attrs(seq), "n_patches": int(arrays["labels"].shape[0])})
        content = arrays_sha256(arrays)
        same = same_as_unhashed(store, sid, found, inputs_why, arrays, described, content) if changed else None
        if same is not None:
            described[SAME_AS_UNHASHED] = same
        attrs = {**described, "attrs_sha256": attrs_sha256(described), "inputs": inputs.record(seq),
                 "content_sha256": content,
                 "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "made_by": provenance()}
        if why is not None:
            again[sid] = why
        try:
            with atomic_path(final, replace=changed) as tmp:
                _write_group(tmp, arrays, attrs, cfg.shard_patches)
            written.append(sid)
            if same is not None:
                kept_identity.append(sid)
        except FileExistsError:
            skipped.append(sid)  # another task finished the same scene first

    walk.each(sequences, extract, name=lambda seq: seq.target.scene_id, progress=progress, desc="patches")
    if made and scene is None and not written and not skipped:
        for entry in (list(store.iterdir()) if existed else [store]):
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.name != LOCK_NAME:  # its writer's, held
                entry.unlink()
        return {"written": [], "again": {}, "same_as_unhashed": [], "skipped": [], "failed": walk.failed,
                "removed": [], "settings_checked": None}
    removed = set_aside_gone(store, set(written) | set(skipped)) if scene is None else set_aside(store, failing)
    if consolidate_index:
        consolidate(store, partial=True)  # the scenes that failed are named in ``failed``
    return {"written": written, "again": again, "same_as_unhashed": kept_identity, "skipped": skipped,
            "failed": walk.failed, "removed": removed, "settings_checked": checked}


def require_cut(result: Extraction, scenes_dir: str | Path) -> None:
    """ValueError naming each scene that failed when :func:`extract_store` could not cut every scene
    of ``scenes_dir`` (a notebook's check, for ``seaice patches``' exit 1): a store of some of them
    would pass for the folder's. The store keeps the scenes it cut, as ``seaice patches`` keeps them."""
    if not result["written"] and not result["skipped"]:
        raise ValueError(f"no scene of {scenes_dir} could be cut into patches (no store made): "
                         + ("; ".join(result["failed"]) or "no sequence of them fits the settings"))
    if failed := result["failed"]:
        raise ValueError(f"{len(failed)} scenes of {scenes_dir} could not be cut into patches (the store keeps the "
                         f"{len(result['written']) + len(result['skipped'])} others; repair the failed ones or move "
                         f"them out of the folder, then run again): {'; '.join(failed)}")


def set_aside_gone(store: Path, current: set[str]) -> list[str]:
    """Move the scene groups of ``store`` that a whole extraction did not write or keep (their scene
    left the folder, or fails now) to ``scenes/.removed-SCENE``, or ``.removed-SCENE.N`` (N = 2,
    3, ...) beside one set aside earlier, which stays (the index skips dot names: kept on disk,
    never trained on); their scene ids."""
    return set_aside(store, [p.name for p in (store / "scenes").iterdir()
                             if not p.name.startswith(".") and p.is_dir() and p.name not in current])


def set_aside(store: Path, scene_ids: Iterable[str]) -> list[str]:
    """Move the groups ``scene_ids`` of ``store`` aside as :func:`set_aside_gone` does (a ``--scene``
    task whose scene fails now sets its own group aside); their scene ids, sorted."""
    gone = sorted(scene_ids)
    for sid in gone:
        aside, n = store / "scenes" / f".removed-{sid}", 1
        while aside.exists() or aside.is_symlink():
            n += 1
            aside = store / "scenes" / f".removed-{sid}.{n}"
        (store / "scenes" / sid).rename(aside)
    return gone


def out_of_date(store: str | Path, scenes_dir: str | Path | None, scene_ids: Iterable[str], read_arrays: bool = False,
                unhashed_ok: bool = False) -> dict[str, str]:
    """The groups ``scene_ids`` of ``store`` that ``seaice patches --scenes scenes_dir`` would set
    aside or cut again as the folder is now, each with why (:func:`why_cut_again`, ``read_arrays``
    and ``unhashed_ok`` as there): its scene is no longer there, a file it was cut from is gone or
    changed since (:func:`~.store.input_change`), or its sequence would now take another file
    (:func:`sequence_change`: an earlier acquisition that landed since); or what the group itself
    shows. Only the folder's file names are listed and the recorded files looked up; a group's files
    are read (:class:`SceneInfo`, and the SAR of a file joining its sequence, as extraction checks
    it) only when a file not in its sequence is named within ``window_days`` before it. The folder
    is not consulted when it is None or holds no scenes at all (not the store's folder: a store
    staged without its scenes; what needs them names them)."""
    store = Path(store)
    cfg = config_from_store(store)
    here = {} if scenes_dir is None else {schema.scene_key(p): p for p in scan_scenes(Path(scenes_dir))[0]}
    folder = Path(scenes_dir or ".")
    infos: dict[Path, SceneInfo | None] = {}
    sar_valid: dict[Path, bool] = {}

    def info(path: Path) -> SceneInfo | None:  # None: extraction leaves the file out too
        if path not in infos:
            try:
                infos[path] = SceneInfo.read(path)
            except (SceneError, ValueError, OSError):
                infos[path] = None
        return infos[path]

    def usable(path: Path) -> bool:  # False: extraction leaves the step out of the sequence
        if path not in sar_valid:
            try:
                with Scene(path) as scene:
                    scene.checked_sar_valid()
                sar_valid[path] = True
            except (SceneError, ValueError, OSError):
                sar_valid[path] = False
        return sar_valid[path]

    def folder_change(sid: str, recorded: list) -> str | None:
        """Why the group's inputs are not what the folder gives now (judged only with a folder)."""
        if sid not in here:
            return f"its scene is no longer in {folder}"
        names: list[str] = [r["file"] for r in recorded if isinstance(r, dict) and isinstance(r.get("file"), str)]
        changed = [f"{name} {why}" for r, name in zip(recorded, names) if (why := input_change(r, folder / name))]
        if changed or not names or len(names) != len(recorded):
            return f"their input files changed ({logs.first_few(changed, 3) or 'not recorded by name'})"
        window, target = dt.timedelta(days=cfg.window_days), name_time(sid)
        near = [p for p in here.values() if p.name not in names and (t := name_time(p)) is not None
                and target is not None and dt.timedelta(0) < target - t <= window]
        while near and (own := info(folder / names[-1])) is not None:  # files that may join its sequence:
            # build it again as extraction would
            steps = [i for i in map(info, [folder / n for n in names[:-1]] + near) if i is not None]
            seq = target_sequence(own, steps, cfg.window_days, cfg.min_overlap, cfg.max_steps)
            joined = [s.path for s in seq.steps if s.path.name not in names]
            if all(map(usable, joined)):
                if why := sequence_change(recorded, [s.path.name for s in seq.steps]):
                    return f"{why} ({logs.first_few([p.name for p in joined], 3) or 'fewer steps'})"
                break
            near = [p for p in near if sar_valid.get(p, True)]
        return None

    stale = {}
    for sid in scene_ids:
        attrs = group_attrs(store / "scenes" / sid)
        recorded = attrs.get("inputs")
        inputs_why = folder_change(sid, recorded) if here and isinstance(recorded, list) else None
        if (why := why_cut_again(store, sid, attrs, inputs_why, read_arrays, unhashed_ok)) is not None:
            stale[sid] = why
    return stale


def check_up_to_date(store: str | Path, scenes_dir: str | Path | None, scene_ids: Iterable[str],
                     read_arrays: bool = False, unhashed_ok: bool = False) -> None:
    """A ValueError naming the store, the groups and why (:func:`out_of_date`, the arguments as
    there) when ``seaice patches`` would set aside or cut again any of the groups ``scene_ids``:
    whatever uses those patches (and the scenes beside them) would read groups that extraction no
    longer stands by; or when the store's root records no ``settings_sha256`` (cut before roots did:
    ``seaice patches`` checks and records it, :func:`record_settings`). With ``unhashed_ok``, such a
    root and groups that record no ``content_sha256`` or ``attrs_sha256`` (cut before groups did)
    are named in a warning instead and read as they are."""
    scene_ids = list(scene_ids)
    if SETTINGS_SHA256 not in root_attrs(store):
        unchecked = f"{store}: its root records no settings_sha256 (cut before roots did), so an edit of its " \
                    "settings since could not be told"
        check = f"`{rebuild_command(store)}` checks them against groups it cuts again and records it"
        if not unhashed_ok:
            raise ValueError(f"{unchecked}; {check}")
        log.warning("%s: read as they are; %s", unchecked, check)
    if stale := out_of_date(store, scenes_dir, scene_ids, read_arrays, unhashed_ok):
        reasons = collections.defaultdict(list)
        for sid, why in stale.items():
            reasons[why].append(sid)
        named = [f"scene group{'s' if len(ids) > 1 else ''} {logs.first_few(ids, 5)}: {why}"
                 for why, ids in reasons.items()]
        with_folder = f" with {scenes_dir}" if scenes_dir is not None else ""
        folder = scenes_dir or store_scenes_dir(store) or "SCENES_DIR"
        raise ValueError(f"{store}: out of date{with_folder}: {'; '.join(named)}; cut it again with "
                         f"`seaice patches --scenes {folder} --out {store}`")
    if unhashed_ok and (unhashed := [sid for sid in scene_ids if not {"content_sha256", "attrs_sha256"}
                                     <= set(group_attrs(Path(store) / "scenes" / sid))]):
        log.warning("%s: %d scene groups record no content_sha256 or attrs_sha256 (cut before groups did), so "
                    "an edit since could not be told: read unchecked (%s); `%s` cuts them again (results made on "
                    "them stay current where the patches are the same)", store,
                    len(unhashed), logs.first_few(unhashed, 5), rebuild_command(store))


class _BadScenes:
    """Scenes found unusable during one extraction: each reported once, none used again."""

    def __init__(self, walk: Walk):
        self.errors: dict[Path, SceneError] = {}
        self.checked: set[Path] = set()
        self.walk = walk  # where each is named

    def report(self, err: SceneError) -> None:
        path = Path(err.path)
        if path not in self.errors:
            self.errors[path] = err
            self.walk.fail(str(path), err)

    def check(self, info: SceneInfo) -> None:
        """Raise :class:`SceneError` if the scene is known bad or has no SAR data (read once)."""
        if info.path in self.errors:
            raise self.errors[info.path]
        if info.path not in self.checked:
            with Scene(info.path) as scene:
                scene.checked_sar_valid()
            self.checked.add(info.path)


def _extract_usable(seq: SceneSequence, infos: list[SceneInfo], cfg: PatchConfig, bad: _BadScenes
                    ) -> tuple[SceneSequence, dict[str, np.ndarray]]:
    """The patches of ``seq``'s target with every bad earlier step left out (reported in ``bad``,
    the sequence built again without it); :class:`SceneError` when the target itself is bad."""
    target = seq.target
    while True:
        try:
            for step in seq.steps[::-1]:  # the target first
                bad.check(step)
            return seq, extract_scene(seq, cfg)
        except SceneError as err:
            if Path(err.path) not in {s.path for s in seq.steps[:-1]}:  # the target, or not a step
                raise
            bad.report(err)
        near = [i for i in infos if i.path not in bad.errors and i.region == target.region
                and dt.timedelta(0) <= target.time - i.time <= dt.timedelta(days=cfg.window_days)]
        seq = next(s for s in build_sequences(near, cfg.window_days, cfg.min_overlap, cfg.max_steps)
                   if s.target.path == target.path)


def scenes_without_group(store: Path, scene_ids: list[str]) -> list[str]:
    """The scene ids of the store's scenes folder (:func:`store_scenes_dir`) that ``scene_ids`` lack:
    not extracted yet, or failed; [] when the folder is not recorded or gone."""
    folder = store_scenes_dir(store)
    if folder is None or not folder.is_dir():
        return []
    return sorted({p.name[:schema.SCENE_ID_LENGTH] for p in find_scenes(folder)} - set(scene_ids))


def consolidate(store: str | Path, partial: bool = False) -> dict[str, np.ndarray]:
    """Build ``index/``: every patch (scene index, patch index, class histogram), class totals,
    when each scene group was written (readers refuse groups written after the index), the
    scenes of the store's folder that have no group (``lacking``) and the SHA-256 of all of it
    (``index_sha256``: readers refuse an index edited since, :func:`~.store.check_store`). A store with such scenes is a
    ValueError naming them, nothing written, unless ``partial``: training then names them; so is a
    group of patches cut with other settings than the store's (:func:`~.store.group_settings_problem`)."""
    store = Path(store)
    root = root_attrs(store)  # a patch store, or a ValueError naming the folder
    scene_ids = sorted(p.name for p in (store / "scenes").iterdir()
                       if not p.name.startswith(".") and (p / "zarr.json").exists())
    for sid in scene_ids:
        if (problem := group_settings_problem(store, sid, root)) is not None:
            raise ValueError(f"{store}: scene group scenes/{sid}: {problem}; cut it again with "
                             f"`{rebuild_command(store)}`")
    lacking = scenes_without_group(store, scene_ids)
    if lacking and not partial:
        raise ValueError(f"{store}: {len(lacking)} scenes of {store_scenes_dir(store)} have no group yet "
                         f"({logs.first_few(lacking, 10)}); extract them with `{rebuild_command(store)}`, or index "
                         "the store without them with --consolidate-only --partial")
    scene_idx, patch_idx, hists = [], [], []
    for i, sid in enumerate(scene_ids):
        h = np.asarray(open_scene_arrays(store, sid, ["histograms"])["histograms"][...], np.int64)
        scene_idx.append(np.full(len(h), i, np.int32))
        patch_idx.append(np.arange(len(h), dtype=np.int32))
        hists.append(h)
    hist = np.concatenate(hists) if hists else np.zeros((0, schema.N_HISTOGRAM_BINS), np.int64)
    index: dict[str, np.ndarray] = {"scene": np.concatenate(scene_idx) if scene_idx else np.zeros(0, np.int32),
                                    "patch": np.concatenate(patch_idx) if patch_idx else np.zeros(0, np.int32),
                                    "histograms": hist}
    totals = {c: hist[:, s].sum(axis=0).tolist() for c, s in schema.HISTOGRAM_SLICES.items()}
    written = {sid: group_attrs(store / "scenes" / sid).get("written") for sid in scene_ids}
    attrs = json_round_trip({"scene_ids": scene_ids, "class_totals": totals, "written": written, "lacking": lacking})
    with atomic_path(store / "index") as tmp:
        _write_group(tmp, index, {**attrs, INDEX_SHA256: index_sha256(attrs, index)}, 4096)
    return index


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description="Extract spatio-temporal patches into a zarr store.",
                    epilog=logs.EPILOG)
    parser.add_argument("--scenes", type=Path, required=True, help="directory of *_prep.nc scenes")
    parser.add_argument("--out", type=out_folder, required=True, help="the store, e.g. patches.zarr")
    defaults = PatchConfig()
    settings = {"patch": int, "stride": int, "downsample": int, "max_steps": int, "window_days": float,
                "min_overlap": float, "min_labelled": float}
    for name, kind in settings.items():
        default = getattr(defaults, name) or "the patch size"
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"default: an existing store's own setting, else {default}")
    parser.add_argument("--scene", default=None,
                        help="only this target scene (one SLURM array task); run without it, or "
                             "with --consolidate-only, to build the index")
    parser.add_argument("--consolidate-only", action="store_true",
                        help="only build the index; refused while scenes of the folder have no group")
    parser.add_argument("--partial", action="store_true",
                        help="with --consolidate-only: index the store without the scenes that have no "
                             "group (training names them)")
    logs.add_quiet(parser)
    args = parser.parse_args(argv)
    if args.partial and not args.consolidate_only:
        parser.error("--partial goes with --consolidate-only")
    if args.consolidate_only:
        try:
            index = consolidate(args.out, partial=args.partial)
        except ValueError as err:
            parser.error(str(err))
        groups = len(set(index["scene"].tolist()))
        lacking = store_lacking(args.out)
        print(f"indexed {len(index['scene'])} patches of {groups} scenes in {args.out}"
              + (f"; without {len(lacking)} scenes of {store_scenes_dir(args.out)} that have no group "
                 f"({logs.first_few(lacking, 10)})" if lacking else ""))
        return 0
    given = {name: getattr(args, name) for name in settings if getattr(args, name) is not None}
    if other := other_stage(args.out, own=(STORE,)):
        parser.error(f"--out {args.out}: {other}, not a patch store: give another folder")
    try:
        cfg = config_from_store(args.out) if (args.out / "zarr.json").exists() else defaults
        cfg = dataclasses.replace(cfg, **given)
        with contextlib.ExitStack() as held:  # a whole extraction holds the store; array tasks (--scene) share it
            if args.scene is None and args.scenes.is_dir():  # a missing one is named below, no store made
                held.enter_context(folder_lock(args.out, "building the patch store"))
            result = extract_store(args.scenes, args.out, cfg, args.scene, progress=not args.quiet,
                                   consolidate_index=args.scene is None)
    except FolderBusy:
        raise  # not a usage problem: another writer holds the store (one line, exit 1)
    except ValueError as err:
        parser.error(str(err))
    reasons = [f"{n} cut again: {why}" for why, n in collections.Counter(result["again"].values()).items()]
    if same := len(result["same_as_unhashed"]):
        reasons.append(f"{same} cut again with the same patches as before: the store's earlier identity kept for "
                       "results")
    again = f" ({'; '.join(reasons)})" if reasons else ""
    print(f"{len(result['written'])} scenes written{again}, {len(result['skipped'])} already there, "
          f"{len(result['failed'])} failed" + (f"; no store made at {args.out}" if not args.out.exists() else ""))
    for reason in result["failed"]:
        print(f"  failed: {reason}")
    if (checked := result["settings_checked"]) is not None:
        print(f"the store's settings recorded (settings_sha256), found those its groups were cut with: "
              f"{len(checked)} groups cut again hold the same patches ({logs.first_few(checked, 5) or 'none kept'})")
    if result["removed"]:
        print(f"{len(result['removed'])} scene groups set aside (their scene is no longer in {args.scenes} or fails "
              f"now; kept as scenes/.removed-ID, or .removed-ID.N beside an earlier one; never indexed): "
              f"{', '.join(result['removed'])}")
    return 1 if result["failed"] else 0
