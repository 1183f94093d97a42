"""Training-data loading: our patch store against the AutoICE toolbox's own algorithm, at 80 m.

The baseline follows the toolbox's training loader (``AI4ArcticChallengeDataset``; our own code):
per sample it opens a random scene's netCDF lazily with xarray, draws a random crop (drawn again
while fewer than ``min_labelled`` of its pixels have an SIC label), reads only the crop of the four
SAR-grid inputs and the three charts, reads the 2 km cells under it (14 AMSR2 + 6 ERA5 variables)
and nearest-upsamples them onto the crop: a 24-channel single-date sample. Ours serves the store's
sequences (up to ``max_steps`` SAR acquisitions, masks, dates, native 2 km cells, labels),
augmented, class-balanced. Both at the same spacing, patch and batch, through a DataLoader with
the same number of workers, each in its own process (peak memory, VmHWM, is its own; with a
worker, that of the main process only). Rounds alternate the loaders; the medians and the spread
over rounds are reported.

The levers, each variant adding one to the one before: ``zarr_per_sample`` (each chunk through
zarr's own read, one sample at a time: the loader before issue 16), ``per_sample`` (chunks read
straight from the shard files, :class:`~seaice_lib.data.shards.ShardReader`), ``batched`` (whole
batches, :meth:`PatchDataset.__getitems__`: one scratch buffer, turn and cast in one copy, one block
of shared memory per batch), ``ours`` (``compact``: the store's float16/uint8, widened on the
device; what training uses). Payload is the bytes of the batches as served (GB/s beside samples/s).
Every loader runs with 1 DataLoader worker (the headline) and with none (loading in the main process);
``ours`` without a worker also reads copies of the store recompressed with no codec and with Blosc zstd.

Settings: SEAICE_BENCH_SIZE (5000), SEAICE_BENCH_SCENES (3), SEAICE_BENCH_PATCH (256),
SEAICE_BENCH_BATCH (8), SEAICE_BENCH_DOWNSAMPLE (1), SEAICE_BENCH_BATCHES (30, timed per
measurement after one warm-up batch), SEAICE_BENCH_ROUNDS (3).
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
DOWNSAMPLE = int(os.environ.get("SEAICE_BENCH_DOWNSAMPLE", "1"))
N_BATCHES = int(os.environ.get("SEAICE_BENCH_BATCHES", "30"))
ROUNDS = int(os.environ.get("SEAICE_BENCH_ROUNDS", "3"))
MIN_LABELLED = 0.05  # the store's default (PatchConfig.min_labelled), for both loaders
VARIANTS = ("toolbox", "zarr_per_sample", "per_sample", "batched", "ours")
WORKERS = (1, 0)
CODECS = ("none", "zstd")  # the store's lz4 against these, for ``ours`` without workers


class ToolboxCropDataset:
    """The toolbox's per-sample algorithm (see the module doc): ``(x (24, P, P) float32,
    y (3, P, P) int64)`` from a random crop of a random scene at ``downsample`` 1 (80 m)."""

    def __init__(self, paths, patch: int, min_labelled: float, seed: int = 0):
        self.paths, self.patch, self.min_labelled, self.seed = list(paths), patch, min_labelled, seed

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        import torch
        import torch.nn.functional as F
        import xarray as xr

        from seaice_lib import schema

        rng, p, cell = np.random.default_rng((self.seed, i)), self.patch, schema.CELL_80M
        with xr.open_dataset(self.paths[rng.integers(len(self.paths))]) as ds:  # lazy: nothing read yet
            lines, samples = ds.sizes["sar_lines"], ds.sizes["sar_samples"]
            while True:
                r, c = int(rng.integers(0, lines - p + 1)), int(rng.integers(0, samples - p + 1))
                crop = {"sar_lines": slice(r, r + p), "sar_samples": slice(c, c + p)}
                charts = np.stack([ds[name].isel(crop).values for name in schema.CHARTS])
                if (charts[0] != schema.CHART_FILL).mean() >= self.min_labelled:
                    break
            sar = np.stack([ds[name].isel(crop).values for name in schema.SAR_GRID_VARIABLES])
            r2, c2 = r // cell, c // cell
            n2 = -(-(p + cell) // cell)  # enough cells for any offset
            cells = {"2km_grid_lines": slice(r2, r2 + n2), "2km_grid_samples": slice(c2, c2 + n2)}
            grid = np.stack([ds[name].isel(cells).values
                             for name in schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES])
        up = F.interpolate(torch.from_numpy(grid)[None], scale_factor=cell, mode="nearest")[0]
        up = up[:, r - r2 * cell:r - r2 * cell + p, c - c2 * cell:c - c2 * cell + p]
        up = F.pad(up, (0, p - up.shape[2], 0, p - up.shape[1]), mode="replicate")  # past the grid's end
        return torch.cat([torch.from_numpy(sar), up]), torch.from_numpy(charts.astype(np.int64))


def _zarr_per_sample_dataset(store):
    """Our dataset reading each chunk through zarr's own ``array[k]``, one sample at a time."""
    from seaice_lib.data.dataset import PatchDataset, _OpenScene
    from seaice_lib.data.store import open_scene_arrays

    class ZarrRead:
        def __init__(self, array):
            self.array = array

        def read(self, k):
            return self.array[k]

    class ZarrPerSample(PatchDataset):
        __getitems__ = None  # the DataLoader reads one sample at a time

        def _scene(self, sid):
            if sid not in self._scenes:
                names = ["labels", "sar", "sar_mask", "amsr2", "era5"]
                arrays = open_scene_arrays(self.store, sid, names + ["origin", "grid2km_offset"])
                self._scenes[sid] = _OpenScene({n: ZarrRead(arrays[n]) for n in names},
                                               {n: arrays[n][...].astype(np.int64)
                                                for n in ("origin", "grid2km_offset")})
            return self._scenes[sid]

    return ZarrPerSample(store, augment=True)


