"""Deterministic train/validation splits of a store's target scenes, by scene or by region."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import open_store_group


def store_regions(store: str | Path) -> dict[str, str]:
    """Region of every target scene in a consolidated store, by scene id (the index's order)."""
    root = open_store_group(store)
    return {sid: root[f"scenes/{sid}"].attrs["region"] for sid in root["index"].attrs["scene_ids"]}


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
