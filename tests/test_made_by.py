"""Outputs bound to what made them: a chart file is reused only when the same weights and options
made it, refused naming it otherwise (--overwrite charts it again); the weights name the model; a
run folder records its invocations and its model's hash, an upload package its chart files."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import yaml

from seaice_lib import schema
from seaice_lib.charts import cf
from seaice_lib.cli import main
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.evaluation import Evaluation
from seaice_lib.engine.training import train
from seaice_lib.provenance import file_sha256


def _run(store, out, seed):
    train(TrainConfig(store=str(store), out_dir=str(out), model="unet", model_size="tiny", steps=1, seed=seed,
                      steps_per_epoch=1, warmup_steps=1, batch_size=4, device="cpu", evaluate=False,
                      progress=False, checkpoint_every=0))
    return out


@pytest.fixture(scope="module")
def runs(patch_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("made_by")
    return _run(patch_store, root / "a", 0), _run(patch_store, root / "b", 1)


def _status(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def test_a_chart_is_reused_only_when_the_same_weights_and_options_made_it(runs, rtt_paths, tmp_path, capsys):
    run_a, run_b = runs
    out = tmp_path / "charts"
    scene = rtt_paths[0]
    chart = out / f"{scene.name[:19]}_charts.nc"
    assert _status(["predict", run_a, scene, "--out", out, "--quiet"]) == 0
    with netCDF4.Dataset(chart) as nc:
        made = json.loads(nc.made_by)
        assert made["weights_sha256"] == file_sha256(run_a / "model.pt") == nc.model_weights_sha256
        assert made["tile_overlap"] == 0.25 and made["probabilities"] is False and made["runtime"] == "pytorch"
        assert nc.software.startswith("seaice_lib ")
    stamp = chart.stat().st_mtime_ns
    capsys.readouterr()
    assert _status(["predict", run_a, scene, "--out", out, "--quiet"]) == 0 and chart.stat().st_mtime_ns == stamp
    assert f"charted 0 scenes into {out}, 1 already there (kept)" in capsys.readouterr().out
    for argv, differ in (([run_b, scene], "weights_sha256"), ([run_a, scene, "--probabilities"], "probabilities"),
                         ([run_a, scene, "--overlap", "0.5"], "tile_overlap")):
        capsys.readouterr()
        assert _status(["predict", *argv, "--out", out, "--quiet"]) != 0
        err = capsys.readouterr().err
        assert str(chart) in err and differ in err and "--overwrite" in err and chart.stat().st_mtime_ns == stamp
    assert _status(["predict", run_b, scene, "--out", out, "--quiet", "--overwrite"]) == 0
    with netCDF4.Dataset(chart) as nc:
        assert json.loads(nc.made_by)["weights_sha256"] == file_sha256(run_b / "model.pt")


def test_a_chart_of_other_producer_metadata_is_not_kept(runs, rtt_paths, tmp_path, capsys):
    """--institution, --creator, ... are written into the chart file: a chart of other producer
    metadata is refused naming it (--overwrite writes the new), one of the same kept."""
    out = tmp_path / "charts"
    scene = rtt_paths[0]
    chart = out / f"{scene.name[:19]}_charts.nc"
    base = ["predict", runs[0], scene, "--out", out, "--quiet"]
    assert _status([*base, "--institution", "AAA"]) == 0
    stamp = chart.stat().st_mtime_ns
    assert _status([*base, "--institution", "AAA"]) == 0 and chart.stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert _status([*base, "--institution", "BBB", "--creator", "Z"]) == 1
    assert f"{chart}: a chart made by another model or with other options (differs in producer)" in \
        capsys.readouterr().err
    with netCDF4.Dataset(chart) as nc:
        assert nc.institution == "AAA"
    assert _status([*base, "--institution", "BBB", "--creator", "Z", "--overwrite"]) == 0
    with netCDF4.Dataset(chart) as nc:
        assert (nc.institution, nc.creator_name) == ("BBB", "Z")


def test_the_weights_name_the_model_and_a_disagreeing_config_is_reported(runs, rtt_paths, tmp_path, caplog):
    run_a, _ = runs
    config = yaml.safe_load((run_a / "config.yaml").read_text())
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "model.pt").write_bytes((run_a / "model.pt").read_bytes())
    (copy / "config.yaml").write_text(yaml.safe_dump({**config, "model": "tsvit_v3", "model_size": "small"}))
    with caplog.at_level(logging.WARNING):
        assert _status(["predict", copy, rtt_paths[0], "--out", tmp_path / "charts", "--quiet",
                        "--store", config["store"]]) == 0
    assert "tsvit_v3 (small)" in caplog.text and "unet (tiny)" in caplog.text
    with netCDF4.Dataset(tmp_path / "charts" / f"{rtt_paths[0].name[:19]}_charts.nc") as nc:
        assert nc.model == "unet (tiny), run run"


def test_a_run_folder_records_each_invocation_and_its_model_s_hash(patch_store, tmp_path):
    cfg = dict(store=str(patch_store), out_dir=str(tmp_path / "run"), model="unet", model_size="tiny", steps=2,
               steps_per_epoch=1, warmup_steps=1, batch_size=4, device="cpu", evaluate=False, progress=False,
               checkpoint_every=1, schedule="constant")
    train(TrainConfig(**cfg, time_budget_s=1e-9))  # stops after its first step
    train(TrainConfig(**cfg))  # resumes there
    doc = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert [i["from_step"] for i in doc["invocations"]] == [0, 1]
    assert all(i["version"] and i["commit"] and i["world_size"] == 1 for i in doc["invocations"])
    assert doc["model"]["step"] == 2 and doc["model"]["status"] == "completed"
    assert doc["model"]["sha256"] == hashlib.sha256((tmp_path / "run" / "model.pt").read_bytes()).hexdigest()


def test_a_model_pt_the_run_did_not_write_is_reported(runs, rtt_paths, tmp_path, caplog):
    run_a, run_b = runs
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "provenance.json"):
        (copy / name).write_bytes((run_a / name).read_bytes())
    (copy / "model.pt").write_bytes((run_b / "model.pt").read_bytes())
    with caplog.at_level(logging.WARNING):
        assert _status(["predict", copy, rtt_paths[0], "--out", tmp_path / "charts", "--quiet"]) == 0
    assert "is not the model.pt this run wrote" in caplog.text and file_sha256(run_b / "model.pt")[:12] in caplog.text
    for argv in (["evaluate", copy, "--scenes", rtt_paths[0].parent, "--targets", rtt_paths[0].name[:19],
                  "--out", tmp_path / "e.json"],
                 ["export", copy, "--out", tmp_path / "export"]):  # scores and ONNX filed under the run's name
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert _status(argv) == 0
        assert "is not the model.pt this run wrote" in caplog.text, argv[0]
        assert file_sha256(run_b / "model.pt")[:12] in caplog.text


def test_the_upload_package_records_its_chart_files_and_their_maker(runs, rtt_paths, tmp_path):
    run_a, run_b = runs
    out = tmp_path / "charts"
    assert _status(["predict", run_a, *rtt_paths[:2], "--out", out, "--quiet"]) == 0
    charts = sorted(out.glob("*_charts.nc"))
    with netCDF4.Dataset(charts[0]) as nc:
        made = nc.made_by
    with netCDF4.Dataset(out / "upload_package.nc") as nc:
        # the charts' one maker, without the input files (each scene's own: the hashes below cover them)
        assert json.loads(nc.made_by) == {k: v for k, v in json.loads(made).items() if k != "inputs"}
        assert nc.software.startswith("seaice_lib ")
        assert nc.chart_files == ", ".join(f"{p.name} sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}"
                                           for p in charts)
    # chart files of two makers in one package: refused, naming them
    assert _status(["predict", run_b, rtt_paths[2], "--out", tmp_path / "other", "--quiet"]) == 0
    other = next((tmp_path / "other").glob("*_charts.nc"))
    with pytest.raises(ValueError, match=f"different models, options or software versions: .*{other.name}"):
        cf.write_upload_package([*charts, other], tmp_path / "mixed.nc")
    assert not (tmp_path / "mixed.nc").exists()


def _expected_maker(made_by: dict) -> None:
    """A made_by record names this package's version, this host and the checkout's commit
    (read with git here, not by the code under test)."""
    import platform
    import subprocess

    import seaice_lib

    head = subprocess.run(["git", "-C", str(Path(seaice_lib.__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else "not a git checkout"
    assert made_by["version"] == seaice_lib.__version__ and made_by["host"] == platform.node()
    assert made_by["commit"].removesuffix("+dirty") == commit and made_by["command"]


def test_prepared_scenes_store_groups_evaluations_exports_and_batch_sets_record_their_maker(
        raw_paths, patch_store, run_dir, tmp_path):
    import seaice_lib
    from seaice_lib.data import prepare
    from seaice_lib.data.store import group_attrs
    from seaice_lib.edge.export import export_run
    from tests.notebook_files import write_grid, write_notebook

    out = prepare.prepare_scene(raw_paths[0], tmp_path / "prepared")
    with netCDF4.Dataset(out) as nc:
        line = nc.getncattr("history").splitlines()[-1]
        _expected_maker(json.loads(nc.getncattr("made_by")))
    assert f"seaice_lib {seaice_lib.__version__} (commit " in line and f"prepared from {raw_paths[0].name}" in line
    group = next(p for p in (patch_store / "scenes").iterdir() if not p.name.startswith("."))
    _expected_maker(group_attrs(group)["made_by"])
    _expected_maker(json.loads((run_dir / "evaluation.json").read_text())["made_by"])
    _expected_maker(json.loads(export_run(run_dir, tmp_path / "export").read_text())["made_by"])
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3], "b": [1]})
    assert main(["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs")]) == 0
    _expected_maker(json.loads((tmp_path / "runs" / "r" / "a-3_b-1" / "status.json").read_text())["made_by"])


def test_a_kept_chart_whose_classes_were_edited_is_charted_again(runs, rtt_paths, tmp_path, capsys):
    out = tmp_path / "charts"
    assert _status(["predict", runs[0], rtt_paths[1], "--out", out, "--quiet"]) == 0
    chart = next(out.glob("*_charts.nc"))
    _, genuine = cf.read_charts(chart)
    with netCDF4.Dataset(chart, "a") as nc:  # edited in place, its made_by left as it was
        nc["SOD"][:] = 1
    assert _status(["predict", runs[0], rtt_paths[1], "--out", out]) == 0
    assert "its contents changed since it was written" in capsys.readouterr().err
    _, charts = cf.read_charts(chart)
    assert all((charts[c] == genuine[c]).all() for c in charts)  # the genuine chart again, packaged
    with netCDF4.Dataset(out / "upload_package.nc") as nc:
        assert f"{chart.name} sha256:{file_sha256(chart)}" in nc.getncattr("chart_files")


def test_a_run_without_model_pt_is_said_to_be_unfinished_when_its_checkpoint_is_used(runs, rtt_paths, tmp_path,
                                                                                      capsys):
    import shutil

    run = tmp_path / "killed"
    shutil.copytree(runs[0], run)
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "model.pt").rename(run / "checkpoints" / "last.pt")  # as a run killed before its end leaves it
    assert _status(["predict", run, rtt_paths[1], "--out", tmp_path / "charts"]) == 0
    assert f"{run}: no model.pt, the run has not finished: its last checkpoint (step" in capsys.readouterr().err


def test_the_same_weights_saved_again_give_the_same_file(runs, tmp_path):
    """model.pt's SHA-256 names its content: the same weights saved again by another process (a
    finished run asked again) leave the hash that charts, exports and provenance.json record."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from seaice_lib.engine import checkpoints; "
            "checkpoints.save(checkpoints.read(Path(sys.argv[1])), Path(sys.argv[2]))")
    for out in (tmp_path / "model.pt", tmp_path / "other" / "model.pt"):
        subprocess.run([sys.executable, "-c", code, str(runs[0] / "model.pt"), str(out)], check=True,
                       cwd=Path(__file__).parents[1])
        assert file_sha256(out) == file_sha256(runs[0] / "model.pt")


