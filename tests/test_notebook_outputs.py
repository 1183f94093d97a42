"""A notebook's out_dir records which execution made its files; the next execution's first file
removes the last one's (RT17-R4), and another stage's folder is refused (RT17-R2)."""

import hashlib
import json

import pytest

from seaice_lib.notebook import RECORD, OutputFolder
from seaice_lib.stages import STORE, other_stage


def _record(folder):
    return json.loads((folder / RECORD).read_text())


def test_the_record_lists_each_file_with_its_sha256_once_finished(tmp_path):
    out = OutputFolder(tmp_path / "explore", "02_explore", {"data_dir": "scenes", "downsample": 4, "other": 1})
    (out / "a_overview.png").write_bytes(b"png")
    doc = _record(out.folder)
    assert doc["finished"] is False and doc["files"] == {"a_overview.png": None}  # in progress: half-made
    (out / "class_shares.csv").write_text("x\n")
    out.finish(data_dir="scenes")
    doc = _record(out.folder)
    assert doc["finished"] is True and doc["notebook"] == "02_explore" and doc["inputs"] == {"data_dir": "scenes"}
    assert doc["files"] == {"a_overview.png": hashlib.sha256(b"png").hexdigest(),
                            "class_shares.csv": hashlib.sha256(b"x\n").hexdigest()}
    assert doc["parameters"] == {"data_dir": "scenes", "downsample": 4}  # the notebook's own parameters only
    assert doc["made_by"]["package"] == "seaice_lib" and doc["made_by"]["version"]


def test_the_next_execution_removes_the_last_one_s_files_at_its_first_file_only(tmp_path, capsys):
    first = OutputFolder(tmp_path / "explore", "02_explore", {})
    for name in ("a_overview.png", "class_shares.csv", "edited.csv"):
        (first / name).write_text(name)
    first.finish()
    (first.folder / "edited.csv").write_text("changed by hand")
    (first.folder / "notes.txt").write_text("mine")  # not listed: never touched
    second = OutputFolder(tmp_path / "explore", "02_explore", {})
    assert (first.folder / "a_overview.png").exists()  # nothing removed before a file is written
    (second / "b_overview.png").write_text("b")
    left = sorted(p.name for p in first.folder.iterdir() if not p.name.startswith("."))
    assert left == sorted(["b_overview.png", "edited.csv", "notes.txt", RECORD])
    out = capsys.readouterr().out
    assert "edited.csv of the last execution changed since it wrote them" in out
    assert "removed the last execution's 2 files from" in out and "a_overview.png, class_shares.csv" in out


def test_an_unfinished_execution_s_files_are_removed_and_a_bad_record_removes_nothing(tmp_path, capsys):
    first = OutputFolder(tmp_path / "o", "03_patches", {})
    (first / "store_scenes.csv").write_text("a")  # stopped before finish
    (OutputFolder(tmp_path / "o", "03_patches", {}) / "sequence.html").write_text("b")
    assert not (first.folder / "store_scenes.csv").exists()
    (first.folder / RECORD).write_text('{"files": {"sequence.html": 3}}')
    (OutputFolder(tmp_path / "o", "03_patches", {}) / "x.csv").write_text("c")
    assert (first.folder / "sequence.html").exists()
    assert "files.sequence.html must be" in capsys.readouterr().out


def test_names_outside_the_folder_are_neither_written_nor_removed(tmp_path):
    out = OutputFolder(tmp_path / "o", "02_explore", {})
    for name in ("../x.csv", "sub/x.csv", RECORD):
        with pytest.raises(ValueError, match="a file name directly in out_dir"):
            out / name
    (tmp_path / "precious.txt").write_text("keep")
    (out.folder / RECORD).write_text(json.dumps({"files": {"../precious.txt": None, RECORD: None}}))
    (OutputFolder(tmp_path / "o", "02_explore", {}) / "y.csv").write_text("y")
    assert (tmp_path / "precious.txt").read_text() == "keep"


def test_another_stage_s_folder_is_refused_and_nothing_written_there(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "20200101T000000_cis_prep.nc").write_bytes(b"")
    store = tmp_path / "p.zarr"
    (store / "scenes").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    for folder, why in ((scenes, "a folder of scenes"), (store, "a patch store"),
                        (store / "scenes" / "new", f"inside the patch store {store}")):
        with pytest.raises(ValueError, match=f"^out_dir {folder}: {why}, not a folder for this notebook to write into"):
            OutputFolder(folder, "02_explore", {})
    assert sorted(p.name for p in scenes.iterdir()) == ["20200101T000000_cis_prep.nc"]
    assert not (store / "scenes" / "new").exists() and not (store / ".seaice.lock").exists()
    assert other_stage(store, own=(STORE,)) == ""  # the notebook that builds a store holds it as its own


def test_another_notebook_s_folder_is_refused_before_anything_is_removed(tmp_path):
    """RT18-R4: 02 run into 03's out_dir removed 03's tables without a word."""
    first = OutputFolder(tmp_path / "o", "03_patches", {})
    (first / "store_scenes.csv").write_text("a")
    first.finish()
    with pytest.raises(ValueError, match=f"out_dir {tmp_path / 'o'}: holds the outputs of notebook 03_patches"):
        OutputFolder(tmp_path / "o", "02_explore", {})
    assert (tmp_path / "o" / "store_scenes.csv").read_text() == "a"


def test_an_empty_out_dir_is_refused_not_taken_for_the_notebooks_folder(tmp_path):
    """RT18-R19: out_dir "" wrote a notebook's outputs into notebooks/ (the kernel's folder)."""
    with pytest.raises(ValueError, match="out_dir '': empty"):
        OutputFolder("", "02_explore", {})


def test_links_are_followed_and_dots_resolved_before_the_stage_is_told(tmp_path):
    """RT18-R20: a link into a store's group folder or a run's checkpoints/ slipped through, and
    RUN/checkpoints/../new was refused as inside the checkpoints."""
    store, run = tmp_path / "p.zarr", tmp_path / "run"
    (store / "scenes").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"w")
    (tmp_path / "to_groups").symlink_to(store / "scenes")
    (tmp_path / "to_weights").symlink_to(run / "checkpoints")
    assert other_stage(tmp_path / "to_groups" / "new") == f"inside the patch store {store}"
    assert other_stage(tmp_path / "to_weights" / "x") == f"inside run {run}'s checkpoints"
    assert other_stage(run / "checkpoints" / ".." / "new") == ""  # run/new: beside the weights, not in them


def test_an_executed_notebook_or_a_batch_is_never_written_inside_a_store_or_a_run_s_weights(tmp_path, capsys):
    """RT18-R22: `seaice notebook NB STORE/scenes/x.ipynb` and `batch --runs RUN/checkpoints` wrote there."""
    from seaice_lib import cli

    store, run = tmp_path / "p.zarr", tmp_path / "run"
    (store / "scenes").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"w")
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {downsample: [8]}\n")
    for argv, said in ((["notebook", "02_explore", store / "scenes" / "nb.ipynb"], f"inside the patch store {store}"),
                       (["notebook", "02_explore", run / "checkpoints" / "nb.ipynb"], f"inside run {run}'s checkpoints"),
                       (["batch", "02_explore", grid, "--name", "g", "--runs", run / "checkpoints"],
                        f"inside run {run}'s checkpoints, not a folder of executions")):
        with pytest.raises(SystemExit) as stop:
            cli.main([str(a) for a in argv])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
    assert sorted(p.name for p in (store / "scenes").iterdir()) == []
