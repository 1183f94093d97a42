"""Augmentation: the 8 flips and rotations of a sample, consistent across every modality.

SAR, masks, labels and the 2 km blocks turn together; the 2 km offset follows by the cell rule
(:func:`seaice_lib.grid.flipped_offset`), and the ERA5 winds turn with the image axes.
"""

from __future__ import annotations

import torch

from .. import schema
from ..grid import flipped_offset

N_DIHEDRAL = 8
_U, _V = schema.ERA5_VARIABLES.index("u10m_rotated"), schema.ERA5_VARIABLES.index("v10m_rotated")


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
                offset[axis] = flipped_offset(offset[axis], block, patch, downsample)
        out["grid2km_offset"] = offset
    return sample | out
