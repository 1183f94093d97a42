"""Values checked where data enters and where predictions leave: what is not finite or not
physical never becomes a class, a score or a weight."""

import hashlib
import json
import logging
import shutil

import netCDF4
import numpy as np
import pytest
import torch
from torch import nn

from seaice_lib import cli, schema
from seaice_lib.charts import cf, inference
from seaice_lib.data.scene import Scene, SceneError
from seaice_lib.data.tiles import blended_classes, percent
from seaice_lib.engine import training
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.run import load_model
from seaice_lib.engine.training import NonFiniteLoss, train
from seaice_lib.engine.whole_scenes import evaluate_scenes, predict_scene
from tests.scene_edits import copy_scenes, edit_variable, twin_of, unreadable_twin


def _edited(src, dst, variable, edit):
    """A copy of ``src`` with ``edit(values)`` (in place, values as stored) applied to ``variable``."""
    shutil.copy(src, dst)
    return edit_variable(dst, variable, edit)


@pytest.fixture
def scene_copy(rtt_paths, tmp_path):
    """A folder holding copies of the tiny set's scenes (sequences need their neighbours)."""
    return copy_scenes(rtt_paths, tmp_path / "scenes")


@pytest.mark.parametrize("variable, edit, count", [
    ("btemp_36_5h", lambda v: v.__setitem__(slice(0, v.shape[0] // 2), np.nan), lambda shape: shape[0] // 2 * shape[1]),
    ("btemp_89_0v", lambda v: v.fill(np.nan), lambda shape: shape[0] * shape[1]),
    ("t2m", lambda v: v.__setitem__((0, 0), (1000 - 268.627) / 9.46917), lambda shape: 1),  # 1000 K, standard-scaled
    ("tcwv", lambda v: v.__setitem__((1, slice(None)), np.inf), lambda shape: shape[1]),
])
def test_a_2km_value_that_is_not_finite_or_physical_refuses_the_scene_naming_it(rtt_paths, tmp_path, variable,
                                                                                  edit, count):
    path = _edited(rtt_paths[0], tmp_path / rtt_paths[0].name, variable, edit)
    with Scene(path) as scene:
        shape = scene.grid2km_shape
        with pytest.raises(SceneError) as err:
            scene.read_grid2km([variable])
        assert scene.value_report() == {variable: count(shape)}
    message = str(err.value)
    assert str(path) in message and variable in message and f"{count(shape)} of {shape[0] * shape[1]} values" in message


def test_sar_values_that_are_not_physical_are_no_data_and_counted(rtt_paths, tmp_path):
    def huge_block(v):
        v[10:20, 30:45] = 1e30  # standard-scaled: far beyond +30 dB
        v[0, 0] = np.nan

    path = _edited(rtt_paths[0], tmp_path / rtt_paths[0].name, "nersc_sar_primary", huge_block)
    with Scene(rtt_paths[0]) as clean, Scene(path) as scene:
        before = clean.sar_valid()
        valid = scene.sar_valid()
        hh = scene.read("nersc_sar_primary")
        assert scene.value_report() == {"nersc_sar_primary": 10 * 15 + 1}
    assert not valid[10:20, 30:45].any() and not valid[0, 0]
    assert (hh[10:20, 30:45] == schema.SAR_FILL).all() and np.isfinite(hh).all()
    changed = np.zeros_like(before)
    changed[10:20, 30:45] = changed[0, 0] = True
    assert np.array_equal(valid, before & ~changed)  # nothing else moved


def test_the_synthetic_scenes_are_within_every_physical_range(rtt_paths, raw_paths):
    for path in [*rtt_paths, *raw_paths]:
        with Scene(path) as scene:
            assert scene.value_report() == {}, path.name


def test_predict_and_evaluate_refuse_a_scene_with_nan_amsr2_naming_it(run_dir_module, rtt_paths, scene_copy,
                                                                   patch_store, capsys):
    from seaice_lib.cli import main

    target = scene_copy / rtt_paths[2].name
    _edited(rtt_paths[2], target, "btemp_18_7v", lambda v: v.__setitem__(slice(0, v.shape[0] // 2), np.nan))
    try:
        code = main(["predict", str(run_dir_module), str(target), "--out", str(scene_copy.parent / "charts"),
                     "--quiet"])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code != 0 and "btemp_18_7v" in err and target.name in err and "Traceback" not in err
    assert not list((scene_copy.parent / "charts").glob("*_charts.nc"))
    with pytest.raises(SceneError, match="btemp_18_7v"):
        evaluate_scenes(load_model(run_dir_module), [target], scene_copy, patch_store)


def test_no_upload_package_where_masked_sar_would_leave_labelled_pixels_without_a_class(run_dir_module, rtt_paths,
                                                                                       scene_copy, capsys):
    """SAR masked as out of range inside the swath: the chart says no class (255) there, which the
    official scorer would count as wrong on labelled pixels; the charts are written, the package not."""
    from seaice_lib.cli import main

    target = scene_copy / rtt_paths[2].name
    _edited(rtt_paths[2], target, "nersc_sar_primary", lambda v: v.__setitem__((slice(10, 20), slice(30, 45)), 1e30))
    out = scene_copy.parent / "charts"
    assert main(["predict", str(run_dir_module), str(target), str(scene_copy / rtt_paths[3].name), "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{target.name[:19]}: nersc_sar_primary 150 values masked as not finite or out of range" in err
    assert "no upload package" in err and not (out / "upload_package.nc").exists()
    assert len(list(out.glob("*_charts.nc"))) == 2
    _, charts = cf.read_charts(cf.charts_path(out, target.name[:19]))
    assert (charts["SIC"][10:20, 30:45] == schema.CHART_FILL).all()  # no class where the input was masked
    assert main(["predict", str(run_dir_module), str(scene_copy / rtt_paths[3].name), "--out", str(out),
                 "--quiet"]) == 0 and (out / "upload_package.nc").exists()  # the clean scene alone: packaged


def test_evaluate_gives_no_class_where_sar_is_not_finite_names_the_scene_and_exits_1(run_dir_module, rtt_paths,
                                                                                      scene_copy, capsys):
    """``predict`` refuses the package for an inf HH block; ``evaluate`` predicts every labelled
    pixel, but none from a made-up input: those count wrong, the scene is named, the JSON counts them."""
    from seaice_lib.cli import main

    target = scene_copy / rtt_paths[4].name  # labelled in the block
    sid = target.name[:19]
    _edited(rtt_paths[4], target, "nersc_sar_primary", lambda v: v.__setitem__((slice(10, 20), slice(30, 45)), np.inf))
    with netCDF4.Dataset(target) as nc:
        nc.set_auto_mask(False)
        labelled = {c: int((nc[c][10:20, 30:45] != 255).sum()) for c in schema.CHARTS}
    assert labelled["SIC"] > 0
    out = scene_copy.parent / "ev.json"
    assert main(["evaluate", str(run_dir_module), "--scenes", str(scene_copy), "--targets", sid, "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{sid}: inputs not finite or out of range (nersc_sar_primary 150 values)" in err
    doc = json.loads(out.read_text())
    assert doc["info"]["unusable_inputs"] == {sid: {"labelled_pixels": labelled, "values": {"nersc_sar_primary": 150}}}
    assert {c: sum(v) for c, v in doc["no_class"].items()} == labelled  # counted, not dropped


def test_predict_gives_no_class_where_an_earlier_acquisitions_sar_is_not_finite_and_no_package(
        run_dir_module, rtt_paths, scene_copy, tmp_path, capsys):
    """The target's history (--history) holds a copy of it one second earlier (the same grid) with
    an inf HH block aligned to the store's 2 x 2 blocks: the chart says no class there, as for the
    target's own inf, the warning and the chart file name the earlier file, and no package is written."""
    from seaice_lib.cli import main

    target = scene_copy / rtt_paths[2].name
    history = tmp_path / "history"
    history.mkdir()
    earlier = twin_of(target, history)
    edit_variable(earlier, "nersc_sar_primary", lambda v: v.__setitem__((slice(10, 20), slice(30, 46)), np.inf))
    out = tmp_path / "charts"
    assert main(["predict", str(run_dir_module), str(target), "--history", str(history), "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    named = f"earlier acquisition {earlier.name}: nersc_sar_primary 160 values masked as not finite or out of range"
    assert f"{target.name[:19]}: {named}" in err and "no upload package" in err
    assert not (out / "upload_package.nc").exists()
    assert f"{named.replace(' masked as not finite or out of range', '')}): their 160 pixels charted as no data" in err
    _, charts = cf.read_charts(cf.charts_path(out, target.name[:19]))
    with Scene(target) as scene:
        valid = scene.sar_valid()
    no_class = np.zeros_like(valid)
    no_class[10:20, 30:46] = True
    assert valid[no_class].all()
    for chart in schema.CHARTS:  # no class in the block; the rest as the target's own data says
        assert np.array_equal(charts[chart] == schema.CHART_FILL, no_class | ~valid), chart
    with netCDF4.Dataset(cf.charts_path(out, target.name[:19]), "a") as nc:  # the attribute the package check reads
        nc.delncattr("masked_history_inputs")
    assert main(["predict", str(run_dir_module), str(target), "--history", str(history), "--out", str(out),
                 "--quiet"]) == 1  # the edited chart is charted again, never kept for a package
    err = capsys.readouterr().err
    assert "its contents changed since it was written (content_sha256" in err
    assert f"{target.name[:19]}: {named}" in err and "no upload package" in err
    assert not (out / "upload_package.nc").exists()


def test_an_earlier_acquisition_that_cannot_be_read_is_named_once_recorded_and_exits_1(run_dir_module, rtt_paths,
                                                                                      tmp_path, capsys):
    """The target's folder holds a copy of it one second earlier (its history), truncated: the chart
    and the score are made without it, but never pass for complete ones. ``predict`` names the file
    once when charting, records it in the chart file and writes no upload package (an earlier one
    is removed); ``evaluate`` records it under ``unusable_inputs`` and among the files read, exit 1."""
    from seaice_lib.cli import main

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    target = scenes / rtt_paths[2].name
    shutil.copy(rtt_paths[2], target)
    sid = target.name[:19]
    earlier = twin_of(target, scenes)
    earlier.write_bytes(earlier.read_bytes()[:500])
    out = tmp_path / "charts"
    out.mkdir()
    with netCDF4.Dataset(out / "upload_package.nc", "w") as nc:  # an earlier package of the scene
        nc.createDimension("y", 1)
        nc.createVariable(f"{sid}_SIC", "u1", ("y",))
    assert main(["predict", str(run_dir_module), str(target), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    unread = f"{earlier.name}: not a readable netCDF file"
    assert err.count(f"{sid}: charted without earlier acquisitions that could not be read: {unread}") == 1
    assert f"no upload package: {sid}: earlier acquisition {unread}" in err
    assert not (out / "upload_package.nc").exists()
    with netCDF4.Dataset(cf.charts_path(out, sid)) as nc:
        assert nc.getncattr("left_out_history_inputs").startswith(unread)
    ev = tmp_path / "ev.json"
    assert main(["evaluate", str(run_dir_module), "--scenes", str(scenes), "--targets", sid, "--out", str(ev),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"the scores are of 1 scenes charted without earlier acquisitions that could not be read ({sid})" in err
    info = json.loads(ev.read_text())["info"]
    assert list(info["unusable_inputs"]) == [sid] and list(info["unusable_inputs"][sid]) == ["left_out"]
    (left_out,) = info["unusable_inputs"][sid]["left_out"]
    assert left_out.startswith(unread)
    assert [(e["file"], e["sha256"]) for e in info["input_files"]] == [
        (str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in (earlier, target)]


def test_a_single_date_model_is_given_its_target_alone_and_never_opens_an_earlier_acquisition(run_dir, synthetic_dir,
                                                                                              tmp_path, capsys):
    """RT22-R4: a one-step U-Net (it reads no history) lost its upload package, exit 1, and recorded
    the earlier file as an input, over an unreadable earlier acquisition it never reads. Its charts,
    scores and records now hold the target alone; the charts are those of the target by itself."""
    from seaice_lib.cli import main

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    target, _ = unreadable_twin(synthetic_dir, scenes)
    sid = target.name[:19]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(target, alone / target.name)
    out, reference = tmp_path / "charts", tmp_path / "reference"
    assert main(["predict", str(run_dir), str(target), "--out", str(out), "--quiet"]) == 0
    assert main(["predict", str(run_dir), str(alone / target.name), "--out", str(reference), "--quiet"]) == 0
    assert "could not be read" not in capsys.readouterr().err and (out / "upload_package.nc").is_file()
    _, charts = cf.read_charts(cf.charts_path(out, sid))
    _, by_itself = cf.read_charts(cf.charts_path(reference, sid))
    assert all(np.array_equal(charts[c], by_itself[c]) for c in schema.CHARTS)
    with netCDF4.Dataset(cf.charts_path(out, sid)) as nc:
        assert "left_out_history_inputs" not in nc.ncattrs()
        assert list(json.loads(nc.getncattr("made_by"))["inputs"]) == [target.name]
    ev = tmp_path / "ev.json"
    assert main(["evaluate", str(run_dir), "--scenes", str(scenes), "--targets", sid, "--out", str(ev), "--quiet"]) == 0
    info = json.loads(ev.read_text())["info"]
    assert not info.get("unusable_inputs") and [e["file"] for e in info["input_files"]] == [str(target)]


def test_a_chart_made_without_an_unreadable_earlier_acquisition_is_charted_again_once_it_is_removed(
        run_dir_module, rtt_paths, tmp_path, capsys):
    """--history holds a misnamed copy of the target one second earlier (its scene_id is not its
    name's): the chart is made without it, no package, exit 1. The chart's made_by records the file
    left out, so once it is removed the same command into the same --out charts the scene again
    (never keeping the chart that names a file no longer there) and writes the package, exit 0."""
    from seaice_lib.cli import main

    history = copy_scenes(rtt_paths, tmp_path / "history")
    target = history / rtt_paths[2].name
    sid = target.name[:19]
    misnamed = history / target.name.replace(sid, f"{sid[:13]}{int(sid[13:15]) - 1:02d}{sid[15:]}")
    shutil.copy(target, misnamed)
    out = tmp_path / "charts"
    command = ["predict", str(run_dir_module), str(target), "--history", str(history), "--out", str(out), "--quiet"]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert f"{sid}: charted without earlier acquisitions that could not be read: {misnamed.name}: " in err
    assert f"no upload package: {sid}: earlier acquisition {misnamed.name}: " in err
    with netCDF4.Dataset(cf.charts_path(out, sid)) as nc:
        assert nc.getncattr("left_out_history_inputs").startswith(f"{misnamed.name}: ")
        assert misnamed.name in json.loads(nc.getncattr("made_by"))["inputs"]
    misnamed.unlink()  # the repair
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "upload package" in captured.out and "already there" not in captured.out and "could not be read" not in captured.err
    assert (out / "upload_package.nc").is_file()
    with netCDF4.Dataset(cf.charts_path(out, sid)) as nc:
        assert "left_out_history_inputs" not in nc.ncattrs()


def test_the_package_check_names_masked_sar_and_non_finite_outputs_and_removes_an_earlier_package(rtt_paths, tmp_path):
    """inference.check_package, which `seaice predict` and notebook 05 ask before writing a package:
    a scene with infinite HH (10 x 15 pixels) and a chart file the model gave NaN outputs for are
    named, an earlier package removed; the clean scene and chart file pass."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    bad, clean = scenes / rtt_paths[2].name, scenes / rtt_paths[3].name
    edit_variable(bad, "nersc_sar_primary", lambda v: v.__setitem__((slice(10, 20), slice(30, 45)), np.inf))
    charts = tmp_path / "20190102T000000_dmi_charts.nc"
    with netCDF4.Dataset(charts, "w") as nc:
        nc.setncatts({"scene_id": "20190102T000000_dmi", "non_finite_model_outputs": "SIC 4"})
    package = tmp_path / "upload_package.nc"
    package.write_text("an earlier package")
    with pytest.raises(ValueError) as err:
        inference.check_package([bad, clean], [charts], schema.SAR_VARIABLES, package)
    assert str(err.value).startswith(f"no upload package: {bad.name[:19]}: nersc_sar_primary 150 values masked as "
                                     "not finite or out of range; 20190102T000000_dmi: the model gave non-finite "
                                     "outputs, SIC 4: those pixels have no class (255)")
    assert not package.exists()
    package.write_text("an earlier package")
    inference.check_package([clean], [], schema.SAR_VARIABLES, package)
    assert package.read_text() == "an earlier package"


@pytest.mark.parametrize("value", [np.nan, 0.0])  # not finite; the ready-to-train no-data value
def test_an_incidence_angle_without_data_is_no_class_and_no_package(run_dir_module, rtt_paths, scene_copy, capsys,
                                                                    value):
    """The incidence angle is a model input: where it has no data the reader's 0 (the mean angle)
    would be a made-up input, so those pixels are no data (255), counted, and no package is written."""
    from seaice_lib.cli import main

    target = scene_copy / rtt_paths[2].name
    _edited(rtt_paths[2], target, "sar_incidenceangle", lambda v: v.__setitem__((slice(10, 20), slice(30, 45)), value))
    with Scene(target) as scene:
        assert not scene.sar_valid()[10:20, 30:45].any() and scene.sar_valid(inputs=schema.SAR_VARIABLES)[10:20, 30:45].all()
    out = scene_copy.parent / "charts"
    assert main(["predict", str(run_dir_module), str(target), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{target.name[:19]}: 150 pixels with HH and HV but no data in sar_incidenceangle" in err
    assert "no upload package" in err and not (out / "upload_package.nc").exists()
    _, charts = cf.read_charts(cf.charts_path(out, target.name[:19]))
    for chart in schema.CHARTS:
        assert (charts[chart][10:20, 30:45] == schema.CHART_FILL).all()


def test_prepare_leaves_no_pixel_whose_raw_incidence_angle_is_missing(raw_paths, tmp_path):
    """A raw pixel with HH and HV but a NaN incidence angle is no data in the prepared scene (its
    ready-to-train 0 would read as the mean angle), its labels 255."""
    from seaice_lib.data.prepare import prepare_scene

    raw = _edited(raw_paths[0], tmp_path / raw_paths[0].name, "sar_incidenceangle",
                  lambda v: v.__setitem__((slice(40, 60), slice(60, 90)), np.nan))
    with Scene(prepare_scene(raw, tmp_path / "rtt")) as scene:
        assert not scene.sar_valid(inputs=())[20:30, 30:45].any()
        assert (scene.charts()["SOD"][20:30, 30:45] == schema.CHART_FILL).all()


@pytest.fixture(scope="module")
def run_dir_module(patch_store, tmp_path_factory):
    """A tiny U-Net that stacks the earlier acquisition (it reads a target's history) trained two steps."""
    out = tmp_path_factory.mktemp("values") / "run"
    train(TrainConfig(store=str(patch_store), out_dir=str(out), model="unet", model_size="tiny", model_kwargs={"steps": 2},
                      steps=2,
                      steps_per_epoch=2, warmup_steps=1, batch_size=4, device="cpu", val_fraction=0.3,
                      progress=False, checkpoint_every=0, evaluate=False))
    return out


class HalfNaN(nn.Module):
    """Logits of every chart (SIC as a value) that are NaN on the left half of each tile."""

    downsample = 2

    def forward(self, batch):
        b, _, p, _ = batch["sar"].shape[0], None, batch["sar"].shape[-1], None
        out = {}
        for chart in schema.CHARTS:
            k = 1 if chart == "SIC" else schema.N_CLASSES[chart]
            values = torch.zeros(b, k, p, p)
            values[..., : p // 2] = float("nan")
            out[chart] = values
        return out


def test_a_non_finite_output_is_no_class_reported_and_its_probabilities_255(rtt_paths, patch_store, tmp_path,
                                                                         caplog):
    model = HalfNaN()
    target = rtt_paths[1]
    predicted = predict_scene(model, target, rtt_paths, patch_store, keep_blended=True, mask_no_data=False)
    for chart in schema.CHARTS:
        blended = predicted.blended[chart]
        nan = ~np.isfinite(blended).all(axis=0)
        assert nan.any() and predicted.non_finite[chart] == int(nan.sum())
        # every store pixel with a NaN output is 255 at 80 m; every other pixel a class
        d, (big_h, big_w) = 2, predicted.charts[chart].shape  # 80 m pixel (i, j) is store pixel (i // d, j // d),
        rows = np.minimum(np.arange(big_h) // d, nan.shape[0] - 1)  # the last row and column of an odd size
        cols = np.minimum(np.arange(big_w) // d, nan.shape[1] - 1)  # taking the store's last one
        at80 = nan[rows][:, cols]
        assert (predicted.charts[chart][at80] == schema.CHART_FILL).all()
        assert (predicted.charts[chart][~at80] < schema.N_CLASSES[chart]).all()
    with caplog.at_level(logging.WARNING):
        path = cf.write_predicted(tmp_path, target, predicted, 2, {})
    assert predicted.scene_id in caplog.text and "non-finite" in caplog.text
    with netCDF4.Dataset(path) as nc:
        assert "SOD" in nc.getncattr("non_finite_model_outputs")
        sod = nc["SOD_probability"]
        sod.set_auto_maskandscale(False)
        stored = sod[:]
    nan = ~np.isfinite(predicted.blended["SOD"]).all(axis=0)
    assert (stored[:, nan] == 255).all() and (stored[:, ~nan].astype(int).sum(axis=0) == 100).all()
    with pytest.raises(ValueError, match=f"{target.name}: the model gave non-finite outputs"):
        evaluate_scenes(model, [target], rtt_paths, patch_store)


def test_percent_sums_to_100_and_stays_within_a_point_of_each_probability():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=(40, 50)).transpose(2, 0, 1)
    out = percent(p)
    assert out.dtype == np.uint8 and (out.astype(int).sum(axis=0) == 100).all()
    assert np.abs(out - 100 * p).max() < 1
    # three equal thirds: 34 to the first by a stable order, 33 to the others
    thirds = np.full((3, 1, 1), 1 / 3)
    assert percent(thirds)[:, 0, 0].tolist() == [34, 33, 33]
    broken = p.copy()
    broken[2, 5, 7] = np.nan
    broken[:, 0, 0] = [0.5, 0.5, 0.5, 0, 0, 0]  # sums to 1.5: not probabilities
    out = percent(broken)
    assert (out[:, 5, 7] == 255).all() and (out[:, 0, 0] == 255).all()


def test_blended_classes_give_no_class_where_an_output_is_not_finite():
    probs = np.full((3, 2, 2), 1 / 3, np.float32)
    probs[:, 0, 0] = [0.1, 0.8, 0.1]
    probs[1, 1, 1] = np.inf
    sic = np.array([[[3.4, np.nan], [9.7, 12.0]]], np.float32)
    classes = blended_classes({"SOD": probs, "SIC": sic})
    assert classes["SOD"].tolist() == [[1, 0], [0, 255]]
    assert classes["SIC"].tolist() == [[3, 255], [10, 10]]


def test_training_stops_at_the_first_non_finite_loss_naming_the_step_and_the_scenes(patch_store, tmp_path,
                                                                                  monkeypatch):
    real = training.MultiTaskLoss.forward
    calls = []

    def nan_at_third(self, outputs, labels):
        loss, parts = real(self, outputs, labels)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) == 3 else (loss, parts)

    monkeypatch.setattr(training.MultiTaskLoss, "forward", nan_at_third)
    cfg = TrainConfig(store=str(patch_store), out_dir=str(tmp_path / "run"), model="unet", model_size="tiny",
                      steps=6, steps_per_epoch=3, warmup_steps=1, batch_size=4, device="cpu", val_fraction=0.3,
                      progress=False, checkpoint_every=1, evaluate=False)
    with pytest.raises(NonFiniteLoss, match="not finite at step 3") as err:
        train(cfg)
    from seaice_lib.data.splits import split_scenes

    train_ids, _ = split_scenes(patch_store, 0.3, 0, by="region")
    named = str(err.value).split("the batch's scenes: ")[1].split(".")[0].split(", ")
    assert named and set(named) <= set(train_ids)
    assert not (tmp_path / "run" / "model.pt").exists()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2


def test_folder_scans_skip_and_name_what_is_not_a_scene_file_and_refuse_two_files_of_one_scene(rtt_paths, tmp_path,
                                                                                              caplog):
    from seaice_lib.data.scene import find_scenes

    folder = tmp_path / "landing"
    folder.mkdir()
    shutil.copy(rtt_paths[0], folder / rtt_paths[0].name)
    (folder / "20190101T000000_dmi_prep.nc").mkdir()  # a folder named like a scene
    (folder / "20190102T000000_dmi_prep.nc").symlink_to(folder / "20190102T000000_dmi_prep.nc")  # a loop
    (folder / "20190103T000000_dmi_prep.nc").symlink_to(tmp_path / "gone")  # dangling
    with caplog.at_level(logging.WARNING):
        assert find_scenes(folder) == [folder / rtt_paths[0].name]
    for name in ("20190101T000000", "20190102T000000", "20190103T000000"):
        assert name in caplog.text
    shutil.copy(rtt_paths[0], folder / (rtt_paths[0].name[:19] + "_copy_prep.nc"))
    with pytest.raises(ValueError, match=f"two files of scene {rtt_paths[0].name[:19]}"):
        find_scenes(folder)


def test_two_files_of_one_scene_on_the_command_line_are_a_usage_error(rtt_paths, tmp_path, capsys):
    from seaice_lib.cli import main

    other = tmp_path / "elsewhere" / rtt_paths[0].name
    other.parent.mkdir()
    shutil.copy(rtt_paths[0], other)
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(tmp_path / "run"), str(rtt_paths[0]), str(other), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"two files of scene {rtt_paths[0].name[:19]}" in err and str(other) in err


def test_patches_counts_an_entry_it_cannot_read_as_failed(rtt_paths, tmp_path, capsys):
    from seaice_lib import cli

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for p in rtt_paths[:3]:
        shutil.copy(p, scenes / p.name)
    (scenes / "20190101T000000_dmi_prep.nc").mkdir()  # named like a scene, not one
    code = cli.main(["patches", "--scenes", str(scenes), "--out", str(tmp_path / "p.zarr"), "--patch", "16",
                     "--downsample", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and "1 failed" in out and "20190101T000000_dmi_prep.nc: not a scene file" in out


def test_weights_that_give_only_non_finite_outputs_chart_no_data_and_no_upload_package(run_dir_module, rtt_paths,
                                                                                     tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir_module, run)
    doc = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    state = next(v for v in doc.values() if isinstance(v, dict) and v and all(torch.is_tensor(t) for t in v.values()))
    for tensor in state.values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(doc, run / "model.pt")
    assert cli.main(["predict", str(run), str(rtt_paths[1]), "--out", str(tmp_path / "charts"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no upload package" in err and "the model gave non-finite outputs" in err
    assert not (tmp_path / "charts" / "upload_package.nc").exists()
    _, charts = cf.read_charts(next((tmp_path / "charts").glob("*_charts.nc")))
    assert all((values == schema.CHART_FILL).all() for values in charts.values())  # never a class
