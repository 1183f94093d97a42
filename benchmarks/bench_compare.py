"""The models compared as a reviewer would ask: region folds x seeds, input-matched baselines,
per-pixel floors, the official score on whole held-out scenes at 80 m.

Data: SEAICE_BENCH_REGIONS (8) regions x SEAICE_BENCH_SCENES_PER_REGION (4) scenes of
SEAICE_BENCH_SCENE_SIZE (480) pixels a side (seed 1) with their truth files, cut into one store
(patch 32 at 320 m, sequences of up to 3 acquisitions within 7 days).

Folds: the regions in freeze-up (the only ones with new and young ice) are paired, first with
last, and each fold holds out one pair whole; the winter and melt regions always train. A fold
whose held-out scenes lack labelled new or young ice is an error.

Runs (``RUNS``), every one on every fold x seed (SEAICE_BENCH_SEEDS, "1,2"), with the same
SEAICE_BENCH_STEPS (200) steps and settings (AdamW, lr 1e-3, batch 16, SIC as regression,
SIC:SOD:FLOE = 1:3:3, balanced sampling on SOD, flips and rotations), one single-thread process
each, two side by side. The equal-CPU view gives the U-Nets input-matched to a TSViT (``EQUAL_CPU``)
as many steps as that TSViT's steps cost in CPU seconds (per-step costs calibrated in the same
run). Floors: ``engine.floors`` gradient boosting on the same folds and seeds, every feature set.

Reported per run, mean and spread over folds x seeds (``compare.json``, ``compare.md``): official
scores on the held-out scenes' every labelled pixel at 80 m (training's ``evaluation.json``), F1
of new and of young ice, and on the history-decisive pixels of the truth files (new or young ice
that only the earlier acquisitions tell apart) the SOD accuracy and the new/young balanced
accuracy; training CPU seconds. Paired differences (``DIFFERENCES``) per fold x seed, with their
spread, and a figure of them (``compare_differences.png``/``.pdf``). About 45 minutes on an
otherwise idle 2-core machine; finished jobs are kept under ``compare/`` and reused when the
settings are unchanged.
"""

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REGIONS = int(os.environ.get("SEAICE_BENCH_REGIONS", "8"))
PER_REGION = int(os.environ.get("SEAICE_BENCH_SCENES_PER_REGION", "4"))
SCENE_SIZE = int(os.environ.get("SEAICE_BENCH_SCENE_SIZE", "480"))
STEPS = int(os.environ.get("SEAICE_BENCH_STEPS", "200"))
SEEDS = tuple(int(s) for s in os.environ.get("SEAICE_BENCH_SEEDS", "1,2").split(","))
PROCESSES = int(os.environ.get("SEAICE_BENCH_PROCESSES", "2"))
DATA_SEED = 1
PATCH, DOWNSAMPLE, MAX_STEPS, WINDOW_DAYS = 32, 4, 3, 7.0
CALIBRATION_STEPS = 6
# run -> (registry name, model kwargs, inputs)
RUNS = {
    "unet_sar": ("unet", {"grid2km": False}, "SAR"),
    "unet": ("unet", {}, "SAR + AMSR2/ERA5"),
    "unet_stacked": ("unet", {"steps": MAX_STEPS, "grid2km": False}, "SAR sequence"),
    "unet_stacked_all": ("unet", {"steps": MAX_STEPS}, "SAR sequence + AMSR2/ERA5"),
    "tsvit_v1": ("tsvit_v1", {}, "SAR"),
    "tsvit_v2": ("tsvit_v2", {}, "SAR sequence"),
    "tsvit_v3": ("tsvit_v3", {}, "SAR sequence + AMSR2/ERA5"),
    "tsvit_v3_early": ("tsvit_v3", {"fusion": "early"}, "SAR sequence + AMSR2/ERA5"),
}
# U-Net -> the input-matched TSViT whose CPU seconds it gets in the equal-CPU view
EQUAL_CPU = {"unet_sar": "tsvit_v1", "unet_stacked": "tsvit_v2", "unet_stacked_all": "tsvit_v3"}
# (question, a, b): a - b per fold x seed
DIFFERENCES = [
    ("time helps TSViT", "tsvit_v2", "tsvit_v1"),
    ("time helps the U-Net", "unet_stacked", "unet_sar"),
    ("fusion helps TSViT", "tsvit_v3", "tsvit_v2"),
    ("fusion helps the U-Net", "unet_stacked_all", "unet_stacked"),
    ("AMSR2/ERA5 help the single-date U-Net", "unet", "unet_sar"),
    ("fusion tokens vs early stacking", "tsvit_v3", "tsvit_v3_early"),
    ("TSViT v1 vs U-Net, SAR", "tsvit_v1", "unet_sar"),
    ("TSViT v2 vs U-Net, SAR sequence", "tsvit_v2", "unet_stacked"),
    ("TSViT v3 vs U-Net, everything", "tsvit_v3", "unet_stacked_all"),
    ("TSViT v1 vs U-Net, SAR, equal CPU", "tsvit_v1", "unet_sar@cpu"),
    ("TSViT v2 vs U-Net, SAR sequence, equal CPU", "tsvit_v2", "unet_stacked@cpu"),
    ("TSViT v3 vs U-Net, everything, equal CPU", "tsvit_v3", "unet_stacked_all@cpu"),
    ("U-Net SAR over its floor", "unet_sar", "floor_sar"),
    ("TSViT v1 over its floor", "tsvit_v1", "floor_sar"),
    ("TSViT v2 over its floor", "tsvit_v2", "floor_sar_history"),
    ("TSViT v3 over its floor", "tsvit_v3", "floor_all"),
    ("U-Net everything over its floor", "unet_stacked_all", "floor_all"),
]
METRICS = ("combined", "SIC", "SOD", "FLOE", "f1_new", "f1_young", "decisive_accuracy",
           "decisive_balanced")