@pytest.mark.parametrize("export", ["folder", "link"])
def test_a_run_trained_again_from_step_0_never_passes_off_the_earlier_model(export, runs, patch_store, rtt_paths,
                                                                            tmp_path, capsys):
    """A finished run's folder trained again from the start (its checkpoint deleted, as a refused
    resume advises) and killed on the way reads as unfinished: the earlier model.pt, evaluation
    and export are gone, and its learning curve with the weights of its curve steps (though the new
    training keeps no curve), so nothing charts with the earlier model under the new config. An export
    that is a symbolic link goes as a link: the folder it points to stays whole."""
    import shutil

    run = tmp_path / "again"
    shutil.copytree(runs[0], run)
    (run / "evaluation.json").write_text("{}")  # as an earlier evaluated run leaves them
    Evaluation({c: np.eye(schema.N_CLASSES[c], dtype=np.int64) for c in schema.CHARTS}).to_json(run / "test.json")
    (run / "notes.json").write_text('{"mine": 1}')  # not an evaluation: stays
    edited = json.loads((run / "test.json").read_text()) | {"n_patches": 7}
    (run / "edited.json").write_text(json.dumps(edited))  # an evaluation edited since: an evaluation all the same
    (run / "curve.csv").write_text("step,val_combined\n2,14.0\n")  # an earlier training's learning curve (curve_steps)
    (run / "curve").mkdir()
    shutil.copy(run / "model.pt", run / "curve" / "step_000002.pt")
    (run / "curve" / "step_000002_val.json").write_text("{}")
    (run / "tb").mkdir()  # the earlier training's TensorBoard log
    (run / "tb" / "events.out.tfevents.1.host").write_bytes(b"\0" * 8)
    elsewhere = tmp_path / "elsewhere" if export == "link" else run / "export"
    elsewhere.mkdir()
    (elsewhere / "export.json").write_text("{}")
    if export == "link":
        (run / "export").symlink_to(elsewhere)
    shutil.rmtree(run / "checkpoints")

    def killed(step, model):
        raise KeyboardInterrupt  # the process dies after its first step (kill -9 leaves no more)

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(store=str(patch_store), out_dir=str(run), model="unet", model_size="tiny", steps=50,
                          steps_per_epoch=50, warmup_steps=1, batch_size=4, device="cpu", evaluate=False,
                          progress=False, checkpoint_every=0), on_step=killed)
    assert not (run / "model.pt").exists() and not (run / "evaluation.json").exists()
    assert not (run / "export").exists() and not (run / "export").is_symlink()
    assert not (run / "test.json").exists() and (run / "notes.json").is_file()  # `seaice evaluate --out RUN/test.json`
    assert not (run / "edited.json").exists()
    assert not (run / "curve.csv").exists() and not (run / "curve").exists()  # trained without curve_steps
    assert not (run / "tb").exists()  # TensorBoard would draw the earlier curve under the new run
    assert (export == "link") == (elsewhere / "export.json").is_file()
    assert _status(["predict", run, rtt_paths[1], "--out", tmp_path / "charts"]) == 2
    assert "no model.pt or checkpoints/last.pt" in capsys.readouterr().err


