"""The patch store on disk, as its readers check it: what zarr would otherwise fill in silently.

zarr reads a missing shard file as zeros and a missing group as a bare ``KeyError``. Before a
store is read, :func:`check_store` makes sure its ``index/`` was written (an extraction stopped
before the end has none) and that every scene group the index lists is there, holding patches of
the store's settings; :func:`open_scene_arrays` makes sure every shard file of the arrays it opens
is on disk. Each problem is a ValueError naming the store, the scene and the array, and the command
that rebuilds what is missing. Only zarr, numpy and the project's schema and cell rule are imported
here, so DataLoader workers stay light. The layout itself is described in
:mod:`seaice_lib.data.patches`, which writes it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr
from zarr.core.metadata import ArrayV3Metadata

from .. import schema
from ..grid import patch_cells

SCENES_DIR_ATTR = "scenes_dir"  # root attr, outside PatchConfig.attrs(): it may change between runs
# root attr: the SHA-256 of each other root attr but scenes_dir (the settings the store was cut with), by name
SETTINGS_SHA256 = "settings_sha256"
# index attr: the SHA-256 of the index's arrays and its other attrs (:func:`index_sha256`)
INDEX_SHA256 = "index_sha256"
# a scene group's attrs that its readers take as data (the sequence of the dataset's samples, the
# region of splits and folds, the checks of check_store): each hashed into its ``attrs_sha256``
HASHED_ATTRS = ("scene_id", "region", "time", "steps", "days_before", "day_of_year", "n_patches")
# a scene group cut again over one that recorded no content_sha256, holding the same arrays and
# attrs HASHED_ATTRS: that group's ``written`` and ``inputs``, by which the store's identity stood
# in for it then (:func:`store_groups_sha256` ``former``), carried on by later cuts into the same
# patches from the same inputs; hashed into ``attrs_sha256`` where recorded
SAME_AS_UNHASHED = "same_as_unhashed"


def node_attrs(node: zarr.Group | zarr.Array) -> dict[str, Any]:
    """The attrs of a zarr group or array, as a dict. zarr types their values as any JSON; what each
    holds is set by the writers of the store (:mod:`seaice_lib.data.patches`), so they are typed Any here."""
    return cast(dict[str, Any], dict(node.attrs))


def subgroup(group: zarr.Group, path: str) -> zarr.Group:
    """The group at ``path`` in ``group`` (a store's layout says which of its nodes are groups)."""
    return cast(zarr.Group, group[path])


def subarray(group: zarr.Group, path: str) -> zarr.Array:
    """The array at ``path`` in ``group`` (a store's layout says which of its nodes are arrays)."""
    return cast(zarr.Array, group[path])


def root_attrs(store: str | Path) -> dict[str, Any]:
    """The store's root attrs (its settings), as it was cut with them where it records their
    ``settings_sha256`` (a store cut before roots did records none: :func:`settings_problem`);
    ValueError naming the folder if it is no store, or the attrs edited since."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        raise ValueError(f"{store}: not a patch store (no zarr.json)")
    try:
        attrs = node_attrs(zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r"))
    except (ValueError, TypeError, KeyError) as err:  # a damaged zarr.json
        raise ValueError(f"{store / 'zarr.json'}: not a readable zarr group ({type(err).__name__}: {err}); "
                         "build the store again with `seaice patches`") from None
    if (problem := settings_problem(attrs)) is not None:
        raise ValueError(f"{store / 'zarr.json'}: {problem}: its scene groups were cut with other settings "
                         "than it says; put back the settings it was cut with, or cut a new store with "
                         "`seaice patches --scenes SCENES_DIR --out NEW_STORE`")
    return attrs


def settings_sha256(root: Mapping[str, Any]) -> dict[str, str]:
    """A store root's ``settings_sha256``: the SHA-256 of each of its attrs ``root`` (JSON as it
    reads back) but ``scenes_dir`` (the latest folder, which may change) and itself, by name."""
    return {name: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
            for name, value in root.items() if name not in (SCENES_DIR_ATTR, SETTINGS_SHA256)}


def settings_problem(root: Mapping[str, Any]) -> str | None:
    """Which of a store's root attrs ``root`` are not those it was cut with (their SHA-256 is not
    the one its ``settings_sha256`` recorded, or one was added or removed), as a reason naming them;
    None when all are, or when it records no ``settings_sha256`` (cut before roots did:
    :func:`~seaice_lib.data.patches.check_up_to_date` names it)."""
    recorded = root.get(SETTINGS_SHA256)
    if recorded is None:
        return None
    found = settings_sha256(root)
    names = set(found) | (set(recorded) if isinstance(recorded, dict) else set())
    edited = sorted(n for n in names if not isinstance(recorded, dict) or recorded.get(n) != found.get(n))
    return f"its root attribute{'s' if len(edited) > 1 else ''} {', '.join(edited)} changed since the store " \
           "was cut (not the SHA-256 its settings_sha256 recorded)" if edited else None


def store_scenes_dir(store: str | Path) -> Path | None:
    """The absolute scenes folder the store was last extracted from (root attr ``scenes_dir``);
    None for stores built before it was recorded."""
    folder = root_attrs(store).get(SCENES_DIR_ATTR)
    return Path(folder) if folder else None


def store_class_totals(store: str | Path) -> dict[str, list[int]]:
    """Labelled pixels of each class of each chart over the store's patches (index attr
    ``class_totals``); the store must be finished (:func:`check_store`)."""
    check_store(store)
    index = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path="index")
    return {chart: [int(n) for n in counts] for chart, counts in node_attrs(index)["class_totals"].items()}


def store_lacking(store: str | Path) -> list[str]:
    """The scenes of its folder that a finished store was indexed without (index attr ``lacking``:
    failed, or not extracted when it was indexed with ``--partial``); [] for stores indexed before
    it was recorded."""
    check_store(store)
    index = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path="index")
    return list(node_attrs(index).get("lacking", []))


def rebuild_command(store: str | Path) -> str:
    """The command that finishes ``store``: it extracts the scenes missing from its latest scenes
    folder with the store's own settings, then writes the index."""
    return f"seaice patches --scenes {store_scenes_dir(store) or 'SCENES_DIR'} --out {store}"


