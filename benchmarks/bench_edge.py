"""Charting one whole scene on the edge: eager PyTorch vs ONNX Runtime fp32 vs int8.

One synthetic scene of SIZE x SIZE pixels at 80 m (5000: a Sentinel-1 EW scene), charted whole
(scene read, co-registration, tiles, model, Hann blending, back to 80 m) by the U-Net and TSViT v3
``small`` with the demo's patch settings (32-pixel tiles at 320 m, overlap 0.25: 2704 tiles at
5000), untrained (weights do not change the work), 2 threads. Each run is its own process so that
peak memory (VmHWM) is its own; the ONNX Runtime processes never import torch. The charts of the
three runtimes are compared pixel by pixel.

When the demo's trained runs are there (``make demo``: runs/demo/train/*, runs/demo/patches.zarr),
each is also exported with --int8 and scored with the official metric on its own validation scenes
by PyTorch, ONNX Runtime fp32 and int8: the score change int8 brings.

Settings: SEAICE_BENCH_SIZE (5000), SEAICE_BENCH_THREADS (2), SEAICE_BENCH_BATCH (8).
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
MODELS = ("unet", "tsvit_v3")
RUNTIMES = ("pytorch", "onnx_fp32", "onnx_int8")
DEMO = Path("runs/demo")
TARGETS = {"seconds_at_most": 60, "peak_gib_at_most": 4, "int8_score_change_at_most": 1.0}


def _peak_mib() -> float:
    """This process's own peak resident memory, VmHWM (ru_maxrss would count the parent's at fork)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 2**10


def _chart(runtime: str, model_dir: str, scene: str, charts_out: str) -> None:
    """Child process: chart ``scene`` with one runtime (timed from the model's loading, imports
    excluded), save the charts, print JSON."""
    from seaice_lib.edge.runtime import EdgeModel, patch_config, read_export

    target = Path(scene)
    if runtime == "pytorch":
        import torch

        from seaice_lib.engine.scenes import predict_scene
        from seaice_lib.engine.training import load_model

        torch.set_num_threads(THREADS)
        t0 = time.perf_counter()
        model = load_model(Path(model_dir) / "model.pt")
        charts = predict_scene(model, target, [target], patch_config(read_export(model_dir)),
                               batch_size=BATCH)
    else:
        t0 = time.perf_counter()
        edge = EdgeModel(model_dir, runtime.removeprefix("onnx_"), threads=THREADS)
        charts = edge.predict_scene(target, [target], batch_size=BATCH)
    seconds = time.perf_counter() - t0
    np.savez_compressed(charts_out, **charts.charts)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": _peak_mib(), "tiles": charts.n_tiles,
                      "torch_loaded": "torch" in sys.modules}))


def _measure(runtime: str, model_dir: Path, scene: Path, charts_out: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_edge", runtime, str(model_dir),
                          str(scene), str(charts_out)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{runtime} on {model_dir.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _export_untrained(name: str, cfg, folder: Path) -> None:
    """An untrained ``small`` model of the registry, saved as a run's model.pt and exported."""
    import torch

    from seaice_lib.edge.export import export_model
    from seaice_lib.models import create_model

    torch.manual_seed(0)
    spec = {"name": name, "size": "small",
            "kwargs": {"img_size": cfg.patch, "downsample": cfg.downsample,
                       "sar_channels": len(cfg.sar_variables), "sic_mode": "classification"}}
    model = create_model(spec["name"], spec["size"], **spec["kwargs"]).eval()
    folder.mkdir(parents=True)
    torch.save({"spec": spec, "model": model.state_dict()}, folder / "model.pt")
    export_model(model, spec, cfg, folder, int8=True, provenance={"source": "untrained (benchmark)"})


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
    from seaice_lib.engine.scenes import evaluate_scenes, scene_files
    from seaice_lib.engine.training import load_model

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


def main(out_dir: Path) -> dict:
    from seaice_lib import synthetic
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.data.scene import find_scenes

    cfg = PatchConfig(patch=32, downsample=4)  # the demo's store settings
    work = Path(tempfile.mkdtemp(prefix="bench_edge_"))
    runs = {}
    try:
        t0 = time.perf_counter()
        synthetic.generate(work / "scenes", regions=1, scenes_per_region=1, size=(SIZE, SIZE), seed=0,
                           progress=False)
        scene = find_scenes(work / "scenes")[0]
        print(f"scene {scene.name} ({SIZE} x {SIZE}) generated in {time.perf_counter() - t0:.0f} s")
        for name in MODELS:
            _export_untrained(name, cfg, work / name)
            for runtime in RUNTIMES:
                runs[f"{name}/{runtime}"] = r = _measure(runtime, work / name, scene,
                                                         work / f"{name}_{runtime}.npz")
                print(f"{name:>9} {runtime:>10}: {r['seconds']:6.1f} s, {r['peak_rss_mib']:6.0f} MiB peak, "
                      f"{r['tiles']} tiles")
            for runtime in RUNTIMES[1:]:
                runs[f"{name}/{runtime}"]["same_classes_as_pytorch_percent"] = _agreement(
                    work / f"{name}_pytorch.npz", work / f"{name}_{runtime}.npz")
        demo = _demo_int8_scores(work) if (DEMO / "patches.zarr").is_dir() else \
            "runs/demo missing (make demo): no trained runs to score int8 on"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {f"{name}/{runtime}": {"time": round(runs[f"{name}/{runtime}"]["seconds"]
                                                  / runs[f"{name}/pytorch"]["seconds"], 3),
                                    "peak_memory": round(runs[f"{name}/{runtime}"]["peak_rss_mib"]
                                                         / runs[f"{name}/pytorch"]["peak_rss_mib"], 3)}
              for name in MODELS for runtime in RUNTIMES[1:]}
    result = {"scene_size": SIZE, "threads": THREADS, "batch": BATCH, "patch": cfg.patch,
              "downsample": cfg.downsample, "overlap": 0.25, "models": "untrained `small`",
              "runs": runs, "ratios_to_pytorch": ratios, "demo_int8_scores": demo, "targets": TARGETS}
    for key, r in ratios.items():
        print(f"{key:>20}: {r['time']:.2f}x PyTorch's time, {r['peak_memory']:.2f}x its peak memory")
    (out_dir / "edge.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    _chart(*sys.argv[1:5])
