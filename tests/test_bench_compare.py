"""The compare benchmark is a thin caller of experiments/synthetic.yaml: it generates what the file
names, and never overwrites scenes generated otherwise."""

import json

import pytest

from benchmarks import bench_compare
from seaice_lib import experiments


def test_the_benchmark_runs_the_shipped_experiment_file_on_what_it_generates():
    exp = experiments.load(bench_compare.EXPERIMENT)
    assert exp.name == "synthetic" and exp.scenes.name == "scenes" and exp.store.name == "patches.zarr"
    assert bench_compare.DATA["regions"] == 8 and bench_compare.STORE["patch"] == 32


def test_scenes_generated_with_other_settings_are_refused_not_replaced(tmp_path, monkeypatch):
    exp = experiments.load(bench_compare.EXPERIMENT)
    exp.scenes, exp.store = tmp_path / "scenes", tmp_path / "patches.zarr"
    exp.scenes.mkdir()
    (exp.scenes / bench_compare.MARKER).write_text(json.dumps({**bench_compare.DATA, "seed": 2}))
    with pytest.raises(SystemExit, match="'seed': 2"):
        bench_compare.prepare(exp)
    assert json.loads((exp.scenes / bench_compare.MARKER).read_text())["seed"] == 2 and not exp.store.exists()
