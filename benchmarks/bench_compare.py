"""The four models on the same synthetic data and the same CPU budget, scored on held-out regions.

Scenes of SEAICE_BENCH_REGIONS regions (8) x SEAICE_BENCH_SCENES_PER_REGION (4) are generated at
SEAICE_BENCH_SCENE_SIZE (640) pixels a side and cut into a store (patch 32 at 320 m, sequences of up
to 3 acquisitions within 7 days). A quarter of the regions is held out whole: no validation chart
shares a region, and so ice, with a training chart. Each model gets the same budget of CPU seconds
for its training steps (SEAICE_BENCH_CPU_SECONDS, 480, on 2 threads, data loading included): a few
timed steps measure its cost per step (set-up and evaluation not counted), which sets its number of
steps, so its warm-up + cosine schedule runs to the end inside the budget. Every other setting is
shared (AdamW, lr 1e-3, batch 16, SIC as regression (MSE) as the AutoICE winner did, cross-entropy
for SOD and FLOE, SIC:SOD:FLOE = 1:3:3, class imbalance met by balanced sampling on SOD (power 0.5),
flips and rotations); each is evaluated once, at the end. A fifth run,
``tsvit_v3_early``, is the fusion ablation: v3 with AMSR2/ERA5 stacked early as input channels
instead of fused as native-resolution tokens. The table (`compare.json`, `compare.md`) holds the
official scores on every labelled pixel of the whole held-out scenes at 80 m (each run's
``evaluation.json``).

Run it on an otherwise idle machine: torch's worker threads spin while descheduled, so CPU seconds
grow under contention and the budgets stop being equal (each run's measured training CPU seconds
are printed, saved, and flagged when they miss the budget by more than a quarter).
"""

import json
import os
import time
from pathlib import Path

REGIONS = int(os.environ.get("SEAICE_BENCH_REGIONS", "8"))
PER_REGION = int(os.environ.get("SEAICE_BENCH_SCENES_PER_REGION", "4"))
SCENE_SIZE = int(os.environ.get("SEAICE_BENCH_SCENE_SIZE", "640"))
CPU_SECONDS = float(os.environ.get("SEAICE_BENCH_CPU_SECONDS", "480"))
# run name -> (registry name, model kwargs)
RUNS = {"unet": ("unet", {}), "tsvit_v1": ("tsvit_v1", {}), "tsvit_v2": ("tsvit_v2", {}),
        "tsvit_v3": ("tsvit_v3", {}), "tsvit_v3_early": ("tsvit_v3", {"fusion": "early"})}
SELECTED = os.environ.get("SEAICE_BENCH_MODELS", ",".join(RUNS)).split(",")
SEED = 1
CALIBRATION_STEPS = 6


def base_config(store: Path, out_dir: Path, run: str) -> dict:
    """Settings shared by every model; only the model and its step count differ."""
    model, kwargs = RUNS[run]
    return {"store": str(store), "out_dir": str(out_dir / run), "model": model, "model_kwargs": kwargs,
            "model_size": "small", "sic_mode": "regression", "optimizer": "adamw", "lr": 1e-3,
            "weight_decay": 0.05, "batch_size": 16, "eval_batch_size": 32, "num_workers": 0, "grad_clip": 1.0,
            "balance_chart": "SOD", "balance_power": 0.5, "augment": True, "val_fraction": 0.25,
            "split_by": "region", "split_seed": SEED, "seed": SEED, "device": "cpu",
            "progress": False}


def cpu_seconds_per_step(store: Path, work: Path, run: str) -> float:
    """CPU seconds one training step of ``run`` costs here (data loading included), timed over
    ``CALIBRATION_STEPS`` steps after a first one (set-up and first-step costs excluded)."""
    import shutil

    from seaice_lib.engine.training import TrainConfig, train

    shutil.rmtree(work / "calibrate" / run, ignore_errors=True)
    cfg = TrainConfig(**base_config(store, work / "calibrate", run) | {
        "steps": 1 + CALIBRATION_STEPS, "steps_per_epoch": 1 + CALIBRATION_STEPS,
        "warmup_steps": 1, "checkpoint_every": 0, "evaluate": False})
    marks = {}
    train(cfg, on_step=lambda step, model: marks.setdefault(step, time.process_time()))
    return (marks[1 + CALIBRATION_STEPS] - marks[1]) / CALIBRATION_STEPS


def main(out: Path) -> None:
    import torch

    from seaice_lib import synthetic
    from seaice_lib.data import patches
    from seaice_lib.engine.evaluation import compare_runs
    from seaice_lib.engine.training import TrainConfig, train

    torch.set_num_threads(2)
    work = out / "compare"
    scenes, store = work / "scenes", work / "patches.zarr"
    if not any(scenes.glob("*_prep.nc")):
        synthetic.generate(scenes, regions=REGIONS, scenes_per_region=PER_REGION,
                           size=(SCENE_SIZE, SCENE_SIZE), seed=SEED, progress=False)
    patches.extract_store(scenes, store, patches.PatchConfig(patch=32, downsample=4, max_steps=3,
                                                             window_days=7.0), progress=False)
    runs = work / "runs"
    budget = {}
    for run in SELECTED:
        per_step = cpu_seconds_per_step(store, work, run)
        steps = max(20, int(CPU_SECONDS / per_step))
        cfg = TrainConfig(**base_config(store, runs, run) | {
            "steps": steps, "steps_per_epoch": steps, "warmup_steps": max(1, steps // 20),
            "checkpoint_every": 0})
        marks = {}
        train(cfg, on_step=lambda step, model: marks.setdefault(step, time.process_time()))
        train_cpu = (marks[steps] - marks[1]) * steps / (steps - 1)  # CPU s of its steps
        budget[run] = {"steps": steps, "cpu_s_per_step": round(per_step, 3), "train_cpu_s": round(train_cpu, 1)}
        print(f"{run}: {steps} steps, {train_cpu:.0f} CPU s of training", flush=True)
        if abs(train_cpu / CPU_SECONDS - 1) > 0.25:
            print(f"  warning: {run} used {train_cpu:.0f} CPU s for a budget of {CPU_SECONDS:.0f}: was the "
                  "machine busy?", flush=True)
    table = compare_runs(runs)
    print(table.to_string(index=False))
    doc = {"settings": {"regions": REGIONS, "scenes_per_region": PER_REGION, "scene_size": SCENE_SIZE,
                        "cpu_seconds": CPU_SECONDS, "threads": 2, "seed": SEED},
           "budget": budget, "table": table.to_dict(orient="records")}
    (out / "compare.json").write_text(json.dumps(doc, indent=1))
    (out / "compare.md").write_text(table.to_markdown(index=False, floatfmt=".1f"))
