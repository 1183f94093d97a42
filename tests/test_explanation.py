"""What notebooks/06_explain.ipynb draws on (explain/explanation.py, plots.py): the default tile, the share
of each acquisition with its date, the label-randomisation check and maps drawn over the SAR image."""

import datetime as dt
import logging
from pathlib import Path

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 (the renderer)
import numpy as np
import pytest
import torch

from seaice_lib import plots
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.scene import find_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.run import Run, model_spec
from seaice_lib.engine.whole_scenes import SceneTiles, as_config, scene_sequence
from seaice_lib.explain import explanation
from seaice_lib.jsondoc import content_sha256
from seaice_lib.models import create_model
from tests.scene_edits import unreadable_twin


def test_the_default_tile_is_the_one_the_most_acquisitions_cover(synthetic_dir, patch_store):
    scenes = find_scenes(synthetic_dir)
    targets = scenes[1:3]  # the second and third scene of the first region: sequences of 2 and 3 steps
    chosen = explanation.richest_tile(targets, scenes, patch_store)
    counts = {}  # oracle: every tile cut on its own, its steps with SAR counted
    for target in targets:
        tiles = SceneTiles(scene_sequence(target, scenes, as_config(patch_store)), as_config(patch_store))
        for i, origin in enumerate(tiles.origins):
            covered = tiles.batch([origin])["sar_mask"][0].numpy()
            counts[(target, i)] = (int(covered.any(axis=(1, 2)).sum()), int(covered.sum()))
    best = max(counts.values())
    assert best[0] >= 2, "the synthetic sequences should give a tile more than its target"
    assert chosen == next(key for key, value in counts.items() if value == best)  # the first of the best
    assert counts[chosen][0] > min(n for n, _ in counts.values()) or len({n for n, _ in counts.values()}) == 1


def test_the_default_tile_of_a_sar_only_model_reads_no_amsr2(synthetic_dir, patch_store, tmp_path):
    """RT20-R5: the default tile choice read every modality, so a NaN in AMSR2, which a SAR-only
    model never reads (and predict charts past), failed the scene in notebook 06."""
    from seaice_lib.data.scene import SceneError
    from tests.scene_edits import copy_scenes, edit_variable

    folder = copy_scenes(find_scenes(synthetic_dir), tmp_path / "scenes")
    scenes = find_scenes(folder)
    targets = scenes[1:3]
    expected = explanation.richest_tile(targets, scenes, patch_store)
    edit_variable(targets[0], "btemp_36_5h", lambda values: values.__setitem__((0, 0), np.nan))
    assert explanation.richest_tile(targets, scenes, patch_store, ("sar",)) == expected
    with pytest.raises(SceneError, match="btemp_36_5h"):
        explanation.richest_tile(targets, scenes, patch_store)


def test_a_single_date_model_is_explained_on_its_target_alone(synthetic_dir, patch_store):
    """RT20-R11: TSViT v1's maps have one step, the tile two: the date table failed. Its tile is
    the target alone (all it reads), and its one row takes every share."""
    scenes = find_scenes(synthetic_dir)
    both = explanation.scene_tile(scenes[2], scenes, patch_store, 0)
    alone = explanation.scene_tile(scenes[2], scenes, patch_store, 0, history=False)
    assert int(both.batch["step_mask"].sum()) >= 2 and alone.batch["step_mask"].shape == (1, 1)
    assert alone.inputs == (scenes[2],) and torch.equal(alone.batch["sar"][0, 0], both.batch["sar"][0, -1])
    torch.manual_seed(0)
    model = create_model("tsvit_v1", "tiny", downsample=2, img_size=16).eval()
    result = explanation.explain_tile(model, alone.batch, "SOD", 1, ig_steps=2)
    table = explanation.date_table(result, alone.batch, scenes[2])
    assert len(table) == 1 and table["days before"].tolist() == [0.0]
    assert table.filter(like="(%)").iloc[0].tolist() == pytest.approx([100.0] * (table.shape[1] - 2))
    assert explanation.richest_tile([scenes[2]], scenes, patch_store, history=False)[0] == scenes[2]


