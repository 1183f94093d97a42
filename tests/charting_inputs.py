"""What the charting tests feed the code: the patch settings of the conftest store, a model of
constant charts, a scene folder with one scene's charts removed, and test-set reference files; and
the model-grid cells that cover given 80 m pixels."""

import numpy as np
import torch
import xarray as xr
from torch import nn

from seaice_lib import schema
from seaice_lib.data.patches import PatchConfig
from seaice_lib.data.scene import Scene

STORE_CFG = PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30, min_overlap=0.1)


def one_hot_logits(classes: torch.Tensor, chart: str, scale: float = 10.0) -> torch.Tensor:
    """(B, P, P) classes -> (B, K, P, P) logits peaking at them."""
    return scale * nn.functional.one_hot(classes, schema.N_CLASSES[chart]).permute(0, 3, 1, 2).float()


class Constant(nn.Module):
    """SOD and FLOE logits of fixed classes, SIC as a fixed regression value."""

    def __init__(self, sod: int, floe: int, sic: float):
        super().__init__()
        self.sod, self.floe, self.sic = sod, floe, sic

    def forward(self, batch):
        b, p = batch["sar"].shape[0], batch["sar"].shape[-1]
        zeros = torch.zeros((b, p, p), dtype=torch.int64)
        return {"SIC": torch.full((b, 1, p, p), self.sic), "SOD": one_hot_logits(zeros + self.sod, "SOD", 2.0),
                "FLOE": one_hot_logits(zeros + self.floe, "FLOE", 2.0)}


def chartless_copy(synthetic_dir, tmp_path, index: int):
    """A folder with the synthetic scenes, scene ``index`` replaced by a copy without charts."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    paths = sorted(synthetic_dir.glob("*_prep.nc"))
    for p in paths:
        if p != paths[index]:
            (folder / p.name).symlink_to(p)
    with xr.open_dataset(paths[index], mask_and_scale=False, decode_times=False) as ds:
        ds.drop_vars(list(schema.CHARTS)).load().to_netcdf(folder / paths[index].name)
    with Scene(folder / paths[index].name) as scene:
        assert not scene.has_charts
    return folder, paths[index]


def write_reference(charts: dict, path, dtype=np.uint8):
    """A test-set reference file (``<scene>_prep_reference.nc``) holding ``charts``."""
    xr.Dataset({c: xr.DataArray(np.asarray(v).astype(dtype), dims=schema.SAR_DIMS,
                                attrs={"chart_fill_value": 255}) for c, v in charts.items()}
               ).to_netcdf(path)
    return path


def cells_covering(pixels: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: the model-grid cells (``factor`` x 80 m; the last row and column also cover the
    lines and samples left over) that cover any True pixel of the (H, W) ``pixels``, one by one."""
    cells = np.zeros(shape, bool)
    for r, c in np.argwhere(pixels):
        cells[min(r // factor, shape[0] - 1), min(c // factor, shape[1] - 1)] = True
    return cells
