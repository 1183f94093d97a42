"""Deterministic train/validation splits of a store's target scenes, by scene or by region, and
region folds with an inner validation (:func:`region_folds`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import schema
from .dataset import open_store_group
from .store import node_attrs, subarray, subgroup


def store_regions(store: str | Path) -> dict[str, str]:
    """Region of every target scene in a consolidated store, by scene id (the index's order)."""
    root = open_store_group(store)
    return {sid: node_attrs(subgroup(root, f"scenes/{sid}"))["region"]
            for sid in node_attrs(subgroup(root, "index"))["scene_ids"]}


def split_scenes(scenes: str | Path | Sequence[str], val_fraction: float = 0.2, seed: int = 0,
                 by: str = "scene", regions: Sequence[str] | None = None
                 ) -> tuple[list[str], list[str]]:
    """Deterministic, disjoint (train, validation) lists of target scene ids, each sorted.

    ``scenes`` is a store (its scene ids and regions are read) or a list of scene ids.
    ``by="region"`` keeps every region whole, so that no validation chart shares a region, and
    so overlapping ice, with a training chart; with plain ids pass ``regions``, one per id.
    ``val_fraction`` of the scenes (or regions) go to validation, at least one when > 0 (which
    needs two or more; ValueError otherwise).
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
    if val_fraction > 0 and len(keys) < 2:
        raise ValueError(f"val_fraction {val_fraction} holds out whole {by}s, but the scenes make "
                         f"{len(keys)} {by}{'' if len(keys) == 1 else 's'}: nothing is left to validate on "
                         f"({'split by scene, ' if by == 'region' else ''}give train_scenes and val_scenes, "
                         "or val_fraction 0)")
    n_val = min(max(1, round(val_fraction * len(keys))), len(keys) - 1) if val_fraction > 0 else 0
    val_keys = set(np.random.default_rng(seed).permutation(keys)[:n_val].tolist())
    ids = sorted(group)
    return [s for s in ids if group[s] not in val_keys], [s for s in ids if group[s] in val_keys]


def scene_table(store: str | Path) -> dict[str, dict]:
    """Per target scene of a consolidated store, by scene id: ``region`` (from the raw name in
    ``original_id``), ``service`` (``dmi``/``cis``, from the scene id) and ``sod`` (labelled
    pixels of each SOD class over the scene's patches, from the store's index)."""
    root = open_store_group(store)
    ids: list[str] = list(node_attrs(subgroup(root, "index"))["scene_ids"])
    owner = np.asarray(subarray(root, "index/scene")[...])
    sod = np.asarray(subarray(root, "index/histograms")[...], np.int64)[:, schema.HISTOGRAM_SLICES["SOD"]]
    per_scene = np.zeros((len(ids), sod.shape[1]), np.int64)
    np.add.at(per_scene, owner, sod)
    return {sid: {"region": node_attrs(subgroup(root, f"scenes/{sid}"))["region"], "service": schema.service_of(sid),
                  "sod": per_scene[i].tolist()} for i, sid in enumerate(ids)}


class Fold(NamedTuple):
    """One fold: the groups (regions or ice services) held out, one training region held aside as
    the inner validation, and the scene ids of each part (sorted)."""

    index: int  # type: ignore[assignment]  # the fold's number, shadowing tuple.index on purpose
    held_out: tuple[str, ...]
    inner: str
    train: list[str]
    val: list[str]
    inner_scenes: list[str]


def region_folds(store: str | Path, held_out: Sequence[Sequence[str]] | None = None, k: int = 5,
                 by: str = "region", require: Sequence[int] = (), inner: str | Sequence[str] = "richest"
                 ) -> list[Fold]:
    """Folds of whole regions (``by="region"``) or ice services (``by="service"``) of a store.

    ``held_out`` names each fold's held-out groups; without it the rule deals them: groups sorted
    by their labelled pixels of the ``require`` SOD classes (most first, then scene count, then
    name) are dealt to ``k`` folds in a serpentine (0, 1, ..., k-1, k-1, ..., 0, 0, ...), so rare
    stages spread over every fold. Each fold's inner validation is one region of its training
    part: ``inner="richest"`` takes the first in that order (so it holds the rare stages the
    held-out part holds), ``"median"`` the middle one (the richest stay in training), or give one
    region per fold. Every held-out part must hold labelled pixels of each
    ``require`` class. Errors (ValueError) name the fold and the group. docs/experiments.md has
    the rule and the folds it gives.
    """
    if by not in ("region", "service"):
        raise ValueError(f"folds.by must be 'region' or 'service', not {by!r}")
    n_sod = schema.N_CLASSES["SOD"]
    wrong = [c for c in require if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n_sod]
    if wrong:
        raise ValueError(f"folds.require lists the SOD classes every held-out part must hold (0..{n_sod - 1}): "
                         f"{wrong} are none")
    table = scene_table(store)

    def ordered(key: str) -> tuple[dict[str, list[str]], list[str]]:
        groups: dict[str, list[str]] = {}
        for sid, row in table.items():
            groups.setdefault(row[key], []).append(sid)
        rare = {g: sum(table[s]["sod"][c] for s in ids for c in require) for g, ids in groups.items()}
        return groups, sorted(groups, key=lambda g: (-rare[g], -len(groups[g]), g))

    groups, order = ordered(by)
    regions, region_order = ordered("region")
    if held_out is None:
        if not 2 <= k <= len(order):
            raise ValueError(f"folds.k must be in 2..{len(order)} (the store's {by}s), not {k}")
        dealt: list[list[str]] = [[] for _ in range(k)]
        for i, group in enumerate(order):
            turn, pos = divmod(i, k)
            dealt[pos if turn % 2 == 0 else k - 1 - pos].append(group)
        held_out = dealt
    if isinstance(inner, str) and inner not in ("richest", "median"):
        raise ValueError(f"folds.inner must be 'richest', 'median' or one region per fold, not {inner!r}")
    if not isinstance(inner, str) and len(inner) != len(held_out):
        raise ValueError(f"folds.inner names {len(inner)} regions for {len(held_out)} folds")
    folds = []
    for f, out in enumerate(held_out):
        if unknown := sorted(set(out) - set(groups)):
            raise ValueError(f"fold {f}: the store has no {by} {unknown} (it has {sorted(groups)})")
        val = sorted(s for g in out for s in groups[g])
        training = [r for r in region_order if not set(regions[r]) & set(val)]
        if len(training) < 2:
            raise ValueError(f"fold {f}: holds out {list(out)}, leaving fewer than two regions to train "
                             "on and validate inside")
        chosen = {"richest": training[0], "median": training[len(training) // 2]}.get(inner) \
            if isinstance(inner, str) else inner[f]
        if chosen not in training:
            raise ValueError(f"fold {f}: the inner validation region {chosen!r} is not one of its "
                             f"training regions {sorted(training)}")
        for c in require:
            if not sum(table[s]["sod"][c] for s in val):
                raise ValueError(f"fold {f}: the held-out {by}s {list(out)} hold no labelled pixel of "
                                 f"SOD class {c} ({schema.CLASSES['SOD'].names[c]})")
        folds.append(Fold(f, tuple(out), chosen, sorted(s for r in training if r != chosen for s in regions[r]),
                          val, sorted(regions[chosen])))
    return folds
