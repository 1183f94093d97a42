"""Bad inputs a red team found handled wrongly, one test per class of fault: a stale or misnamed
chart reused, values made up, a scene counted twice, a broken model exported, options merged
wrongly, a damaged scene stopping a whole walk or charted as nothing."""

import hashlib
import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from seaice_lib import batch, cli, schema
from seaice_lib.data import patches, prepare, splits
from seaice_lib.data.geo import tiepoint_problems
from seaice_lib.data.scene import Scene, SceneError, find_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.training import train
from seaice_lib.figures.style import table
from tests.commands import train_run
from tests.experiment_files import write_experiment
from tests.scene_edits import copy_scenes, edit_variable
from tests.training_runs import train_config


def _status(argv) -> int:
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def test_a_chart_is_not_reused_once_its_input_scene_changed(run_dir, rtt_paths, tmp_path, capsys):
    """The same model and options on a reprocessed scene chart it again; another model's chart in
    the way is refused (only --overwrite replaces it)."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    target, out = scenes / rtt_paths[2].name, tmp_path / "charts"
    assert _status(["predict", run_dir, target, "--out", out, "--quiet"]) == 0
    edit_variable(target, "nersc_sar_primary", lambda v: v.__setitem__((0, 0), v[0, 0] + 0.5))  # the scene was reprocessed
    assert _status(["predict", run_dir, target, "--out", out, "--quiet"]) == 0
    chart = out / f"{target.name[:19]}_charts.nc"
    with netCDF4.Dataset(chart) as nc:
        inputs = json.loads(nc.getncattr("made_by"))["inputs"]
    assert inputs[target.name] == hashlib.sha256(target.read_bytes()).hexdigest()
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    state = torch.load(other / "model.pt", weights_only=True)
    torch.save({**state, "step": state["step"] + 1}, other / "model.pt")  # other weights file, same spec
    capsys.readouterr()
    assert _status(["predict", other, target, "--out", out, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "differs in weights_sha256" in err and "--overwrite" in err
    assert _status(["predict", other, target, "--out", out, "--quiet", "--overwrite"]) == 0


def test_a_chart_file_of_another_scene_under_a_scene_s_name_is_refused(run_dir, rtt_paths, tmp_path, capsys):
    out = tmp_path / "charts"
    assert _status(["predict", run_dir, *rtt_paths[:2], "--out", out, "--quiet"]) == 0
    first, second = (out / f"{p.name[:19]}_charts.nc" for p in rtt_paths[:2])
    shutil.copy(first, second)  # the package would hold the first scene twice and the second never
    capsys.readouterr()
    assert _status(["predict", run_dir, *rtt_paths[:2], "--out", out, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{second}: holds the chart of scene '{rtt_paths[0].name[:19]}'" in err
    # a failed set leaves no package: the one there holds charts no longer in the folder as they were
    assert "the earlier upload_package.nc removed (the folder's charts are no longer those it holds)" in err
    assert not (out / "upload_package.nc").exists()


def test_a_target_without_sar_data_is_a_bad_item_not_an_empty_chart(run_dir, rtt_paths, tmp_path, capsys):
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    target = scenes / rtt_paths[2].name
    for variable in ("nersc_sar_primary", "nersc_sar_secondary"):
        edit_variable(target, variable, lambda v: v.fill(np.nan))
    assert _status(["predict", run_dir, target, "--out", tmp_path / "charts", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {target}" in err and "SAR data" in err and not list((tmp_path / "charts").glob("*.nc"))


def test_a_damaged_earlier_acquisition_left_out_is_recorded_in_the_sequence(rtt_paths, tmp_path):
    """What is made of the sequence records it (tests/test_values.py: chart files, the upload
    package and evaluations refuse to pass for complete)."""
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.data.tiles import scene_sequence

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    infos = sorted(scenes.glob("*_prep.nc"))
    target = infos[-1]  # the last of its region: the others of the folder are earlier
    earlier = [p for p in infos if p != target]
    broken = earlier[-1]
    broken.write_bytes(broken.read_bytes()[:500])
    seq = scene_sequence(target, scenes, PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30,
                                                     min_overlap=0.1))
    assert [Path(err.path) for err in seq.left_out] == [broken]
    assert seq.left_out[0].problem.startswith("not a readable netCDF file")
    assert broken not in [step.path for step in seq.steps]


def test_tiepoints_and_scenes_too_small_for_a_grid_are_refused_by_name(rtt_paths, tmp_path):
    assert tiepoint_problems(np.zeros((1, 5)), np.zeros((1, 5)))[0][1].startswith("tie points of shape (1, 5)")
    with xr.open_dataset(rtt_paths[0]) as ds:
        one_row = ds.isel(sar_sample_2dgrid_points=slice(0, 1)).load()
    one_row.to_netcdf(tmp_path / rtt_paths[0].name)
    with pytest.raises(SceneError, match=r"sar_grid2d_latitude, sar_grid2d_longitude: \(1, 21\) and \(1, 21\) tie"):
        with Scene(tmp_path / rtt_paths[0].name) as scene:
            scene.tiepoints
    with xr.open_dataset(rtt_paths[0]) as ds:  # 10 of 21 rows: read as spread over the scene, 2.5 km off
        ten_rows = ds.isel(sar_sample_2dgrid_points=slice(0, 10)).load()
    (tmp_path / "ten").mkdir()
    ten_rows.to_netcdf(tmp_path / "ten" / rtt_paths[0].name)
    with pytest.raises(SceneError, match=r"\(10, 21\) and \(10, 21\) tie points; the ready-to-train format holds 21 x 21"):
        with Scene(tmp_path / "ten" / rtt_paths[0].name) as scene:
            scene.tiepoints


def test_patches_names_a_scene_its_reader_cannot_grid_and_extracts_the_rest(rtt_paths, tmp_path, capsys):
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    with xr.open_dataset(rtt_paths[0]) as ds:
        one_line = ds.isel(sar_lines=slice(0, 1), **{"2km_grid_lines": slice(0, 1)}).load()
    (scenes / rtt_paths[0].name).unlink()
    one_line.to_netcdf(scenes / rtt_paths[0].name)
    code = _status(["patches", "--scenes", scenes, "--out", tmp_path / "p.zarr", "--patch", "16", "--downsample",
                    "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and f"failed: {scenes / rtt_paths[0].name}" in out and "at least 2 lines" in out
    assert f"{len(rtt_paths) - 1} scenes written" in out


def test_prepare_refuses_a_raw_scene_with_missing_passive_microwave_rather_than_filling_it(raw_paths, tmp_path,
                                                                                         capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    bad = raw / raw_paths[0].name
    shutil.copy(raw_paths[0], bad)
    edit_variable(bad, "btemp_36_5v", lambda v: v.__setitem__((0, 0), np.nan))
    assert prepare.main(["--raw", str(raw), "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().err  # the skipped scene: a warning in the log
    assert str(bad) in printed and "btemp_36_5v" in printed and "not finite" in printed
    assert not list((tmp_path / "out").glob("*_prep.nc"))


def test_a_scene_named_twice_is_a_usage_error(run_dir, rtt_paths, synthetic_dir, tmp_path, capsys):
    sid = rtt_paths[2].name[:19]
    assert _status(["evaluate", run_dir, "--scenes", synthetic_dir, "--targets", sid, sid,
                    "--out", tmp_path / "e.json"]) == 2
    assert f"--targets names {sid} more than once" in capsys.readouterr().err
    assert _status(["predict", run_dir, rtt_paths[2], rtt_paths[2], "--out", tmp_path / "c"]) == 2
    assert "is named twice" in capsys.readouterr().err


def test_export_refuses_broken_weights_and_a_store_of_another_spacing(run_dir, synthetic_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("export"))
    doc = torch.load(broken / "model.pt", weights_only=True)
    head = next(k for k in doc["model"] if k.startswith("heads.FLOE") and k.endswith("weight"))
    doc["model"][head] = torch.full_like(doc["model"][head], float("nan"))
    torch.save(doc, broken / "model.pt")
    assert _status(["export", broken, "--out", tmp_path / "e1"]) != 0
    assert "FLOE: the model gives values that are not finite" in capsys.readouterr().err
    assert not (tmp_path / "e1" / "export.json").exists()
    store = tmp_path / "ds4.zarr"
    assert _status(["patches", "--scenes", synthetic_dir, "--out", store, "--patch", "16", "--downsample", "4",
                    "--quiet"]) == 0
    capsys.readouterr()
    for stage in (["export", run_dir, "--store", store, "--out", tmp_path / "e2"],  # RT15-R17: alike, a usage error
                  ["evaluate", run_dir, "--scenes", synthetic_dir, "--store", store, "--out", tmp_path / "e2.json"]):
        assert _status(stage) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith(f"usage: seaice {stage[0]}") and "Traceback" not in "".join(err)
        assert err[-1].startswith(f"seaice {stage[0]}: error: store {store}")
        assert "cuts tiles with other settings than run" in err[-1] and "downsample 4 (trained on 2)" in err[-1]
    assert not (tmp_path / "e2").exists()


def test_export_predict_and_convert_refuse_a_patch_store_or_a_scenes_folder_as_out(run_dir, patch_store,
                                                                                    synthetic_dir, tmp_path, capsys):
    """RT16-R5: an export or charts were written beside a store's zarr.json or among the scenes."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    for data, what in ((patch_store, "a patch store"), (synthetic_dir, "a folder of scenes")):
        copy = tmp_path / f"data_{data.name}"
        shutil.copytree(data, copy)
        before = sorted(p.name for p in copy.iterdir())
        for argv, kind in ((["export", run_dir, "--out", copy], "an export folder"),
                           (["figures", run_dir.parent, copy], "a folder of figures"),  # RT17-R2
                           (["predict", run_dir, scene, "--out", copy], "a folder of charts"),
                           (["charts", "convert", scene, "--out", copy], "a folder of maps")):
            assert _status(argv) == 2
            err = capsys.readouterr().err
            assert f" {copy}: {what}, not {kind}" in err and "Traceback" not in err
        assert sorted(p.name for p in copy.iterdir()) == before
    before = sorted(p.name for p in run_dir.iterdir())
    assert _status(["figures", run_dir.parent, run_dir]) == 2  # nor figures into a run folder
    assert f"OUT_DIR {run_dir}: a run folder, not a folder of figures" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == before
    for record in ("explanation.json", ".explain_folder", "notebook_outputs.json"):  # RT22-R6: a notebook's out_dir
        notebook_out = tmp_path / f"nb_{record}"
        notebook_out.mkdir()
        (notebook_out / record).write_text("{}")
        assert _status(["figures", run_dir.parent, notebook_out]) == 2
        assert f"OUT_DIR {notebook_out}: a notebook's output folder (it holds {record}), not a folder of figures" in \
            capsys.readouterr().err and [p.name for p in notebook_out.iterdir()] == [record]


