"""One failure policy for the commands that walk many items (seaice_lib/walk.py): a bad item is
named and skipped, the rest go on, and the command ends non-zero with a summary; a defect of ours
is not a bad item and still stops with its traceback."""

import json
import logging

import numpy as np
import pytest

from seaice_lib import cli
from seaice_lib.charts import follow
from seaice_lib.data.scene import SceneError
from seaice_lib.engine.run import Run, load_model
from seaice_lib.engine.whole_scenes import evaluate_scenes
from seaice_lib.walk import Walk
from tests.scene_edits import copy_scenes, edit_variable


def test_a_bad_item_is_named_once_and_the_walk_goes_on():
    lines = []
    walk = Walk("scenes", report=lines.append)

    def work(item):
        if item == "b":
            raise SceneError("/data/b.nc", "not a readable netCDF file")
        if item == "c":
            raise OSError("disk gone")
        return item.upper()

    assert walk.each(["a", "b", "c", "d"], work, name=lambda item: f"/data/{item}.nc") == ["A", "D"]
    # a message that already names the item is not prefixed again
    assert walk.failed == ["/data/b.nc: not a readable netCDF file", "/data/c.nc: disk gone"]
    assert lines == ["failed: /data/b.nc: not a readable netCDF file", "failed: /data/c.nc: disk gone"]
    assert walk.summary("charted") == ("2 scenes charted, 2 failed\n  failed: /data/b.nc: not a readable netCDF file"
                                       "\n  failed: /data/c.nc: disk gone")
    assert walk.exit_code == 1 and Walk().exit_code == 0


def test_a_defect_is_not_a_bad_item_and_a_strict_walk_raises():
    walk = Walk(report=lambda line: None)
    with pytest.raises(TypeError):  # our bug: never swallowed as a bad input
        walk.attempt("x", lambda: None + 1)
    with pytest.raises(ValueError, match="bad x"):
        Walk(stop_on_failure=True).attempt("x", lambda: (_ for _ in ()).throw(ValueError("bad x")))
    assert walk.failed == []


@pytest.fixture
def with_a_bad_scene(rtt_paths, tmp_path):
    """A copy of the tiny set where one scene has NaN in half of an AMSR2 channel: (folder, bad file)."""
    folder = copy_scenes(rtt_paths, tmp_path / "scenes")
    bad = edit_variable(folder / rtt_paths[2].name, "btemp_18_7v",
                        lambda values: values.__setitem__(slice(0, values.shape[0] // 2), np.nan))
    return folder, bad


def _main(argv):
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return stop.code


def test_predict_charts_the_good_scenes_names_the_bad_one_and_writes_no_partial_package(run_dir, with_a_bad_scene,
                                                                                       tmp_path, capsys):
    folder, bad = with_a_bad_scene
    scenes = sorted(folder.glob("*_prep.nc"))
    out = tmp_path / "charts"
    code = _main(["predict", str(run_dir), *map(str, scenes), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{len(scenes) - 1} scenes charted into {out}, 1 failed" in err
    assert f"failed: {bad}: btemp_18_7v" in err and "no upload package" in err
    assert sorted(p.name for p in out.glob("*_charts.nc")) == sorted(
        f"{p.name[:19]}_charts.nc" for p in scenes if p != bad)
    assert not (out / "upload_package.nc").exists()
    # the good scenes alone: their charts are reused (same maker) and the package written
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*_charts.nc")}
    good = [p for p in scenes if p != bad]
    assert _main(["predict", str(run_dir), *map(str, good), "--out", str(out), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_charts.nc")} == stamps
    assert (out / "upload_package.nc").is_file()


def test_a_named_file_that_is_not_a_scene_is_a_bad_item_not_a_traceback(run_dir, tmp_path, capsys):
    text = tmp_path / "20190101T000000_dmi_prep.nc"
    text.write_text("not a netCDF file")
    assert _main(["predict", str(run_dir), str(text), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {text}: not a readable netCDF file" in err and "0 scenes charted" in err
    assert "Traceback" not in err and not list((tmp_path / "out").glob("*.nc"))


def test_evaluate_scores_the_good_scenes_and_lists_the_bad_one(run_dir, with_a_bad_scene, tmp_path, capsys):
    folder, bad = with_a_bad_scene
    scenes = sorted(folder.glob("*_prep.nc"))
    ids = [p.name[:19] for p in scenes]
    out = tmp_path / "evaluation.json"
    code = _main(["evaluate", str(run_dir), "--scenes", str(folder), "--targets", *ids, "--out", str(out),
                  "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and f"failed: {bad}: btemp_18_7v" in err
    assert f"{len(ids) - 1} scenes scored, 1 failed" in err
    doc = json.loads(out.read_text())
    assert doc["info"]["failed_scenes"] == [bad.name[:19]]
    assert doc["info"]["scenes"] == [s for s in ids if s != bad.name[:19]]
    # oracle: the library scoring only the good scenes gives the same confusion matrices
    good = evaluate_scenes(load_model(run_dir), [p for p in scenes if p != bad], folder,
                           Run(run_dir).patch_config(None))
    assert {c: np.asarray(m).tolist() for c, m in doc["confusion"].items()} == \
        {c: m.tolist() for c, m in good.confusion.items()}


def _landing_with_traps(rtt_paths, folder):
    """``folder`` with copies of the tiny set, a folder named like a scene file and a symlink loop."""
    copy_scenes(rtt_paths, folder)
    (folder / "20190101T000000_dmi_prep.nc").mkdir()
    loop = folder / "20190102T000000_dmi_prep.nc"
    loop.symlink_to(loop)
    return folder


def test_follow_names_a_symlink_loop_and_a_folder_once_and_charts_the_scenes(rtt_paths, tmp_path):
    folder = _landing_with_traps(rtt_paths[:1], tmp_path / "landing")
    lines = []
    counts = follow.follow(folder, lambda path: follow.Charted(path, 1, 0.0), done=lambda path: False,
                           poll_s=0.01, max_scenes=1, report=lines.append)
    assert counts["charted"] == 1 and counts["scenes"][0]["scene"] == rtt_paths[0].name
    skipped = [line for line in lines if line.startswith("skipped: ")]
    assert len(skipped) == counts["skipped"] == 2  # each named once, however many polls
    assert any("20190101T000000_dmi_prep.nc: a folder" in line for line in skipped)
    assert any("20190102T000000_dmi_prep.nc: cannot be read (Too many levels of symbolic links)" in line
               for line in skipped)


def test_evaluate_on_a_scenes_folder_with_a_symlink_loop_scores_the_scenes_and_names_the_loop(
        run_dir, rtt_paths, tmp_path, capsys, caplog):
    folder = _landing_with_traps(rtt_paths, tmp_path / "scenes")
    with caplog.at_level(logging.WARNING):
        code = _main(["evaluate", str(run_dir), "--scenes", str(folder), "--targets", rtt_paths[2].name[:19],
                      "--out", str(tmp_path / "e.json"), "--quiet"])
    assert code == 0 and "Traceback" not in capsys.readouterr().err
    assert "20190102T000000_dmi_prep.nc" in caplog.text and "20190101T000000_dmi_prep.nc" in caplog.text
    assert json.loads((tmp_path / "e.json").read_text())["info"]["scenes"] == [rtt_paths[2].name[:19]]