NEW, YOUNG = 1, 2  # SOD classes


def freezing_folds(specs) -> list[tuple[str, str]]:
    """Held-out region pairs: the freeze-up regions of ``specs`` paired first with last."""
    freezing = [s.name for s in specs if s.freeze_up]
    if len(freezing) < 4 or len(freezing) % 2:
        raise ValueError(f"region folds need an even number of freeze-up regions, at least 4: {freezing}")
    return [(freezing[k], freezing[-1 - k]) for k in range(len(freezing) // 2)]


def settings() -> dict:
    return {"regions": REGIONS, "scenes_per_region": PER_REGION, "scene_size": SCENE_SIZE,
            "data_seed": DATA_SEED, "steps": STEPS, "seeds": list(SEEDS), "patch": PATCH,
            "downsample": DOWNSAMPLE, "max_steps": MAX_STEPS, "window_days": WINDOW_DAYS,
            "batch_size": 16, "threads_per_process": 1,
            "runs": {k: [m, kw, inputs] for k, (m, kw, inputs) in RUNS.items()}}


def train_config(work: Path, job: dict):
    """The shared settings; only the model, its steps, the seed and the split differ."""
    from seaice_lib.engine.training import TrainConfig

    model, kwargs, _ = RUNS[job["run"]]
    steps = job["steps"]
    return TrainConfig(
        store=str(work / "patches.zarr"), out_dir=str(job["dir"]), model=model, model_kwargs=kwargs,
        model_size="small", sic_mode="regression", optimizer="adamw", lr=1e-3, weight_decay=0.05,
        batch_size=16, eval_batch_size=32, num_workers=0, grad_clip=1.0, balance_chart="SOD",
        balance_power=0.5, augment=True, train_scenes=job["train_scenes"],
        val_scenes=job["val_scenes"], seed=job["seed"], device="cpu", progress=False, steps=steps,
        steps_per_epoch=steps, warmup_steps=max(1, steps // 20), checkpoint_every=0,
        evaluate=job["kind"] == "train")


class DecisiveCounts:
    """SOD confusion on the truth files' history-decisive pixels, scene by scene."""

    def __init__(self):
        import numpy as np

        self.cm = np.zeros((6, 6), np.int64)

    def update(self, truth_path: Path, true_sod, pred_sod) -> None:
        import numpy as np
        import xarray as xr

        with xr.open_dataset(truth_path) as truth:
            decisive = truth["history_decisive"].values.astype(bool)
        keep = decisive & (true_sod != 255)
        np.add.at(self.cm, (true_sod[keep].astype(int), pred_sod[keep].astype(int)), 1)

    def scores(self) -> dict:
        import numpy as np

        support = self.cm.sum(1)
        recall = [self.cm[k, k] / support[k] for k in range(6) if support[k]]
        return {"decisive_accuracy": round(100 * np.trace(self.cm) / max(1, self.cm.sum()), 2),
                "decisive_balanced": round(100 * float(np.mean(recall)), 2) if recall else float("nan"),
                "decisive_pixels": int(self.cm.sum()),
                "decisive_support": {"new": int(support[NEW]), "young": int(support[YOUNG])}}


def evaluation_row(ev, counts: DecisiveCounts) -> dict:
    f1 = ev.per_class("SOD")["f1"]
    return {**ev.scores(), "f1_new": round(100 * float(f1[NEW]), 2),
            "f1_young": round(100 * float(f1[YOUNG]), 2), **counts.scores(),
            "sod_support": ev.per_class("SOD")["support"].astype(int).tolist()}


def truth_file(scene_path: Path) -> Path:
    return scene_path.parent / "truth" / scene_path.name.replace("_prep.nc", "_truth.nc")


def run_job(job: dict) -> dict:
    """One calibration, training or floor job, in its own single-thread process; its result is
    written to ``job["dir"]/result.json`` (and reused when the job is asked again)."""
    import torch

    torch.set_num_threads(1)
    work, out = Path(job["work"]), Path(job["dir"])
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    shutil.rmtree(out, ignore_errors=True)
    start = time.process_time()
    result = {"job": {k: v for k, v in job.items() if k not in ("work", "dir")}}
    if job["kind"] == "floors":
        result["floors"] = run_floors(work, job)
    else:
        result.update(run_training(work, job))
    result["job_cpu_s"] = round(time.process_time() - start, 1)
    from seaice_lib.atomic import write_text

    write_text(result_path, json.dumps(result, indent=1))
    return result


def run_training(work: Path, job: dict) -> dict:
    from seaice_lib.data.scene import Scene
    from seaice_lib.engine.evaluation import Evaluation
    from seaice_lib.engine.scenes import predict_scene, scene_files
    from seaice_lib.engine.training import load_model, train

    cfg = train_config(work, job)
    marks = {}
    summary = train(cfg, on_step=lambda step, model: marks.setdefault(step, time.process_time()))
    steps = job["steps"]
    if job["kind"] == "calibrate":  # steps 2.. timed: set-up and the first step excluded
        return {"cpu_s_per_step": (marks[steps] - marks[1]) / (steps - 1)}
    train_cpu = (marks[steps] - marks[1]) * steps / (steps - 1)
    ev = Evaluation.from_json(summary["evaluation_path"])
    model = load_model(summary["model_path"])
    counts = DecisiveCounts()
    scenes_dir = work / "scenes"
    for path in scene_files(job["val_scenes"], scenes_dir):
        charts = predict_scene(model, path, scenes_dir, work / "patches.zarr", batch_size=32,
                               mask_no_data=False).charts
        with Scene(path) as scene:
            counts.update(truth_file(path), scene.charts()["SOD"], charts["SOD"])
    return {"scores": evaluation_row(ev, counts), "train_cpu_s": round(train_cpu, 1),
            "n_params": summary["n_params"]}


def run_floors(work: Path, job: dict) -> dict:
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.data.scene import Scene
    from seaice_lib.engine import floors
    from seaice_lib.engine.scenes import scene_files
    from seaice_lib.grid import block_upsample

    cfg = PatchConfig(patch=PATCH, downsample=DOWNSAMPLE, max_steps=MAX_STEPS, window_days=WINDOW_DAYS)
    all_paths = sorted((work / "scenes").glob("*_prep.nc"))
    features = {}
    for name in ("train_scenes", "val_scenes"):
        paths = scene_files(job[name], work / "scenes")
        features[name] = [floors.scene_features(seq, cfg.downsample, cfg.method)
                          for seq in floors.target_sequences(paths, all_paths, cfg)]
    out = {}
    for name in floors.FEATURE_SETS:
        start = time.process_time()
        floor = floors.PixelFloor(name, seed=job["seed"], max_pixels=50_000, max_iter=100,
                                  threads=1).fit(features["train_scenes"])
        fit_cpu = time.process_time() - start
        ev = floors.evaluate_floor(floor, features["val_scenes"])
        counts = DecisiveCounts()
        for sf in features["val_scenes"]:
            sod = block_upsample(floor.predict(sf)["SOD"], sf.downsample, sf.shape)
            with Scene(sf.path) as scene:
                counts.update(truth_file(sf.path), scene.charts()["SOD"], sod)
        out[f"floor_{name}"] = {"scores": evaluation_row(ev, counts), "train_cpu_s": round(fit_cpu, 1)}
    return out


def sod_support(paths) -> list[int]:
    """Labelled pixels of each SOD class in the scenes at ``paths``."""
    import numpy as np

    from seaice_lib.data.scene import Scene

    counts = np.zeros(6, np.int64)
    for path in paths:
        with Scene(path) as scene:
            sod = scene.charts()["SOD"]
        counts += np.bincount(sod[sod != 255], minlength=6)[:6]
    return counts.tolist()


def spread(values) -> dict:
    import numpy as np

    v = np.asarray(values, float)
    return {"mean": round(float(v.mean()), 2), "std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else 0.0,
            "min": round(float(v.min()), 2), "max": round(float(v.max()), 2), "n": int(len(v))}


def summarise(results: dict[tuple, dict]) -> dict:
    """Per run: the spread of every metric over folds x seeds; per difference: the paired spread."""
    by_run: dict[str, dict[tuple, dict]] = {}
    for (run, fold, seed), res in results.items():
        by_run.setdefault(run, {})[(fold, seed)] = res
    order = list(RUNS) + [f"{u}@cpu" for u in EQUAL_CPU] + sorted(r for r in by_run if r.startswith("floor_"))
    runs = {}
    for run in (r for r in order if r in by_run):
        cells = by_run[run]
        runs[run] = {m: spread([c["scores"][m] for c in cells.values()]) for m in METRICS}
        runs[run]["train_cpu_s"] = spread([c["train_cpu_s"] for c in cells.values()])
        runs[run]["steps"] = sorted({c["steps"] for c in cells.values() if "steps" in c})
    differences = []
    for question, a, b in DIFFERENCES:
        if a not in by_run or b not in by_run:
            continue
        cells = sorted(set(by_run[a]) & set(by_run[b]))
        row = {"question": question, "a": a, "b": b, "cells": [list(c) for c in cells]}
        for m in ("combined", "SOD", "f1_new", "f1_young", "decisive_balanced"):
            diffs = [by_run[a][c]["scores"][m] - by_run[b][c]["scores"][m] for c in cells]
            row[m] = {**spread(diffs), "values": [round(d, 2) for d in diffs],
                      "positive": sum(d > 0 for d in diffs)}
        differences.append(row)
    return {"runs": runs, "differences": differences}


def markdown(doc: dict) -> str:
    from tabulate import tabulate

    rows = []
    for run, s in doc["summary"]["runs"].items():
        rows.append([run, doc["inputs"].get(run.split("@")[0].removeprefix("floor_"), ""),
                     "/".join(str(x) for x in s["steps"]) or "-",
                     f"{s['combined']['mean']:.1f} ± {s['combined']['std']:.1f}",
                     f"{s['combined']['min']:.1f}–{s['combined']['max']:.1f}"]
                    + [f"{s[m]['mean']:.1f}" for m in METRICS[1:]] + [f"{s['train_cpu_s']['mean']:.0f}"])
    table = tabulate(rows, ["run", "inputs", "steps", "combined (mean ± sd)", "range", "SIC", "SOD",
                            "FLOE", "F1 new", "F1 young", "decisive acc.", "decisive bal. acc.",
                            "train CPU s"], tablefmt="github")
    diff_rows = [[d["question"], f"{d['a']} − {d['b']}",
                  f"{d['combined']['mean']:+.1f} ± {d['combined']['std']:.1f}",
                  f"{d['combined']['min']:+.1f}…{d['combined']['max']:+.1f}",
                  f"{d['combined']['positive']}/{d['combined']['n']}",
                  f"{d['SOD']['mean']:+.1f}", f"{d['decisive_balanced']['mean']:+.1f}"]
                 for d in doc["summary"]["differences"]]
    diffs = tabulate(diff_rows, ["question", "difference", "combined (mean ± sd)", "range", "a > b",
                                 "SOD", "decisive bal. acc."], tablefmt="github")
    return f"{table}\n\nPaired differences over folds x seeds (points):\n\n{diffs}\n"


def main(out: Path) -> None:
    from seaice_lib import synthetic
    from seaice_lib.atomic import write_text
    from seaice_lib.data import patches
    from seaice_lib.data.splits import store_regions
    from seaice_lib.figures import scores
    from seaice_lib.engine.scenes import scene_files

    start = time.perf_counter()
    specs = synthetic.REGION_CATALOGUE[:REGIONS]
    folds = freezing_folds(specs)
    work = out / "compare"
    marker = work / "settings.json"
    if marker.exists() and json.loads(marker.read_text()) != settings():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    scenes, store = work / "scenes", work / "patches.zarr"
    if not marker.exists():
        shutil.rmtree(scenes, ignore_errors=True)
        synthetic.generate(scenes, regions=REGIONS, scenes_per_region=PER_REGION,
                           size=(SCENE_SIZE, SCENE_SIZE), seed=DATA_SEED, truth=True, progress=False)
        patches.extract_store(scenes, store, patches.PatchConfig(
            patch=PATCH, downsample=DOWNSAMPLE, max_steps=MAX_STEPS, window_days=WINDOW_DAYS),
            progress=False)
        write_text(marker, json.dumps(settings(), indent=1))
    region_of = store_regions(store)
    split = []
    for k, held_out in enumerate(folds):
        val = sorted(s for s, r in region_of.items() if r in held_out)
        train = sorted(s for s, r in region_of.items() if r not in held_out)
        support = sod_support(scene_files(val, scenes))
        if not support[NEW] or not support[YOUNG]:
            raise RuntimeError(f"fold {k}: the held-out scenes of {held_out} hold no labelled new or young ice")
        split.append({"fold": k, "held_out_regions": list(held_out), "val_sod_pixels": support,
                      "train_scenes": train, "val_scenes": val})

    def job(kind, run, fold, seed, steps, name=None):
        name = name or run
        return {"kind": kind, "run": run, "fold": fold, "seed": seed, "steps": steps, "work": str(work),
                "dir": str(work / "jobs" / f"{name}_fold{fold}_seed{seed}"),
                "train_scenes": split[fold]["train_scenes"], "val_scenes": split[fold]["val_scenes"]}

    ctx = get_context("spawn")
    os.environ["OMP_NUM_THREADS"] = "1"
    with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
        calib = {run: job("calibrate", run, 0, SEEDS[0], 1 + CALIBRATION_STEPS, f"calibrate_{run}")
                 for run in RUNS}
        cost = {run: r["cpu_s_per_step"] for run, r in zip(calib, pool.map(run_job, calib.values()))}
        jobs = []
        for fold in range(len(folds)):
            for seed in SEEDS:
                jobs += [job("train", run, fold, seed, STEPS) for run in RUNS]
                jobs += [job("train", unet, fold, seed, round(STEPS * cost[tsvit] / cost[unet]), f"{unet}@cpu")
                         for unet, tsvit in EQUAL_CPU.items()]
                jobs.append(job("floors", "floors", fold, seed, 0, "floors"))
        jobs.sort(key=lambda j: -j["steps"] * cost.get(j["run"], 0.2))  # longest first
        results = {}
        for j, res in zip(jobs, pool.map(run_job, jobs)):
            if j["kind"] == "floors":
                for name, r in res["floors"].items():
                    results[(name, j["fold"], j["seed"])] = r
            else:
                name = Path(j["dir"]).name.rsplit("_fold", 1)[0]
                results[(name, j["fold"], j["seed"])] = {**res, "steps": j["steps"]}
                print(f"{name} fold {j['fold']} seed {j['seed']}: combined {res['scores']['combined']:.1f}, "
                      f"{res['train_cpu_s']:.0f} CPU s", flush=True)
    summary = summarise(results)
    doc = {"settings": settings(), "folds": split, "cpu_s_per_step": {k: round(v, 3) for k, v in cost.items()},
           "equal_cpu": EQUAL_CPU, "inputs": {k: v[2] for k, v in RUNS.items()} | {
               "sar": "SAR (pixel + 3x3 texture)", "sar_history": "SAR + previous step",
               "amsr2": "AMSR2", "era5": "ERA5", "all": "everything"},
           "results": [{"run": r, "fold": f, "seed": s, **res} for (r, f, s), res in sorted(results.items())],
           "summary": summary, "wall_s": round(time.perf_counter() - start, 1)}
    write_text(out / "compare.json", json.dumps(doc, indent=1))
    write_text(out / "compare.md", markdown(doc))
    scores.comparison_figure(doc, out, "compare_differences")
    print(markdown(doc))
    print(f"{time.perf_counter() - start:.0f} s")
