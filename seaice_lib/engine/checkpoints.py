"""Training checkpoints: the file format (``checkpoints/last.pt``, ``model.pt``, curve weights),
written atomically, read back with one error naming a file that is not one, and the checks that
a checkpoint may resume a run (same trajectory settings, same world size, same data) or that a
larger budget only continues it (:func:`extends`). Why resume is exact: docs/models.md ("Training")."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..atomic import atomic_path, remove_stale
from ..data.store import store_groups_sha256
from ..walk import one_line
from .config import RESUME_FIELDS, TrainConfig

CHECKPOINT_FORMAT = "seaice-checkpoint/2"  # 2: RNG states and loss sums per rank ("ranks")


def save(obj, path: Path) -> Path:
    """``torch.save`` under a temporary name, then rename; first removes the temporaries of
    writers that died mid-write (:func:`~seaice_lib.atomic.remove_stale`). Saved through a file
    object, so the same ``obj`` gives the same bytes (torch names the archive after a path it is
    given, and the temporary name differs each time): the weights' SHA-256 names their content."""
    remove_stale(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def read(path: Path) -> dict:
    """The dict a checkpoint or ``model.pt`` holds; ValueError naming ``path`` for anything else."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ValueError(f"{path}: not a readable checkpoint (truncated, or not written by `seaice train`): "
                         "not the whole zip archive that torch.save writes")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, in one line
        raise ValueError(f"{path}: not a readable checkpoint (truncated, or not written by `seaice train`): "
                         f"{type(err).__name__}: {one_line(err).split('. ')[0]}") from err
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a checkpoint of `seaice train` (it holds a {type(doc).__name__})")
    return doc


def check_resumable(cfg: TrainConfig, checkpoint: Mapping, path: Path | str, world: int) -> None:
    """Raise if ``checkpoint`` belongs to a run with other trajectory settings or world size."""
    found = checkpoint.get("format")
    if found != CHECKPOINT_FORMAT:
        older = isinstance(found, str) and found.startswith(CHECKPOINT_FORMAT.split("/")[0] + "/")
        raise ValueError(f"{path}: a {found} checkpoint, written by another version of seaice; this one "
                         f"resumes only {CHECKPOINT_FORMAT}: train in a new out_dir or delete that run"
                         if older else f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    # a setting added after the checkpoint was written counts as its default there
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    ours = cfg.to_dict()
    theirs = {k: checkpoint["config"].get(k, defaults.get(k)) for k in RESUME_FIELDS}
    differ = [] if extends(ours, theirs, checkpoint["step"]) else [k for k in RESUME_FIELDS if ours.get(k) != theirs[k]]
    if differ:
        detail = "; ".join(f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in differ)
        raise ValueError(f"{path}: cannot resume, the config differs from the checkpoint's in {detail}. "
                         "Use another out_dir, or delete the checkpoint to start over.")
    if checkpoint["world_size"] != world:
        raise ValueError(f"{path}: written by {checkpoint['world_size']} processes, resumed by {world}; "
                         "exact resume needs the same world size")


def check_same_data(theirs: Mapping | None, ours: Mapping, path: Path | str, store: str,
                    former_groups_sha256: str | None = None) -> None:
    """Raise if the checkpoint at ``path`` trained on other data than the run would now
    (:meth:`Trainer.data_record`; checkpoints from before it was recorded are not checked). Its
    ``groups_sha256`` may be the store's ``former_groups_sha256``: the identity the store had before
    its unhashed groups were cut again into the same patches (``store_groups_sha256(former=True)``)."""
    if theirs is None:
        return
    theirs, ours = dict(theirs), {k: v for k, v in ours.items() if k in theirs}  # what older records hold
    if former_groups_sha256 is not None and theirs.get("groups_sha256") == former_groups_sha256:
        theirs["groups_sha256"] = ours.get("groups_sha256")  # the same patches as the checkpoint's
    if theirs == ours:
        return
    changes = []
    for key in ("train_scenes", "val_scenes", "inner_scenes"):
        if key not in theirs:
            continue
        added, gone = sorted(set(ours[key]) - set(theirs[key])), sorted(set(theirs[key]) - set(ours[key]))
        changes += [f"{key} {sign}{ids[0]}{f' (+{len(ids) - 1} more)' if len(ids) > 1 else ''}"
                    for sign, ids in (("+", added), ("-", gone)) if ids]
    if theirs["train_patches"] != ours["train_patches"] and not changes:
        changes.append(f"training patches {theirs['train_patches']} -> {ours['train_patches']}")
    if theirs.get("groups_sha256") != ours.get("groups_sha256") and not changes:
        changes.append("scene groups cut again from changed input files")
    raise ValueError(f"{path}: cannot resume, the store {store} changed since the checkpoint ({'; '.join(changes)}): "
                     "the run would go on with other data. Train in a new out_dir, or delete the checkpoint to start over.")


def trained_on_other_groups(path: Path, store: str | Path) -> bool:
    """Whether the checkpoint at ``path`` trained on scene groups of ``store`` that were cut again
    since: its ``groups_sha256`` is neither the store's identity now nor its former one
    (:func:`check_same_data`, which refuses such a resume); False where it records none. ValueError
    naming the file where it is not a checkpoint."""
    theirs = read(path).get("data")
    if not isinstance(theirs, Mapping) or "groups_sha256" not in theirs:
        return False
    scenes = [*theirs["train_scenes"], *theirs["val_scenes"], *theirs.get("inner_scenes", [])]
    return theirs["groups_sha256"] not in (store_groups_sha256(store, scenes),
                                           store_groups_sha256(store, scenes, former=True))


def extends(ours: Mapping, theirs: Mapping, step: int) -> bool:
    """Whether config ``ours`` only continues the run of config ``theirs``, checkpointed at ``step``:
    a larger ``steps`` (and ``curve_steps`` that agree up to ``step``) under a schedule that does not
    depend on the run's length. The continued run is then the run that had the larger budget from
    the start (docs/experiments.md)."""
    if {k for k in RESUME_FIELDS if ours.get(k) != theirs.get(k)} - {"steps", "curve_steps"}:
        return False
    done = [s for s in theirs.get("curve_steps") or [] if s <= step]
    return (ours["schedule"] != "cosine" and ours["steps"] >= step
            and [s for s in ours.get("curve_steps") or [] if s <= step] == done)
