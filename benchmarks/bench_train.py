"""Training throughput and peak memory of each model at one fixed configuration, on 2 CPU threads.

Every model trains on the same batch (the store's layout: SAR sequences, masks, dates, native 2 km
AMSR2/ERA5 cells, labels) with AdamW and the multi-task loss, so the figures compare the models, not
the loader. Each model runs in its own process: peak memory (VmHWM) is its own, and a baseline
process that only imports torch and builds the batch gives what every run pays before any model.

Settings: SEAICE_BENCH_TRAIN_SIZE (model preset, "small"), SEAICE_BENCH_TRAIN_PATCH (64),
SEAICE_BENCH_TRAIN_BATCH (8), SEAICE_BENCH_TRAIN_STEPS (timed steps, 6) after 2 warm-up steps.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SIZE = os.environ.get("SEAICE_BENCH_TRAIN_SIZE", "small")
PATCH = int(os.environ.get("SEAICE_BENCH_TRAIN_PATCH", "64"))
BATCH = int(os.environ.get("SEAICE_BENCH_TRAIN_BATCH", "8"))
STEPS = int(os.environ.get("SEAICE_BENCH_TRAIN_STEPS", "6"))
WARMUP = 2
STEPS_IN_SEQUENCE = 3
DOWNSAMPLE = 4
MODELS = ("unet", "tsvit_v1", "tsvit_v2", "tsvit_v3")


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_batch(seed: int = 0, batch: int = BATCH, patch: int = PATCH) -> dict:
    """A batch in the collate format: T steps (the second sample one step shorter), 2 km blocks."""
    import torch

    from seaice_lib import schema
    from seaice_lib.data import patches

    g = torch.Generator().manual_seed(seed)
    b, t, p = batch, STEPS_IN_SEQUENCE, patch
    cells = patches.PatchConfig(patch=p, downsample=DOWNSAMPLE).grid_cells
    step_mask = torch.ones(b, t, dtype=torch.bool)
    step_mask[1, -1] = False
    labels = {c: torch.randint(0, n, (b, p, p), generator=g) for c, n in schema.N_CLASSES.items()}
    for chart in labels.values():
        chart[:, : p // 4] = schema.CHART_FILL  # a quarter unlabelled, as in the store
    return {"sar": torch.randn(b, t, 3, p, p, generator=g) * step_mask[:, :, None, None, None],
            "sar_mask": step_mask[:, :, None, None].expand(b, t, p, p).clone(),
            "step_mask": step_mask,
            "days_before": torch.tensor([[4.0, 2.0, 0.0]] * b) * step_mask,
            "day_of_year": torch.tensor([[60, 62, 64]] * b) * step_mask,
            "amsr2": torch.randn(b, 14, cells, cells, generator=g),
            "era5": torch.randn(b, 6, cells, cells, generator=g),
            "grid2km_offset": torch.randint(0, 25, (b, 2), generator=g),
            "labels": labels}


def run_one(name: str) -> dict:
    """Train ``name`` (or only build the batch, for ``baseline``) in this process; figures as a dict."""
    import torch

    from seaice_lib.engine.losses import LossConfig, MultiTaskLoss
    from seaice_lib.models import create_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = make_batch()
    if name == "baseline":
        return {"peak_rss_mib": peak_rss_mib()}
    model = create_model(name, size=SIZE, downsample=DOWNSAMPLE, img_size=PATCH)
    loss_fn = MultiTaskLoss(LossConfig())
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            start = time.perf_counter()
        loss, _ = loss_fn(model(batch), batch["labels"])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    seconds = time.perf_counter() - start
    return {"samples_per_s": round(BATCH * STEPS / seconds, 2), "ms_per_step": round(1000 * seconds / STEPS, 1),
            "n_params": sum(p.numel() for p in model.parameters()), "peak_rss_mib": round(peak_rss_mib(), 1)}


def main(out: Path) -> None:
    from seaice_lib.figures.throughput import write_benchmark

    results = {}
    for name in ("baseline",) + MODELS:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_train", name], capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        if proc.returncode:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results.pop("baseline")["peak_rss_mib"]
    unet = results["unet"]["samples_per_s"]
    print(f"size {SIZE}, patch {PATCH} at {80 * DOWNSAMPLE} m, {STEPS_IN_SEQUENCE} steps, batch {BATCH}, "
          f"2 threads; baseline process {base:.0f} MiB")
    print(f"{'model':10s} {'params':>9s} {'samples/s':>10s} {'vs unet':>8s} {'ms/step':>8s} "
          f"{'peak MiB':>9s} {'above base':>10s}")
    for name, r in results.items():
        r["above_baseline_mib"] = round(r["peak_rss_mib"] - base, 1)
        r["speed_vs_unet"] = round(r["samples_per_s"] / unet, 3)
        print(f"{name:10s} {r['n_params']:9d} {r['samples_per_s']:10.2f} {r['speed_vs_unet']:8.2f} "
              f"{r['ms_per_step']:8.1f} {r['peak_rss_mib']:9.0f} {r['above_baseline_mib']:10.0f}")
    doc = {"settings": {"size": SIZE, "patch": PATCH, "batch": BATCH, "steps": STEPS,
                        "sequence_steps": STEPS_IN_SEQUENCE, "downsample": DOWNSAMPLE, "threads": 2},
           "baseline_peak_rss_mib": base, "models": results}
    write_benchmark(out / "train.json", doc)


if __name__ == "__main__":
    print(json.dumps(run_one(sys.argv[1])))
