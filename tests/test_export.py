"""`seaice export`: ONNX graphs of every model kind agree with PyTorch, on batches and whole scenes.

Each kind is trained for a few steps by `seaice train` on the session's store, exported by
`seaice export --int8`, and run by the edge runtime (ONNX Runtime) against the PyTorch model: on
padded batches of stored patches of several sizes and sequence lengths, with and without AMSR2/ERA5
(v3), and on every synthetic scene charted whole (tiles, blending, 80 m) by both paths.
"""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from seaice_lib import cli, schema
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.data.patches import config_from_store, extract_store, store_scenes_dir
from seaice_lib.data.scene import Scene, find_scenes
from seaice_lib.data.splits import split_scenes
from seaice_lib.data.store import store_groups_sha256
from seaice_lib.edge.export import export_run
from seaice_lib.edge.runtime import EdgeModel
from seaice_lib.engine import whole_scenes
from seaice_lib.engine.metrics import AutoIceAccumulator
from seaice_lib.engine.run import load_model

KINDS = ("unet", "tsvit_v1", "tsvit_v2", "tsvit_v3")
# largest |ONNX fp32 - PyTorch| over logits, SIC values and blended probabilities
LOGIT_BOUND = 1e-5
SAME_CLASSES = 0.999  # share of 80 m pixels with identical classes, per chart, over the scenes
# |official combined score of int8 - of PyTorch| in points (measured on these scenes: see docs/edge.md)
INT8_SCORE_BOUND = 1.5
EXPORT_WARNINGS: dict[str, list[str]] = {}  # kind -> the warnings its `seaice export` gave
# U-Net, static int8 against fp32 on the scenes: largest blended-probability difference and share of
# identical classes per chart. 8-bit activations step by 1/255 of each calibrated range; through the
# network the probabilities moved by under 1e-3 (measured 7e-4), so only near ties flip: this tiny
# model, trained 10 steps, has many (fp32 top-2 margins under 3e-4 at every flipped pixel); measured
# 98.5 % (SIC), 100 % (SOD), 99.9 % (FLOE) identical.
INT8_PROBABILITY_BOUND = 0.01
INT8_SAME_CLASSES = 0.97


@pytest.fixture(scope="module", params=KINDS)
def exported(request, patch_store, tmp_path_factory):
    """(kind, run folder) of a tiny model trained 10 steps and exported with --int8."""
    kind = request.param
    run = tmp_path_factory.mktemp(f"export_{kind}") / "run"
    config = run.parent / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(patch_store), "out_dir": str(run), "model": kind, "model_size": "tiny",
        "steps": 10, "steps_per_epoch": 10, "warmup_steps": 1, "batch_size": 8, "lr": 3e-3,
        "device": "cpu", "evaluate": False, "progress": False, "checkpoint_every": 0}))
    assert cli.main(["train", "--config", str(config)]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["export", str(run), "--int8"]) == 0
    EXPORT_WARNINGS[kind] = [str(w.message) for w in caught]
    return kind, run


def test_the_model_is_traced_in_eval_mode(exported):
    """The exporter warns of a module in training mode (dropout, batch statistics); the inputs'
    shared batch and steps axes are meant, so its note on them is not passed on."""
    kind, _ = exported
    assert not [m for m in EXPORT_WARNINGS[kind] if "training mode" in m]
    assert not [m for m in EXPORT_WARNINGS[kind] if "will not be used, since it shares" in m]