def test_the_date_table_gives_each_real_acquisition_its_share_and_date(synthetic_dir):
    target = find_scenes(synthetic_dir)[2]
    ones = np.ones((3, 4, 4))
    result = {"ig_map": ones * np.array([1.0, 3.0, 1e6])[:, None, None],  # the padding step never counts
              "attention": -ones * np.array([2.0, 2.0, 5.0])[:, None, None],  # shares of |values|
              "rollout": None, "gradcam": ones[0]}
    batch = {"step_mask": torch.tensor([[True, True, False]]), "days_before": torch.tensor([[2.5, 0.0, 0.0]])}
    table = explanation.date_table(result, batch, target)
    time = dt.datetime.strptime(target.name[:15], "%Y%m%dT%H%M%S")
    assert list(table.columns) == ["date", "days before", "ig_map (%)", "attention (%)"]
    assert list(table["date"]) == [f"{time - dt.timedelta(hours=60):%Y-%m-%d %H:%M}", f"{time:%Y-%m-%d %H:%M}"]
    assert list(table["days before"]) == [2.5, 0.0]
    assert table["ig_map (%)"].tolist() == pytest.approx([25.0, 75.0])
    assert table["attention (%)"].tolist() == pytest.approx([50.0, 50.0])


@pytest.fixture(scope="module")
def tiny_v3(patch_store):
    spec = model_spec(TrainConfig(store=str(patch_store), out_dir="unused", model="tsvit_v3", model_size="tiny"),
                      PatchDataset(patch_store).settings, patch_store)
    torch.manual_seed(0)
    return spec, create_model(spec["name"], spec["size"], **spec["kwargs"]).eval()


