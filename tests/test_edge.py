"""The edge runtime: torch-free tiles, `seaice edge-predict` (and `--follow`), and a venv without torch.

The tiles the runtime cuts are the PyTorch path's (one numpy batch builder checked against
`collate` of the stored-sample code), the runtime's import closure holds no torch (charting scenes
as they land too), the command writes CF chart files that hold the PyTorch path's classes, follow
reports the per-tile latency the model's batches took, and (slow) a fresh venv with
``pip install "seaice_lib[edge]"`` charts a scene without torch.
"""

import os
import shutil
import statistics
import subprocess
import sys
import venv
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio
import torch
from pyproj import Transformer

from seaice_lib import cli, schema
from seaice_lib.charts import cf, follow
from seaice_lib.data.dataset import collate
from seaice_lib.data.patches import config_from_store
from seaice_lib.edge import runtime
from seaice_lib.engine import whole_scenes
from seaice_lib.engine.run import load_model
from seaice_lib.provenance import file_sha256
from seaice_lib.stopping import STOPPED_EXIT_CODE
from tests.charting_inputs import cells_covering
from tests.commands import train_run
from tests.follow_processes import sigterm_while_charting, written
from tests.scene_edits import copy_scenes, edit_variable, unreadable_twin
from tests.test_charts_maps import sigrid_of

ROOT = Path(__file__).resolve().parents[1]
SAME_CLASSES = 0.999  # the parity bound of tests/test_export.py
EDGE_INSTALL_MB = 850  # site-packages of `pip install "seaice_lib[edge]"` (771 MiB measured; docs/edge.md)


@pytest.fixture(scope="module")

def exported_run(patch_store, tmp_path_factory):
    """A tiny TSViT v3 trained 5 steps by `seaice train`, exported (fp32 only)."""
    run = train_run(patch_store, tmp_path_factory.mktemp("edge") / "run", model="tsvit_v3", steps=5,
                    steps_per_epoch=5, batch_size=8, lr=3e-3, evaluate=False)
    assert cli.main(["export", str(run)]) == 0
    return run


