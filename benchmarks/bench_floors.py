"""Per-pixel floors (``seaice_lib.engine.floors``) on held-out regions: what each modality knows alone.

Scenes of SEAICE_BENCH_REGIONS regions (8) x SEAICE_BENCH_SCENES_PER_REGION (4) are generated at
SEAICE_BENCH_SCENE_SIZE (480) pixels a side (seed 1) into a temporary folder; every scene is a
target, its sequence built with the store's defaults (7 days, overlap 0.3) and up to 3 steps, its
features computed once at 320 m (downsample 4). Region folds: fold k holds out regions k and
k + n/2 of the generated ones (``synthetic.REGION_CATALOGUE`` order), so every region is held out
once, and each fold must hold out at least one region that is not melting (checked). For each fold
and feature set a floor is fitted on the other regions' scenes (SEAICE_BENCH_FLOOR_PIXELS, 50000,
pixels drawn; SEAICE_BENCH_FLOOR_ITER, 100, boosting iterations) and scored with the official
metric on the held-out regions' whole scenes at 80 m. SEAICE_BENCH_FLOOR_THREADS (1) OpenMP threads
per fit: several threads crawl when the machine is busy. ``floors.json`` holds every fold x feature
set (scores, per-class F1 of SOD, scene ids) and per feature set the mean and spread across folds.
"""

import os
import tempfile
import time
from pathlib import Path

REGIONS = int(os.environ.get("SEAICE_BENCH_REGIONS", "8"))
PER_REGION = int(os.environ.get("SEAICE_BENCH_SCENES_PER_REGION", "4"))
SCENE_SIZE = int(os.environ.get("SEAICE_BENCH_SCENE_SIZE", "480"))
MAX_PIXELS = int(os.environ.get("SEAICE_BENCH_FLOOR_PIXELS", "50000"))
MAX_ITER = int(os.environ.get("SEAICE_BENCH_FLOOR_ITER", "100"))
THREADS = int(os.environ.get("SEAICE_BENCH_FLOOR_THREADS", "1"))
DOWNSAMPLE = 4
MAX_STEPS = 3
MIN_OVERLAP = 0.3
SEED = 1
METRICS = ("SIC", "SOD", "FLOE", "combined")


def region_folds(specs) -> list[tuple[str, str]]:
    """Held-out region pairs: fold k holds out regions k and k + n/2 (catalogue order), so each
    region is held out once; every pair must include a region that is not melting."""
    n = len(specs)
    if n < 4 or n % 2:
        raise ValueError(f"region folds need an even number of regions, at least 4, not {n}")
    folds = []
    for k in range(n // 2):
        pair = (specs[k], specs[k + n // 2])
        if all(s.melting for s in pair):
            raise ValueError(f"fold {k} holds out only melting regions {[s.name for s in pair]}")
        folds.append(tuple(s.name for s in pair))
    return folds


def spread(values: list[float]) -> dict[str, float]:
    import numpy as np

    v = np.asarray(values, float)
    return {"mean": round(float(v.mean()), 3), "min": round(float(v.min()), 3),
            "max": round(float(v.max()), 3), "std": round(float(v.std()), 3)}


def main(out: Path) -> None:
    from tabulate import tabulate

    from seaice_lib import synthetic
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.engine import floors
    from seaice_lib.figures.throughput import write_benchmark

    start = time.perf_counter()
    folds = region_folds(synthetic.REGION_CATALOGUE[:REGIONS])
    cfg = PatchConfig(downsample=DOWNSAMPLE, max_steps=MAX_STEPS, min_overlap=MIN_OVERLAP)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="bench_floors_") as tmp:
        paths = synthetic.generate(Path(tmp), regions=REGIONS, scenes_per_region=PER_REGION,
                                   size=(SCENE_SIZE, SCENE_SIZE), seed=SEED, progress=False)
        timings["generate_s"] = round(time.perf_counter() - start, 1)
        t = time.perf_counter()
        sequences = floors.target_sequences(paths, paths, cfg)
        scenes = [(seq.target.region, floors.scene_features(seq, cfg.downsample, cfg.method))
                  for seq in sequences]
        timings["features_s"] = round(time.perf_counter() - t, 1)
        results = []
        for k, held_out in enumerate(folds):
            train = [sf for region, sf in scenes if region not in held_out]
            test = [sf for region, sf in scenes if region in held_out]
            if not test or not train:
                raise RuntimeError(f"fold {k}: no scenes to train on or to score ({held_out})")
            fold = {"fold": k, "held_out_regions": list(held_out),
                    "train_scenes": [sf.scene_id for sf in train],
                    "test_scenes": [sf.scene_id for sf in test], "feature_sets": {}}
            for name in floors.FEATURE_SETS:
                t = time.perf_counter()
                floor = floors.PixelFloor(name, max_pixels=MAX_PIXELS, max_iter=MAX_ITER, seed=SEED,
                                          threads=THREADS).fit(train)
                fit_s = time.perf_counter() - t
                ev = floors.evaluate_floor(floor, test, {"fold": k})
                fold["feature_sets"][name] = {
                    "scores": ev.scores(), "sod_f1": ev.per_class_f1()["SOD"],
                    "n_train_pixels": floor.n_train, "fit_s": round(fit_s, 1),
                    "evaluate_s": round(time.perf_counter() - t - fit_s, 1)}
                print(f"fold {k} ({', '.join(held_out)}) {name}: {ev.scores()}", flush=True)
            results.append(fold)
    summary = {name: {m: spread([f["feature_sets"][name]["scores"][m] for f in results])
                      for m in METRICS} for name in floors.FEATURE_SETS}
    wall = time.perf_counter() - start
    rows = [[name] + [s[m]["mean"] for m in METRICS]
            + [s["combined"][k] for k in ("min", "max", "std")]
            + [f["feature_sets"][name]["scores"]["combined"] for f in results]
            for name, s in summary.items()]
    headers = (["features", "SIC", "SOD", "FLOE", "combined", "min", "max", "std"]
               + [f"fold {f['fold']}" for f in results])
    print(f"per-pixel floors, {len(folds)} region folds, mean over folds; whole held-out scenes at 80 m "
          f"({wall:.0f} s)")
    print(tabulate(rows, headers, floatfmt=".1f"))
    doc = {"settings": {"regions": REGIONS, "scenes_per_region": PER_REGION, "scene_size": SCENE_SIZE,
                        "seed": SEED, "downsample": DOWNSAMPLE, "window_days": cfg.window_days,
                        "max_steps": MAX_STEPS, "min_overlap": MIN_OVERLAP,
                        "max_pixels": MAX_PIXELS, "max_iter": MAX_ITER, "threads": THREADS,
                        "folds": "fold k holds out regions k and k + n/2 of the catalogue",
                        "spread": "min, max and population std across folds"},
           "feature_sets": {name: list(names) for name, names in floors.FEATURE_SETS.items()},
           "folds": results, "summary": summary, "timings": timings, "wall_s": round(wall, 1)}
    write_benchmark(out / "floors.json", doc)
