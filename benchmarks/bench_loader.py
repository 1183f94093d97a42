"""Training-data loading: our zarr patch store vs a loader written the way the AutoICE toolbox does it.

Both serve the same synthetic scenes at the same spacing (80 m x DOWNSAMPLE), patch size and batch
size. The toolbox way opens a scene's netCDF for every sample, reads the inputs whole, pools them,
crops at random and nearest-upsamples AMSR2/ERA5 into a 24-channel tensor. Ours reads one patch
(sequence, masks, native 2 km cells, labels) per sample from the store. Each loader runs in its own
process so that peak memory (VmHWM) is its own; a third process that only imports torch and our
modules gives the baseline both pay. Also: extraction time vs just reading the scenes once.

Scene size, count, patch and batch are set by SEAICE_BENCH_SIZE (5000), SEAICE_BENCH_SCENES (3),
SEAICE_BENCH_PATCH (256), SEAICE_BENCH_BATCH (8), SEAICE_BENCH_DOWNSAMPLE (5).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = int(os.environ.get("SEAICE_BENCH_SIZE", "5000"))
N_SCENES = int(os.environ.get("SEAICE_BENCH_SCENES", "3"))
PATCH = int(os.environ.get("SEAICE_BENCH_PATCH", "256"))
BATCH = int(os.environ.get("SEAICE_BENCH_BATCH", "8"))
DOWNSAMPLE = int(os.environ.get("SEAICE_BENCH_DOWNSAMPLE", "5"))
N_BATCHES = int(os.environ.get("SEAICE_BENCH_BATCHES", "10"))


class ToolboxStyleDataset:
    """Per sample: open a random scene's netCDF, read the 24 inputs and the charts whole, pool by
    ``downsample``, crop ``patch`` at random, nearest-upsample the 2 km crop into the channel stack."""

    def __init__(self, paths, patch: int, downsample: int, seed: int = 0):
        self.paths, self.patch, self.downsample, self.seed = list(paths), patch, downsample, seed

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        import torch
        import torch.nn.functional as F
        import xarray as xr

        from seaice_lib import schema

        rng = np.random.default_rng(self.seed + i)
        with xr.open_dataset(self.paths[rng.integers(len(self.paths))]) as ds:
            sar = torch.from_numpy(np.stack([ds[v].values for v in schema.SAR_GRID_VARIABLES]))
            charts = torch.from_numpy(np.stack([ds[c].values for c in schema.CHARTS]))
            grid = torch.from_numpy(np.stack([ds[v].values for v in
                                              schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES]))
        k = self.downsample
        sar = F.avg_pool2d(sar[None], k)[0]
        charts = charts[:, k // 2::k, k // 2::k][:, : sar.shape[1], : sar.shape[2]]
        h, w = sar.shape[1:]
        r, c = rng.integers(0, h - self.patch + 1), rng.integers(0, w - self.patch + 1)
        cell = schema.CELL_80M / k  # coarse pixels per 2 km cell
        r2, c2 = int(r // cell), int(c // cell)
        n2 = int(np.ceil(self.patch / cell)) + 1
        crop2 = grid[:, r2:r2 + n2, c2:c2 + n2]
        up = F.interpolate(crop2[None], scale_factor=cell, mode="nearest")[0]
        dr, dc = int(r - r2 * cell), int(c - c2 * cell)
        up = up[:, dr:dr + self.patch, dc:dc + self.patch]
        up = F.pad(up, (0, self.patch - up.shape[2], 0, self.patch - up.shape[1]), mode="replicate")
        x = torch.cat([sar[:, r:r + self.patch, c:c + self.patch], up])
        y = charts[:, r:r + self.patch, c:c + self.patch].long()
        return x, y


def _run_loader(kind: str, data: str, n_batches: int) -> None:
    """Child process: time ``n_batches`` batches (after one warm-up) and print JSON."""
    import torch

    from seaice_lib.data.dataset import PatchDataset, collate
    from seaice_lib.data.samplers import ClassBalancedSampler

    torch.set_num_threads(2)
    if kind == "baseline":  # the interpreter with torch and our modules loaded, nothing read
        print(json.dumps({"samples_per_s": float("nan"), "peak_rss_mib": _peak_mib()}))
        return
    if kind == "toolbox":
        paths = sorted(Path(data).glob("*_prep.nc"))
        loader = torch.utils.data.DataLoader(ToolboxStyleDataset(paths, PATCH, DOWNSAMPLE),
                                             batch_size=BATCH, shuffle=False, num_workers=0)
    else:
        dataset = PatchDataset(data, augment=True)
        sampler = ClassBalancedSampler(dataset, num_samples=BATCH * (n_batches + 1))
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=sampler,
                                             num_workers=0, collate_fn=collate)
    batches = iter(loader)
    next(batches)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    seconds = time.perf_counter() - t0
    print(json.dumps({"samples_per_s": BATCH * n_batches / seconds, "peak_rss_mib": _peak_mib()}))


def _peak_mib() -> float:
    """This process's own peak resident memory, VmHWM (ru_maxrss would count the parent's at fork)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 2**10