def _listed(folder) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}  # not the folder's lock


def test_charting_a_scene_again_with_another_model_leaves_none_of_the_old_charts_outputs(runs, rtt_paths, tmp_path,
                                                                                           caplog):
    """predict --overwrite with another model: the scene's outputs of the replaced chart file that
    this run does not write (the old model's probability maps, its grid of another CRS, its polygons
    of another centre) are removed, each named; the other scene's stay. With --format netcdf alone,
    all the replaced chart's outputs go."""
    from tests.test_charts_maps import sigrid_of
    run_a, run_b = runs
    out = tmp_path / "charts"
    scene, other = rtt_paths[0], rtt_paths[3]
    sid, oid = scene.name[:19], other.name[:19]
    formats = ["--format", "netcdf,geotiff,netcdf-grid,sigrid3"]
    assert _status(["predict", run_a, scene, other, "--out", out, "--quiet", "--probabilities", *formats,
                    "--centre", "aaa"]) == 0
    others = {p.name for p in out.iterdir() if p.name.startswith((oid, sigrid_of(other, "aaa")))}
    with caplog.at_level(logging.WARNING):
        assert _status(["predict", run_b, scene, "--out", out, "--quiet", "--overwrite", *formats, "--crs", "3995",
                        "--centre", "bbb"]) == 0
    tifs = {f"{sid}_{c}.tif" for c in ("SIC", "SOD", "FLOE")}
    assert _listed(out) == {f"{sid}_charts.nc", *tifs, f"{sid}_charts_epsg3995.nc",
                                               sigrid_of(scene, "bbb"), "upload_package.nc", *others}
    for name in (f"{sid}_SOD_probability.tif", f"{sid}_charts_epsg3413.nc", sigrid_of(scene, "aaa")):
        assert f"{out / name}: removed: made from the chart file {sid}_charts.nc" in caplog.text
    assert _status(["predict", run_a, scene, "--out", out, "--quiet", "--overwrite"]) == 0
    assert _listed(out) == {f"{sid}_charts.nc", "upload_package.nc", *others}