def test_set_overrides_merge_into_nested_entries(tmp_path, patch_store):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(tmp_path / "run"),
                                      "model_kwargs": {"steps": 3, "grid2km": False},
                                      "loss": {"kind": "ce", "task_weights": {"SIC": 1.0, "SOD": 3.0, "FLOE": 3.0}}}))
    from seaice_lib.engine.config import parse_overrides

    cfg = TrainConfig.from_yaml(config, **parse_overrides(["model_kwargs.steps=2", "loss.task_weights.SIC=2"]))
    assert cfg.model_kwargs == {"steps": 2, "grid2km": False}
    assert cfg.loss.task_weights == {"SIC": 2.0, "SOD": 3.0, "FLOE": 3.0}
    # a file without the nested entry: the override changes one weight of the defaults (SIC 1, SOD 3, FLOE 3)
    config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(tmp_path / "run")}))
    cfg = TrainConfig.from_yaml(config, **parse_overrides(["loss.task_weights.FLOE=0.5"]))
    assert cfg.loss.task_weights == {"SIC": 1.0, "SOD": 3.0, "FLOE": 0.5} and cfg.loss.kind == "ce"


def test_latex_tables_escape_what_latex_would_read_as_commands(tmp_path):
    import pandas as pd

    table(pd.DataFrame({"run": ["r&d_50%"], "train_seconds": [1.0]}), tmp_path, "t", "Scores (%) of r&d")
    tex = (tmp_path / "t.tex").read_text()
    assert r"\caption{Scores (\%) of r\&d}" in tex and r"r\&d\_50\%" in tex and r"train\_seconds" in tex


def test_names_that_would_leave_their_folder_are_refused(four_regions, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"sets": [{"name": "..", "parameters": {}}]}))
    with pytest.raises(ValueError, match=r"sets\[0\] must be"):
        batch.read_sets(grid)
    from seaice_lib import experiments

    with pytest.raises(ValueError, match="name '../x' must be letters"):
        experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, name="../x"))
    with pytest.raises(ValueError, match=r"folds.require lists the SOD classes every held-out part must hold \(0..5\): "
                                         r"\[99\] are none"):
        splits.region_folds(four_regions[1], held_out=[["SouthEast"]], require=[99])


@pytest.mark.parametrize("settings, message", [
    ({"stride": 0}, "stride must be positive"),
    ({"window_days": float("nan")}, "window_days must be a finite number"),
    ({"patch": 100_000}, "patch must be at most 2048"),
])
def test_patch_settings_that_cannot_work_are_refused(settings, message, synthetic_dir, tmp_path, capsys):
    from seaice_lib.data.patches import PatchConfig

    with pytest.raises(ValueError, match=message):
        PatchConfig(**settings)
    option, value = next(iter(settings.items()))
    assert _status(["patches", "--scenes", synthetic_dir, "--out", tmp_path / "p.zarr",
                    f"--{option.replace('_', '-')}", value]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "p.zarr").exists()


def test_loss_weights_and_folds_that_mean_nothing_are_refused(four_regions, tmp_path):
    from seaice_lib import experiments
    from seaice_lib.engine.losses import LossConfig

    for weights in ({"SIC": -1.0}, {"SIC": 0.0, "SOD": 0.0, "FLOE": 0.0}, {"SOD": float("nan")}):
        with pytest.raises(ValueError, match="task_weights must be finite numbers >= 0"):
            LossConfig(task_weights=weights)
    for held_out, message in (("SouthEast", "held_out must be a list of region lists"),
                              ([["SouthEast"], ["SouthEast"]], "names a region in two folds"),
                              ([["SouthEast"], ["SouthEast", "SGRDINFLD"]], "names a region in two folds")):
        with pytest.raises(ValueError, match=message):
            experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, folds={"held_out": held_out}))
    for change, message in (({"seeds": [True]}, "seeds must be a non-empty list of distinct integers"),
                            ({"seeds": [-5]}, r"seeds must be a non-empty list of distinct integers in \[0, 2\*\*32\)"),
                            ({"runs": {"a/b": {"model": "unet", "steps": 4}}}, "'a/b' must be letters"),
                            ({"runs": {"floors": {"model": "unet", "steps": 4}}}, "'floors' names the floors job")):
        with pytest.raises(ValueError, match=message):
            experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, **change))


def test_prepare_refuses_a_factor_that_does_not_tile_a_2km_cell(raw_paths, tmp_path, capsys):
    assert _status(["prepare", "--raw", raw_paths[0].parent, "--out", tmp_path / "out", "--factor", "3"]) == 2
    assert "--factor must divide the 50 raw pixels of a 2 km cell (1, 2, 5, 10, 25, 50), not 3" in \
        capsys.readouterr().err