def check_store(store: str | Path) -> list[str]:
    """The scene ids of a finished store's index, once the store is found to have its index and
    every scene group the index lists, each with its attrs as cut and patches of the store's
    shapes (:func:`group_shapes_problem`); else a ValueError naming the store (and the scene)
    and the command that rebuilds what is missing."""
    store = Path(store)
    root = root_attrs(store)
    if not (store / "index" / "zarr.json").exists():
        raise ValueError(f"{store}: incomplete patch store, it has no index/ (its extraction stopped "
                         f"before the end); finish it with `{rebuild_command(store)}` (scenes already "
                         "written are kept)")
    index = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path="index")
    scene_ids: list[str] = list(node_attrs(index)["scene_ids"])
    missing = [sid for sid in scene_ids if not (store / "scenes" / sid / "zarr.json").exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{store}: scene {missing[0]}{more} is in the index but its group "
                         f"scenes/{missing[0]} is missing; extract it again with "
                         f"`{rebuild_command(store)}`")
    attrs = {sid: group_attrs(store / "scenes" / sid) for sid in scene_ids}
    for sid, found in attrs.items():  # what splits and datasets read of a group: as cut
        if (problem := attrs_problem(found)) is not None:
            raise ValueError(f"{store}: scene group scenes/{sid}: {problem}; cut it again with "
                             f"`{rebuild_command(store)}`")
    for sid in scene_ids:  # what readers size their buffers by: the store's patches
        if (problem := group_shapes_problem(store, sid, root)) is not None:
            raise ValueError(f"{store}: scene group scenes/{sid}: {problem}; cut it again with "
                             f"`{rebuild_command(store)}`")
    moved = [(sid, a["scene_id"]) for sid, a in attrs.items() if a.get("scene_id", sid) != sid]
    if moved:
        more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
        raise ValueError(f"{store}: scenes/{moved[0][0]} holds the group of scene {moved[0][1]}{more} (renamed or "
                         f"swapped since it was cut); cut them again with `{rebuild_command(store)}`")
    on_disk = {p.parent.name for p in (store / "scenes").glob("*/zarr.json") if not p.parent.name.startswith(".")}
    written = node_attrs(index).get("written")
    if not isinstance(written, dict):  # every index of this release records it
        raise ValueError(f"{store}: its index records no written (when each group it counts was written): "
                         f"damaged; index the store again with `{reindex_command(store)}`")
    later = sorted(on_disk - set(scene_ids)) + [sid for sid in scene_ids if attrs[sid].get("written") != written.get(sid)]
    if later:
        more = f" (and {len(later) - 1} more)" if len(later) > 1 else ""
        raise ValueError(f"{store}: scene group {later[0]}{more} was written after the store's index, which "
                         f"does not count it; index the store again with `{reindex_command(store)}`")
    if (problem := index_problem(store, index, scene_ids)) is not None:
        raise ValueError(f"{store}: {problem}; index the store again with `{reindex_command(store)}`")
    return scene_ids