def _numpy(batch: dict) -> dict:
    return {k: v.numpy() for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _largest_difference(expected: dict, got: dict) -> float:
    assert set(expected) == set(got) == set(schema.CHARTS)
    for chart in expected:
        assert got[chart].shape == tuple(expected[chart].shape) and got[chart].dtype == np.float32
    return max(float(np.abs(got[c] - expected[c].numpy()).max()) for c in expected)


def test_export_json_describes_the_graph(exported, patch_store):
    kind, run = exported
    doc = json.loads((run / "export" / "export.json").read_text())
    assert doc["model"]["name"] == kind and doc["model"]["size"] == "tiny"
    assert doc["patch_settings"] == json.loads(json.dumps(dataclasses.asdict(config_from_store(patch_store))))
    assert doc["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert all((run / "export" / f).stat().st_size > 1000 for f in doc["files"].values())
    assert doc["torch_version"] == torch.__version__ and doc["opset"] == 18
    inputs = {i["name"]: (i["dtype"], i["shape"]) for i in doc["inputs"]}
    assert inputs["sar"] == ("float32", ["batch", "steps", 3, 16, 16])
    assert inputs["sar_mask"] == ("bool", ["batch", "steps", 16, 16])
    assert inputs["day_of_year"] == ("int64", ["batch", "steps"])
    if kind in ("tsvit_v1", "tsvit_v2"):  # RT20-R10: a SAR-only architecture's graph takes no 2 km input
        assert not {"amsr2", "era5", "grid2km_offset"} & set(inputs)
    else:
        assert inputs["grid2km_offset"] == ("int64", ["batch", 2])
        assert inputs["amsr2"][1][1] == 14 and inputs["era5"][1][1] == 6
    masks = {"amsr2_mask", "era5_mask"}
    assert masks <= set(inputs) if kind == "tsvit_v3" else not masks & set(inputs)
    assert [o["name"] for o in doc["outputs"]] == list(schema.CHARTS)
    assert doc["check"]["largest_logit_difference"] < LOGIT_BOUND


def _batches(store):
    """Padded batches of stored patches: sizes 1, 5 and 8, sequences of 1-3 steps mixed, and one
    of 5 steps (each patch's sequence repeated: longer than any the store or the export saw)."""
    data = PatchDataset(store)
    by_length = sorted(range(len(data)), key=lambda i: len(data[i]["day_of_year"]))
    picks = [by_length[:1], by_length[::max(1, len(data) // 5)][:5], by_length[-4:] + by_length[:4]]
    batches = [collate([data[i] for i in pick]) for pick in picks]
    longer = dict(batches[-1])
    for key in ("sar", "sar_mask", "days_before", "day_of_year", "step_mask"):
        longer[key] = torch.cat([longer[key], longer[key][:, :2]], dim=1)
    assert {b["sar"].shape[0] for b in batches} == {1, 5, 8}
    assert {b["sar"].shape[1] for b in batches} >= {1, 3} and not batches[-1]["step_mask"].all()
    return batches + [longer]


def test_graph_matches_pytorch_on_batches_of_any_size_and_length(exported, patch_store):
    kind, run = exported
    model, edge = load_model(run), EdgeModel(run)
    for batch in _batches(patch_store):
        with torch.inference_mode():
            expected = model(batch)
        assert _largest_difference(expected, edge.run(_numpy(batch))) < LOGIT_BOUND


def test_v3_charts_with_and_without_amsr2_and_era5(exported, patch_store):
    kind, run = exported
    model, edge = load_model(run), EdgeModel(run)
    batch = _batches(patch_store)[2]
    if kind != "tsvit_v3":
        assert edge.optional_modalities == ()
        with pytest.raises(ValueError, match="cannot chart without"):
            edge.run(_numpy(batch), absent=["amsr2"])
        return
    assert edge.optional_modalities == ("amsr2", "era5")
    outputs = []
    for absent in ([], ["amsr2"], ["era5"], ["amsr2", "era5"]):
        without = {k: v for k, v in batch.items() if k not in absent}  # the keys left out
        with torch.inference_mode():
            expected = model(without)
        got = edge.run(_numpy(batch), absent=absent)
        assert _largest_difference(expected, got) < LOGIT_BOUND
        outputs.append(got["SOD"])
    assert all(np.abs(outputs[0] - o).max() > 1e-3 for o in outputs[1:])  # absence changes the charts
    # one sample without AMSR2, as PyTorch's per-sample presence flag has it
    present = torch.tensor([True, False] + [True] * (len(batch["sar"]) - 2))
    with torch.inference_mode():
        expected = model(batch | {"amsr2_mask": present})
    feeds = {n: a for n, a in _numpy(batch).items()} | {"amsr2_mask": present.numpy(),
                                                       "era5_mask": np.ones(len(present), bool)}
    got = dict(zip(edge.output_names, edge.session.run(edge.output_names, {
        n: feeds[n] for n in edge.input_names})))
    assert _largest_difference(expected, got) < LOGIT_BOUND


def _edge_score(edge: EdgeModel, paths, scenes_dir) -> float:
    """Official combined score of ``edge``'s charts, every labelled pixel counted (as
    :func:`~seaice_lib.engine.whole_scenes.evaluate_scenes` counts them)."""
    acc = AutoIceAccumulator()
    for path in paths:
        with Scene(path) as scene:
            acc.update(scene.charts(), edge.predict_scene(path, scenes_dir, mask_no_data=False).charts)
    return acc.scores()["combined"]


def test_scenes_are_charted_alike_and_int8_keeps_the_score(exported, patch_store, synthetic_dir):
    kind, run = exported
    cfg = config_from_store(patch_store)
    model, edge, edge8 = load_model(run), EdgeModel(run, threads=1), EdgeModel(run, "int8", threads=1)
    paths = sorted(synthetic_dir.glob("*_prep.nc"))
    same, total = 0, 0
    for i, path in enumerate(paths):
        batch_size = (1, 3, 8)[i % 3]
        expected = whole_scenes.predict_scene(model, path, synthetic_dir, cfg, batch_size=batch_size,
                                        keep_blended=True)
        got = edge.predict_scene(path, synthetic_dir, batch_size=batch_size, keep_blended=True)
        assert got.scene_id == expected.scene_id and got.n_tiles == expected.n_tiles
        for chart in schema.CHARTS:
            assert got.charts[chart].dtype == np.uint8 and got.charts[chart].shape == (110, 135)
            np.testing.assert_array_equal(got.charts[chart] == 255, expected.charts[chart] == 255)
            same += int((got.charts[chart] == expected.charts[chart]).sum())
            total += got.charts[chart].size
            # no outputs (NaN) on the same cells: those covering a pixel without a class for lack of input
            np.testing.assert_array_equal(np.isnan(got.blended[chart]), np.isnan(expected.blended[chart]))
            assert np.nanmax(np.abs(got.blended[chart] - expected.blended[chart])) < LOGIT_BOUND
    assert same / total >= SAME_CLASSES
    reference = whole_scenes.evaluate_scenes(model, paths, synthetic_dir, cfg).scores()["combined"]
    assert _edge_score(edge, paths, synthetic_dir) == pytest.approx(reference, abs=0.01)
    change = _edge_score(edge8, paths, synthetic_dir) - reference
    print(f"{kind}: int8 changes the combined score by {change:+.2f} points")
    assert abs(change) < INT8_SCORE_BOUND


def test_int8_quantises_the_unet_convolutions_statically(exported, patch_store, synthetic_dir, tmp_path):
    import onnx
    import onnxruntime as ort

    kind, run = exported
    doc = json.loads((run / "export" / "export.json").read_text())
    graph = onnx.load(str(run / "export" / "model.int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    if kind != "unet":  # TSViT: dynamic, its MatMul weights int8
        assert doc["int8"]["method"] == "dynamic" and "MatMulInteger" in ops
        return
    assert doc["int8"]["method"] == "static" and doc["int8"]["calibration_patches"] > 0
    # calibrated on the training scenes recorded with the weights, never a validation scene
    recorded = torch.load(run / "model.pt", weights_only=True)["data"]
    train, validation = split_scenes(patch_store, 0.2, 0, by="region")  # the config's split, drawn again
    assert (recorded["train_scenes"], recorded["val_scenes"]) == (train, validation) and validation
    assert doc["calibration_scenes"] and set(doc["calibration_scenes"]) <= set(train)
    # a store of the validation scenes alone (the same settings): calibration there is refused
    only_validation = tmp_path / "validation_scenes"
    only_validation.mkdir()
    for path in find_scenes(store_scenes_dir(patch_store)):
        if path.name[:19] in validation:
            (only_validation / path.name).symlink_to(path)
    store = tmp_path / "validation.zarr"
    extract_store(only_validation, store, config_from_store(patch_store), progress=False)
    with pytest.raises(ValueError, match="holds none of run .* training scenes"):
        export_run(run, tmp_path / "refused", int8=True, store=store)
    assert not (tmp_path / "refused").exists()
    assert doc["calibration_store"] == str(patch_store.resolve()) and "calibration_scenes_missing" not in doc
    assert doc["calibration_store_content"] == store_groups_sha256(patch_store, doc["calibration_scenes"])
    # RT18-R10: a store of one training scene calibrates on it, recorded and said
    one = tmp_path / "one_training_scene"
    one.mkdir()
    for path in find_scenes(store_scenes_dir(patch_store)):
        if path.name[:19] == train[0]:
            (one / path.name).symlink_to(path)
    extract_store(one, tmp_path / "one.zarr", config_from_store(patch_store), progress=False)
    export_run(run, tmp_path / "partial", int8=True, store=tmp_path / "one.zarr")
    partial = json.loads((tmp_path / "partial" / "export.json").read_text())
    assert partial["calibration_scenes"] == [train[0]] and partial["calibration_scenes_missing"] == sorted(train[1:])
    assert partial["calibration_store"] == str((tmp_path / "one.zarr").resolve())
    # every convolution but the three heads takes int8 weights (QDQ) ...
    int8_weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    dequantized = {n.output[0] for n in graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in int8_weights}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert sum(n.input[1] in dequantized for n in convs) == len(convs) - len(schema.CHARTS) > 5
    # ... and ONNX Runtime runs them as int8 kernels
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(run / "export" / "model.int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert optimized.count("QLinearConv") == len(convs) - len(schema.CHARTS)
    edge, edge8 = EdgeModel(run, threads=1), EdgeModel(run, "int8", threads=1)
    same = dict.fromkeys(schema.CHARTS, 0)
    total = 0
    for path in sorted(synthetic_dir.glob("*_prep.nc")):
        fp32 = edge.predict_scene(path, synthetic_dir, keep_blended=True)
        int8 = edge8.predict_scene(path, synthetic_dir, keep_blended=True)
        for chart in schema.CHARTS:
            np.testing.assert_array_equal(np.isnan(int8.blended[chart]), np.isnan(fp32.blended[chart]))
            assert np.nanmax(np.abs(int8.blended[chart] - fp32.blended[chart])) < INT8_PROBABILITY_BOUND
            same[chart] += int((int8.charts[chart] == fp32.charts[chart]).sum())
        total += fp32.charts["SIC"].size
    assert min(same.values()) / total >= INT8_SAME_CLASSES


def test_export_command_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["export", str(tmp_path / "missing")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"seaice export: error: {tmp_path / 'missing'}: no such run folder"
    with pytest.raises(SystemExit) as stop:  # a folder that is no run: a usage error, as evaluate says (RT15-R17)
        cli.main(["export", str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"seaice export: error: {tmp_path}: no config.yaml (is it a run folder of `seaice train`?)"


def test_the_export_records_each_model_s_hash_and_the_runtime_refuses_another_file(exported, tmp_path):
    import hashlib
    import shutil

    kind, run = exported
    doc = json.loads((run / "export" / "export.json").read_text())
    for precision, name in doc["files"].items():  # the hash of the bytes on disk, computed here
        assert doc["sha256"][precision] == hashlib.sha256((run / "export" / name).read_bytes()).hexdigest()
    copy = tmp_path / "export"
    shutil.copytree(run / "export", copy)
    shutil.copy(copy / "model.int8.onnx", copy / "model.onnx")  # a model from elsewhere under the same name
    with pytest.raises(ValueError, match="not the model export.json describes"):
        EdgeModel(copy, "fp32")
    EdgeModel(copy, "int8")  # the file that matches its hash still loads
    del doc["sha256"]
    (copy / "export.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="records no hash of model.int8.onnx"):
        EdgeModel(copy, "int8")


def test_an_opset_the_exporter_does_not_write_is_an_error_not_a_wrong_record(patch_store, tmp_path, capsys):
    from seaice_lib.engine.config import TrainConfig
    from seaice_lib.engine.training import train

    run = tmp_path / "run"
    train(TrainConfig(store=str(patch_store), out_dir=str(run), model="unet", model_size="tiny", steps=1,
                      steps_per_epoch=1, warmup_steps=1, batch_size=4, device="cpu", evaluate=False,
                      progress=False, checkpoint_every=0))
    with pytest.raises(SystemExit) as stop:  # the graph's functions are written in opset 18: refused up front
        cli.main(["export", str(run), "--out", str(tmp_path / "x"), "--opset", "7"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--opset must be 18.." in err and "not 7" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "export.json").exists() and not (tmp_path / "x" / "model.onnx").exists()


def test_int8_calibration_refuses_a_store_group_changed_since_it_was_cut(patch_store, tmp_path):
    """Calibrating on patches whose arrays were edited after they were cut would set activation
    ranges from data that is not the scene's: refused naming the store and the group; so is a
    group another release cut (RT12 R9), which ``seaice patches`` would cut again."""
    import shutil

    import zarr

    from seaice_lib.edge.export import calibration_batches
    from seaice_lib.sample_format import MODEL_INPUTS

    store = tmp_path / "patches.zarr"
    shutil.copytree(patch_store, store)
    scenes = sorted(p.name for p in (store / "scenes").iterdir())
    assert calibration_batches(store, MODEL_INPUTS, scenes[:2], patches=4)  # as cut: calibrates
    sar = zarr.open_array(store / "scenes" / scenes[1] / "sar", mode="r+")
    sar[0] = -sar[0]
    with pytest.raises(ValueError, match=rf"{store}: out of date with .*: scene group {scenes[1]}: changed since it "
                                         rf"was cut .*; cut it again with `seaice patches"):
        calibration_batches(store, MODEL_INPUTS, scenes[:2], patches=4)
    sar[0] = -sar[0]  # as cut again
    meta_path = store / "scenes" / scenes[0] / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["made_by"]["version"] = "0.0.9"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"{store}: out of date with .*: scene group {scenes[0]}: made by seaice_lib "
                                         r"0\.0\.9; cut it again with `seaice patches"):
        calibration_batches(store, MODEL_INPUTS, scenes[:2], patches=4)


def test_int8_calibration_refuses_a_store_out_of_date_with_its_scenes(rtt_paths, tmp_path):
    """A training scene re-delivered (SAR changed) after the store was cut: calibrating int8 on the
    old patches would fit activation ranges to SAR the scene no longer holds, so it is refused as
    training refuses the store, naming the store, the group, the file and the command."""
    from seaice_lib.data.patches import PatchConfig
    from seaice_lib.edge.export import calibration_batches
    from seaice_lib.sample_format import MODEL_INPUTS
    from tests.scene_edits import copy_scenes, edit_variable

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "p.zarr"
    extract_store(scenes, store, PatchConfig(patch=16, downsample=2, max_steps=1), progress=False)
    ids = sorted(p.name[:19] for p in rtt_paths)
    assert calibration_batches(store, MODEL_INPUTS, ids[:2], patches=4)  # up to date: calibrates
    edit_variable(scenes / rtt_paths[0].name, "nersc_sar_primary", lambda values: values.__iadd__(3))
    sid = rtt_paths[0].name[:19]
    with pytest.raises(ValueError, match=rf"{store}: out of date with {scenes}: scene group {sid}: their input files "
                                         rf"changed \({rtt_paths[0].name} changed since.*`seaice patches --scenes "):
        calibration_batches(store, MODEL_INPUTS, sorted({sid} | set(ids[:2])), patches=4)


def test_an_export_folder_holding_another_run_s_export_or_no_export_is_refused(patch_store, tmp_path, capsys):
    """`export --out` refuses (exit 2, nothing written) a folder holding another run's export or
    files of an export's names that no export wrote; the run's own export is replaced. An export of
    another run found in a run's folder is named as such, never as the run having trained on."""
    import shutil

    from seaice_lib.engine.config import TrainConfig
    from seaice_lib.engine.training import train

    runs = {}
    for name, seed in (("a", 0), ("b", 1)):
        runs[name] = tmp_path / name
        train(TrainConfig(store=str(patch_store), out_dir=str(runs[name]), model="unet", model_size="tiny", steps=1,
                          steps_per_epoch=1, warmup_steps=1, batch_size=4, device="cpu", evaluate=False,
                          progress=False, checkpoint_every=0, seed=seed))
    assert cli.main(["export", str(runs["a"])]) == 0
    made = {p.name: p.read_bytes() for p in (runs["a"] / "export").iterdir() if not p.name.startswith(".")}
    with pytest.raises(SystemExit) as stop:
        cli.main(["export", str(runs["b"]), "--out", str(runs["a"] / "export")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert f"holds the export of {(runs['a'] / 'model.pt').resolve()}, not of run {runs['b'].resolve()}" in err
    assert {p.name: p.read_bytes() for p in (runs["a"] / "export").iterdir() if not p.name.startswith(".")} == made
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "model.onnx").write_text("not ours")
    with pytest.raises(SystemExit) as stop:
        cli.main(["export", str(runs["b"]), "--out", str(theirs)])
    assert stop.value.code == 2 and "holds model.onnx but no readable export.json" in capsys.readouterr().err
    assert (theirs / "model.onnx").read_text() == "not ours"
    with pytest.raises(SystemExit) as stop:  # RT15-R8: another training's run folder
        cli.main(["export", str(runs["b"]), "--out", str(runs["a"])])
    assert stop.value.code == 2 and "a run folder of another training" in capsys.readouterr().err
    assert not (runs["a"] / "model.onnx").exists()
    with pytest.raises(SystemExit) as stop:  # RT18-R5: nor its own (train would then refuse the run as an export)
        cli.main(["export", str(runs["a"]), "--out", str(runs["a"])])
    assert stop.value.code == 2 and f"--out {runs['a']}: the run's own folder, not an export folder" in \
        capsys.readouterr().err
    assert not (runs["a"] / "model.onnx").exists()
    assert cli.main(["export", str(runs["a"])]) == 0  # its own export: replaced
    shutil.copytree(runs["a"], tmp_path / "a_copy")  # a run folder copied, its export's source the original's
    assert cli.main(["export", str(tmp_path / "a_copy")]) == 0  # its own export/ slot: replaced all the same
    assert cli.main(["export", str(runs["b"]), "--out", str(tmp_path / "b_export")]) == 0
    shutil.rmtree(runs["a"] / "export")
    shutil.copytree(tmp_path / "b_export", runs["a"] / "export")  # b's export moved into a's folder
    with pytest.raises(ValueError, match=f"it is the export of {(runs['b'] / 'model.pt').resolve()}"):
        EdgeModel(runs["a"])