def test_a_scene_that_fails_when_charted_again_leaves_nothing_of_its_earlier_files(runs, synthetic_dir, tmp_path,
                                                                                  caplog):
    """The scene's file changed since its chart was made and now cannot be charted (a value that is
    not finite): its chart file and the maps converted from it go, each named, so nothing in the
    folder passes for the chart of the scene as it is; the other scene's stay, and a rerun on the
    unchanged other scene keeps its chart."""
    import shutil

    scenes = tmp_path / "scenes"
    shutil.copytree(synthetic_dir, scenes, ignore=shutil.ignore_patterns("raw"))
    scene, other = sorted(scenes.glob("*_prep.nc"))[0], sorted(scenes.glob("*_prep.nc"))[3]
    sid, oid = scene.name[:19], other.name[:19]
    out = tmp_path / "charts"
    assert _status(["predict", runs[0], scene, other, "--out", out, "--quiet", "--format", "netcdf,geotiff"]) == 0
    kept = {p.name for p in out.iterdir() if p.name.startswith(oid)}
    stamp = (out / f"{oid}_charts.nc").stat().st_mtime_ns
    assert len(kept) == 4 and {p.name for p in out.iterdir() if p.name.startswith(sid)} == \
        {f"{sid}_charts.nc", f"{sid}_SIC.tif", f"{sid}_SOD.tif", f"{sid}_FLOE.tif"}
    with netCDF4.Dataset(scene, "a") as nc:
        nc["u10m_rotated"][0, 0] = float("inf")
    with caplog.at_level(logging.WARNING):
        assert _status(["predict", runs[0], scene, other, "--out", out, "--quiet", "--format", "netcdf,geotiff"]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(sid)]
    assert {p.name for p in out.iterdir() if p.name.startswith(oid)} == kept  # its maps made again from its chart
    assert (out / f"{oid}_charts.nc").stat().st_mtime_ns == stamp
    assert f"{out / sid}_charts.nc: removed: made from the scene's input files as they were" in caplog.text
    assert f"{out / sid}_SOD.tif: removed" in caplog.text
    # the other scene's file replaced by one that no longer opens (truncated): its chart goes too
    other_file = scenes / other.name
    other_file.write_bytes(other_file.read_bytes()[:20000])
    assert _status(["predict", runs[0], other_file, "--out", out, "--quiet", "--format", "netcdf,geotiff"]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(oid)]


