"""Charting one whole scene on the edge: eager PyTorch vs ONNX Runtime fp32 vs int8.

One synthetic scene of SIZE x SIZE pixels at 80 m (5000: a Sentinel-1 EW scene), charted whole
(scenes read, co-registration of the earlier acquisitions, tiles, model, Hann blending, back to
80 m) with the demo's patch settings (32-pixel tiles at 320 m, overlap 0.25: 2704 tiles at 5000),
by untrained ``small`` models (weights do not change the work), 2 threads. The region holds three
acquisitions within the 7-day window, the target last; the cases:

- ``unet/1step`` and ``tsvit_v3/1step``: the target alone (its sequence is 1 step);
- ``tsvit_v3/3step``: the target with its two earlier acquisitions (3 steps: v3 attends over
  time, and each earlier scene is read and co-registered onto the target's grid).

Each measurement is its own process (peak memory, VmHWM, is its own; the ONNX Runtime processes
never import torch), timed from loading the model (imports excluded). Rounds alternate every case
and runtime, so that a slow spell of the shared machine hits each; medians and the range over the
rounds are reported. ``onnx_fp32_batchN`` is fp32 with a larger batch of tiles per run (a lever
tried for v3; it did not pay, docs/edge.md). The charts of each runtime are compared pixel by pixel with
PyTorch's.

When the demo's trained runs are there (``make demo``: runs/demo/train/*, runs/demo/patches.zarr),
each is also exported with --int8 and scored with the official metric on its own validation scenes
by PyTorch, ONNX Runtime fp32 and int8: the score change int8 brings.

Settings: SEAICE_BENCH_SIZE (5000), SEAICE_BENCH_THREADS (2), SEAICE_BENCH_BATCH (8),
SEAICE_BENCH_LARGE_BATCH (32), SEAICE_BENCH_ROUNDS (3), SEAICE_BENCH_DEMO (1: score the demo runs),
SEAICE_BENCH_SCENES (a folder to keep the generated scenes in and reuse; default: a temporary one).
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
THREADS = int(os.environ.get("SEAICE_BENCH_THREADS", "2"))
BATCH = int(os.environ.get("SEAICE_BENCH_BATCH", "8"))
LARGE_BATCH = int(os.environ.get("SEAICE_BENCH_LARGE_BATCH", "32"))
ROUNDS = int(os.environ.get("SEAICE_BENCH_ROUNDS", "3"))
DEMO_SCORES = os.environ.get("SEAICE_BENCH_DEMO", "1") == "1"
SCENES = os.environ.get("SEAICE_BENCH_SCENES")
SEED = 1  # its region's three acquisitions lie within the window: the target's sequence has 3 steps
CASES = {"unet/1step": ("unet", 1), "tsvit_v3/1step": ("tsvit_v3", 1), "tsvit_v3/3step": ("tsvit_v3", 3)}
RUNTIMES = ("pytorch", "onnx_fp32", "onnx_int8", f"onnx_fp32_batch{LARGE_BATCH}")
DEMO = Path("runs/demo")
TARGETS = {"seconds_at_most": 60, "peak_gib_at_most": 4, "int8_score_change_at_most": 1.0}


def _peak_mib() -> float:
    """This process's own peak resident memory, VmHWM (ru_maxrss would count the parent's at fork)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 2**10


def _chart(runtime: str, model_dir: str, target: str, scenes: str, charts_out: str) -> None:
    """Child process: chart ``target`` (earlier acquisitions from ``scenes``, a folder or the
    target itself) with one runtime, timed from the model's loading (imports excluded); save the
    charts, print JSON."""
    from seaice_lib.edge.runtime import EdgeModel, patch_config, read_export

    sequence_from = [target] if Path(scenes).is_file() else scenes
    batch = int(runtime.rpartition("_batch")[2]) if "_batch" in runtime else BATCH
    if runtime == "pytorch":
        import torch

        from seaice_lib.engine.run import load_model
        from seaice_lib.engine.whole_scenes import predict_scene

        torch.set_num_threads(THREADS)
        t0 = time.perf_counter()
        model = load_model(Path(model_dir) / "model.pt")
        charts = predict_scene(model, target, sequence_from, patch_config(read_export(model_dir)), batch_size=batch)
    else:
        t0 = time.perf_counter()
        edge = EdgeModel(model_dir, runtime.split("_")[1], threads=THREADS)
        charts = edge.predict_scene(target, sequence_from, batch_size=batch)
    seconds = time.perf_counter() - t0
    np.savez_compressed(charts_out, **charts.charts)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": _peak_mib(), "tiles": charts.n_tiles,
                      "sequence_steps": len(charts.inputs), "batch": batch,
                      "torch_loaded": "torch" in sys.modules}))