def test_an_earlier_acquisition_that_cannot_be_read_is_named_once_and_recorded_with_the_explanation(
        synthetic_dir, patch_store, run_dir, tmp_path, caplog):
    """A truncated copy of the target one second earlier: the tile is cut without it (the
    target's steps alone), one warning names the file, and explanation.json records it."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    target, earlier = unreadable_twin(synthetic_dir, scenes)
    with caplog.at_level(logging.WARNING):
        tile = explanation.scene_tile(target, scenes, patch_store, 0)
    unread = f"{earlier.name}: not a readable netCDF file"
    assert len(tile.left_out) == 1 and tile.left_out[0].startswith(unread)
    assert int(tile.batch["step_mask"][0].sum()) == 1  # the target alone
    named = [r.getMessage() for r in caplog.records if earlier.name in r.getMessage()]
    assert len(named) == 1 and named[0].startswith(f"{target.name}: explained without earlier acquisitions that "
                                                   f"could not be read: {unread}")
    result = {"ig_per_input": {"sar": 1.0}, "ig_per_step": np.ones(1)}
    explanation.save_explanation(result, tile, tmp_path / "explain", Run(run_dir),
                                 {"scene": target.name[:19], "tile": 0, "chart": "SOD", "class": "x"})
    info, _ = explanation.load_explanation(tmp_path / "explain")
    assert info["left_out_history_inputs"] == list(tile.left_out)
    # the unreadable file is recorded as read: a repair makes the explanation stale
    assert [e["file"] for e in info["input_files"]] == [str(earlier.absolute()), str(target.absolute())]
    clean = explanation.scene_tile(target, [target], patch_store, 0)
    explanation.save_explanation(result, clean, tmp_path / "clean", Run(run_dir),
                                 {"scene": target.name[:19], "tile": 0, "chart": "SOD", "class": "x"})
    assert "left_out_history_inputs" not in explanation.load_explanation(tmp_path / "clean")[0]


def test_an_explanation_records_the_weights_settings_and_scene_files_that_made_it(synthetic_dir, patch_store,
                                                                                     run_dir, tmp_path):
    """explanation.json names the run, the SHA-256 of the weights explained, the patch settings,
    every scene file the folder's outputs read (the tile's sequence, the ablations') with its size,
    modification time and SHA-256, and the release that made it; one without them is refused."""
    import hashlib
    import json
    import shutil

    from seaice_lib import __version__

    scenes = find_scenes(synthetic_dir)
    tile = explanation.scene_tile(scenes[2], scenes, patch_store, 0)
    steps = int(tile.batch["step_mask"][0].sum())
    ablated = explanation.files_read(scenes[4:5], scenes, patch_store)
    result = {"ig_per_input": {"sar": 1.0}, "ig_per_step": np.ones(steps)}
    folder = tmp_path / "explain"
    explanation.save_explanation(result, tile, folder, Run(run_dir), {"scene": scenes[2].name[:19], "tile": 0,
                                                                      "chart": "SOD", "class": "x"}, ablated)
    info, _ = explanation.load_explanation(folder)
    assert info["run"] == run_dir.name and info["run_dir"] == str(run_dir.resolve())
    assert info["weights_sha256"] == hashlib.sha256((run_dir / "model.pt").read_bytes()).hexdigest()
    assert info["settings"]["patch"] == 16 and info["settings"]["downsample"] == 2  # the store's (conftest)
    assert info["modalities"] == ["sar", "amsr2", "era5"]  # what the U-Net with its 2 km inputs (conftest) was given
    files = [Path(e["file"]) for e in info["input_files"]]
    sequence = [s.path.absolute() for s in scene_sequence(scenes[2], scenes, as_config(patch_store)).steps]
    assert len(sequence) == steps and files[:steps] == sequence  # the tile's, oldest first
    assert scenes[4].absolute() in files  # the ablated scene's
    assert len(files) == len(set(files)) and all(p.is_absolute() for p in files)
    for entry, path in zip(info["input_files"], files):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (entry["bytes"], entry["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)
    assert info["made_by"]["version"] == __version__
    explanation.check_current(folder, info)  # the run's model.pt and the scenes as they are
    # RT21-R3: the label-randomisation control it was checked against, bound by its weights
    control = tmp_path / "control"
    shutil.copytree(run_dir, control)
    controlled = tmp_path / "controlled"
    explanation.save_explanation(result, tile, controlled, Run(run_dir), {"scene": scenes[2].name[:19], "tile": 0,
                                                                          "chart": "SOD", "class": "x"}, ablated, control)
    checked = explanation.load_explanation(controlled)[0]
    assert checked["label_randomised_run"] == str(control.resolve())
    assert checked["label_randomised_weights_sha256"] == hashlib.sha256((control / "model.pt").read_bytes()).hexdigest()
    explanation.check_current(controlled, checked)
    (control / "model.pt").write_bytes((control / "model.pt").read_bytes() + b"trained again")
    with pytest.raises(ValueError, match="checked against the label-randomised weights .* not there now"):
        explanation.check_current(controlled, checked)
    # RT22-R8: a control recorded as anything but a path is named in one line, as every other key
    edited = json.loads((controlled / "explanation.json").read_text()) | {"label_randomised_run": ["x"]}
    edited["content_sha256"] = content_sha256(edited)
    (controlled / "explanation.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=f"{controlled / 'explanation.json'}: label_randomised_run must be a string or "
                                         "null, not a list"):
        explanation.load_explanation(controlled)
    record = json.loads((folder / "explanation.json").read_text())
    for key in ("weights_sha256", "input_files"):  # as explanations were written before they recorded them
        (folder / "explanation.json").write_text(json.dumps({k: v for k, v in record.items() if k != key}))
        with pytest.raises(ValueError, match=f"{folder}: explanation.json records no run_dir, weights_sha256 and "
                                             "input_files .*run the explanation again"):
            explanation.load_explanation(folder)
    # RT20-R9: one written before a model was given only what it reads may credit inputs it never had
    (folder / "explanation.json").write_text(json.dumps({k: v for k, v in record.items() if k != "modalities"}))
    with pytest.raises(ValueError, match=f"{folder}: explanation.json records no modalities .*run the explanation again"):
        explanation.load_explanation(folder)


def test_the_tables_beside_an_explanation_are_bound_to_it_and_it_to_its_content(synthetic_dir, patch_store, run_dir,
                                                                                  tmp_path):
    """Written last, explanation.json records the SHA-256 of ablation.csv, sanity.csv and
    sanity_labels.csv as they are then (null for one not there) and of its own content: a table
    written after it (as the notebook
    once wrote them), one put there since where it records none, or a record edited since, is
    refused naming the file; a record of an older release, which has none of these, naming the folder."""
    import hashlib
    import json

    scenes = find_scenes(synthetic_dir)
    tile = explanation.scene_tile(scenes[2], scenes, patch_store, 0)
    result = {"ig_per_input": {"sar": 1.0}, "ig_per_step": np.ones(int(tile.batch["step_mask"][0].sum()))}
    folder = tmp_path / "explain"
    folder.mkdir()
    (folder / "ablation.csv").write_text("ablation,chart,class,change\nno_history,combined,all,0.0\n")
    explanation.save_explanation(result, tile, folder, Run(run_dir), {"scene": scenes[2].name[:19], "tile": 0,
                                                                      "chart": "SOD", "class": "x", "trained_on": False})
    record = json.loads((folder / "explanation.json").read_text())
    assert record["tables_sha256"] == {"ablation.csv": hashlib.sha256((folder / "ablation.csv").read_bytes()).hexdigest(),
                                       "sanity.csv": None, "sanity_labels.csv": None}
    assert explanation.load_explanation(folder)[0] == record
    (folder / "sanity.csv").write_text("randomised up to,rank correlation\nhead,0.05\n")  # after the record
    with pytest.raises(ValueError, match=f"^{folder / 'sanity.csv'}: not written with the explanation "
                                         r"\(explanation.json records none\): run notebooks/06_explain.ipynb again$"):
        explanation.load_explanation(folder)
    (folder / "sanity.csv").unlink()
    (folder / "ablation.csv").write_text("ablation,chart,class,change\nno_history,combined,all,-12.5\n")
    with pytest.raises(ValueError, match=f"^{folder / 'ablation.csv'}: not the table explanation.json records"):
        explanation.load_explanation(folder)
    (folder / "explanation.json").write_text(json.dumps(record | {"scene": scenes[0].name[:19]}))
    with pytest.raises(ValueError, match=f"^{folder / 'explanation.json'}: edited since it was written"):
        explanation.load_explanation(folder)
    (folder / "explanation.json").write_text(json.dumps({k: v for k, v in record.items() if k != "content_sha256"}))
    with pytest.raises(ValueError, match=f"^{folder}: explanation.json records no content_sha256 and tables_sha256 "
                                         r"\(written before explanations recorded them\)"):
        explanation.load_explanation(folder)


def test_a_scene_the_run_trained_on_is_told_with_one_warning(synthetic_dir, run_dir, tmp_path, caplog):
    """As `seaice evaluate` warns for scores of training scenes: a scene the run trained on is told
    (True) with one warning naming it and the run, a validation scene (False) silently, and where
    the run records no training scenes (neither its weights nor its config) it is not known (None)."""
    from seaice_lib.engine.evaluation import Evaluation

    validated = Evaluation.from_json(run_dir / "evaluation.json").info["val_scenes"]
    trained = [p.name[:19] for p in find_scenes(synthetic_dir) if p.name[:19] not in validated]  # the store: all
    assert trained and validated
    run = Run(run_dir)
    with caplog.at_level(logging.WARNING):
        assert explanation.trained_on(run, validated[0]) is False
        assert not caplog.records
        assert explanation.trained_on(run, trained[0]) is True
    assert [r.getMessage() for r in caplog.records] == [
        f"{trained[0]}: a scene run {run_dir.name} trained on: its explanation shows how the model fits its training "
        "data, not how it charts unseen scenes (explanation.json records trained_on: true)"]
    unrecorded = tmp_path / "run"
    unrecorded.mkdir()
    (unrecorded / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    checkpoint = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in checkpoint.items() if k != "data"}, unrecorded / "model.pt")
    assert explanation.trained_on(Run(unrecorded), trained[0]) is None


def test_label_randomisation_compares_each_explanation_and_checks_the_run(tiny_v3, synthetic_dir, patch_store,
                                                                           tmp_path):
    torch.set_num_threads(1)
    spec, model = tiny_v3
    scenes = find_scenes(synthetic_dir)
    batch = explanation.scene_tile(scenes[2], scenes, patch_store, 0).batch
    result = explanation.explain_tile(model, batch, "SOD", 1, ig_steps=2)
    same = dict(explanation.label_randomisation_check(result, model, batch, "SOD", 1, ig_steps=2))
    expected = {"ig_map", "attention", "rollout", "relevance",
                "local modality share", "global modality share", "total modality share"}
    assert set(same) == expected
    assert all(v == pytest.approx(1.0) for v in same.values())  # a model explains like itself
    torch.manual_seed(1)
    other = create_model(spec["name"], spec["size"], **spec["kwargs"]).eval()
    redrawn = dict(explanation.label_randomisation_check(result, other, batch, "SOD", 1, ig_steps=2))
    assert set(redrawn) == expected and min(redrawn.values()) < 0.99
    # the run must have been trained on shuffled labels, with the explained model's architecture
    unet = {"name": "unet", "size": "tiny", "kwargs": {"downsample": 2, "sar_channels": 2}}
    fewer = {**spec, "modalities": ["sar", "amsr2"]}  # RT20-R7: the same weight shapes, other inputs
    coarser = {**spec, "tiles": {**spec["tiles"], "downsample": spec["tiles"]["downsample"] * 2,
                                 "window_days": 3.0}}  # RT21-R7: the same model, another store's tiles
    for name, shuffle, run_spec in (("plain", False, spec), ("shuffled", True, spec), ("other", True, unet),
                                    ("fewer", True, fewer), ("coarser", True, coarser)):
        run = tmp_path / name
        run.mkdir()
        TrainConfig(store=str(patch_store), out_dir=str(run), model="tsvit_v3", model_size="tiny",
                    shuffle_labels=shuffle).to_yaml(run / "config.yaml")
        weights = model if run_spec is not unet else create_model(unet["name"], unet["size"], **unet["kwargs"])
        torch.save({"spec": run_spec, "model": weights.state_dict()}, run / "model.pt")
    tiles = spec["tiles"]
    assert isinstance(explanation.label_randomised_model(tmp_path / "shuffled", model, tiles), type(model))
    with pytest.raises(ValueError, match="plain: not trained with shuffle_labels"):
        explanation.label_randomised_model(tmp_path / "plain", model, tiles)
    with pytest.raises(ValueError, match="other: its UNet is not the explained model's architecture"):
        explanation.label_randomised_model(tmp_path / "other", model, tiles)
    with pytest.raises(ValueError, match="fewer: its model reads sar \\+ amsr2, the explained model sar \\+ amsr2 \\+ era5"):
        explanation.label_randomised_model(tmp_path / "fewer", model, tiles)
    with pytest.raises(ValueError, match=f"coarser: trained on tiles cut with other settings: downsample "
                                         f"{tiles['downsample'] * 2} \\(the explained run's: {tiles['downsample']}\\), "
                                         f"window_days 3.0 \\(the explained run's: {tiles['window_days']!r}\\); train"):
        explanation.label_randomised_model(tmp_path / "coarser", model, tiles)
    # weights from before specs recorded their tiles: nothing to compare
    assert isinstance(explanation.label_randomised_model(tmp_path / "coarser", model, None), type(model))


def test_a_map_is_drawn_over_the_image_on_the_same_bounds_lines_down():
    image = np.arange(12.0).reshape(3, 4)
    image[0, 0] = np.nan
    values = np.linspace(0, 1, 12).reshape(3, 4)
    overlay = plots.map_over_image(image, values, "attention over HH", "attention")
    figure = hv.renderer("bokeh").get_plot(overlay).state
    base, top = (r for r in figure.renderers if type(r.glyph).__name__ == "Image")
    drawn = [np.asarray(r.data_source.data["image"][0]) for r in (base, top)]
    # bokeh draws an image's first row at the bottom: lines down means the stored rows reversed
    np.testing.assert_array_equal(drawn[0], image[::-1])
    np.testing.assert_array_equal(drawn[1], values[::-1])
    for key in ("x", "y", "dw", "dh"):
        assert base.data_source.data[key] == top.data_source.data[key]
    assert (base.data_source.data["dw"][0], base.data_source.data["dh"][0]) == (4, 3)
    assert top.glyph.global_alpha < 1 and base.glyph.global_alpha == 1
    assert base.glyph.color_mapper.palette[0] == "#000000" and top.glyph.color_mapper.palette[0] != "#000000"
    assert (figure.y_range.start, figure.y_range.end) == (0, 3) and figure.match_aspect
    assert figure.frame_width * 3 == pytest.approx(figure.frame_height * 4, abs=4)
    with pytest.raises(ValueError, match="shape"):
        plots.map_over_image(image, values[:2], "x", "x")


def test_a_new_explanation_starts_from_an_empty_folder_and_names_a_wrong_class(tmp_path):
    from seaice_lib.explain import explanation
    from seaice_lib.models import create_model

    folder = tmp_path / "explain"
    folder.mkdir()
    for name in ("ablation.csv", "sanity.csv", "explanation.json", "notes.txt"):
        (folder / name).write_text("an earlier run's")
    explanation.start_folder(folder)
    assert sorted(p.name for p in folder.iterdir()) == [explanation.EXPLAIN_FOLDER, "notes.txt"]  # the user's stays
    (folder / "ablation.csv").write_text("a run stopped before its explanation.json")
    explanation.start_folder(folder)  # the folder an earlier call marked: still an explanation's
    assert not (folder / "ablation.csv").exists()
    other = tmp_path / "mine"  # RT16-R10: files of its names in a folder that is no explanation's stay
    other.mkdir()
    for name in ("sanity.csv", "dates.csv", "notes.txt"):
        (other / name).write_text("the user's")
    with pytest.raises(ValueError, match=f"out_dir {other}: holds dates.csv, sanity.csv but no explanation"):
        explanation.start_folder(other)
    assert sorted(p.name for p in other.iterdir()) == ["dates.csv", "notes.txt", "sanity.csv"]
    (folder / "figures.json").write_text("{}")  # RT22-R6: `seaice figures` drew into it since
    with pytest.raises(ValueError, match=f"out_dir {folder}: a folder of figures"):
        explanation.start_folder(folder)
    model = create_model("unet", size="tiny", downsample=2)
    assert explanation.chosen_class(model, "SOD", "Young ice") == (2, "Young ice")
    for chart, name, message in (("sod", "Young ice", "chart must be one of"),
                                 ("SOD", "Young", "class_name must be a class of SOD"),
                                 ("SIC", "", "class_name must be a class of SIC")):
        with pytest.raises(ValueError, match=message):
            explanation.chosen_class(model, chart, name)
    regression = create_model("unet", size="tiny", downsample=2, sic_mode="regression")
    assert explanation.chosen_class(regression, "SIC", "") == (0, "value")