def test_a_chart_of_another_software_version_is_charted_again_and_the_package_names_its_maker(
        runs, rtt_paths, tmp_path, monkeypatch, capsys):
    """Outputs are reused only when the version (and commit) that made them runs now too: a chart
    file of another version is charted again, and an upload package names the version of the
    chart files it packs, never the running one over files it did not make."""
    out, scene = tmp_path / "charts", rtt_paths[0]
    chart = out / f"{scene.name[:19]}_charts.nc"
    running = cf.software_provenance()
    older = {**running, "version": "0.0.1", "commit": "0" * 40}
    monkeypatch.setattr(cf, "software_provenance", lambda: older)
    assert _status(["predict", runs[0], scene, "--out", out, "--quiet"]) == 0
    with netCDF4.Dataset(chart) as nc:
        assert nc.software == f"seaice_lib 0.0.1 (commit {'0' * 40})"
    old_package = tmp_path / "old_package.nc"
    monkeypatch.undo()
    cf.write_upload_package([chart], old_package)  # packed by the running version: names the one that made it
    with netCDF4.Dataset(old_package) as nc:
        assert nc.software == f"seaice_lib 0.0.1 (commit {'0' * 40})"
    capsys.readouterr()
    assert _status(["predict", runs[0], scene, "--out", out, "--quiet"]) == 0
    assert "already there (kept)" not in capsys.readouterr().out
    now = f"seaice_lib {running['version']} (commit {running['commit']})"
    with netCDF4.Dataset(chart) as nc:
        assert nc.software == now
    with netCDF4.Dataset(out / "upload_package.nc") as nc:
        assert nc.software == now
    # chart files of two versions in one package: refused, naming them
    monkeypatch.setattr(cf, "software_provenance", lambda: older)
    assert _status(["predict", runs[0], rtt_paths[1], "--out", tmp_path / "other", "--quiet"]) == 0
    monkeypatch.undo()
    other = next((tmp_path / "other").glob("*_charts.nc"))
    with pytest.raises(ValueError, match=f"different .*{other.name}"):
        cf.write_upload_package([chart, other], tmp_path / "mixed.nc")