def test_an_export_whose_settings_disagree_with_its_graph_is_refused_on_load(run_dir, tmp_path):
    import json

    from seaice_lib.edge.runtime import EdgeModel

    assert _status(["export", run_dir, "--out", tmp_path / "export"]) == 0
    doc = json.loads((tmp_path / "export" / "export.json").read_text())
    doc["patch_settings"]["patch"] *= 2
    (tmp_path / "export" / "export.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="its model or patch_settings are not those model.onnx was exported with"):
        EdgeModel(tmp_path / "export")  # the graph's stamp of its settings
    import onnx  # an export from before the stamp: the graph's own input shape still tells

    graph = onnx.load(str(tmp_path / "export" / "model.onnx"))
    del graph.metadata_props[:]
    onnx.save(graph, str(tmp_path / "export" / "model.onnx"))
    doc["sha256"]["fp32"] = hashlib.sha256((tmp_path / "export" / "model.onnx").read_bytes()).hexdigest()
    (tmp_path / "export" / "export.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"patch_settings give tiles of 32 pixels, but model.onnx takes \[16, 16\]"):
        EdgeModel(tmp_path / "export")


def test_a_batch_set_runs_again_when_its_notebook_changed(tmp_path, capsys):
    from tests.notebook_files import code_notebook, write_grid

    notebook = code_notebook(tmp_path / "n.ipynb", 'out_dir = "."\nk = 0',
                             "from pathlib import Path\nPath(out_dir, 'k.txt').write_text(str(k))")
    grid = write_grid(tmp_path / "grid.yaml", {"k": [1]})
    args = ["batch", notebook, grid, "--name", "nb", "--runs", tmp_path / "runs", "--jobs", "1"]
    assert _status(args) == 0 and (tmp_path / "runs" / "nb" / "k-1" / "k.txt").read_text() == "1"
    assert _status(args) == 0 and "skipped" in capsys.readouterr().out
    code_notebook(notebook, 'out_dir = "."\nk = 0',
                  "from pathlib import Path\nPath(out_dir, 'k.txt').write_text(str(10 * k))")  # the code changed
    assert _status(args) == 0 and (tmp_path / "runs" / "nb" / "k-1" / "k.txt").read_text() == "10"


def test_a_damaged_store_root_is_named(patch_store, tmp_path, capsys):
    store = tmp_path / "p.zarr"
    shutil.copytree(patch_store, store)
    (store / "zarr.json").write_text("")
    assert _status(["patches", "--scenes", tmp_path, "--out", store]) == 2
    assert "p.zarr/zarr.json: not a readable zarr group" in capsys.readouterr().err


def test_existing_scenes_are_kept_only_when_the_options_would_make_them(raw_paths, tmp_path, capsys):
    args = ["synthetic", "--out", tmp_path / "syn", "--regions", "1", "--scenes-per-region", "1", "--quiet"]
    assert _status([*args, "--size", "60", "60"]) == 0
    assert _status([*args, "--size", "60", "70"]) != 0
    assert "already holds synthetic scenes written with other options (size [60, 60], not [60, 70]" in \
        capsys.readouterr().err
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(raw_paths[0], raw / raw_paths[0].name)
    assert _status(["prepare", "--raw", raw, "--out", tmp_path / "rtt"]) == 0
    capsys.readouterr()
    assert _status(["prepare", "--raw", raw, "--out", tmp_path / "rtt", "--factor", "1"]) == 1
    assert "already there with pixel_spacing 80, not the 40 m of --factor 1" in capsys.readouterr().err




def test_a_run_folder_a_charts_folder_and_folders_inside_a_store_or_a_run_s_weights_are_refused_as_out(
        run_dir, patch_store, synthetic_dir, tmp_path, capsys):
    """RT17-R2: predict wrote charts into a run folder, export its model among charts, convert maps
    among a run's weights, synthetic scenes into a store's group folder or a run's checkpoints/."""
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / f"{scene.name[:19]}_charts.nc").write_bytes(b"a chart file")
    store = tmp_path / "store.zarr"
    shutil.copytree(patch_store, store)
    small = ["--regions", "1", "--scenes-per-region", "1", "--size", "60", "60", "--quiet"]
    cases = [(["predict", run_dir, scene, "--out", run], f"--out {run}: a run folder, not a folder of charts"),
             (["export", run_dir, "--out", charts], f"--out {charts}: a folder of charts, not an export folder"),
             (["evaluate", run_dir, "--scenes", synthetic_dir, "--out", store / "ev.json"],  # RT18-R23: a JSON file
              f"--out {store / 'ev.json'}: inside the patch store {store}, not a place for an evaluation: give "
              "another file"),
             (["charts", "convert", scene, "--out", run], f"--out {run}: a run folder, not a folder of maps"),
             (["synthetic", "--out", store / "scenes", *small],
              f"--out {store / 'scenes'}: inside the patch store {store}, not a folder of scenes"),
             (["synthetic", "--out", run / "checkpoints", *small],
              f"--out {run / 'checkpoints'}: inside run {run}'s checkpoints, not a folder of scenes"),
             (["patches", "--scenes", synthetic_dir, "--out", run, "--quiet"],
              f"--out {run}: a run folder, not a patch store")]
    before = {folder: sorted(p.relative_to(folder) for p in folder.rglob("*")) for folder in (run, charts, store)}
    for argv, message in cases:
        assert _status(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert {folder: sorted(p.relative_to(folder) for p in folder.rglob("*")) for folder in before} == before
    assert _status(["charts", "convert", scene, "--out", charts, "--format", "netcdf-grid"]) != 2  # maps beside charts

@pytest.mark.parametrize("theirs, stage", [(["zarr.json"], "a patch store"),
                                           (["checkpoints/last.pt", "config.yaml"], "a run folder"), (["model.pt"], ""),
                                           (["a_charts.nc", "upload_package.nc"], "a folder of charts"),
                                           (["export.json"], "an export folder")],
                         ids=["store", "run", "weights", "charts", "export"])
def test_synthetic_refuses_another_stage_s_folder_and_writes_nothing_there(tmp_path, capsys, theirs, stage):
    """RT16-R5: scenes written into a run folder locked the run out of it (train refuses a folder of
    scenes); a patch store, a run, an export or charts are refused by name, nothing written."""
    out = tmp_path / "other"
    for name in theirs:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    before = sorted(p.relative_to(out) for p in out.rglob("*") if not p.name.startswith("."))
    assert _status(["synthetic", "--out", out, "--regions", "1", "--scenes-per-region", "1", "--size", "60", "60",
                    "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"seaice synthetic: error: --out {out}: {stage}, not a folder of scenes" if stage else
                          f"seaice synthetic: error: {out}: holds {', '.join(sorted(Path(n).parts[0] for n in theirs))}, "
                          "which seaice synthetic does not write")
    assert sorted(p.relative_to(out) for p in out.rglob("*") if not p.name.startswith(".")) == before


def test_truth_files_added_to_a_set_are_counted_in_its_summary(tmp_path, capsys):
    """RT16-R5: --truth on a set already there wrote its truth files but said nothing was written."""
    args = ["synthetic", "--out", tmp_path / "syn", "--regions", "1", "--scenes-per-region", "2", "--size", "60", "60",
            "--quiet"]
    assert _status(args) == 0
    assert f"2 scenes in {tmp_path / 'syn'} (2 written, 0 already there, kept) in " in capsys.readouterr().out
    assert _status([*args, "--truth"]) == 0
    assert "(0 written, 2 already there, kept; 2 truth files written) in " in capsys.readouterr().out
    assert len(list((tmp_path / "syn" / "truth").glob("*_truth.nc"))) == 2


def test_existing_synthetic_scenes_of_other_options_are_refused_not_kept_by_name(tmp_path, capsys):
    """A scene's content depends on the seed, the scenes per region, the size and --raw: a file of
    the same name made with other options is not the scene these options make."""
    args = ["synthetic", "--out", tmp_path / "syn", "--regions", "1", "--size", "60", "60", "--quiet"]
    assert _status([*args, "--scenes-per-region", "2"]) == 0
    first = sorted((tmp_path / "syn").glob("*_prep.nc"))[0]
    before = first.read_bytes()
    assert _status([*args, "--scenes-per-region", "3"]) == 2
    assert (f"{first.parent}: already holds synthetic scenes written with other options (scenes_per_region 2, not 3), "
            f"{first.name} among them") in capsys.readouterr().err
    assert _status([*args, "--scenes-per-region", "2", "--raw"]) == 2
    assert "(raw False, not True)" in capsys.readouterr().err
    assert _status([*args, "--scenes-per-region", "2"]) == 0 and first.read_bytes() == before  # the same: kept

# ---- the second red team ----------------------------------------------------------------------------------

def test_a_refused_resume_leaves_the_run_s_config_as_it_was(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = (run / "config.yaml").read_text()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(before), "out_dir": str(run), "lr": 0.5}))
    (run / "config.yaml").write_text(before.replace(str(run_dir), str(run)))
    kept = (run / "config.yaml").read_text()
    assert _status(["train", "--config", config]) == 1
    assert "cannot resume" in capsys.readouterr().err and (run / "config.yaml").read_text() == kept


def test_training_and_validation_scenes_never_overlap_or_repeat(patch_store):
    with pytest.raises(ValueError, match="train_scenes and val_scenes share"):
        TrainConfig(store=str(patch_store), out_dir="x", train_scenes=["a", "b"], val_scenes=["b"])
    with pytest.raises(ValueError, match=r"train_scenes names \['a'\] more than once"):
        TrainConfig(store=str(patch_store), out_dir="x", train_scenes=["a", "a"], val_scenes=["b"])


def test_a_file_under_another_scene_s_name_is_refused(rtt_paths, tmp_path):
    other = rtt_paths[0].name[:9] + "000001" + rtt_paths[0].name[15:]  # another acquisition time, same file
    shutil.copy(rtt_paths[0], tmp_path / other)
    with pytest.raises(SceneError, match="its scene_id attribute is .* but its name says"):
        Scene(tmp_path / other)
    assert not schema.SCENE_ID.fullmatch("٢٠٢١1124T154224_dmi")  # ASCII digits only


def test_a_copy_whose_id_attribute_was_edited_too_is_refused_by_its_original_id(rtt_paths, tmp_path):
    name = rtt_paths[0].name
    other = tmp_path / (name[:9] + "000001" + name[15:])
    shutil.copy(rtt_paths[0], other)
    with netCDF4.Dataset(other, "a") as ds:
        ds.scene_id = other.name[:19]
    with pytest.raises(SceneError, match=f"its original_id attribute names scene '{name[:19]}' but its name says"):
        Scene(other)


def test_a_raw_scene_copied_under_another_date_is_refused_not_prepared_as_a_second_acquisition(raw_paths, tmp_path,
                                                                                             capsys):
    """Its copy would pose as an acquisition two days later in every history."""
    source = raw_paths[0]
    start = source.name[17:32]
    later = f"{start[:6]}{int(start[6:8]) + 2:02d}{start[8:]}"  # the same hour two days on (days 1..28 here)
    (tmp_path / "raw").mkdir()
    copy = tmp_path / "raw" / source.name.replace(start, later)
    shutil.copy(source, copy)
    assert _status(["prepare", "--raw", tmp_path / "raw", "--out", tmp_path / "prep"]) == 1
    said = capsys.readouterr()
    assert f"{copy}: its acquisition_time attribute is '" in said.err and "but its name says" in said.err
    assert not list((tmp_path / "prep").glob("*_prep.nc"))


def test_a_target_whose_id_the_history_folder_holds_in_another_file_is_a_usage_error(run_dir, rtt_paths, tmp_path,
                                                                                    capsys):
    history = tmp_path / "history"
    copy_scenes(rtt_paths, history)
    twin = history / rtt_paths[1].name
    edit_variable(twin, "nersc_sar_primary", lambda v: v.__setitem__((0, 0), v[0, 0] + 1))  # a reprocessed copy
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", str(run_dir), str(rtt_paths[1]), "--history", str(history), "--out", str(tmp_path / "c")])
    assert stop.value.code == 2
    assert f"two files of scene {rtt_paths[1].name[:19]}: {rtt_paths[1]} and {twin}" in capsys.readouterr().err
    shutil.copy(rtt_paths[1], twin)  # the same bytes: no ambiguity, charted
    assert _status(["predict", run_dir, rtt_paths[1], "--history", history, "--out", tmp_path / "c", "--quiet"]) == 0


def test_an_rtt_file_whose_raw_file_fails_now_is_moved_out_of_the_scenes(raw_paths, tmp_path, capsys):
    raw = tmp_path / "raw"
    copy_scenes(raw_paths[:2], raw)
    assert _status(["prepare", "--raw", raw, "--out", tmp_path / "prep"]) == 0
    bad = raw / raw_paths[0].name
    with netCDF4.Dataset(bad, "a") as nc:
        nc.acquisition_time = "1999-01-01T00:00:00"  # its raw file fails now
    capsys.readouterr()
    assert _status(["prepare", "--raw", raw, "--out", tmp_path / "prep"]) == 1
    stale = prepare.rtt_path(bad, tmp_path / "prep")
    assert not stale.exists() and (tmp_path / "prep" / ".removed" / stale.name).is_file()
    assert f"prepared earlier from {bad.name}, which fails now" in capsys.readouterr().err
    assert [p.name for p in find_scenes(tmp_path / "prep")] == [prepare.rtt_path(raw / raw_paths[1].name, ".").name]


def test_a_stale_export_the_run_trained_past_is_refused(run_dir, tmp_path):
    from seaice_lib.edge.runtime import EdgeModel

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    assert _status(["export", run]) == 0
    EdgeModel(run)  # the weights it was exported from
    doc = torch.load(run / "model.pt", weights_only=True)
    doc["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in doc["model"].items()}
    torch.save(doc, run / "model.pt")
    with pytest.raises(ValueError, match="exported from other weights than .*model.pt holds now"):
        EdgeModel(run)
    with pytest.raises(ValueError, match="exported from other weights than .*model.pt holds now"):
        EdgeModel(run / "export")  # the export folder named inside the same run: the same check
    shutil.copytree(run / "export", tmp_path / "shipped")
    EdgeModel(tmp_path / "shipped")  # shipped without its run: nothing to compare with
    record = json.loads((run / "export" / "export.json").read_text())
    del record["source_sha256"]  # RT13-R4: a record that lost it (a hand merge) is not one to skip the check for
    (run / "export" / "export.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"export.json: records no source_sha256 .*: export the run again"):
        EdgeModel(run)
    (run / "model.pt").unlink()  # a run not finished: exported from its checkpoint, which then moved on
    assert _status(["export", run]) == 0
    EdgeModel(run)
    doc = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    doc["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in doc["model"].items()}
    torch.save(doc, run / "checkpoints" / "last.pt")
    with pytest.raises(ValueError, match="exported from other weights than .*last.pt holds now"):
        EdgeModel(run)
    with pytest.raises(ValueError, match="exported from other weights than .*last.pt holds now"):
        EdgeModel(run / "export")


def test_outputs_that_would_destroy_inputs_are_usage_errors(run_dir, synthetic_dir, tmp_path, capsys):
    weights = tmp_path / "model.pt"
    shutil.copy(run_dir / "model.pt", weights)
    assert _status(["evaluate", run_dir, "--scenes", synthetic_dir, "--out", weights]) == 2
    assert "name a .json file" in capsys.readouterr().err
    notebook = tmp_path / "n.ipynb"
    from tests.notebook_files import code_notebook

    code_notebook(notebook, "k = 0", "k")
    assert _status(["notebook", notebook, notebook]) == 2
    assert "the notebook itself" in capsys.readouterr().err


def test_a_failed_set_removes_the_earlier_upload_package_only_when_it_replaced_a_chart(run_dir, patch_store, rtt_paths,
                                                                                       tmp_path, capsys):
    """The earlier package goes before the first chart a call writes or withdraws, never for a call
    that replaced none (charts kept, or refused as another model's)."""
    out = tmp_path / "charts"
    assert _status(["predict", run_dir, rtt_paths[0], "--out", out, "--quiet"]) == 0
    package = out / "upload_package.nc"
    made = package.read_bytes()
    broken = tmp_path / rtt_paths[1].name
    broken.write_bytes(rtt_paths[1].read_bytes()[:300])
    assert _status(["predict", run_dir, rtt_paths[0], broken, "--out", out, "--quiet"]) == 1  # scene 0's chart kept
    assert "no upload package: it needs every scene; the earlier upload_package.nc kept (no chart replaced)" in \
        capsys.readouterr().err
    assert package.read_bytes() == made
    other = tmp_path / "other"
    train(train_config(patch_store, other, steps=1, steps_per_epoch=1, warmup_steps=1, seed=1, evaluate=False))
    assert _status(["predict", other, rtt_paths[0], "--out", out, "--quiet"]) == 1  # another model's: refused
    assert "--overwrite" in capsys.readouterr().err and package.read_bytes() == made
    assert _status(["predict", run_dir, rtt_paths[0], broken, "--out", out, "--quiet", "--overwrite"]) == 1
    assert "the earlier upload_package.nc removed (charts of the folder were replaced)" in capsys.readouterr().err
    assert not package.exists()


def test_a_scene_whose_raw_name_names_no_region_is_a_bad_item(rtt_paths, tmp_path, capsys):
    """Sequences and region splits group scenes by the region in ``original_id``: a scene without
    one is named and left out, never grouped under an empty region."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    with netCDF4.Dataset(scenes / rtt_paths[0].name, "r+") as nc:
        nc.setncattr("original_id", "renamed_by_hand.nc")
    with pytest.raises(SceneError, match="original_id: 'renamed_by_hand.nc' is not a raw AI4Arctic file name"):
        Scene(scenes / rtt_paths[0].name).region
    code = _status(["patches", "--scenes", scenes, "--out", tmp_path / "p.zarr", "--patch", "16", "--downsample",
                    "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and f"failed: {scenes / rtt_paths[0].name}" in out and "original_id" in out
    assert f"{len(rtt_paths) - 1} scenes written" in out


def test_a_region_split_with_one_region_is_refused_not_left_without_validation():
    ids = ["20180101T000000_dmi", "20180102T000000_dmi"]
    with pytest.raises(ValueError, match="the scenes make 1 region: nothing is left to validate on"):
        splits.split_scenes(ids, 0.2, by="region", regions=["SouthEast", "SouthEast"])
    assert splits.split_scenes(ids, 0.0, by="region", regions=["SouthEast", "SouthEast"]) == (ids, [])
    assert splits.split_scenes(ids, 0.5, by="scene")[1] in (ids[:1], ids[1:])


def test_a_run_does_not_resume_on_a_store_that_changed_under_it(rtt_paths, tmp_path):
    """A new scene extracted into the store re-draws a seeded split: the run would go on with
    other training and validation scenes than its checkpoint's."""
    scenes = copy_scenes(rtt_paths[:-1], tmp_path / "scenes")
    store = tmp_path / "p.zarr"
    cfg = patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30, min_overlap=0.1)
    patches.extract_store(scenes, store, cfg, progress=False)
    run = dict(out_dir=str(tmp_path / "run"), evaluate=False, schedule="constant", split_by="scene", steps=2)
    train(train_config(store, **run))
    shutil.copy(rtt_paths[-1], scenes / rtt_paths[-1].name)
    patches.extract_store(scenes, store, cfg, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume, the store .* changed since the checkpoint \(train_scenes \+"):
        train(train_config(store, **run | {"steps": 4}))


def _trained_two_steps(rtt_paths, tmp_path):
    """A copy of the scenes, a store cut from them and a run trained on it for 2 steps (checkpointed):
    the scenes folder, the store, its patch settings and the run's training settings."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "p.zarr"
    cfg = patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30, min_overlap=0.1)
    patches.extract_store(scenes, store, cfg, progress=False)
    run = dict(out_dir=str(tmp_path / "run"), evaluate=False, schedule="constant", split_by="scene", steps=2)
    train(train_config(store, **run))
    return scenes, store, cfg, run


def test_a_run_does_not_resume_on_scenes_cut_again_to_as_many_patches(rtt_paths, tmp_path):
    """A training scene reprocessed (its SAR negated) is cut again into as many patches: the same
    ids and counts, other data."""
    import netCDF4

    scenes, store, cfg, run = _trained_two_steps(rtt_paths, tmp_path)
    trained = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["data"]["train_scenes"][0]
    path = next(p for p in scenes.iterdir() if p.name.startswith(trained))
    with netCDF4.Dataset(path, "r+") as nc:
        nc["nersc_sar_primary"][:] = -nc["nersc_sar_primary"][:]
    result = patches.extract_store(scenes, store, cfg, progress=False)
    assert trained in result["again"]
    with pytest.raises(ValueError, match=r"changed since the checkpoint \(scene groups cut again from changed input"):
        train(train_config(store, **run | {"steps": 4}))


def test_a_checkpoint_on_groups_cut_before_hashes_resumes_once_they_are_cut_again_into_the_same_patches(
        rtt_paths, tmp_path):
    """A run checkpointed on a store whose groups recorded no content hashes (as earlier versions cut
    them, and trained on them) resumes once `seaice patches` has cut them again into the same
    patches: its checkpoint records the store's identity of then, which the store keeps as its
    former one. A checkpoint of a store identity that is neither is refused."""
    import json

    from seaice_lib.data.store import store_groups_sha256

    scenes, store, cfg, run = _trained_two_steps(rtt_paths, tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    data = ckpt["data"]
    for group in (store / "scenes").glob("*/zarr.json"):  # the groups as earlier versions wrote them
        meta = json.loads(group.read_text())
        meta["attributes"].pop("content_sha256"), meta["attributes"].pop("attrs_sha256")
        group.write_text(json.dumps(meta))
    then = store_groups_sha256(store, data["train_scenes"] + data["val_scenes"])  # what training recorded then
    assert then != data["groups_sha256"]
    torch.save({**ckpt, "data": {**data, "groups_sha256": then}}, last)
    with pytest.raises(ValueError, match="records no content_sha256"):  # refused until cut again
        train(train_config(store, **run | {"steps": 4}))
    assert patches.extract_store(scenes, store, cfg, progress=False)["same_as_unhashed"]
    assert train(train_config(store, **run | {"steps": 4}))["steps"] == 4
    torch.save({**ckpt, "data": {**data, "groups_sha256": "0" * 64}}, last)
    with pytest.raises(ValueError, match=r"changed since the checkpoint \(scene groups cut again"):
        train(train_config(store, **run | {"steps": 6}))


def test_training_refuses_a_store_out_of_date_with_its_scenes(rtt_paths, tmp_path):
    """A training scene relabelled after the store was cut: its patches hold the old labels, its
    whole-scene scores would read the new, so training stops naming the file and the command."""
    import netCDF4

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "p.zarr"
    patches.extract_store(scenes, store, patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30,
                                                             min_overlap=0.1), progress=False)
    path = sorted(scenes.glob("*_prep.nc"))[0]
    with netCDF4.Dataset(path, "r+") as nc:
        nc["SOD"][:] = 0
    run = dict(out_dir=str(tmp_path / "run"), evaluate=False, schedule="constant", split_by="scene", steps=2,
               train_scenes=[p.name[:19] for p in sorted(scenes.glob("*_prep.nc"))], val_scenes=[])
    with pytest.raises(ValueError, match=rf"{store}: out of date with {scenes}: scene groups? {path.name[:19]}[^:]*: "
                                         rf"their input files changed \({path.name} changed since"):
        train(train_config(store, **run))


@pytest.mark.parametrize("change", ["withdrawn", "landed"])
def test_training_refuses_a_store_whose_folder_lost_or_gained_a_scene_of_its_sequences(rtt_paths, tmp_path, change):
    """A training scene withdrawn from the store's folder after the cut, or an earlier acquisition
    that landed there since: ``seaice patches`` would set the group aside or cut the sequences that
    take it again, so training refuses the store in one error naming the group, the store and the
    command, before a step."""
    from tests.scene_edits import twin_of

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "p.zarr"
    patches.extract_store(scenes, store, patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30,
                                                             min_overlap=0.1), progress=False)
    ids = sorted(p.name[:19] for p in rtt_paths)
    path = scenes / rtt_paths[-1].name
    if change == "withdrawn":
        path.rename(tmp_path / path.name)
        why = rf"scene group {path.name[:19]}: its scene is no longer in {scenes}"
    else:
        twin = twin_of(path, scenes)  # one second before the target, of its region
        why = rf"scene group {path.name[:19]}: an earlier acquisition joined their sequence \({twin.name}\)"
    run = dict(out_dir=str(tmp_path / "run"), evaluate=False, schedule="constant", steps=2, train_scenes=ids,
               val_scenes=[])
    with pytest.raises(ValueError, match=rf"{store}: out of date with {scenes}: .*{why}.*; cut it again with "
                                         rf"`seaice patches --scenes {scenes} --out {store}`"):
        train(train_config(store, **run))
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_run_charts_only_tiles_cut_as_it_was_trained(run_dir, synthetic_dir, rtt_paths, tmp_path, capsys):
    """The weights record the tile settings: a store of other settings is refused by name, and a
    run folder whose store is not there charts without one."""
    other = tmp_path / "other.zarr"
    patches.extract_store(synthetic_dir, other, patches.PatchConfig(patch=16, downsample=2, max_steps=2,
                                                                    window_days=30, min_overlap=0.1), progress=False)
    capsys.readouterr()
    assert _status(["predict", run_dir, rtt_paths[2], "--store", other, "--out", tmp_path / "c", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"store {other} cuts tiles with other settings" in err and "max_steps 2 (trained on 3)" in err
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    (moved / "config.yaml").write_text(yaml.safe_dump({**config, "store": str(tmp_path / "gone.zarr")}))
    assert _status(["predict", moved, rtt_paths[2], "--out", tmp_path / "m", "--quiet"]) == 0
    assert _status(["predict", run_dir, rtt_paths[2], "--out", tmp_path / "r", "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "m" / f"{rtt_paths[2].name[:19]}_charts.nc") as a, \
            xr.open_dataset(tmp_path / "r" / f"{rtt_paths[2].name[:19]}_charts.nc") as b:
        for chart in schema.CHARTS:
            np.testing.assert_array_equal(a[chart].values, b[chart].values)


# ---- the third red team ------------------------------------------------------------------------------------

def test_a_model_trained_without_amsr2_and_era5_is_never_given_them(patch_store, rtt_paths, tmp_path, capsys):
    """Its charts, in PyTorch and on ONNX Runtime, do not change when the scene's AMSR2 and ERA5 do."""
    run = train_run(patch_store, tmp_path / "sar_only", model="tsvit_v3", modalities=["sar"])
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    target = scenes / rtt_paths[2].name
    assert _status(["export", run]) == 0
    for command in ("predict", "edge-predict"):
        assert _status([command, run, target, "--out", tmp_path / f"{command}_a", "--quiet"]) == 0
    for name in (*schema.AMSR2_CHANNELS, *schema.ERA5_VARIABLES):
        edit_variable(target, name, lambda v: v.__imul__(-3.0))
    for command in ("predict", "edge-predict"):
        assert _status([command, run, target, "--out", tmp_path / f"{command}_b", "--quiet"]) == 0
        chart = f"{target.name[:19]}_charts.nc"
        with xr.open_dataset(tmp_path / f"{command}_a" / chart) as a, xr.open_dataset(tmp_path / f"{command}_b" / chart) as b:
            for c in schema.CHARTS:
                np.testing.assert_array_equal(a[c].values, b[c].values, err_msg=f"{command} {c}")
    edit_variable(target, schema.AMSR2_CHANNELS[0], lambda v: v.__setitem__((0, 0), np.nan))  # RT18-R18: unusable
    for command in ("predict", "edge-predict"):  # to a model that reads AMSR2, not read for this one
        assert _status([command, run, target, "--out", tmp_path / f"{command}_c", "--quiet"]) == 0, command
    capsys.readouterr()
    config = tmp_path / "unet.yaml"
    config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(tmp_path / "u"), "model": "unet",
                                      "model_size": "tiny", "steps": 1, "device": "cpu", "modalities": ["sar"]}))
    assert _status(["train", "--config", config]) == 2  # RT20-R10: a usage error, as every other config value
    assert "modalities ['sar']: unet needs ['amsr2', 'era5'] too (or model_kwargs grid2km: false)" in capsys.readouterr().err
    for modalities, said in ((["sar", "sar"], "modalities ['sar', 'sar']: ['sar'] named twice"),
                             (["amsr2", "era5"], "modalities ['amsr2', 'era5']: every model reads sar; name it too")):
        assert _status(["train", "--config", config, "--set", f"modalities={modalities}"]) == 2
        assert said in capsys.readouterr().err
    # RT22-R5: model_kwargs the model refuses or that disagree with the store are usage errors too, before any step;
    # the patch store holds sequences of at most 3 acquisitions (max_steps 3)
    for kwargs, said in (("model_kwargs.img_size=64", "model_kwargs['img_size'] = 64 disagrees with store"),
                         ("model_kwargs.steps=0", "refuses them: steps must be at least 1"),
                         ("model_kwargs.steps=5", "model_kwargs['steps'] = 5: store ")):
        assert _status(["train", "--config", config, "--set", "model_kwargs.grid2km=false", "--set", kwargs]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "u" / "model.pt").exists(), err
    assert "holds sequences of at most 3 acquisitions (max_steps), so 2 of its steps would always be padding" in err


@pytest.mark.parametrize("settings", [{"model_kwargs": {"grid2km": False}}, {"model": "tsvit_v1"}],
                         ids=["unet_sar", "tsvit_v1"])
def test_a_model_that_reads_sar_only_is_recorded_so_and_never_given_amsr2_or_era5(
        patch_store, rtt_paths, tmp_path, capsys, settings):
    """RT19-R1/R9/R5: trained with every modality served (the experiments' SAR-only U-Net, TSViT v1),
    its runs-table inputs said "sar + amsr2 + era5", a NaN in AMSR2 failed its scene, and its
    explanation credited AMSR2/ERA5 (v3 token layers it never trained would; here: inputs it ignores)."""
    from seaice_lib.engine.evaluation import Evaluation, runs_table
    from seaice_lib.engine.run import Run
    from seaice_lib.explain import explanation

    run = train_run(patch_store, tmp_path / "run", **({"model_size": "tiny"} | settings))
    ev = Evaluation.from_json(run / "evaluation.json")
    assert ev.info["modalities"] == ["sar"] and list(runs_table({"r": ev})["inputs"]) == ["sar"]
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    target = scenes / rtt_paths[2].name
    edit_variable(target, schema.AMSR2_CHANNELS[0], lambda v: v.__setitem__((0, 0), np.nan))  # unusable to a reader
    for command in ("predict", "edge-predict"):
        if command == "edge-predict":
            assert _status(["export", run]) == 0
            assert json.loads((run / "export" / "export.json").read_text())["model"]["modalities"] == ["sar"]
        assert _status([command, run, target, "--out", tmp_path / command, "--quiet"]) == 0, capsys.readouterr()
    model = Run(run).load_model()
    tile = explanation.scene_tile(target, scenes, patch_store, 0, model.modalities)
    assert not {"amsr2", "era5"} & set(explanation.given(model, tile.batch))
    assert set(explanation.explain_tile(model, tile.batch, "SOD", 0, ig_steps=2)["ig_per_input"]) == {"sar"}


def test_a_scene_not_at_80_m_is_a_bad_item_not_read_as_80_m(raw_paths, rtt_paths, run_dir, tmp_path, capsys):
    """A 40 m scene (prepare --factor 1) among 80 m ones: patches and predict name it and leave it out."""
    prepare.prepare_scene(raw_paths[2], tmp_path / "native", factor=1)
    scenes = copy_scenes([p for p in rtt_paths if p.name[:19] != raw_paths[2].name[17:32] + raw_paths[2].name[76:80]],
                         tmp_path / "mixed")
    native = next((tmp_path / "native").glob("*_prep.nc"))
    shutil.copy(native, scenes / native.name)
    capsys.readouterr()
    assert _status(["patches", "--scenes", scenes, "--out", tmp_path / "p.zarr", "--patch", "16", "--downsample", "2",
                    "--quiet"]) == 1
    assert f"failed: {scenes / native.name}" in (out := capsys.readouterr().out) and "pixel_spacing 40 m" in out
    assert _status(["predict", run_dir, scenes / native.name, "--out", tmp_path / "c", "--quiet"]) == 1
    assert "pixel_spacing 40 m" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # no chart: the folder it made goes again (RT18-R18)


def test_a_package_of_fewer_scenes_than_the_one_it_replaces_says_so(run_dir, rtt_paths, tmp_path, capsys):
    out = tmp_path / "charts"
    assert _status(["predict", run_dir, *rtt_paths[:3], "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert _status(["predict", run_dir, rtt_paths[0], "--out", out, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "the earlier one also held 2 others" in err and rtt_paths[1].name[:19] in err
    with xr.open_dataset(out / "upload_package.nc") as ds:
        assert {str(v).rpartition("_")[0] for v in ds.data_vars} == {rtt_paths[0].name[:19]}


def test_evaluate_says_why_no_scene_could_be_scored(run_dir, rtt_paths, tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    with xr.open_dataset(rtt_paths[0]) as ds:
        reference = xr.Dataset({c: ds[c].astype("float32") + 0.5 for c in schema.CHARTS}).load()
    for c in schema.CHARTS:
        reference[c].attrs = {}
    reference.to_netcdf(refs / f"{rtt_paths[0].name[:19]}_prep_reference.nc")
    capsys.readouterr()
    assert _status(["evaluate", run_dir, "--scenes", rtt_paths[0].parent, "--references", refs, "--quiet",
                    "--out", tmp_path / "e.json"]) == 1
    err = capsys.readouterr().err
    assert "no scene could be scored" in err and "holds values that are not whole classes" in err
    assert "usage:" not in err and not (tmp_path / "e.json").exists()


def test_predict_and_edge_predict_take_folders_and_refuse_empty_ones(run_dir, rtt_paths, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for command in ("predict", "edge-predict"):
        assert _status([command, run_dir, tmp_path / "empty", "--out", tmp_path / "c", "--quiet"]) == 2
        assert f"{tmp_path / 'empty'}: a folder without *_prep.nc scenes" in capsys.readouterr().err
    folder = copy_scenes(rtt_paths[:2], tmp_path / "two")
    assert _status(["predict", run_dir, folder, "--out", tmp_path / "c", "--quiet"]) == 0
    assert sorted(p.name[:19] for p in (tmp_path / "c").glob("*_charts.nc")) == sorted(p.name[:19] for p in rtt_paths[:2])


def test_an_export_json_edited_after_export_is_refused(run_dir, tmp_path):
    from seaice_lib.edge.runtime import EdgeModel

    assert _status(["export", run_dir, "--out", tmp_path / "e"]) == 0
    EdgeModel(tmp_path / "e")  # as written: loads
    doc = json.loads((tmp_path / "e" / "export.json").read_text())
    for edit in ({"window_days": 99.0}, {"max_steps": 1}):
        edited = {**doc, "patch_settings": {**doc["patch_settings"], **edit}}
        (tmp_path / "e" / "export.json").write_text(json.dumps(edited))
        with pytest.raises(ValueError, match="its model or patch_settings are not those model.onnx was exported with"):
            EdgeModel(tmp_path / "e")


def test_a_key_given_twice_in_a_yaml_file_is_named_not_taken_last(patch_store, tmp_path, capsys):
    """A training config, an experiment file and a batch grid: the repeated key and its lines."""
    from seaice_lib import batch, experiments

    config = tmp_path / "c.yaml"
    config.write_text(f"store: {patch_store}\nout_dir: {tmp_path / 'run'}\nsteps: 4\nlr: 0.01\nsteps: 2\n")
    with pytest.raises(ValueError, match=r"c.yaml: cannot read the training config: the key 'steps' is given twice "
                                         r"\(lines 3 and 5\)"):
        TrainConfig.from_yaml(config)
    grid = tmp_path / "g.yaml"
    grid.write_text("grid:\n  a: [1]\n  a: [2]\n")
    with pytest.raises(ValueError, match=r"g.yaml: cannot read the grid: the key 'a' is given twice \(lines 2 and 3\)"):
        batch.read_grid(grid)
    exp = tmp_path / "e.yaml"
    exp.write_text("name: x\nname: y\n")
    with pytest.raises(ValueError, match=r"e.yaml: cannot read the experiment: the key 'name' is given twice"):
        experiments.load(exp)


def test_a_batch_kernel_folder_that_is_not_there_is_a_usage_error(tmp_path, capsys):
    from tests.commands import usage_error
    from tests.notebook_files import code_notebook, write_grid

    notebook = code_notebook(tmp_path / "n.ipynb", 'out_dir = "."\nk = 0', "k")
    grid = write_grid(tmp_path / "grid.yaml", {"k": [1, 2]})
    line = usage_error(["batch", str(notebook), str(grid), "--name", "nb", "--runs", str(tmp_path / "runs"),
                        "--cwd", str(tmp_path / "missing")], capsys)
    assert f"--cwd {tmp_path / 'missing'}: no such folder" in line
    assert not (tmp_path / "runs").exists()  # no set started a kernel


def test_evaluate_never_writes_over_the_run_s_own_evaluation(run_dir, synthetic_dir, rtt_paths, tmp_path, capsys):
    from tests.commands import usage_error

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = (run / "evaluation.json").read_bytes()
    line = usage_error(["evaluate", str(run), "--scenes", str(synthetic_dir), "--targets",
                        schema.scene_key(rtt_paths[0]), "--out", str(run / "evaluation.json")], capsys)
    assert "the run's own record of its validation scenes" in line
    assert (run / "evaluation.json").read_bytes() == before


def test_evaluate_never_writes_over_another_run_s_record_or_evaluation(run_dir, synthetic_dir, rtt_paths, tmp_path,
                                                                         capsys):
    """R10: --out naming another run folder's evaluation.json (there or not yet: a training still
    running), an evaluation of another run or of other weights outside the run's folder, or an
    evaluation edited since it was written: a usage error naming the path, the file untouched."""
    from seaice_lib import jsondoc
    from tests.commands import usage_error

    run, other = tmp_path / "run", tmp_path / "other"
    for folder in (run, other):
        shutil.copytree(run_dir, folder)
    doc = json.loads((run / "evaluation.json").read_text())
    elsewhere = tmp_path / "scores"
    elsewhere.mkdir()
    kept = {elsewhere / "other_run.json": doc | {"info": {**doc["info"], "run": "other"}},
            elsewhere / "other_weights.json": doc | {"info": {**doc["info"], "weights_sha256": "ab" * 32}}}
    for path, content in kept.items():
        path.write_text(json.dumps(content | {"content_sha256": jsondoc.content_sha256(content)}))
    (elsewhere / "edited.json").write_text(json.dumps(doc | {"n_patches": doc["n_patches"] + 1}))
    before = {p: p.read_bytes() for p in [other / "evaluation.json", *elsewhere.iterdir()]}

    def unchanged() -> bool:
        return all(p.read_bytes() == content for p, content in before.items() if p.exists())

    target = ["evaluate", str(run), "--scenes", str(synthetic_dir), "--targets", schema.scene_key(rtt_paths[0])]
    line = usage_error([*target, "--out", str(other / "evaluation.json")], capsys)
    assert f"--out {other / 'evaluation.json'}: the run's own record of its validation scenes (run folder {other}" in line
    line = usage_error([*target, "--out", str(run / ".." / "other" / "evaluation.json")], capsys)
    assert "the run's own record of its validation scenes" in line and unchanged()
    (other / "evaluation.json").unlink()  # a training that still runs writes it at its end
    line = usage_error([*target, "--out", str(other / "evaluation.json")], capsys)
    assert "the run's own record of its validation scenes" in line and not (other / "evaluation.json").exists()
    weights = hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()[:12]
    line = usage_error([*target, "--out", str(elsewhere / "other_run.json")], capsys)
    assert f"--out {elsewhere / 'other_run.json'}: an evaluation of run other (weights {weights}), not of {run}" in line
    line = usage_error([*target, "--out", str(elsewhere / "other_weights.json")], capsys)
    assert (f"--out {elsewhere / 'other_weights.json'}: an evaluation of run run (weights abababababab), not of {run} "
            f"(weights {weights})") in line
    line = usage_error([*target, "--out", str(elsewhere / "edited.json")], capsys)
    assert f"--out {elsewhere / 'edited.json'}: an evaluation edited since it was written" in line
    assert unchanged() and all(p.exists() for p in before if p.parent == elsewhere)
    # in the run's own folder, an evaluation of its earlier weights (a training resumed since) is replaced
    earlier = doc | {"info": {**doc["info"], "weights_sha256": "ab" * 32}}
    (run / "evaluation_scenes.json").write_text(json.dumps(earlier | {"content_sha256": jsondoc.content_sha256(earlier)}))
    assert cli.main([*target, "--quiet", "--out", str(run / "evaluation_scenes.json")]) == 0
    assert json.loads((run / "evaluation_scenes.json").read_text())["info"]["weights_sha256"][:12] == weights
    # RT19-R6: a new file in another run's folder would pass for that run's; the default file is checked too
    line = usage_error([*target, "--out", str(other / "evaluation_scenes.json")], capsys)
    assert f"--out {other / 'evaluation_scenes.json'}: in the folder of another run than {run}" in line
    assert not (other / "evaluation_scenes.json").exists()
    line = usage_error([*target, "--out", str(synthetic_dir / "ev.json")], capsys)
    assert f"--out {synthetic_dir / 'ev.json'}: its folder is a folder of scenes, not a place for an evaluation" in line
    # RT20-R6: and in a folder it would make there, one level down or more
    line = usage_error([*target, "--out", str(other / "sub" / "deeper" / "evaluation_scenes.json")], capsys)
    assert f"in the folder of another run than {run}" in line and not (other / "sub").exists()
    line = usage_error([*target, "--out", str(synthetic_dir / "ev" / "ev.json")], capsys)
    assert f"--out {synthetic_dir / 'ev' / 'ev.json'}: {synthetic_dir} is a folder of scenes, not a place for an " \
           "evaluation" in line and not (synthetic_dir / "ev").exists()
    # RT22-R3: and below a subfolder that is there already
    (other / "sub" / "there").mkdir(parents=True)
    line = usage_error([*target, "--out", str(other / "sub" / "there" / "new" / "ev.json")], capsys)
    assert f"in the folder of another run than {run}" in line and not (other / "sub" / "there" / "new").exists()
    (synthetic_dir / "sub").mkdir()
    try:
        line = usage_error([*target, "--out", str(synthetic_dir / "sub" / "ev.json")], capsys)
    finally:
        (synthetic_dir / "sub").rmdir()
    assert f"{synthetic_dir} is a folder of scenes, not a place for an evaluation" in line
    (run / "evaluation_scenes.json").write_text(json.dumps(doc | {"n_patches": doc["n_patches"] + 1}))  # edited
    line = usage_error(target, capsys)
    assert f"{run / 'evaluation_scenes.json'} (the default --out): an evaluation edited since it was written" in line


def test_evaluate_never_writes_over_a_json_record_that_is_not_an_evaluation(run_dir, synthetic_dir, rtt_paths,
                                                                             tmp_path, capsys):
    """A run's provenance, a store's zarr.json, an export's export.json: refused by name, untouched."""
    from tests.commands import usage_error

    record = tmp_path / "provenance.json"
    record.write_text('{"command": "seaice train"}')
    line = usage_error(["evaluate", str(run_dir), "--scenes", str(synthetic_dir), "--targets",
                        schema.scene_key(rtt_paths[0]), "--out", str(record)], capsys)
    assert f"--out {record}: an existing file that is not an evaluation" in line
    assert record.read_text() == '{"command": "seaice train"}'


def test_a_store_whose_labels_were_edited_out_of_range_is_refused_naming_it(patch_store, tmp_path):
    """Labels outside a chart's classes (a store edited or damaged since it was cut) stop training
    with one error naming the store, the chart and the scenes, not an index error from the loss."""
    import zarr

    from seaice_lib.data.store import arrays_sha256

    def edited(name, groups):  # as a cutter that wrote such labels would record them
        store = tmp_path / name / "patches.zarr"
        shutil.copytree(patch_store, store)
        for group in groups(sorted((store / "scenes").iterdir())):
            labels = zarr.open_array(group / "labels", mode="r+")
            values = labels[:]
            values[values != 255] = 200
            labels[:] = values
            root = zarr.open_group(group, mode="r+")
            root.attrs["content_sha256"] = arrays_sha256({k: root[k][...] for k in root.array_keys()})
        return store

    store = edited("all", lambda groups: groups)
    with pytest.raises(ValueError, match=r"patches.zarr: SIC labels hold classes \[200\] outside 0..10 and 255 in a "
                                         r"batch of the scenes .*_(dmi|cis).*run `seaice patches` again"):
        train(train_config(store, tmp_path / "run", steps=1, steps_per_epoch=1))
    store = edited("validation", lambda groups: groups[-1:])  # only the last scene: validated on
    scenes = sorted(p.name for p in (store / "scenes").iterdir())
    with pytest.raises(ValueError, match=rf"patches.zarr: SIC: \d+ true classes outside 0..10 or 255 in a batch of the "
                                         rf"scenes .*{scenes[-1]}.*run `seaice patches` again"):
        train(train_config(store, tmp_path / "run2", steps=1, steps_per_epoch=1,
                           train_scenes=scenes[:3], val_scenes=scenes[-1:]))


def test_training_refuses_a_store_group_changed_since_it_was_cut(patch_store, tmp_path):
    """Labels of a training scene overwritten in its group after it was cut (in range, so no batch
    check could tell): training refuses the store in one error naming it and the group, before a
    step; so it does when the group's content_sha256 is dropped too (RT12 R8: an edit could not be
    told; it warned and trained), as ``seaice patches`` cuts such a group again."""
    import zarr

    store = tmp_path / "patches.zarr"
    shutil.copytree(patch_store, store)
    scenes = sorted(p.name for p in (store / "scenes").iterdir())
    labels = zarr.open_array(store / "scenes" / scenes[0] / "labels", mode="r+")
    labels[...] = np.where(labels[...] == 255, 255, labels[...] == 0).astype(np.uint8)
    run = dict(steps=1, steps_per_epoch=1, evaluate=False, train_scenes=scenes[:3], val_scenes=scenes[3:4])
    with pytest.raises(ValueError, match=rf"{store}: out of date with .*: scene group {scenes[0]}: changed since it "
                                         rf"was cut .*; cut it again with `seaice patches"):
        train(train_config(store, tmp_path / "run", **run))
    assert not (tmp_path / "run" / "model.pt").exists()
    meta_path = store / "scenes" / scenes[0] / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["content_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"{store}: out of date with .*: scene group {scenes[0]}: it records no "
                                         rf"content_sha256 .*; cut it again with `seaice patches"):
        train(train_config(store, tmp_path / "run", **run))
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_refuses_an_out_dir_that_holds_outputs_of_its_names_but_is_no_run_folder(patch_store, synthetic_dir,
                                                                                        tmp_path, capsys):
    """Files named as a training's outputs in a folder no training wrote (no config.yaml,
    provenance.json or checkpoints/) are someone else's: a usage error naming them, nothing removed;
    a fresh or empty folder, and a run folder, train."""
    theirs = tmp_path / "theirs"
    (theirs / "export").mkdir(parents=True)
    files = {"export/notes.txt": "notes", "evaluation.json": '{"my": "data"}', "model.pt": "hi", "metrics.csv": "keep"}
    for name, text in files.items():
        (theirs / name).write_text(text)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(theirs), "model": "unet",
                                      "model_size": "tiny", "steps": 1, "steps_per_epoch": 1, "warmup_steps": 1,
                                      "batch_size": 4, "device": "cpu", "progress": False, "checkpoint_every": 0,
                                      "evaluate": False}))
    (theirs / "export" / "export.json").write_text("{}")  # an export's record, theirs
    assert _status(["train", "--config", config]) == 2
    err = capsys.readouterr().err
    assert f"out_dir {theirs}: holds model.pt, evaluation.json, export but is no run folder" in err
    assert "Traceback" not in err
    assert {name: (theirs / name).read_text() for name in files} == files and not (theirs / "config.yaml").exists()
    (theirs / "checkpoints").mkdir()  # RT15-R4: an empty checkpoints/ is no training's either
    (theirs / "config.yaml").write_text("project: mine\n")  # nor a config.yaml of their own
    assert _status(["train", "--config", config]) == 2 and "is no run folder" in capsys.readouterr().err
    assert (theirs / "config.yaml").read_text() == "project: mine\n" and (theirs / "model.pt").read_text() == "hi"
    for data, what in ((patch_store, "a patch store"), (synthetic_dir, "a folder of scenes")):  # RT15-R21
        copy = tmp_path / f"data_{data.name}"
        shutil.copytree(data, copy)
        assert _status(["train", "--config", config, "--set", f"out_dir={copy}"]) == 2
        assert f"out_dir {copy}: {what}, not a run folder" in capsys.readouterr().err
        assert not (copy / "config.yaml").exists()
    fresh = ["train", "--config", config, "--set", f"out_dir={tmp_path / 'fresh'}"]
    assert _status(fresh) == 0
    (tmp_path / "fresh" / "export").mkdir()
    (tmp_path / "fresh" / "export" / "notes.txt").write_text("mine")  # no export.json: no export, not removed
    assert _status(fresh) == 0  # a run folder now: trained again
    assert (tmp_path / "fresh" / "model.pt").is_file()
    assert (tmp_path / "fresh" / "export" / "notes.txt").read_text() == "mine"


def test_predict_never_writes_over_or_removes_a_file_of_the_package_s_name_that_is_no_package(run_dir, rtt_paths,
                                                                                              tmp_path, capsys):
    out = tmp_path / "charts"
    out.mkdir()
    (out / "upload_package.nc").write_text("my notes")
    assert _status(["predict", run_dir, rtt_paths[0], "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: holds upload_package.nc, which is no upload package" in err and "Traceback" not in err
    assert (out / "upload_package.nc").read_text() == "my notes" and not list(out.glob("*_charts.nc"))


def test_a_mistyped_scene_id_in_the_split_is_a_usage_error_naming_it(patch_store, tmp_path, capsys):
    """RT19-R14: a val_scenes id one digit off blamed the store ("out of date ... cut it again")."""
    from seaice_lib.data.splits import store_regions

    ids = sorted(store_regions(patch_store))
    typo = ids[-1][:14] + str((int(ids[-1][14]) + 1) % 10) + ids[-1][15:]
    for name, split in (("val_scenes", {"train_scenes": ids[:-1], "val_scenes": [typo]}),
                        ("train_scenes", {"train_scenes": [ids[0], typo], "val_scenes": [ids[-1]]}),
                        ("inner_scenes", {"train_scenes": ids[:-2], "val_scenes": [ids[-2]], "inner_scenes": [typo]})):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(tmp_path / name), "model": "unet",
                                          "model_size": "tiny", "steps": 1, "device": "cpu", **split}))
        assert _status(["train", "--config", config]) == 2
        err = capsys.readouterr().err
        assert f"{name}: {typo} not among the scenes of store {patch_store} ({len(ids)}: {ids[0]}" in err, err
        assert "cut it again" not in err and not (tmp_path / name).exists()


def test_a_batch_larger_than_the_training_patches_is_a_usage_error_before_any_step(patch_store, tmp_path, capsys):
    """RT19-R14: batch_size=100000 on a store of a few dozen patches was killed for memory, leaving a
    run folder of a training that never took a step."""
    import zarr

    ids = sorted(group.name for group in (patch_store / "scenes").iterdir() if (group / "zarr.json").is_file())
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump({"store": str(patch_store), "out_dir": str(tmp_path / "big"), "model": "unet",
                                      "model_size": "tiny", "steps": 1, "device": "cpu", "batch_size": 100000,
                                      "train_scenes": ids[:-1], "val_scenes": ids[-1:], "evaluate": False}))
    patches = sum(zarr.open_array(str(patch_store / "scenes" / sid / "sar"), mode="r").shape[0] for sid in ids[:-1])
    assert _status(["train", "--config", config]) == 2
    err = capsys.readouterr().err
    assert f"batch_size 100000: more than the {patches} training patches of store {patch_store}" in err, err
    assert "Traceback" not in err and not (tmp_path / "big").exists()
    assert _status(["train", "--config", config, "--set", f"batch_size={patches}"]) == 0


def test_a_u_net_on_patches_too_small_for_its_poolings_is_one_line_naming_the_store(synthetic_dir, tmp_path, capsys):
    """RT20-R13: a small U-Net (four poolings) on a store of 12-pixel patches ended in a traceback
    from the pooling, after making its run folder."""
    store = tmp_path / "p12.zarr"
    assert _status(["patches", "--scenes", synthetic_dir, "--out", store, "--patch", "12", "--downsample", "2",
                    "--quiet"]) == 0
    capsys.readouterr()
    argv = ["train", "--set", f"store={store}", "--set", f"out_dir={tmp_path / 'run'}", "--set", "model=unet",
            "--set", "steps=1", "--set", "device=cpu", "--set", "evaluate=false", "--set", "progress=false"]
    config = tmp_path / "c.yaml"
    config.write_text("model_size: small\n")
    assert _status([argv[0], "--config", config, *argv[1:]]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"seaice train: error: unet (small) on store {store} (patch 12): img_size 12: the U-Net (small) "
                   "halves a patch 4 times and needs patches of at least 16 pixels")
    assert not (tmp_path / "run").exists()
    config.write_text("model_size: tiny\n")  # three poolings: 12 -> 6 -> 3 -> 1
    assert _status([argv[0], "--config", config, *argv[1:]]) == 0
