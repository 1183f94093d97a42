"""Augmentation: the 8 flips and rotations of a sample, consistent across every modality.

SAR, masks, labels and the 2 km blocks turn together; the 2 km offset follows by the cell rule
(:func:`seaice_lib.grid.flipped_offset`), and the ERA5 winds turn with the image axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import schema
from ..grid import flipped_offset

N_DIHEDRAL = 8
_U, _V = schema.ERA5_VARIABLES.index("u10m_rotated"), schema.ERA5_VARIABLES.index("v10m_rotated")
_IMAGES = ("sar", "sar_mask", "amsr2", "era5", "labels")


def _spatial(x, which: int):
    """Transform ``which`` on the last two dims of ``x``: a view of a numpy array, a new
    contiguous tensor of a torch one (torch has no negative strides)."""
    if which & 1:
        x = x.swapaxes(-2, -1)
    dims = tuple(d for bit, d in ((2, -2), (4, -1)) if which & bit)
    if isinstance(x, np.ndarray):
        return np.flip(x, dims) if dims else x
    return (x.flip(dims) if dims else x).contiguous()


def dihedral(sample: dict, which: int, downsample: int, cell: int = schema.CELL_80M) -> dict:
    """One of the 8 flips/rotations of a sample (``which`` in 0..7, 0 = identity), for every key.

    ``sample`` holds torch tensors (labels a dict per chart), or numpy arrays in the store's
    layout (labels one (3, P, P) array), which turn as views where no value changes.
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
    out: dict[str, Any] = {key: ({c: _spatial(v, which) for c, v in value.items()} if isinstance(value, dict)
                                 else _spatial(value, which))
                           for key, value in sample.items() if key in _IMAGES}
    if "era5" in out:
        era5 = out["era5"]
        u, v = (era5[_V], era5[_U]) if which & 1 else (era5[_U], era5[_V])
        u, v = (-u if which & 4 else u), (-v if which & 2 else v)
        era5 = era5.copy() if isinstance(era5, np.ndarray) else era5.clone()
        era5[_U], era5[_V] = u, v
        out["era5"] = era5
    if "grid2km_offset" in sample:
        offset = sample["grid2km_offset"][[1, 0] if which & 1 else [0, 1]]  # a copy
        block = (sample["amsr2"] if "amsr2" in sample else sample["era5"]).shape[-1] * cell
        labels = sample["labels"]
        patch = (next(iter(labels.values())) if isinstance(labels, dict) else labels).shape[-1]
        for bit, axis in ((2, 0), (4, 1)):
            if which & bit:
                offset[axis] = flipped_offset(offset[axis], block, patch, downsample)
        out["grid2km_offset"] = offset
    return sample | out
