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


@pytest.mark.slow  # the experiment's scenes and store generated (about 30 s on an idle machine), then its report
def test_the_committed_report_is_what_the_committed_results_give(tmp_path):
    """Rule 5 (RT20-R10): the report docs/results.md quotes is `seaice experiment report` of the
    committed job results, on the data `python -m benchmarks compare` generates: a result committed
    without its report, or a report edited by hand, fails here."""
    import shutil

    import yaml

    from seaice_lib import cli

    committed = bench_compare.EXPERIMENT.parent.parent / "benchmarks" / "results" / "synthetic"
    doc = yaml.safe_load(bench_compare.EXPERIMENT.read_text())
    shutil.copytree(committed, tmp_path / "results", ignore=shutil.ignore_patterns(".*"))
    doc |= {"scenes": str(tmp_path / "scenes"), "store": str(tmp_path / "patches.zarr"),
            "results": str(tmp_path / "results")}
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    bench_compare.prepare(experiments.load(path))
    cli.main(["experiment", "report", str(path)])  # exit 1 while jobs are not finished: the report says which
    assert (tmp_path / "results" / "report.md").read_text() == (committed / "report.md").read_text()