def _measure(runtime: str, model_dir: Path, target: Path, scenes: Path, charts_out: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_edge", runtime, str(model_dir),
                          str(target), str(scenes), str(charts_out)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{runtime} on {model_dir.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _export_untrained(name: str, cfg, folder: Path, target: Path, scenes: Path) -> None:
    """An untrained ``small`` model of the registry, saved as a run's model.pt and exported with
    int8 (the U-Net's static int8 calibrated on 256 tiles spread over the target scene)."""
    import torch

    from seaice_lib.data.tiles import SceneTiles, scene_sequence
    from seaice_lib.edge.export import STATIC_INT8, export_model, graph_feeds, input_names
    from seaice_lib.models import create_model

    torch.manual_seed(0)
    spec = {"name": name, "size": "small",
            "kwargs": {"img_size": cfg.patch, "downsample": cfg.downsample,
                       "sar_channels": len(cfg.sar_variables), "sic_mode": "classification"}}
    model = create_model(spec["name"], spec["size"], **spec["kwargs"]).eval()
    folder.mkdir(parents=True)
    torch.save({"spec": spec, "model": model.state_dict()}, folder / "model.pt")
    calibration = None
    if name in STATIC_INT8:
        tiles = SceneTiles(scene_sequence(target, scenes, cfg), cfg, 0.25)
        chunks = tiles.chunks(16)
        calibration = [graph_feeds(tiles.arrays(chunks[i]), input_names(model))
                       for i in np.linspace(0, len(chunks) - 1, 16).astype(int)]
    export_model(model, spec, cfg, folder, int8=True, provenance={"source": "untrained (benchmark)"},
                 calibration=calibration)


def _agreement(a: Path, b: Path) -> dict[str, float]:
    """Share (%) of 80 m pixels with the same class, per chart."""
    with np.load(a) as x, np.load(b) as y:
        return {c: round(100 * float((x[c] == y[c]).mean()), 3) for c in x.files}


def _demo_int8_scores(work: Path) -> dict:
    """Official scores of each trained demo run on its validation scenes: PyTorch, ONNX fp32, int8."""
    import torch

    from seaice_lib.data.scene import Scene
    from seaice_lib.edge.export import export_run
    from seaice_lib.edge.runtime import EdgeModel
    from seaice_lib.engine.metrics import AutoIceAccumulator
    from seaice_lib.engine.run import load_model
    from seaice_lib.engine.whole_scenes import evaluate_scenes, scene_files

    torch.set_num_threads(THREADS)
    store, scenes_dir = DEMO / "patches.zarr", DEMO / "scenes"
    results = {}
    for run in sorted((DEMO / "train").glob("*/model.pt")):
        run = run.parent
        val = json.loads((run / "evaluation.json").read_text())["info"]["val_scenes"]
        paths = scene_files(val, scenes_dir)
        export_run(run, work / "demo" / run.name, int8=True, store=store)
        scores = {"pytorch": evaluate_scenes(load_model(run), paths, scenes_dir, store).scores()}
        for precision in ("fp32", "int8"):
            edge = EdgeModel(work / "demo" / run.name, precision, threads=THREADS)
            acc = AutoIceAccumulator()
            for path in paths:
                with Scene(path) as scene:
                    acc.update(scene.charts(), edge.predict_scene(path, scenes_dir, mask_no_data=False).charts)
            scores[f"onnx_{precision}"] = acc.scores()
        scores["int8_change"] = {k: round(scores["onnx_int8"][k] - scores["pytorch"][k], 3)
                                 for k in scores["pytorch"]}
        results[run.name] = scores
        print(f"{run.name:>10}: combined {scores['pytorch']['combined']:.2f} (PyTorch), "
              f"{scores['onnx_fp32']['combined']:.2f} (fp32), {scores['onnx_int8']['combined']:.2f} (int8)")
    return results


def _summary(runs: list[dict]) -> dict:
    """Median and range over the rounds of one case and runtime."""
    seconds, peaks = [r["seconds"] for r in runs], [r["peak_rss_mib"] for r in runs]
    return {"seconds": round(float(np.median(seconds)), 2),
            "seconds_range": [round(min(seconds), 2), round(max(seconds), 2)],
            "peak_rss_mib": round(float(np.median(peaks))), "peak_rss_mib_range": [round(min(peaks)), round(max(peaks))],
            "tiles": runs[0]["tiles"], "sequence_steps": runs[0]["sequence_steps"], "batch": runs[0]["batch"],
            "torch_loaded": runs[0]["torch_loaded"], "rounds_seconds": [round(x, 2) for x in seconds]}


def main(out_dir: Path) -> dict:
    from seaice_lib import synthetic
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.data.scene import find_scenes
    from seaice_lib.figures.throughput import write_benchmark

    cfg = PatchConfig(patch=32, downsample=4)  # the demo's store settings (window 7 days, up to 4 steps)
    work = Path(tempfile.mkdtemp(prefix="bench_edge_"))
    measured: dict[tuple[str, str], list[dict]] = {(case, rt): [] for case in CASES for rt in RUNTIMES}
    try:
        t0 = time.perf_counter()
        scenes = Path(SCENES) if SCENES else work / "scenes"
        synthetic.generate(scenes, regions=1, scenes_per_region=3, size=(SIZE, SIZE), seed=SEED, progress=False)
        target = find_scenes(scenes)[-1]  # the latest acquisition
        print(f"3 scenes ({SIZE} x {SIZE}) generated in {time.perf_counter() - t0:.0f} s; target {target.name}")
        for name in dict.fromkeys(model for model, _ in CASES.values()):
            _export_untrained(name, cfg, work / name, target, scenes)
        load = os.getloadavg()[0]
        for r in range(ROUNDS):  # alternated, so that a slow spell of the machine hits every runtime
            for case, (name, steps) in CASES.items():
                for runtime in RUNTIMES:
                    charts = work / f"{case.replace('/', '_')}_{runtime}.npz"
                    m = _measure(runtime, work / name, target, scenes if steps > 1 else target, charts)
                    if m["sequence_steps"] != steps:
                        raise RuntimeError(f"{case}: the target's sequence has {m['sequence_steps']} steps, "
                                           f"not {steps} (change SEED)")
                    measured[case, runtime].append(m)
                    print(f"round {r + 1} {case:>15} {runtime:>18}: {m['seconds']:6.1f} s, "
                          f"{m['peak_rss_mib']:6.0f} MiB peak, {m['tiles']} tiles", flush=True)
            load = max(load, os.getloadavg()[0])
        runs = {f"{case}/{rt}": _summary(measured[case, rt]) for case in CASES for rt in RUNTIMES}
        for case in CASES:
            for rt in RUNTIMES[1:]:
                runs[f"{case}/{rt}"]["same_classes_as_pytorch_percent"] = _agreement(
                    work / f"{case.replace('/', '_')}_pytorch.npz", work / f"{case.replace('/', '_')}_{rt}.npz")
        demo = _demo_int8_scores(work) if DEMO_SCORES and (DEMO / "patches.zarr").is_dir() else \
            "not scored (runs/demo missing, or SEAICE_BENCH_DEMO=0)"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # ratios of the medians, and the range of the per-round ratios (each round's runs are neighbours)
    ratios = {}
    for case in CASES:
        for rt in RUNTIMES[1:]:
            per_round = [a["seconds"] / b["seconds"] for a, b in zip(measured[case, rt], measured[case, "pytorch"])]
            ratios[f"{case}/{rt}"] = {
                "time": round(runs[f"{case}/{rt}"]["seconds"] / runs[f"{case}/pytorch"]["seconds"], 3),
                "time_range": [round(min(per_round), 3), round(max(per_round), 3)],
                "peak_memory": round(runs[f"{case}/{rt}"]["peak_rss_mib"] / runs[f"{case}/pytorch"]["peak_rss_mib"], 3)}
    result = {"scene_size": SIZE, "threads": THREADS, "batch": BATCH, "large_batch": LARGE_BATCH,
              "patch": cfg.patch, "downsample": cfg.downsample, "overlap": 0.25, "rounds": ROUNDS,
              "models": "untrained `small`", "cases": {c: {"model": m, "sequence_steps": s} for c, (m, s) in CASES.items()},
              "cpu_count": os.cpu_count(), "highest_load_average_1min": round(load, 2),
              "runs": runs, "ratios_to_pytorch": ratios, "demo_int8_scores": demo, "targets": TARGETS}
    for key, r in ratios.items():
        print(f"{key:>34}: {r['time']:.2f}x PyTorch's time {r['time_range']}, {r['peak_memory']:.2f}x its peak memory")
    write_benchmark(out_dir / "edge.json", result)
    return result


if __name__ == "__main__":
    _chart(*sys.argv[1:6])