def _recoded(store: Path, codec: str, out: Path) -> Path:
    """A copy of ``store`` whose scenes' image arrays are compressed with ``codec`` ("none" or
    "zstd", Blosc level 1 with byte shuffle) instead of the store's Blosc lz4."""
    import zarr
    from zarr.codecs import BloscCodec

    shutil.copytree(store, out)
    compressors = None if codec == "none" else [BloscCodec(cname=codec, clevel=1, shuffle="shuffle")]
    for scene in (out / "scenes").iterdir():
        group = zarr.open_group(zarr.storage.LocalStore(scene), mode="r+")
        for name in ("sar", "sar_mask", "labels", "amsr2", "era5"):
            old = group[name]
            values = old[...]
            group.create_array(name, shape=old.shape, dtype=old.dtype, chunks=old.chunks, shards=old.shards,
                               compressors=compressors, overwrite=True)[...] = values
    return out


def _payload_bytes(batch) -> int:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.nbytes
    values = batch.values() if isinstance(batch, dict) else batch
    return sum(_payload_bytes(v) for v in values)


def _run_loader(kind: str, data: str, n_batches: int, workers: int) -> None:
    """Child process: time ``n_batches`` batches (after one warm-up batch) and print JSON."""
    import torch

    from benchmarks.bench_train import peak_rss_mib
    from seaice_lib.data.dataset import PatchDataset, collate
    from seaice_lib.data.samplers import ClassBalancedSampler

    torch.set_num_threads(2)
    if kind == "baseline":  # the interpreter with torch and our modules loaded, nothing read
        print(json.dumps({"samples_per_s": float("nan"), "peak_rss_mib": peak_rss_mib()}))
        return
    options = {"batch_size": BATCH, "num_workers": workers}
    if kind == "toolbox":
        dataset = ToolboxCropDataset(sorted(Path(data).glob("*_prep.nc")), PATCH, MIN_LABELLED)
        loader = torch.utils.data.DataLoader(dataset, shuffle=False, **options)
    else:
        dataset = _zarr_per_sample_dataset(data) if kind == "zarr_per_sample" else \
            PatchDataset(data, augment=True, compact=kind == "ours")
        if kind == "per_sample":
            dataset.__getitems__ = None
        sampler = ClassBalancedSampler(dataset, num_samples=BATCH * (n_batches + 1))
        loader = torch.utils.data.DataLoader(dataset, sampler=sampler, collate_fn=collate, **options)
    batches = iter(loader)
    next(batches)
    t0, payload = time.perf_counter(), 0
    for _ in range(n_batches):
        payload += _payload_bytes(next(batches))
    seconds = time.perf_counter() - t0
    print(json.dumps({"samples_per_s": BATCH * n_batches / seconds, "payload_gb_per_s": payload / seconds / 1e9,
                      "peak_rss_mib": peak_rss_mib()}))


