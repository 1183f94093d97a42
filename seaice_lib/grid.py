"""Geometry shared by the data pipeline and the models: the 2 km cell rule and block reductions.

The cell rule: an 80 m SAR pixel ``u`` (along lines or samples) lies in 2 km cell ``u // 25``. A
patch at ``downsample`` carries an *offset*, the 80 m pixels from its first cell's corner to the
sample pixel of patch pixel 0 (``downsample // 2`` past its top-left corner); patch pixel ``i`` then
lies in cell ``(offset + i * downsample) // 25`` of the patch's block. Why the sample pixel: it keeps
the rule exact under flips and rotations (docs/data.md).

The cell-rule functions work on numpy arrays and torch tensors alike; nothing here imports the
pipeline, so models and data read the same rule.
"""

from __future__ import annotations

import warnings

import numpy as np

from .schema import CELL_80M


# --- the 2 km cell rule -----------------------------------------------------------------------
def cell_index(offset, pixels, downsample: int = 1, cell: int = CELL_80M, n_cells: int | None = None):
    """The 2 km cell under each pixel: ``(offset + pixels * downsample) // cell``.

    With ``n_cells``, pixels past the grid's end take its last cell. numpy or torch, broadcasting.
    """
    index = (offset + pixels * downsample) // cell
    return index if n_cells is None else index.clip(max=n_cells - 1)


def patch_cells(origin, downsample: int, cell: int = CELL_80M):
    """(first cell, offset) of a patch whose top-left 80 m pixel is ``origin``: the cell under the
    origin, and the 80 m pixels from that cell's corner to patch pixel 0's sample pixel."""
    return origin // cell, origin % cell + downsample // 2


def cells_per_patch(patch: int, downsample: int, cell: int = CELL_80M) -> int:
    """2 km cells per side that hold every cell under a ``patch``-pixel patch, whatever its offset."""
    return -(-(patch * downsample + cell - 1) // cell)


def flipped_offset(offset, block_pixels: int, patch: int, downsample: int):
    """The offset along an axis after flipping the patch and its block of ``block_pixels`` 80 m
    pixels along it: the sample pixel of the new pixel 0 is that of the old last pixel."""
    return block_pixels - 1 - offset - (patch - 1) * downsample


def patch_coordinate(u, offset, downsample: int):
    """Patch-pixel coordinate of 80 m coordinate ``u`` (patch pixel i spans [i, i + 1); its sample
    pixel's centre, ``offset + i * downsample + 0.5``, maps to i + 0.5)."""
    return (u - offset - 0.5) / downsample + 0.5


def upsample_cells(grid, offset, patch: int, downsample: int, cell: int = CELL_80M):
    """Torch: native 2 km blocks (B, C, G, G) onto the patch grid (B, C, patch, patch).

    Pixel (i, j) of sample b takes cell ``cell_index(offset[b], (i, j), downsample)``; ``offset``
    is (B, 2). Exact after flips and rotations too.
    """
    import torch  # only the models need this one; the data pipeline stays torch-free here

    pixels = torch.arange(patch, device=grid.device)
    rows = cell_index(offset[:, 0, None], pixels, downsample, cell, grid.shape[-2])  # (B, patch)
    cols = cell_index(offset[:, 1, None], pixels, downsample, cell, grid.shape[-1])
    b = torch.arange(grid.shape[0], device=grid.device)[:, None, None]
    return grid.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


# --- blocks of pixels -------------------------------------------------------------------------
def blocks(values: np.ndarray, factor: int) -> np.ndarray:
    """(..., h, w) as (..., h // factor, factor, w // factor, factor); the ragged edge is dropped."""
    h, w = values.shape[-2] // factor, values.shape[-1] // factor
    trimmed = values[..., : h * factor, : w * factor]
    return trimmed.reshape(values.shape[:-2] + (h, factor, w, factor))


def block_reduce(values: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Reduce (..., h, w) by non-overlapping ``factor`` x ``factor`` blocks (ragged edge dropped).

    ``mean``: NaN propagates (a block with a missing pixel is missing); ``nanmean``: missing pixels
    are left out (all-missing blocks stay NaN); ``max``: suits uint8 charts, where 255 (no label)
    wins, as in the dataset; ``centre``: the block's centre pixel ``(factor // 2, factor // 2)``,
    for classes.
    """
    if factor == 1:
        return values
    b = blocks(values, factor)
    if how == "mean":
        return b.mean(axis=(-3, -1), dtype=np.float64).astype(values.dtype)
    if how == "nanmean":
        with warnings.catch_warnings():  # all-NaN blocks stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(b, axis=(-3, -1))
    if how == "max":
        return b.max(axis=(-3, -1))
    if how == "centre":
        return b[..., factor // 2, :, factor // 2]
    raise ValueError(f"how must be 'mean', 'nanmean', 'max' or 'centre', not {how!r}")


def masked_block_mean(values: np.ndarray, valid: np.ndarray, factor: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels in each block of (..., h, w) ``values`` (``valid``: (h, w) bool).

    Returns (..., h // factor, w // factor) float32, 0 where masked, and the bool mask of blocks
    at least half valid.
    """
    m = blocks(valid, factor)
    count = m.sum(axis=(-3, -1))
    total = np.where(m, blocks(values, factor), 0).sum(axis=(-3, -1), dtype=np.float64)
    ok = count * 2 >= factor * factor
    mean = np.where(ok, total / np.maximum(count, 1), 0.0).astype(np.float32)
    return mean, ok


def block_upsample(values: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """(..., h, w) block values onto the fine (H, W) grid: each fills its ``factor`` x ``factor``
    block; lines and samples past the last whole block take the last block."""
    rows = np.minimum(np.arange(shape[0]) // factor, values.shape[-2] - 1)
    cols = np.minimum(np.arange(shape[1]) // factor, values.shape[-1] - 1)
    return values[..., rows[:, None], cols[None, :]]


def block_any(values: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool onto the (h, w) ``shape`` of blocks: whether any pixel that :func:`block_upsample`
    fills from a block is True (its ``factor`` x ``factor`` pixels, and for the last block the lines
    and samples past it)."""
    rows = np.logical_or.reduceat(values, np.arange(shape[0]) * factor, axis=0)
    return np.logical_or.reduceat(rows, np.arange(shape[1]) * factor, axis=1)