def test_a_weights_file_in_checkpoints_or_curve_belongs_to_the_run_above_it(runs, rtt_paths, tmp_path):
    """``predict RUN/checkpoints/last.pt``: the chart files name the run and its config.yaml's hash,
    not a run called "checkpoints" of no config."""
    from seaice_lib.engine.run import Run

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    for sub, name in (("checkpoints", "last.pt"), ("curve", "step_000001.pt")):
        (run / sub).mkdir(exist_ok=True)
        shutil.copy(run / "model.pt", run / sub / name)
        opened = Run.open(run / sub / name)
        assert (opened.folder, opened.weights, opened.config_file) == (run, run / sub / name, run / "config.yaml")
    out = tmp_path / "charts"
    assert _status(["predict", run / "checkpoints" / "last.pt", rtt_paths[0], "--out", out, "--quiet"]) == 0
    with netCDF4.Dataset(out / f"{rtt_paths[0].name[:19]}_charts.nc") as nc:
        assert nc.model == "unet (tiny), run run"
        assert nc.model_config_sha256 == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()


def test_a_process_records_the_commit_it_started_with_whatever_is_checked_out_later(monkeypatch, tmp_path):
    """A notebook's charts recorded two commits when a commit landed while it charted, and its own
    upload package then refused them as made by different software versions."""
    import subprocess

    from seaice_lib import provenance

    first = provenance.provenance()["commit"]

    def checked_out_since(*args, **kwargs):  # what git would say now: another commit
        return subprocess.CompletedProcess(args, 0, stdout="f" * 40 + "\n", stderr="")

    monkeypatch.setattr(provenance.subprocess, "run", checked_out_since)
    assert provenance.provenance()["commit"] == first
    assert provenance.git_commit(tmp_path).startswith("f" * 40)  # another folder's is read when asked