def _measure(kind: str, data: Path, n_batches: int, workers: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_loader", kind, str(data),
                          str(n_batches), str(workers)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(out_dir: Path) -> dict:
    import zarr

    from seaice_lib import schema, synthetic
    from seaice_lib.data import patches
    from seaice_lib.data.scene import Scene, find_scenes
    from seaice_lib.figures.throughput import write_benchmark

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
        cfg = patches.PatchConfig(patch=PATCH, downsample=DOWNSAMPLE, min_overlap=0.1, min_labelled=MIN_LABELLED)
        t0 = time.perf_counter()
        patches.extract_store(scenes, store, cfg, progress=False)
        t_extract = time.perf_counter() - t0
        n_files = sum(1 for f in store.rglob("*") if f.is_file())
        steps = [len(zarr.open_group(group, mode="r").attrs["steps"]) for group in (store / "scenes").iterdir()]
        stores = {"lz4": store} | {codec: _recoded(store, codec, work / f"{codec}.zarr") for codec in CODECS}
        sizes = {codec: sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) for codec, path in stores.items()}
        runs: dict[tuple[str, int], list[dict]] = {(k, w): [] for w in WORKERS for k in VARIANTS}
        runs |= {(f"ours_{codec}", 0): [] for codec in CODECS}
        for _ in range(ROUNDS):  # alternated, so that a slow spell of the machine hits every loader
            for kind, workers in runs:
                data = scenes if kind == "toolbox" else stores[kind.split("_")[1]] if kind.startswith("ours_") else store
                runs[kind, workers].append(_measure(
                    kind.split("_")[0] if kind.startswith("ours_") else kind, data,
                    max(2, N_BATCHES // 10) if kind == "toolbox" else N_BATCHES, workers))
        baseline = _measure("baseline", store, 0)["peak_rss_mib"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(key, kind, workers):
        return float(np.median([r[key] for r in runs[kind, workers]]))

    def summary(kind, workers):
        speeds = [r["samples_per_s"] for r in runs[kind, workers]]
        return {"samples_per_s": round(median("samples_per_s", kind, workers), 2),
                "samples_per_s_range": [round(min(speeds), 2), round(max(speeds), 2)],
                "payload_gb_per_s": round(median("payload_gb_per_s", kind, workers), 3),
                "speedup": round(median("samples_per_s", kind, workers)
                                 / median("samples_per_s", "toolbox", workers), 1) if kind != "toolbox" else 1.0,
                "peak_rss_mib": round(median("peak_rss_mib", kind, workers))}
    variants = {f"{kind}_workers{w}": summary(kind, w) for kind, w in runs}
    ours, toolbox = variants["ours_workers1"], variants["toolbox_workers1"]
    result = {
        "scene_size": SIZE, "scenes": N_SCENES, "sequence_steps": sorted(steps), "patch": PATCH,
        "batch": BATCH, "downsample": DOWNSAMPLE, "workers": 1, "rounds": ROUNDS,
        "toolbox_samples_per_s": toolbox["samples_per_s"],
        "ours_samples_per_s": ours["samples_per_s"], "speedup": ours["speedup"],
        "ours_payload_gb_per_s": ours["payload_gb_per_s"],
        "toolbox_peak_rss_mib": toolbox["peak_rss_mib"], "ours_peak_rss_mib": ours["peak_rss_mib"],
        "baseline_rss_mib": round(baseline), "variants": variants,
        "read_scenes_s": round(t_read, 1), "extract_store_s": round(t_extract, 1),
        "extract_over_read": round(t_extract / t_read, 2), "store_files": n_files,
        "store_mb_by_codec": {codec: round(n / 1e6, 1) for codec, n in sizes.items()},
        "targets": {"speedup_at_least": 20},
    }
    for kind, v in variants.items():
        print(f"{kind:>24}: {v['samples_per_s']:8.1f} samples/s {v['samples_per_s_range']}, "
              f"{v['payload_gb_per_s']:.3f} GB/s, {v['speedup']}x the toolbox, peak {v['peak_rss_mib']} MiB")
    print(f"our loader: {ours['speedup']}x the toolbox's algorithm (target 20x) at {80 * DOWNSAMPLE} m, "
          f"patch {PATCH}, batch {BATCH}, 1 worker, sequences of {sorted(set(steps))} steps; "
          f"extraction takes {result['extract_over_read']}x the time of reading the scenes once")
    write_benchmark(out_dir / "loader.json", result)
    return result


if __name__ == "__main__":
    _run_loader(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
