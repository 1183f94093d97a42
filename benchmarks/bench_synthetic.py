"""Synthetic scene generation speed and memory.

Targets (issue 2): twelve 800 x 800 scenes in under 30 s; 5000 x 5000 scenes possible. The baseline in
the same run is the I/O floor: reading every variable of the written scenes back.
"""

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from seaice_lib import schema, synthetic
from seaice_lib.data.scene import Scene

LARGE = int(os.environ.get("SEAICE_BENCH_LARGE", "5000"))


def _read_all(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        with Scene(p) as s:
            for name in schema.SAR_GRID_VARIABLES:
                s.read(name)
            s.charts()
            s.read_grid2km(schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES)
    return time.perf_counter() - t0


def main(out_dir: Path) -> dict:
    from seaice_lib.figures.throughput import write_benchmark

    work = Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
    try:
        t0 = time.perf_counter()
        small = synthetic.generate(work / "small", regions=3, scenes_per_region=4, size=(800, 800),
                                   seed=0, progress=False)
        t_small = time.perf_counter() - t0
        t_read_small = _read_all(small)
        t0 = time.perf_counter()
        large = synthetic.generate(work / "large", regions=1, scenes_per_region=1,
                                   size=(LARGE, LARGE), seed=0, progress=False)
        t_large = time.perf_counter() - t0
        t_read_large = _read_all(large)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        mb = sum(p.stat().st_size for p in large) / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "twelve_800x800_s": round(t_small, 2),
        "twelve_800x800_target_s": 30,
        "read_back_twelve_800x800_s": round(t_read_small, 2),
        "generate_over_read_ratio_800": round(t_small / t_read_small, 1),
        "large_size": LARGE,
        "one_large_scene_s": round(t_large, 1),
        "read_back_large_s": round(t_read_large, 2),
        "large_file_mb": round(mb, 1),
        "large_mpixel_per_s": round(LARGE**2 / 1e6 / t_large, 2),
        "peak_rss_gib": round(peak_gib, 2),
        "cpu_threads": os.cpu_count(),
    }
    for k, v in result.items():
        print(f"{k:>30}: {v}")
    print(f"twelve 800 x 800 scenes: {t_small:.1f} s ({t_small / 30:.2f} of the 30 s budget); "
          f"generation is {t_small / t_read_small:.0f}x the time to read them back")
    write_benchmark(out_dir / "synthetic.json", result)
    return result
