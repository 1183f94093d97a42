"""The shared geometry: the 2 km cell rule (numpy and torch alike) and block reductions, checked
against pixel-by-pixel loops written from the definitions."""

import numpy as np
import pytest
import torch

from seaice_lib.grid import (
    block_any,
    block_reduce,
    block_upsample,
    cell_index,
    cells_per_patch,
    flipped_offset,
    masked_block_mean,
    patch_cells,
    patch_coordinate,
)

CELL = 25


def test_cell_index_is_the_cell_holding_each_sample_pixel():
    origin, downsample, patch = 37, 4, 30
    first, offset = patch_cells(origin, downsample)
    assert (first, offset) == (1, 37 - 25 + 2)
    for i in range(patch):
        sample_pixel = origin + i * downsample + downsample // 2  # the 80 m pixel of store pixel i
        assert first + int(cell_index(offset, i, downsample)) == sample_pixel // CELL


def test_cell_index_clips_to_the_grid_and_agrees_for_numpy_and_torch():
    pixels = np.arange(40)
    got = cell_index(7, pixels, 3, CELL, n_cells=4)
    expected = [min((7 + 3 * i) // CELL, 3) for i in range(40)]
    assert got.tolist() == expected
    assert cell_index(torch.tensor(7), torch.arange(40), 3, CELL, 4).tolist() == expected


@pytest.mark.parametrize("patch, downsample", [(16, 2), (20, 5), (32, 10), (8, 25)])
def test_a_patch_block_holds_every_cell_under_it(patch, downsample):
    g = cells_per_patch(patch, downsample)
    worst = max(cell_index(offset, patch - 1, downsample) for offset in range(CELL + downsample // 2))
    assert worst == g - 1


@pytest.mark.parametrize("downsample", [1, 2, 3, 4])
def test_flipped_offset_maps_sample_pixels_onto_sample_pixels(downsample):
    patch, g = 9, cells_per_patch(9, downsample)
    block = g * CELL
    for offset in range(downsample // 2, CELL + downsample // 2):
        cells = [cell_index(offset, i, downsample) for i in range(patch)]
        flipped = flipped_offset(offset, block, patch, downsample)
        mirrored = [g - 1 - c for c in reversed(cells)]  # the block flips with the patch
        assert [cell_index(flipped, i, downsample) for i in range(patch)] == mirrored


def test_patch_coordinate_puts_a_sample_pixel_centre_at_the_store_pixel_centre():
    offset, downsample = 14, 4
    for i in range(6):
        centre_80m = offset + i * downsample + 0.5
        assert patch_coordinate(centre_80m, offset, downsample) == i + 0.5


def test_block_reductions_against_loops():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 7, 9)).astype(np.float32)
    values[0, 1, 1] = np.nan
    f = 3
    h, w = 7 // f, 9 // f
    mean = block_reduce(values, f, "mean")
    nanmean = block_reduce(values, f, "nanmean")
    centre = block_reduce(values, f, "centre")
    for c in range(2):
        for i in range(h):
            for j in range(w):
                block = values[c, i * f:(i + 1) * f, j * f:(j + 1) * f].astype(np.float64)
                np.testing.assert_allclose(mean[c, i, j], block.mean(), rtol=1e-6)
                np.testing.assert_allclose(nanmean[c, i, j], np.nanmean(block), rtol=1e-6)
                assert centre[c, i, j] == block[1, 1] or (np.isnan(block[1, 1]) and np.isnan(centre[c, i, j]))
    assert np.isnan(mean[0, 0, 0]) and not np.isnan(nanmean[0, 0, 0])
    labels = np.array([[1, 2, 255, 0], [3, 1, 0, 0]], np.uint8)
    assert block_reduce(labels, 2, "max").tolist() == [[3, 255]]
    with pytest.raises(ValueError, match="how"):
        block_reduce(values, 2, "median")


def test_masked_block_mean_needs_half_the_block_valid():
    values = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    valid = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]], bool)
    mean, ok = masked_block_mean(values, valid, 2)
    assert ok.tolist() == [[True, False], [True, True]]
    assert mean[0].tolist() == [[0.5, 0.0], [10.5, 12.5]]


def test_block_upsample_fills_blocks_and_the_ragged_edge():
    coarse = np.array([[1, 2], [3, 4]], np.uint8)
    fine = block_upsample(coarse, 2, (5, 5))
    assert fine.tolist() == [[1, 1, 2, 2, 2], [1, 1, 2, 2, 2], [3, 3, 4, 4, 4], [3, 3, 4, 4, 4],
                             [3, 3, 4, 4, 4]]


@pytest.mark.parametrize("factor, shape", [(2, (7, 9)), (3, (7, 9)), (1, (4, 5))])
def test_block_any_is_true_on_each_block_that_upsamples_onto_a_true_pixel(factor, shape):
    rng = np.random.default_rng(factor)
    fine = rng.random(shape) < 0.05
    coarse_shape = (shape[0] // factor, shape[1] // factor)
    expected = np.zeros(coarse_shape, bool)  # the block each true pixel takes its value from
    for r, c in np.argwhere(fine):
        expected[min(r // factor, coarse_shape[0] - 1), min(c // factor, coarse_shape[1] - 1)] = True
    assert fine.any()
    np.testing.assert_array_equal(block_any(fine, factor, coarse_shape), expected)
    assert not block_any(np.zeros(shape, bool), factor, coarse_shape).any()