def reindex_command(store: str | Path) -> str:
    """The command that writes ``store``'s index again from its scene groups."""
    return f"seaice patches --scenes {store_scenes_dir(store) or 'SCENES_DIR'} --out {store} --consolidate-only"


def index_sha256(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray | zarr.Array]) -> str:
    """An index's ``index_sha256``: the SHA-256 of its attrs ``attrs`` (but itself; JSON as it
    reads back) and of its ``arrays`` (:func:`arrays_sha256`)."""
    described = {name: value for name, value in attrs.items() if name != INDEX_SHA256}
    return hashlib.sha256(json.dumps([described, arrays_sha256(arrays)], sort_keys=True).encode()).hexdigest()


def index_problem(store: Path, index: zarr.Group, scene_ids: list[str]) -> str | None:
    """Why the index ``index`` of ``store`` is not the one :func:`~seaice_lib.data.patches.consolidate`
    wrote from its scene groups ``scene_ids``: its content is not the ``index_sha256`` it recorded
    (indexes written before it was recorded are not checked so), its rows of a group are not the
    group's patches (as many as its arrays hold, numbered from 0), or its ``class_totals`` are not
    the sums of its rows' histograms; None when it is. Reads the index's arrays whole."""
    attrs = node_attrs(index)
    arrays = {name: np.asarray(subarray(index, name)[...]) for name in ("scene", "patch", "histograms")}
    if INDEX_SHA256 in attrs and attrs[INDEX_SHA256] != index_sha256(attrs, arrays):
        return "its index changed since it was written (not the index_sha256 it recorded)"
    scene, patch = arrays["scene"].astype(np.int64), arrays["patch"].astype(np.int64)
    for i, sid in enumerate(scene_ids):
        rows = patch[scene == i]
        held = group_patches(store, sid)
        if len(rows) != held:
            return f"its index lists {len(rows)} patches of scene group scenes/{sid}, which holds {held}"
        if not np.array_equal(rows, np.arange(held)):
            return f"its rows of scene group scenes/{sid} do not number the group's patches 0 to {held - 1}"
    if len(scene) and not 0 <= scene.min() <= scene.max() < len(scene_ids):
        return f"its index lists patches of scene {int(scene.max())}, beyond its {len(scene_ids)} scenes"
    hist = arrays["histograms"].astype(np.int64)
    totals = {chart: hist[:, cut].sum(axis=0).tolist() for chart, cut in schema.HISTOGRAM_SLICES.items()}
    recorded = attrs.get("class_totals")
    if not isinstance(recorded, dict) or {c: list(recorded.get(c, [])) for c in totals} != totals \
            or set(recorded) != set(totals):
        return "its class_totals are not the sums of its patches' histograms"
    return None


def group_patches(store: str | Path, scene_id: str) -> int:
    """The patches the scene group ``scene_id`` of ``store`` holds (its labels' length; -1 where
    its labels' zarr.json cannot be read). Only that zarr.json is read."""
    try:
        return int(json.loads((Path(store) / "scenes" / scene_id / "labels" / "zarr.json").read_text())["shape"][0])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return -1


def patch_shapes(root: Mapping[str, Any], steps: int) -> dict[str, tuple[int, ...]]:
    """The shape of one patch of each array of a scene group of ``steps`` acquisitions, as the
    store's settings (its root attrs ``root``: patch, grid_cells, the variables) make it."""
    p, g = int(root["patch"]), int(root["grid_cells"])
    return {"sar": (steps, len(root["sar_variables"]), p, p), "sar_mask": (steps, p, p),
            "labels": (len(schema.CHARTS), p, p), "amsr2": (len(root["amsr2_variables"]), g, g),
            "era5": (len(root["era5_variables"]), g, g), "grid2km_offset": (2,),
            "histograms": (schema.N_HISTOGRAM_BINS,), "origin": (2,)}


