"""The benchmarks write their JSON with what made it and the SHA-256 of its content, under a
temporary name renamed; the loader's and training's as `seaice figures --bench` reads them."""

import json
import types

from benchmarks import bench_loader, bench_synthetic, bench_train
from seaice_lib import synthetic
from seaice_lib.figures import throughput
from seaice_lib.jsondoc import edited


def _written_as_a_benchmark(path) -> dict:
    doc = throughput.read_benchmark(path)  # raises for a file without its records or edited since
    assert doc["made_by"]["package"] == "seaice_lib" and doc["content_sha256"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left beside it
    return doc


def test_the_training_benchmark_writes_its_json_with_its_record(tmp_path, monkeypatch):
    for name, value in (("SIZE", "tiny"), ("PATCH", 32), ("STEPS", 1)):  # here and in the measuring processes
        monkeypatch.setattr(bench_train, name, value)
        monkeypatch.setenv(f"SEAICE_BENCH_TRAIN_{name}", str(value))
    monkeypatch.setattr(bench_train, "MODELS", ("unet",))
    bench_train.main(tmp_path)
    doc = _written_as_a_benchmark(tmp_path / "train.json")
    assert list(doc["models"]) == ["unet"] and doc["settings"]["patch"] == 32


def test_the_loader_benchmark_writes_its_json_with_its_record(tmp_path, monkeypatch):
    """The measurements stand in (each loader's process is the slow part); the scenes, store and the
    JSON are the benchmark's own."""
    for name, value in (("SIZE", 200), ("N_SCENES", 1), ("PATCH", 32), ("BATCH", 2), ("ROUNDS", 1)):
        monkeypatch.setattr(bench_loader, name, value)
    monkeypatch.setattr(bench_loader, "_measure", lambda kind, data, n_batches, workers=0: {
        "samples_per_s": 100.0 if kind == "ours" else 10.0, "payload_gb_per_s": 0.1, "peak_rss_mib": 300.0})
    out = tmp_path / "bench"
    out.mkdir()
    bench_loader.main(out)
    doc = _written_as_a_benchmark(out / "loader.json")
    assert doc["patch"] == 32 and doc["speedup"] == 10.0
    assert json.loads((out / "loader.json").read_text())["ours_samples_per_s"] == 100.0


def test_the_generator_benchmark_writes_its_json_with_its_record(tmp_path, monkeypatch):
    """Its scenes shrunk to 64 x 64 pixels (the timings are then of no use; the record is the point)."""
    def small(folder, **kw):
        return synthetic.generate(folder, **(kw | {"size": (64, 64)}))

    monkeypatch.setattr(bench_synthetic, "synthetic", types.SimpleNamespace(generate=small))
    bench_synthetic.main(tmp_path)
    doc = json.loads((tmp_path / "synthetic.json").read_text())
    assert doc["made_by"]["package"] == "seaice_lib" and not edited(doc) and doc["content_sha256"]
    assert doc["twelve_800x800_target_s"] == 30 and doc["twelve_800x800_s"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic.json"]
    doc["twelve_800x800_s"] = 0.1  # an edit is found
    assert edited(doc)
