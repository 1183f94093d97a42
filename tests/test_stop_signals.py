"""One-shot commands stopped by a signal (SIGTERM: a Slurm time limit, scancel): `predict`,
`edge-predict` and `evaluate` abandon the scene in hand, say in one line what was done and what was
not, and exit 124 as the `--follow` modes and training do; `predict` never leaves an upload package
beside chart files it was not made from."""

import netCDF4
import pytest

from seaice_lib.charts import cf
from seaice_lib.cli import main
from seaice_lib.engine.training import train
from seaice_lib.provenance import file_sha256
from seaice_lib.stopping import STOPPED_EXIT_CODE
from tests.follow_processes import sigterm_when_stalled, sigterm_while_charting, written
from tests.training_runs import train_config


@pytest.fixture(scope="module")
def two_runs(patch_store, tmp_path_factory):
    """Two tiny U-Nets of other weights (seeds 0 and 1), one step each."""
    root = tmp_path_factory.mktemp("stop")
    for name, seed in (("a", 0), ("b", 1)):
        train(train_config(patch_store, root / name, steps=1, steps_per_epoch=1, warmup_steps=1, seed=seed,
                           evaluate=False))
    return root / "a", root / "b"


def _package_files(path) -> dict[str, str]:
    """Chart file name -> the SHA-256 the upload package at ``path`` records for it."""
    with netCDF4.Dataset(path) as nc:
        return dict(entry.split(" sha256:") for entry in nc.getncattr("chart_files").split(", "))


def test_predict_stopped_after_replacing_a_chart_exits_124_without_the_earlier_package(two_runs, rtt_paths,
                                                                                       tmp_path):
    """Run b's charts and package; predict --overwrite with run a is stopped while writing its
    second chart (the first replaced): one line naming what was charted and not, exit 124, and no
    upload package beside the charts (the earlier one held b's first chart, no longer there). The
    same command again finishes: a package of exactly the chart files there."""
    run_a, run_b = two_runs
    out, scenes = tmp_path / "charts", rtt_paths[:2]
    assert main(["predict", str(run_b), *map(str, scenes), "--out", str(out), "--quiet"]) == 0
    package = out / cf.UPLOAD_PACKAGE
    first, second = (cf.charts_path(out, s.name[:19]) for s in scenes)
    before = {first.name: file_sha256(first), second.name: file_sha256(second)}
    assert _package_files(package) == before
    argv = ["predict", run_a, *scenes, "--out", out, "--quiet", "--overwrite"]
    stopped = sigterm_while_charting(argv, out, tmp_path / "charting", nth=2)
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == (
        f"stopped by SIGTERM: 1 of 2 scenes charted into {out}, not charted: {scenes[1].name}; no upload "
        f"package; the earlier {cf.UPLOAD_PACKAGE} removed (charts of the folder were replaced); run the same command "
        "again to go on (the charts made are kept)")
    assert file_sha256(first) != before[first.name]  # replaced by run a's chart
    assert not package.exists()
    assert not [p for p in written(out) if p.name.startswith(".")]  # no temporary file left
    assert main([str(a) for a in argv]) == 0
    assert _package_files(package) == {p.name: file_sha256(p) for p in (first, second)}


def test_predict_stopped_before_any_chart_is_written_removes_the_earlier_package(two_runs, rtt_paths, tmp_path):
    """Stopped while writing its first chart, over a package of charts it would replace: exit 124,
    nothing charted, and no package (the next chart written would not be the package's)."""
    run_a, run_b = two_runs
    out, scene = tmp_path / "charts", rtt_paths[0]
    assert main(["predict", str(run_b), str(scene), "--out", str(out), "--quiet"]) == 0
    stopped = sigterm_while_charting(["predict", run_a, scene, "--out", out, "--overwrite"], out,
                                     tmp_path / "charting")
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.splitlines()[-1].startswith(f"stopped by SIGTERM: 0 of 1 scenes charted into {out}, "
                                                      f"not charted: {scene.name};")
    assert not (out / cf.UPLOAD_PACKAGE).exists()


def test_evaluate_stopped_while_scoring_exits_124_and_writes_no_evaluation(two_runs, synthetic_dir, rtt_paths,
                                                                          tmp_path):
    run_a, _ = two_runs
    result = tmp_path / "evaluation.json"
    argv = ["evaluate", run_a, "--scenes", synthetic_dir, "--targets", rtt_paths[0].name[:19],
            rtt_paths[1].name[:19], "--out", result, "--quiet"]
    stopped = sigterm_when_stalled(argv, tmp_path / "scoring", "seaice_lib.engine.whole_scenes:predict_scene", nth=2)
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == ("stopped by SIGTERM: 1 of 2 scenes scored, no evaluation written; "
                                               "run the same command again")
    assert not result.exists() and not list(tmp_path.glob(".evaluation.json*"))
