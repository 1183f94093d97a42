"""The ``seaice`` command: every stage answers ``--help``, usage errors are one line with status 2,
and a trained run charts and scores whole scenes through ``predict`` and ``evaluate``."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import yaml

from seaice_lib import schema
from seaice_lib.charts import cf, submission
from seaice_lib.cli import STAGES, main
from seaice_lib.data.scene import Scene
from seaice_lib.engine.run import load_model
from seaice_lib.engine.whole_scenes import evaluate_scenes
from tests.charting_inputs import chartless_copy, write_reference
from tests.commands import usage_error

SEAICE = Path(sys.executable).parent / "seaice"  # the console script pip installed


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seaice_lib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_the_console_script_lists_every_stage():
    out = subprocess.run([str(SEAICE), "--help"], capture_output=True, text=True, check=True).stdout
    for stage, (_, text) in STAGES.items():
        assert f"{stage}  " in out and text in out


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as stop:
        main([stage, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: seaice {stage}")


@pytest.mark.parametrize("args, named", [
    (["no-such-stage"], "no-such-stage"),
    (["prepare"], "--raw"),
    (["patches", "--scenes", "x", "--out", "y", "--patch", "ten"], "--patch"),
    (["evaluate", "no_run", "--scenes", "no_such_folder"], "no_such_folder"),
    (["evaluate", "no_run", "--scenes", ".", "--references", "no_refs"], "--references no_refs"),
    (["predict", "no_run", "missing_prep.nc", "--out", "o"], "missing_prep.nc"),
])
def test_usage_errors_are_one_line_and_exit_2(args, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert named in usage_error(args, capsys)


@pytest.mark.parametrize("args, named", [
    (["predict", "run", "s_prep.nc", "--out", "a_file"], "--out: a_file: a file, not a folder"),
    (["edge-predict", "run", "s_prep.nc", "--out", "a_file"], "--out: a_file: a file, not a folder"),
    (["export", ".", "--out", "a_file"], "--out: a_file: a file, not a folder"),
    (["synthetic", "--out", "a_file/scenes"], "--out: a_file/scenes: a_file is a file, not a folder"),
    (["prepare", "--raw", ".", "--out", "a_file"], "--out: a_file: a file, not a folder"),
    (["notebook", "04_train", "o.ipynb", "--cwd", "no_such_folder"], "--cwd no_such_folder: no such folder"),
    (["notebook", "04_train", "a_folder"], "argument output: a_folder: a folder; name the file to write"),
    (["notebook", "04_train", "a_file/o.ipynb"], "argument output: a_file: a file, not a folder"),
    (["evaluate", ".", "--scenes", ".", "--out", "a_file/e.json"], "--out: a_file: a file, not a folder"),
])
def test_an_output_that_is_a_file_or_a_missing_working_folder_is_a_usage_error(args, named, capsys, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_folder").mkdir()
    assert named in usage_error(args, capsys)
    assert (tmp_path / "a_file").read_text() == "not a folder"
    assert not any((tmp_path / "a_folder").iterdir())


def test_python_m_runs_the_same_command_without_a_traceback(tmp_path):
    result = run("evaluate", "no_run", "--scenes", "no_such_folder", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == \
        "seaice evaluate: error: --scenes no_such_folder: no such folder"


@pytest.mark.parametrize("error", [MemoryError("Unable to allocate 74.5 GiB"),
                                   type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")])
def test_running_out_of_memory_is_one_line_not_a_traceback(error, capsys, monkeypatch):
    def stage(argv, prog):
        raise error
    monkeypatch.setitem(STAGES, "train", ("tests.test_cli:_stage", ""))
    monkeypatch.setattr(sys.modules[__name__], "_stage", stage, raising=False)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("seaice train: error: out of memory")
    assert str(error) in err and "batch size" in err


def test_other_runtime_errors_keep_their_traceback(monkeypatch):
    def stage(argv, prog):
        raise RuntimeError("a bug")
    monkeypatch.setitem(STAGES, "train", ("tests.test_cli:_stage", ""))
    monkeypatch.setattr(sys.modules[__name__], "_stage", stage, raising=False)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train"])


def test_evaluate_scores_the_runs_validation_scenes_at_80m(run_dir, synthetic_dir, patch_store):
    result = run("evaluate", run_dir, "--scenes", synthetic_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    doc = json.loads((run_dir / "evaluation_scenes.json").read_text())
    val = json.loads((run_dir / "evaluation.json").read_text())["info"]["val_scenes"]
    assert doc["info"]["scenes"] == val and doc["info"]["scope"] == "full scenes at 80 m"
    assert "trained_on" not in doc["info"] and "warning" not in result.stderr
    # both evaluations name the weights they scored
    digest = hashlib.sha256((run_dir / "model.pt").read_bytes()).hexdigest()
    assert doc["info"]["weights_sha256"] == digest
    assert json.loads((run_dir / "evaluation.json").read_text())["info"]["weights_sha256"] == digest
    paths = [next(synthetic_dir.glob(f"{sid}*_prep.nc")) for sid in val]
    direct = evaluate_scenes(load_model(run_dir), paths, synthetic_dir, patch_store)
    assert doc["scores"] == direct.scores()


def test_evaluate_on_scenes_the_run_trained_on_says_so(run_dir, synthetic_dir, tmp_path):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    val = json.loads((run_dir / "evaluation.json").read_text())["info"]["val_scenes"]
    trained = sorted({schema.scene_key(p) for p in synthetic_dir.glob("*_prep.nc")} - set(val))[:1]
    assert trained and config["val_fraction"] > 0  # the run drew its split: the weights record it
    out = tmp_path / "e.json"
    result = run("evaluate", run_dir, "--scenes", synthetic_dir, "--targets", *trained, *val[:1], "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"warning: the run trained on 1 of the 2 scenes scored ({trained[0]})" in result.stderr
    assert json.loads(out.read_text())["info"]["trained_on"] == trained


def test_evaluate_scores_test_scenes_against_reference_files(run_dir, synthetic_dir, patch_store,
                                                             tmp_path, capsys):
    """The test set ships its charts apart: a scene copied without them, and a reference file
    holding them, score as the labelled original."""
    folder, original = chartless_copy(synthetic_dir, tmp_path, 4)
    sid = original.name[:19]
    with Scene(original) as scene:
        charts = scene.charts()
    refs = tmp_path / "references"
    refs.mkdir()
    write_reference(charts, refs / f"{sid}_prep_reference.nc")
    out = tmp_path / "test_scores.json"
    result = run("evaluate", run_dir, "--scenes", folder, "--references", refs, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr  # targets: every scene with a reference file
    doc = json.loads(out.read_text())
    direct = evaluate_scenes(load_model(run_dir), [original], synthetic_dir, patch_store)
    assert doc["scores"] == direct.scores() and doc["info"]["scenes"] == [sid]
    other = sorted(synthetic_dir.glob("*_prep.nc"))[0].name[:19]
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(run_dir), "--scenes", str(folder), "--references", str(refs), "--targets",
              sid, other, "--quiet"])
    assert stop.value.code == 2
    assert f"no *_prep_reference.nc file for the scenes ['{other}']" in capsys.readouterr().err
    # a reference file whose scene --scenes lacks (its download failed): never a score over the rest
    write_reference(charts, refs / f"{other}_prep_reference.nc")
    (folder / f"{other}_prep.nc").unlink(missing_ok=True)
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(run_dir), "--scenes", str(folder), "--references", str(refs), "--quiet"])
    assert stop.value.code == 2
    assert f"reference files of scenes that --scenes {folder} lacks: ['{other}']" in capsys.readouterr().err


def test_evaluate_names_the_files_in_the_references_folder_that_are_not_reference_files(run_dir, synthetic_dir,
                                                                                     tmp_path, capsys):
    """A reference file named otherwise (``_reference.nc`` without ``_prep``, or a name that does not
    begin with the scene id) is no reference file: the scores leave it out, and one warning line
    names each such entry (a hidden file aside), so a misnamed file is never dropped unsaid."""
    folder, original = chartless_copy(synthetic_dir, tmp_path, 4)
    sid = original.name[:19]
    other = sorted(synthetic_dir.glob("*_prep.nc"))[5].name[:19]
    with Scene(original) as scene:
        charts = scene.charts()
    refs = tmp_path / "references"
    refs.mkdir()
    write_reference(charts, refs / f"{sid}_prep_reference.nc")
    misnamed = [f"copy of {sid}_prep_reference.nc", f"{other}_reference.nc"]
    for name in misnamed:
        write_reference(charts, refs / name)
    (refs / ".DS_Store").write_bytes(b"")
    out = tmp_path / "test_scores.json"
    assert main(["evaluate", str(run_dir), "--scenes", str(folder), "--references", str(refs), "--out", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"--references {refs}: 2 files not named <scene id>_prep_reference.nc, left out: {', '.join(sorted(misnamed))}" in err
    assert ".DS_Store" not in err and json.loads(out.read_text())["info"]["scenes"] == [sid]


def test_predict_writes_charts_and_the_upload_package(run_dir, synthetic_dir, tmp_path):
    targets = sorted(synthetic_dir.glob("*_prep.nc"))[:2]
    result = run("predict", run_dir, *targets, "--out", tmp_path / "charts", "--quiet",
                 "--probabilities")
    assert result.returncode == 0, result.stderr
    package = submission.read_upload_package(tmp_path / "charts" / "upload_package.nc")
    assert len(package) == 2
    for target in targets:
        path = tmp_path / "charts" / f"{target.name[:19]}_charts.nc"
        scene_id, charts = cf.read_charts(path)
        assert set(package[scene_id]) == set(schema.CHARTS)
        for chart in schema.CHARTS:
            np.testing.assert_array_equal(package[scene_id][chart], charts[chart])
        assert cf.read_probabilities(path)["SOD"].shape == (6, 55, 67)  # the 160 m model grid
        with netCDF4.Dataset(path) as nc:
            assert nc.model == f"unet (tiny), run {run_dir.name}"
            assert nc.model_config_sha256 == hashlib.sha256(
                (run_dir / "config.yaml").read_bytes()).hexdigest()