def test_tile_batches_are_the_collated_samples_of_the_tiles(patch_store, synthetic_dir):
    cfg = config_from_store(patch_store)
    target = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    tiles = whole_scenes.SceneTiles(whole_scenes.scene_sequence(target, synthetic_dir, cfg), cfg)
    assert len(tiles.sequence) > 1
    origins = tiles.origins[1:4]
    expected = collate([tiles.sample(r, c) for r, c in origins])
    arrays = tiles.arrays(origins)
    got = tiles.batch(origins)
    assert set(arrays) == set(got) == set(expected)
    for key, value in expected.items():
        if key == "labels":
            for chart in schema.CHARTS:
                assert arrays[key][chart].dtype == value[chart].numpy().dtype
                np.testing.assert_array_equal(arrays[key][chart], value[chart].numpy())
                assert torch.equal(got[key][chart], value[chart])
            continue
        assert arrays[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(arrays[key], value.numpy(), err_msg=key)
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def _landing(tmp_path, *scenes):
    """(a landing folder holding copies of ``scenes``, an empty folder for the charts)."""
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    for scene in scenes:
        (watch / scene.name).write_bytes(scene.read_bytes())
    return watch, out


def test_the_runtime_and_the_command_load_no_torch(exported_run, synthetic_dir, tmp_path):
    """Not on import, nor while `seaice edge-predict --follow` charts a scene that lands."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    watch, out = _landing(tmp_path, scene)
    code = ("import sys, seaice_lib.edge, seaice_lib.edge.runtime, seaice_lib.cli, seaice_lib.data.tiles, "
            "seaice_lib.charts.follow; status = seaice_lib.cli.main(sys.argv[1:]); "
            "print(status, sorted(m for m in ('torch', 'seaice_lib.models', 'seaice_lib.engine') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, "edge-predict", exported_run, "--follow", watch,
                          "--history", synthetic_dir, "--out", out, "--poll", "0.1", "--max-scenes", "1",
                          "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == "0 []"
    assert lines[-2] == f"charted 1 scenes into {out}, skipped 0; stopped by --max-scenes 1"
    assert lines[0].startswith(f"charted {scene.name}: ")
    assert cf.read_charts(cf.charts_path(out, scene.name[:19]))[0] == scene.name[:19]


def _charts_of_pytorch(run, target, scenes_dir, store):
    return whole_scenes.predict_scene(load_model(run), target, scenes_dir, config_from_store(store)).charts


def _assert_same_classes(got: dict, expected: dict) -> None:
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(got[chart] == 255, expected[chart] == 255)
        assert (got[chart] == expected[chart]).mean() >= SAME_CLASSES, chart


def test_edge_predict_writes_cf_charts_and_goes_on_past_a_bad_scene(exported_run, patch_store,
                                                                     synthetic_dir, tmp_path, capsys):
    paths = sorted(synthetic_dir.glob("*_prep.nc"))
    # a truncated copy under an id of its own (one the --history folder holds too would be a usage error)
    broken = tmp_path / f"{paths[0].name[:13]}59{paths[0].name[15:19]}_prep.nc"
    assert not (synthetic_dir / broken.name).exists()
    broken.write_bytes(paths[0].read_bytes()[:5000])
    out = tmp_path / "charts"
    status = cli.main(["edge-predict", str(exported_run), str(broken), str(paths[4]), str(paths[5]),
                       "--scenes", str(synthetic_dir), "--out", str(out), "--quiet", "--probabilities",  # --history, older name
                       "--threads", "1"])
    err = capsys.readouterr().err
    assert status == 1 and str(broken) in err and "failed" in err
    charted = sorted(p.name for p in written(out))
    assert charted == [f"{p.name[:19]}_charts.nc" for p in paths[4:]]
    for path in paths[4:]:
        file = cf.charts_path(out, path.name[:19])
        sid, charts = cf.read_charts(file)
        assert sid == path.name[:19]
        _assert_same_classes(charts, _charts_of_pytorch(exported_run, path, synthetic_dir, patch_store))
        assert set(cf.read_probabilities(file)) == set(schema.CHARTS)  # SIC classified
        with netCDF4.Dataset(file) as nc:
            assert nc.model == "tsvit_v3" and nc.model_runtime == "onnxruntime fp32 (model.onnx)"
            assert nc.input_files.split(", ")[-1] == path.name
            assert nc.model_config_sha256 == file_sha256(exported_run / "config.yaml")
    # without the modalities v3 can chart without
    assert cli.main(["edge-predict", str(exported_run / "export"), str(paths[5]), "--out",
                     str(tmp_path / "without"), "--without", "amsr2", "era5", "--quiet"]) == 0
    with netCDF4.Dataset(cf.charts_path(tmp_path / "without", paths[5].name[:19])) as nc:
        assert nc.modalities_absent == "amsr2, era5"


def test_edge_predict_names_infinite_sar_as_predict_does_and_charts_no_class_there(exported_run, synthetic_dir,
                                                                                   tmp_path, capsys):
    """+inf HH in a block inside the swath and -inf where the scene has no data: `edge-predict`
    warns naming the scene, the file and the count that `predict` names, writes the chart and exits 1
    naming the scene as `predict` refuses its upload package, and both chart the same pixels as no
    class (255)."""
    folder = copy_scenes(sorted(synthetic_dir.glob("*_prep.nc")), tmp_path / "scenes")
    target = sorted(folder.glob("*_prep.nc"))[4]
    sid = target.name[:19]

    def infinite(v):
        v[v == schema.SAR_FILL] = -np.inf
        v[10:20, 30:45] = np.inf

    with netCDF4.Dataset(target) as nc:
        nc.set_auto_mask(False)
        outside = int((nc["nersc_sar_primary"][:] == schema.SAR_FILL).sum())
        assert (nc["nersc_sar_primary"][10:20, 30:45] != schema.SAR_FILL).all() and outside > 0
    edit_variable(target, "nersc_sar_primary", infinite)
    count = 150 + outside
    assert cli.main(["predict", str(exported_run), str(target), "--out", str(tmp_path / "pytorch"), "--quiet"]) == 1
    assert f"{sid}: nersc_sar_primary {count} values masked as not finite or out of range" in capsys.readouterr().err
    out = tmp_path / "edge"
    assert cli.main(["edge-predict", str(exported_run), str(target), "--out", str(out), "--quiet", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{sid}: inputs masked as not finite or out of range ({target.name}: nersc_sar_primary {count} values)" in err
    assert "1 scenes charted into" in err  # written, and refused as predict refuses its package
    assert (f"not fit for an upload package: {sid}: nersc_sar_primary {count} values masked as not finite or out "
            "of range: those pixels have no class (255)") in err
    _, charts = cf.read_charts(cf.charts_path(out, sid))
    _, pytorch = cf.read_charts(cf.charts_path(tmp_path / "pytorch", sid))
    for chart in schema.CHARTS:
        assert (charts[chart][10:20, 30:45] == schema.CHART_FILL).all()
        np.testing.assert_array_equal(charts[chart] == schema.CHART_FILL, pytorch[chart] == schema.CHART_FILL)


def test_probabilities_are_withheld_on_the_model_cells_of_non_finite_sar(exported_run, synthetic_dir, tmp_path):
    """NaN HH in a block whose edges cut model cells, and NaN where the scene has no SAR data:
    `predict` and `edge-predict --probabilities` write 255 in every class of each model cell that
    covers such a pixel (the oracle: the non-finite pixels of the scene file, mapped to cells here),
    in the chart file and the probability GeoTIFF, and probabilities summing to 100 elsewhere."""
    folder = copy_scenes(sorted(synthetic_dir.glob("*_prep.nc")), tmp_path / "scenes")
    target = sorted(folder.glob("*_prep.nc"))[4]
    sid = target.name[:19]

    def not_finite(v):
        assert (v[11:20, 31:44] != schema.SAR_FILL).all() and (v == schema.SAR_FILL).any()
        v[v == schema.SAR_FILL] = np.nan
        v[11:20, 31:44] = np.nan

    edit_variable(target, "nersc_sar_primary", not_finite)
    with netCDF4.Dataset(target) as nc:
        bad = ~np.isfinite(nc["nersc_sar_primary"][:].filled(np.nan))
    for command, out in (("predict", tmp_path / "pytorch"), ("edge-predict", tmp_path / "edge")):
        assert cli.main([command, str(exported_run), str(target), "--out", str(out), "--quiet", "--probabilities",
                         "--format", "netcdf,geotiff"]) == 1  # inputs masked: not for an upload package
        chart = cf.charts_path(out, sid)
        with netCDF4.Dataset(chart) as nc:
            d = int(nc.model_grid_downsample)
            probabilities = {c: nc[f"{c}_probability"][:].filled(255) for c in ("SOD", "FLOE")}
            lat, lon = float(nc["lat"][15, 37]), float(nc["lon"][15, 37])  # inside the NaN block's whole cells
        withheld = cells_covering(bad, d, probabilities["SOD"].shape[1:])
        assert withheld.any() and not withheld.all()
        for name, p in probabilities.items():
            assert (p[:, withheld] == 255).all(), (command, name)
            assert (p[:, ~withheld].astype(int).sum(axis=0) == 100).all(), (command, name)
        with rasterio.open(out / f"{sid}_SOD_probability.tif") as tif:
            x, y = Transformer.from_crs("EPSG:4326", tif.crs, always_xy=True).transform(lon, lat)
            row, col = tif.index(x, y)
            assert (tif.read()[:, row, col] == 255).all(), command


def test_edge_predict_records_an_earlier_acquisition_it_cannot_read_names_it_once_and_exits_1(
        exported_run, synthetic_dir, tmp_path, capsys):
    """A truncated copy of the target one second earlier (its history): the chart is written
    without it and records it, the warning names it once, and the command ends 1 naming the scene,
    as `predict` refuses its upload package for it; so does `--follow` (tests/test_follow.py)."""
    landing, history = tmp_path / "landing", tmp_path / "history"
    landing.mkdir()
    history.mkdir()
    target, earlier = unreadable_twin(synthetic_dir, landing, history)
    sid = target.name[:19]
    edge, options = ["edge-predict", str(exported_run)], ["--history", str(history), "--threads", "1"]
    out = tmp_path / "charts"
    assert cli.main([*edge, str(target), *options, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    unread = f"{earlier.name}: not a readable netCDF file"
    assert err.count(f"{sid}: charted without earlier acquisitions that could not be read: {unread}") == 1
    assert f"not fit for an upload package: {sid}: earlier acquisition {unread}" in err
    assert "charted from fewer acquisitions than the data hold" in err and "Traceback" not in err
    with netCDF4.Dataset(cf.charts_path(out, sid), "a") as nc:
        assert nc.getncattr("left_out_history_inputs").startswith(unread)
        nc.delncattr("left_out_history_inputs")  # an edit of what the check reads: charted again, exit 1 again
    assert cli.main([*edge, str(target), *options, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "its contents changed since it was written (content_sha256" in err
    assert f"not fit for an upload package: {sid}: earlier acquisition {unread}" in err
    followed = tmp_path / "followed"
    assert cli.main([*edge, *options, "--follow", str(landing), "--out", str(followed), "--poll", "0.1",
                     "--max-scenes", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count(f"{sid}: charted without earlier acquisitions that could not be read: {unread}") == 1
    assert f"1 charts in {followed} not fit for an upload package: {sid}: earlier acquisition {unread}" in err
    with netCDF4.Dataset(cf.charts_path(followed, sid)) as nc:
        assert nc.getncattr("left_out_history_inputs").startswith(unread)
    earlier.unlink()  # the history without the damaged file, which made_by recorded: charted again, clean, exit 0
    assert cli.main([*edge, str(target), *options, "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "already there" not in captured.out + captured.err and "not fit" not in captured.err
    assert cli.main([*edge, *options, "--follow", str(landing), "--out", str(followed), "--poll", "0.1",
                     "--max-scenes", "1"]) == 0
    for charts in (out, followed):
        with netCDF4.Dataset(cf.charts_path(charts, sid)) as nc:
            assert "left_out_history_inputs" not in nc.ncattrs()


def test_edge_predict_without_amsr2_charts_a_scene_whose_amsr2_it_cannot_use(exported_run, synthetic_dir, tmp_path,
                                                                              capsys):
    """``--without amsr2`` never reads the scene's AMSR2: a scene without usable AMSR2 is charted as
    the same scene with its AMSR2 whole is without it; without the option it fails naming the variable."""
    import shutil

    scenes = tmp_path / "scenes"
    shutil.copytree(synthetic_dir, scenes, ignore=shutil.ignore_patterns("raw"))
    target = sorted(scenes.glob("*_prep.nc"))[5]
    whole = ["edge-predict", str(exported_run), str(synthetic_dir / target.name), "--quiet", "--without", "amsr2"]
    assert cli.main([*whole, "--out", str(tmp_path / "whole")]) == 0
    with netCDF4.Dataset(target, "a") as nc:
        for name in schema.AMSR2_CHANNELS:
            nc[name][:] = np.nan
    edited = ["edge-predict", str(exported_run), str(target), "--quiet"]
    assert cli.main([*edited, "--out", str(tmp_path / "with")]) == 1
    assert f"{schema.AMSR2_CHANNELS[0]}: " in capsys.readouterr().err
    assert cli.main([*edited, "--without", "amsr2", "--out", str(tmp_path / "without")]) == 0
    _, expected = cf.read_charts(cf.charts_path(tmp_path / "whole", target.name[:19]))
    _, got = cf.read_charts(cf.charts_path(tmp_path / "without", target.name[:19]))
    for chart in schema.CHARTS:  # the same inputs reach the same graph
        np.testing.assert_array_equal(got[chart], expected[chart])


def test_edge_follow_reports_the_per_tile_latency_of_each_scene(exported_run, synthetic_dir, tmp_path):
    """The per-tile latency of a fake clock that each batch advances by a known time."""
    model = runtime.EdgeModel(exported_run, threads=1)
    now, sizes = [0.0], []
    onnx_run = model.run

    def slow_run(batch, absent=()):  # batch k takes (k + 1)² ms per tile by the fake clock
        sizes.append(len(batch["sar"]))
        now[0] += 0.001 * len(sizes) ** 2 * sizes[-1]
        return onnx_run(batch, absent)

    model.run = slow_run
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[4]
    watch, out = _landing(tmp_path, scene)
    lines = []
    counts = follow.follow(watch, lambda path: runtime.chart_scene(
        model, path, out, synthetic_dir, batch_size=4, clock=lambda: now[0]),
        done=lambda path: False, poll_s=0.05, max_scenes=1, report=lines.append)
    per_tile = [float((k + 1) ** 2) for k, n in enumerate(sizes) for _ in range(n)]
    expected = {"median": statistics.median(per_tile), "max": max(per_tile),
                "p95": statistics.quantiles(per_tile, n=20, method="inclusive")[18]}
    assert len(sizes) > 3 and len(set(expected.values())) == 3
    [record] = counts["scenes"]
    assert record["scene"] == scene.name and record["tiles"] == sum(sizes)
    assert record["chart"] == str(cf.charts_path(out, scene.name[:19]))
    assert record["tile_latency_ms"] == pytest.approx(expected)
    assert lines[0].startswith(f"charted {scene.name}: {sum(sizes)} tiles in ")
    assert (f"(per tile: {expected['median']:.1f} ms median, {expected['p95']:.1f} ms p95, "
            f"{expected['max']:.1f} ms max)") in lines[0]


def test_sigterm_while_edge_follow_charts_a_scene_leaves_no_file_of_it(exported_run, synthetic_dir,
                                                                      tmp_path):
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[3]
    watch, out = _landing(tmp_path, scene)
    argv = [str(a) for a in ("edge-predict", exported_run, "--follow", watch, "--history",
                             synthetic_dir, "--out", out, "--poll", "0.1", "--threads", "1")]
    stopped = sigterm_while_charting(argv, out, tmp_path / "charting")
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stdout.splitlines()[-1] == f"no scene charted (nothing written into {out}), " \
                                              "skipped 0; stopped by SIGTERM"
    assert list(written(out)) == []  # neither a chart nor a temporary file
    assert cli.main(argv + ["--max-scenes", "1"]) == 0  # the next start charts it
    assert [p.name for p in written(out)] == [cf.charts_path(out, scene.name[:19]).name]


def test_edge_predict_of_named_scenes_stopped_by_sigterm_says_what_it_charted_and_exits_124(exported_run,
                                                                                           synthetic_dir, tmp_path):
    scenes = sorted(synthetic_dir.glob("*_prep.nc"))[3:5]
    out = tmp_path / "charts"
    argv = ["edge-predict", exported_run, *scenes, "--out", out, "--threads", "1", "--quiet"]
    stopped = sigterm_while_charting(argv, out, tmp_path / "charting", nth=2)
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == (
        f"stopped by SIGTERM: 1 of 2 scenes charted into {out}, not charted: {scenes[1].name}; run the same command "
        "again to go on (the charts made are kept)")
    assert [p.name for p in written(out)] == [cf.charts_path(out, scenes[0].name[:19]).name]  # no temporary file


@pytest.mark.parametrize("argv, message", [
    (["{run}", "{scene}", "--out", "{tmp}", "--int8"], "no int8 model (export with --int8)"),
    (["{run}", "--out", "{tmp}"], "name scene files, or a folder to watch with --follow DIR"),
    (["{run}", "{scene}", "--follow", "{tmp}", "--out", "{tmp}"], "name no scene files"),
    (["{run}", "--follow", "{tmp}/nowhere", "--out", "{tmp}"], "nowhere: no such folder"),
    (["{run}", "--follow", "{tmp}", "--out", "{tmp}", "--poll", "0"], "--poll must be a finite number > 0, not 0.0"),
    (["{run}", "{scene}", "--out", "{tmp}", "--idle-exit", "3"], "--idle-exit needs --follow DIR"),
    (["{tmp}", "{scene}", "--out", "{tmp}"], "no export.json here or in"),
    (["{run}", "{tmp}/missing_prep.nc", "--out", "{tmp}"], "no such scene file or folder"),
    (["{run}", "{scene}", "--out", "{tmp}", "--threads", "0"], "--threads must be >= 1, not 0"),
])
def test_edge_predict_usage_errors_are_one_line(exported_run, synthetic_dir, tmp_path, capsys, argv, message):
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    argv = [a.format(run=exported_run, scene=scene, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as stop:
        cli.main(["edge-predict"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("seaice edge-predict: error: ") and message in err[-1]
    assert not list(tmp_path.glob("*_charts.nc"))


@pytest.mark.parametrize("change, message", [
    ("trained on since", "exported from other weights than {run}/model.pt holds now"),
    ("graph replaced", "{run}/export/model.onnx: not the model export.json describes"),
    ("export.json cut short", "{run}/export/export.json: not JSON"),
])
def test_a_stale_or_damaged_export_is_one_error_line_and_exit_1(exported_run, synthetic_dir, tmp_path, capsys, change,
                                                                message):
    """RT13-R4: an export the run no longer holds, or one damaged, is bad data, not a usage error: one
    line (no usage block), exit 1, no chart."""
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    if change == "trained on since":
        with (run / "model.pt").open("ab") as f:
            f.write(b"\0")
    elif change == "graph replaced":
        (run / "export" / "model.onnx").write_bytes(b"not a graph")
    else:
        (run / "export" / "export.json").write_text((run / "export" / "export.json").read_text()[:40])
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    assert cli.main(["edge-predict", str(run), str(scene), "--out", str(tmp_path / "charts"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seaice edge-predict: error: ") and message.format(run=run) in err[0]
    assert not list((tmp_path / "charts").glob("*_charts.nc"))


def test_a_stand_alone_export_of_an_unfinished_run_says_so_when_it_charts(exported_run, synthetic_dir, tmp_path,
                                                                           capsys):
    """An export made from a run's last checkpoint (no model.pt: the run had not finished), copied
    away from the run: edge-predict still charts with it, and warns that its weights are unfinished;
    the run's own (finished) export does not."""
    run = tmp_path / "killed"
    shutil.copytree(exported_run, run, ignore=shutil.ignore_patterns("export"))
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "model.pt").rename(run / "checkpoints" / "last.pt")  # as a run killed before its end leaves it
    assert cli.main(["export", str(run), "--out", str(tmp_path / "standalone")]) == 0
    capsys.readouterr()
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    assert cli.main(["edge-predict", str(tmp_path / "standalone"), str(scene), "--out", str(tmp_path / "charts"),
                     "--quiet"]) == 0
    assert (f"{tmp_path / 'standalone'}: exported from {run / 'checkpoints' / 'last.pt'}, the last checkpoint of a "
            "training that had not finished") in capsys.readouterr().err
    assert cli.main(["edge-predict", str(exported_run), str(scene), "--out", str(tmp_path / "finished"),
                     "--quiet"]) == 0
    assert "had not finished" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_venv_with_the_edge_extra_charts_a_scene_without_torch(exported_run, patch_store, synthetic_dir,
                                                                 tmp_path):
    """``pip install "./[edge]"`` into a fresh venv (from a copy of the clone, so nothing
    is built in the repository), then `seaice edge-predict` there."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "seaice_lib", source / "seaice_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([python, "-m", "pip", "install", "-q", f"{source}[edge]"], capture_output=True,
                             text=True, env=env)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    site = next((env_dir / "lib").glob("python3.*/site-packages"))
    megabytes = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 2**20
    assert megabytes < EDGE_INSTALL_MB, f"the edge install takes {megabytes:.0f} MiB"  # docs/edge.md states it
    target = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    out = tmp_path / "charts"
    run = subprocess.run([env_dir / "bin" / "seaice", "edge-predict", exported_run, target, "--scenes",
                          synthetic_dir, "--out", out, "--threads", "1", "--quiet", "--format", "netcdf,geotiff,sigrid3"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    _, charts = cf.read_charts(cf.charts_path(out, target.name[:19]))
    _assert_same_classes(charts, _charts_of_pytorch(exported_run, target, synthetic_dir, patch_store))
    assert (out / f"{target.name[:19]}_SOD.tif").is_file() and (out / sigrid_of(target)).is_dir()


@pytest.mark.parametrize("model, trained", [("tsvit_v1", {}), ("tsvit_v3", {"modalities": ["sar"]})])
def test_without_a_modality_a_sar_only_export_never_reads_is_named_so(patch_store, synthetic_dir, tmp_path, capsys,
                                                                      model, trained):
    """RT21-R7: `--without amsr2` on a SAR-only model's export said it "charts with every modality it
    was trained on", as if AMSR2 were one; it reads SAR alone, so the option has nothing to leave out.
    RT22-R2: a v3 graph trained on SAR alone, which takes the AMSR2 mask, charted "without AMSR2"."""
    run = train_run(patch_store, tmp_path / "run", model=model, steps=2, steps_per_epoch=2, batch_size=8,
                    evaluate=False, **trained)
    assert cli.main(["export", str(run)]) == 0
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    with pytest.raises(SystemExit) as stop:
        cli.main(["edge-predict", str(run), str(scene), "--out", str(tmp_path / "charts"), "--without", "amsr2"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"seaice edge-predict: error: --without amsr2: this {model} does not read amsr2 (it reads sar): "
        "leave the option out")