def shapes_problem(root: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Which of a scene group's arrays (``shapes``: name -> full shape, patches first) do not hold
    patches of the store's settings ``root`` (:func:`patch_shapes`; up to ``max_steps``
    acquisitions, as many in ``sar`` as in ``sar_mask``), or not as many patches as the others, as
    a reason; None when all do."""
    steps = shapes["sar"][1] if len(shapes.get("sar", ())) > 1 else 1
    if len({shape[0] for shape in shapes.values() if shape}) > 1:
        return f"its arrays hold different numbers of patches ({', '.join(f'{n} {s[0]}' for n, s in shapes.items())})"
    if not 1 <= steps <= int(root["max_steps"]):
        return f"its sar holds {steps} acquisitions, not 1 to the store's max_steps {root['max_steps']}"
    wanted = patch_shapes(root, steps)
    other = [f"{name} {tuple(shape[1:])}, not {wanted[name]}" for name, shape in shapes.items()
             if name in wanted and tuple(shape[1:]) != wanted[name]]
    return None if not other else f"cut with other patch settings than the store's (patch {root['patch']}, " \
        f"downsample {root['downsample']}): patches of {'; '.join(other)}"


def group_shapes_problem(store: str | Path, scene_id: str, root: Mapping[str, Any]) -> str | None:
    """Why the arrays of the scene group ``scene_id`` of ``store`` do not hold patches of the
    store's settings ``root`` (its root attrs): an array missing, or of patches of another shape
    (:func:`shapes_problem`: another patch size, grid or variables); None when they do. Only each
    array's zarr.json is read."""
    folder = Path(store) / "scenes" / scene_id
    shapes = {}
    for name in patch_shapes(root, 1):
        try:
            shapes[name] = tuple(json.loads((folder / name / "zarr.json").read_text())["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            return f"its array {name} is missing or unreadable"
    return shapes_problem(root, shapes)


def group_settings_problem(store: str | Path, scene_id: str, root: Mapping[str, Any]) -> str | None:
    """Why the scene group ``scene_id`` of ``store`` was not cut with the store's settings ``root``
    (its root attrs): :func:`group_shapes_problem`, or 2 km offsets that are not those the store's
    downsample gives its patch origins (:func:`~seaice_lib.grid.patch_cells`: another 80 m spacing,
    another 2 km grid, in patches of the same shape; told where the two downsamples' halves differ);
    None when it was. Reads the group's origins and offsets whole."""
    if (problem := group_shapes_problem(store, scene_id, root)) is not None:
        return problem
    vectors = open_scene_arrays(store, scene_id, ["origin", "grid2km_offset"])
    origin, offset = (np.asarray(vectors[name][...], np.int64) for name in ("origin", "grid2km_offset"))
    downsample = int(root["downsample"])
    if (patch_cells(origin, downsample, int(root["cell"]))[1] != offset).any():
        return f"its 2 km offsets are not those the store's downsample {downsample} gives its patch origins " \
               "(cut with other patch settings than the store's)"
    return None


def group_attrs(group: Path) -> dict[str, Any]:
    """The attrs of a scene group ({} for one zarr cannot read)."""
    try:
        return node_attrs(zarr.open_group(zarr.storage.LocalStore(group, read_only=True), mode="r"))
    except (ValueError, TypeError, KeyError, OSError):
        return {}


def store_groups_sha256(store: str | Path, scene_ids: Iterable[str], former: bool = False) -> str:
    """A hash of what the scene groups ``scene_ids`` of ``store`` hold: each group's input files
    (name, size, SHA-256; not their modification times) and the SHA-256 of its arrays
    (:func:`arrays_sha256`), so that a store cut again from the same files into the same patches, on
    any machine, gives the same hash and any other cut another. A group written before its arrays
    were hashed stands in by its inputs as recorded and when it was written (a hash no other cut
    reproduces). With ``former``, the store's identity before its
    unhashed groups were cut again into the same patches: a group that records
    :data:`SAME_AS_UNHASHED` (and an ``attrs_sha256`` covering it) stands in by the inputs and write
    time of the group it replaced, as that group did."""
    digest = hashlib.sha256()
    for sid in sorted(scene_ids):
        attrs = group_attrs(Path(store) / "scenes" / sid)
        same = attrs.get(SAME_AS_UNHASHED) if former and "attrs_sha256" in attrs else None
        if isinstance(same, dict):
            inputs, content = same.get("inputs"), same.get("written")
        elif "content_sha256" in attrs:
            inputs, content = _portable(attrs.get("inputs")), {"content_sha256": attrs["content_sha256"]}
        else:  # by when it was written, as results made on it recorded it
            inputs, content = attrs.get("inputs"), attrs.get("written")
        digest.update(json.dumps([sid, inputs, content], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _portable(inputs):
    """Recorded input files as any machine holding the same files records them: name, size and
    SHA-256, without the modification time (a copy or a fresh download has another)."""
    if not isinstance(inputs, list):
        return inputs
    return [{k: v for k, v in entry.items() if k != "mtime_ns"} if isinstance(entry, dict) else entry
            for entry in inputs]


def input_change(entry: dict, path: Path) -> str | None:
    """How the file at ``path`` differs from the input recorded as ``entry`` (:func:`same_input`):
    ``"gone"``, ``"changed since"``, or None when it is the same."""
    from ..provenance import file_sha256

    try:
        st = path.stat()
    except OSError:
        return "gone"
    return None if same_input(entry, st, lambda: file_sha256(path)) else "changed since"


def changed_files(recorded: Iterable[dict]) -> list[str]:
    """Of the input files ``recorded`` by absolute path (``file``, ``bytes``, ``mtime_ns``,
    ``sha256``), those gone or no longer as recorded (:func:`input_change`): each
    ``"PATH (sha256 0123456789ab), changed since"`` or ``"..., gone"``."""
    return [f"{entry['file']} (sha256 {entry['sha256'][:12]}), {why}" for entry in recorded
            if (why := input_change(entry, Path(entry["file"])))]


def same_input(entry: dict, st: os.stat_result, sha256: Callable[[], str]) -> bool:
    """Whether a file of stat ``st`` is the input a group recorded as ``entry`` (``bytes``,
    ``mtime_ns``, ``sha256``): the same size, and the same modification time or, only then hashed
    (``sha256()``), the same SHA-256 (a copy that lost its times)."""
    return st.st_size == entry.get("bytes") and (st.st_mtime_ns == entry.get("mtime_ns")
                                                 or sha256() == entry.get("sha256"))


def arrays_sha256(arrays: Mapping[str, np.ndarray | zarr.Array], rows: int = 32) -> str:
    """SHA-256 of named arrays (numpy, or zarr read ``rows`` along the first axis at a time, never
    whole): each name, dtype, shape and bytes (C order), in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        values = arrays[name]
        digest.update(json.dumps([name, np.dtype(values.dtype).str, list(values.shape)]).encode())
        if not values.shape:
            digest.update(np.ascontiguousarray(values[...]).tobytes())
        for start in range(0, values.shape[0] if values.shape else 0, rows):
            digest.update(np.ascontiguousarray(values[start:start + rows]).data)
    return digest.hexdigest()


def same_arrays(found: Mapping[str, zarr.Array], cut: Mapping[str, np.ndarray], rows: int = 32) -> bool:
    """Whether the arrays ``found`` (zarr, read ``rows`` along the first axis at a time) are ``cut``:
    the same names, and each the same dtype, shape and bytes (C order)."""
    if set(found) != set(cut):
        return False
    for name, values in cut.items():
        held = found[name]
        if np.dtype(held.dtype) != values.dtype or tuple(held.shape) != values.shape:
            return False
        if not values.shape:
            if np.ascontiguousarray(held[...]).tobytes() != values.tobytes():
                return False
        for start in range(0, values.shape[0] if values.shape else 0, rows):
            if np.ascontiguousarray(held[start:start + rows]).tobytes() != \
                    np.ascontiguousarray(values[start:start + rows]).tobytes():
                return False
    return True


def attrs_sha256(attrs: Mapping[str, Any]) -> dict[str, str]:
    """A scene group's ``attrs_sha256``: the SHA-256 of each of its attrs :data:`HASHED_ATTRS` (its
    JSON as it reads back; an absent one hashes as null), and of its :data:`SAME_AS_UNHASHED` where
    it records one, by name."""
    names = HASHED_ATTRS + ((SAME_AS_UNHASHED,) if SAME_AS_UNHASHED in attrs else ())
    return {name: hashlib.sha256(json.dumps(attrs.get(name), sort_keys=True).encode()).hexdigest()
            for name in names}


def attrs_problem(attrs: Mapping[str, Any]) -> str | None:
    """Which of a scene group's attrs :data:`HASHED_ATTRS` (and :data:`SAME_AS_UNHASHED`, recorded or
    hashed) are not those it was cut with (their SHA-256 is not the one its ``attrs_sha256``
    recorded, or one is hashed the group does not hold), as a reason naming them; None when all are,
    or when the group records no ``attrs_sha256`` (cut before groups did)."""
    recorded = attrs.get("attrs_sha256")
    if recorded is None:
        return None
    found = attrs_sha256(attrs)
    names = HASHED_ATTRS + ((SAME_AS_UNHASHED,) if SAME_AS_UNHASHED in found or
                            (isinstance(recorded, dict) and SAME_AS_UNHASHED in recorded) else ())
    edited = [name for name in names if not isinstance(recorded, dict) or recorded.get(name) != found.get(name)]
    return f"its attribute{'s' if len(edited) > 1 else ''} {', '.join(edited)} changed since it was cut (not " \
           "the SHA-256 its attrs_sha256 recorded)" if edited else None


def group_content_problem(store: str | Path, scene_id: str, attrs: Mapping[str, Any]) -> str | None:
    """Why the scene group ``scene_id`` of attrs ``attrs`` does not hold what it was cut with: an
    attr its ``attrs_sha256`` covers changed (:func:`attrs_problem`), or its arrays are not those
    it recorded as ``content_sha256`` (changed since it was cut, or not readable whole); None when
    it does (a hash it does not record is not checked)."""
    if (problem := attrs_problem(attrs)) is not None or "content_sha256" not in attrs:
        return problem
    recorded = attrs["content_sha256"]
    try:
        group = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r",
                                path=f"scenes/{scene_id}")
        found = arrays_sha256(open_scene_arrays(store, scene_id, sorted(group.array_keys())))
    except Exception as err:  # zarr and its codecs raise many kinds on damaged data
        return f"its arrays cannot be read whole ({type(err).__name__}: {err})"
    return None if found == recorded else \
        "changed since it was cut (the SHA-256 of its arrays is not the content_sha256 it recorded)"


def open_scene_arrays(store: str | Path, scene_id: str, names: Iterable[str]) -> dict[str, zarr.Array]:
    """Arrays ``names`` of the scene group ``scene_id``, read-only, once every shard file of each
    is found on disk (zarr would read a missing one as zeros); else a ValueError naming the store,
    the scene and the array."""
    store = Path(store)
    where = f"scenes/{scene_id}"
    redo = f"delete {store / where} and run `{rebuild_command(store)}` to extract it again"
    try:
        group = zarr.open_group(zarr.storage.LocalStore(store, read_only=True), mode="r", path=where)
    except FileNotFoundError as err:  # zarr's GroupNotFoundError is one
        raise ValueError(f"{store}: scene {scene_id} has no group {where}; {redo}") from err
    arrays = {}
    for name in names:
        if name not in group:
            raise ValueError(f"{store}: {where}/{name} is missing; {redo}")
        arr = subarray(group, name)
        grid = [math.ceil(n / k) for n, k in zip(arr.shape, arr.shards or arr.chunks)]
        encode = cast(ArrayV3Metadata, arr.metadata).chunk_key_encoding.encode_chunk_key  # a v3 store
        lost = [key for key in map(encode, itertools.product(*map(range, grid)))
                if not (store / where / name / key).is_file()]
        if lost:
            raise ValueError(f"{store}: {where}/{name}: {len(lost)} of {math.prod(grid)} shard files "
                             f"missing ({lost[0]}), their patches would read as zeros; {redo}")
        arrays[name] = arr
    return arrays