def _measure(kind: str, data: Path, n_batches: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_loader", kind, str(data),
                          str(n_batches)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(out_dir: Path) -> dict:
    from seaice_lib import schema, synthetic
    from seaice_lib.data import patches
    from seaice_lib.data.scene import Scene, find_scenes

    work = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        scenes = work / "scenes"
        synthetic.generate(scenes, regions=1, scenes_per_region=N_SCENES, size=(SIZE, SIZE), seed=0)
        t0 = time.perf_counter()
        for path in find_scenes(scenes):
            with Scene(path) as s:
                for v in schema.SAR_GRID_VARIABLES:
                    s.read(v)
                s.charts()
                s.read_grid2km(schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES)
        t_read = time.perf_counter() - t0
        store = work / "patches.zarr"
        t0 = time.perf_counter()
        patches.extract_store(scenes, store, patches.PatchConfig(patch=PATCH, downsample=DOWNSAMPLE,
                                                                 min_overlap=0.1))
        t_extract = time.perf_counter() - t0
        n_files = sum(1 for f in store.rglob("*") if f.is_file())
        toolbox = _measure("toolbox", scenes, max(2, N_BATCHES // 5))
        ours = _measure("ours", store, N_BATCHES)
        baseline = _measure("baseline", store, 0)["peak_rss_mib"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "scene_size": SIZE, "scenes": N_SCENES, "patch": PATCH, "batch": BATCH,
        "downsample": DOWNSAMPLE,
        "toolbox_samples_per_s": round(toolbox["samples_per_s"], 2),
        "ours_samples_per_s": round(ours["samples_per_s"], 2),
        "speedup": round(ours["samples_per_s"] / toolbox["samples_per_s"], 1),
        "toolbox_peak_rss_mib": round(toolbox["peak_rss_mib"]),
        "ours_peak_rss_mib": round(ours["peak_rss_mib"]),
        "memory_ratio": round(ours["peak_rss_mib"] / toolbox["peak_rss_mib"], 3),
        "baseline_rss_mib": round(baseline),
        "loader_memory_ratio": round((ours["peak_rss_mib"] - baseline)
                                     / (toolbox["peak_rss_mib"] - baseline), 3),
        "read_scenes_s": round(t_read, 1), "extract_store_s": round(t_extract, 1),
        "extract_over_read": round(t_extract / t_read, 2), "store_files": n_files,
        "targets": {"speedup_at_least": 20, "memory_ratio_at_most": 0.25},
    }
    for k, v in result.items():
        print(f"{k:>24}: {v}")
    print(f"our loader: {result['speedup']}x the toolbox-style samples/s with "
          f"{result['memory_ratio']:.2f}x its peak memory ({result['loader_memory_ratio']:.2f}x "
          f"above the {result['baseline_rss_mib']} MiB both pay for Python and torch); extraction takes "
          f"{result['extract_over_read']}x the time of reading the scenes once")
    (out_dir / "loader.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    _run_loader(sys.argv[1], sys.argv[2], int(sys.argv[3]))
