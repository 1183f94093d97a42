"""``seaice predict --follow DIR``: each scene is charted once it has landed whole (a file still
being written never is), a damaged file is reported and skipped, the per-tile latency (median,
95th percentile, max) is printed per scene, and the command stops on SIGTERM (a scene being charted
is abandoned, no file of it left), after ``--max-scenes`` or ``--idle-exit``."""

import os
import re
import signal
import subprocess
import sys

import netCDF4
import numpy as np
import pytest

from seaice_lib import schema
from seaice_lib.charts import cf
from seaice_lib.charts.commands import timed_batches
from seaice_lib.charts.follow import BatchTimes, SceneWatcher, tile_latency_ms
from seaice_lib.data.patches import config_from_store
from seaice_lib.engine.run import load_model
from seaice_lib.engine.whole_scenes import predict_scene
from seaice_lib.stopping import STOPPED_EXIT_CODE
from tests.commands import train_run, usage_error
from tests.follow_processes import sigterm_while_charting, wait_for_file, written
from tests.output_lines import lines_of, read_to_the_end, read_until
from tests.scene_edits import unreadable_twin

DAMAGED = "20190101T000000_dmi_prep.nc"
LATENCY = re.compile(r"(\d+) tiles in ([\d.]+) s \(per tile: ([\d.]+) ms median, ([\d.]+) ms p95, "
                     r"([\d.]+) ms max\)")


def _follow(run, watch, out, *options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seaice_lib", "predict", str(run), "--follow",
                             str(watch), "--out", str(out), "--poll", "0.2", "--quiet", *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_watcher_returns_a_file_once_it_is_whole_and_opens(synthetic_dir, tmp_path):
    scene_a, scene_b, charted = sorted(synthetic_dir.glob("*_prep.nc"))[:3]
    watcher = SceneWatcher(tmp_path, done=lambda path: path.name == charted.name)
    (tmp_path / scene_a.name).write_bytes(scene_a.read_bytes())
    assert watcher.poll() == ([], [])  # first seen: not yet known to be stable
    assert watcher.poll() == ([tmp_path / scene_a.name], [])
    assert watcher.poll() == ([], [])  # returned once
    data = scene_b.read_bytes()
    partial = tmp_path / scene_b.name
    partial.write_bytes(data[:len(data) // 2])
    (tmp_path / f".{scene_b.name}").write_bytes(data)  # an atomic writer's hidden temp name
    (tmp_path / charted.name).write_bytes(charted.read_bytes())  # done: its chart exists
    assert watcher.poll() == ([], [])
    ready, bad = watcher.poll()  # stable but truncated: refused, by name
    assert ready == [] and len(bad) == 1 and str(bad[0]).startswith(f"{partial}: not a readable")
    assert watcher.poll() == ([], [])  # refused once
    with open(partial, "ab") as f:
        f.write(data[len(data) // 2:])
    assert watcher.poll() == ([], [])  # changed: wait for it to be stable again
    assert watcher.poll() == ([partial], [])


def test_a_changed_or_late_earlier_scene_has_the_later_ones_checked_again(synthetic_dir, tmp_path):
    """Their charts hash their history (``done``): a later scene is offered again only if its check
    now fails, never one acquired before the changed file."""
    early, middle, late = sorted(synthetic_dir.glob("*_prep.nc"))[:3]
    checked: list[str] = []

    def done(path):
        checked.append(path.name)
        return path.name != late.name  # its history changed: its chart would be made again

    watcher = SceneWatcher(tmp_path, done=done)
    for scene in (early, middle, late):
        (tmp_path / scene.name).write_bytes(scene.read_bytes())
    watcher.poll()
    watcher.poll()  # all three handled once
    checked.clear()
    stamp = (tmp_path / middle.name).stat()
    os.utime(tmp_path / middle.name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # a new version
    assert watcher.poll() == ([], [])  # changed: not yet stable
    assert watcher.poll() == ([tmp_path / late.name], [])
    assert checked == [middle.name, late.name]  # the earlier scene is not checked again


def test_a_change_in_the_history_folder_has_the_later_scenes_checked_again(synthetic_dir, tmp_path):
    """``--history H`` apart from the watched folder: a history file that changes, lands late or
    goes away has the handled scenes acquired after it checked again; one acquired after them not."""
    early, middle, late, later = sorted(synthetic_dir.glob("*_prep.nc"))[:4]
    watch, history = tmp_path / "watch", tmp_path / "history"
    watch.mkdir(), history.mkdir()
    checked: list[str] = []

    def done(path):
        checked.append(path.name)
        return True

    watcher = SceneWatcher(watch, done=done, history=history)
    (watch / late.name).write_bytes(late.read_bytes())
    for scene in (early, later):
        (history / scene.name).write_bytes(scene.read_bytes())
    watcher.poll(), watcher.poll()
    assert checked == [late.name]
    checked.clear()

    def rechecked_after(change) -> list[str]:
        change()
        assert watcher.poll() == ([], [])  # a change seen: acted on once stable
        watcher.poll()
        found = list(checked)
        checked.clear()
        return found

    assert rechecked_after(lambda: (history / middle.name).write_bytes(middle.read_bytes())) == [late.name]
    stamp = (history / early.name).stat()
    assert rechecked_after(lambda: os.utime(history / early.name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))) \
        == [late.name]
    assert rechecked_after(lambda: (history / middle.name).unlink()) == [late.name]
    stamp = (history / later.name).stat()
    assert rechecked_after(lambda: os.utime(history / later.name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))) \
        == []  # acquired after the charted scene: not its history
    assert watcher.poll() == ([], []) and checked == []  # nothing changed: nothing checked


def test_follow_charts_scenes_as_they_land_and_skips_partial_and_damaged_files(
        synthetic_dir, patch_store, tmp_path, run_dir):
    """A whole scene, a damaged file and half of a scene are there at the start: the first is
    charted, the other two skipped; the rest of the half-written scene, appended once its skip is
    reported, makes it a scene charted whole. Then --idle-exit ends the command, with status 1 for
    the damaged file left without a chart (the half-written one, charted since, counts no more)."""
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    first, second = sorted(synthetic_dir.glob("*_prep.nc"))[3:5]
    data = second.read_bytes()
    (watch / first.name).write_bytes(first.read_bytes())
    (watch / DAMAGED).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40)
    half_written = watch / second.name  # a slow writer: half, a pause, the rest
    half_written.write_bytes(data[:len(data) // 2])

    def refused(seen: list[str]) -> bool:  # the half-written file was seen stable, did not open, was skipped
        return any(str(half_written) in line and "not a complete scene" in line for line in seen)

    # nothing happens between the skip and the rest landing but the test reading one line, which
    # must not take the idle time (the first scene is being charted meanwhile, too)
    proc = _follow(run_dir, watch, out, "--idle-exit", "5")
    try:
        stdout, stderr = lines_of(proc.stdout), lines_of(proc.stderr)
        lines = read_until(stdout, refused, timeout=120)
        assert refused(lines), "\n".join(lines + read_to_the_end(stderr, timeout=10))
        with open(half_written, "ab") as f:
            f.write(data[len(data) // 2:])
        lines += read_to_the_end(stdout, timeout=120)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    errors = read_to_the_end(stderr, timeout=10)
    assert proc.returncode == 1, "\n".join(errors)  # the damaged file is left without a chart
    assert errors[-1] == f"1 files left without their charts (named above): {watch / DAMAGED}"
    charted = [line for line in lines if re.match(r"charted \S+_prep\.nc: ", line)]
    assert [line.split(":")[0] for line in charted] == [f"charted {first.name}",
                                                         f"charted {second.name}"]
    for line in charted:
        tiles, seconds, median, p95, largest = LATENCY.search(line).groups()
        assert int(tiles) > 0 and 0 < float(median) <= float(p95) <= float(largest)
        assert float(largest) / 1000 <= float(seconds) + 0.005  # a batch of one tile at most
    skipped = [line for line in lines if line.startswith("skipped")]
    assert any(str(watch / DAMAGED) in line and "not a readable netCDF" in line for line in skipped)
    assert any(str(watch / second.name) in line and "not a complete scene" in line
               for line in skipped)  # seen while half written, not charted
    assert lines[-1] == f"charted 2 scenes into {out}, skipped {len(skipped)}; " \
                        "stopped by --idle-exit 5"
    assert sorted(p.name for p in written(out)) == sorted(
        f"{p.name[:19]}_charts.nc" for p in (first, second))  # no temporary files
    # the second scene's chart is that of the whole file
    model, cfg = load_model(run_dir), config_from_store(patch_store)
    expected = predict_scene(model, watch / second.name, watch, cfg)
    sid, charts = cf.read_charts(cf.charts_path(out, second.name[:19]))
    assert sid == second.name[:19]
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(charts[chart], expected.charts[chart])


@pytest.fixture(scope="module")
def stacked_run(patch_store, tmp_path_factory):
    """A tiny U-Net that stacks the earlier acquisition (it reads history: a single-date model is
    given its target alone and never opens an earlier file) trained two steps."""
    return train_run(patch_store, tmp_path_factory.mktemp("stacked") / "run", model_kwargs={"steps": 2})


def test_follow_keeps_a_chart_made_without_an_unreadable_earlier_acquisition_names_it_and_ends_1(
        synthetic_dir, tmp_path, stacked_run, capsys):
    """The history (--history) holds a truncated copy of the landing scene one second earlier: its
    chart is written without it and records it, the warning names the file once, its line says it
    is not for an upload package, and the end names the scene and exits 1; a restart passes over
    that chart and names it again (a folder holding it never passes for complete)."""
    from seaice_lib.cli import main

    watch, history, out = tmp_path / "landing", tmp_path / "history", tmp_path / "charts"
    watch.mkdir()
    history.mkdir()
    target, earlier = unreadable_twin(synthetic_dir, watch, history)
    sid = target.name[:19]
    argv = ["predict", str(stacked_run), "--follow", str(watch), "--history", str(history), "--out", str(out),
            "--poll", "0.1", "--quiet"]
    assert main([*argv, "--max-scenes", "1"]) == 1
    captured = capsys.readouterr()
    unread = f"{earlier.name}: not a readable netCDF file"
    assert captured.err.count(f"{sid}: charted without earlier acquisitions that could not be read: {unread}") == 1
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"charted {target.name}: ")
    assert lines[0].endswith("; its inputs unusable (named above): not for an upload package")
    assert lines[-1] == f"charted 1 scenes into {out}, skipped 0; stopped by --max-scenes 1"
    named = f"1 charts in {out} not fit for an upload package: {sid}: earlier acquisition {unread}"
    assert captured.err.splitlines()[-1].startswith(named)
    with netCDF4.Dataset(cf.charts_path(out, sid)) as nc:
        assert nc.getncattr("left_out_history_inputs").startswith(unread)
    assert main([*argv, "--idle-exit", "0.5"]) == 1  # restarted: the chart passed over, named again
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == f"no scene charted (nothing written into {out}), skipped 0; " \
                                                "stopped by --idle-exit 0.5"
    assert captured.err.splitlines()[-1].startswith(named) and "charted without" not in captured.err


def test_follow_that_charted_nothing_says_so_and_leaves_no_output_folder(tmp_path, run_dir, capsys):
    """No scene landed: the end line says nothing was written (not "charted 0 scenes into" a
    folder that is then gone) and the --out folder the command made is removed."""
    from seaice_lib.cli import main

    watch, out = tmp_path / "landing", tmp_path / "new" / "charts"
    watch.mkdir()
    assert main(["predict", str(run_dir), "--follow", str(watch), "--out", str(out), "--poll", "0.1",
                 "--idle-exit", "0.3", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"no scene charted (nothing written into {out}), skipped 0; stopped by --idle-exit 0.3"
    assert not (tmp_path / "new").exists()


def test_a_charted_scene_whose_file_no_longer_reads_has_its_chart_and_package_withdrawn(
        synthetic_dir, tmp_path, run_dir, capsys):
    """RT21-R5: a scene file replaced by an unreadable one was skipped, and its earlier chart and
    the upload package holding it stayed in --out (named predict withdraws them)."""
    from seaice_lib.cli import main

    scene = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    (watch / scene.name).write_bytes(scene.read_bytes())
    assert main(["predict", str(run_dir), str(watch / scene.name), "--history", str(synthetic_dir), "--out", str(out),
                 "--quiet"]) == 0
    chart = cf.charts_path(out, scene.name[:19])
    assert chart.is_file() and (out / cf.UPLOAD_PACKAGE).is_file()
    kept = {p: p.read_bytes() for p in (chart, out / cf.UPLOAD_PACKAGE)}
    # RT22-R9: a chart of other options in the way is refused, not withdrawn: the scene file reads
    assert main(["predict", str(run_dir), "--follow", str(watch), "--history", str(synthetic_dir), "--out", str(out),
                 "--poll", "0.1", "--idle-exit", "0.5", "--quiet", "--probabilities"]) == 1
    said = "".join(capsys.readouterr())
    assert "a chart made by another model or with other options" in said and "removed" not in said, said
    assert all(p.read_bytes() == content for p, content in kept.items())
    (watch / scene.name).write_bytes(b"re-delivered, damaged")
    assert main(["predict", str(run_dir), "--follow", str(watch), "--history", str(synthetic_dir), "--out", str(out),
                 "--poll", "0.1", "--idle-exit", "0.5", "--quiet"]) == 1
    assert not chart.exists() and not (out / cf.UPLOAD_PACKAGE).exists()
    assert f"{out / cf.UPLOAD_PACKAGE}: removed: it held the chart of {scene.name[:19]}, whose scene file no longer " \
           "reads" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["SIGTERM", "--max-scenes"])
def test_follow_stops_on_sigterm_or_after_max_scenes(how, synthetic_dir, tmp_path,
                                                     run_dir):
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    scenes = sorted(synthetic_dir.glob("*_prep.nc"))[:2]
    for scene in scenes:
        (watch / scene.name).write_bytes(scene.read_bytes())
    if how == "SIGTERM":
        proc = _follow(run_dir, watch, out)
        try:
            wait_for_file(cf.charts_path(out, scenes[1].name[:19]), proc)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert stdout.splitlines()[-1].endswith("skipped 0; stopped by SIGTERM")
    else:
        proc = _follow(run_dir, watch, out, "--max-scenes", "1")
        stdout, stderr = proc.communicate(timeout=90)
        assert stdout.splitlines()[-1] == f"charted 1 scenes into {out}, skipped 0; " \
                                          "stopped by --max-scenes 1"
    assert proc.returncode == (STOPPED_EXIT_CODE if how == "SIGTERM" else 0) and "Traceback" not in stderr, stderr
    names = sorted(p.name for p in written(out))
    assert names == [f"{s.name[:19]}_charts.nc" for s in scenes][:len(names)]
    for path in written(out):
        cf.read_charts(path)


def test_max_scenes_stops_only_once_the_charts_a_late_earlier_acquisition_made_stale_are_made_again(synthetic_dir,
                                                                                                      tmp_path):
    """RT16-R15: --max-scenes stopped right after charting an earlier acquisition that landed late,
    leaving the later scene's chart made without it; R7: charts were counted, not scenes. The scenes
    the same poll found stale are charted again before it stops, and counted once."""
    from seaice_lib.charts.follow import Charted, follow

    early, late = sorted(synthetic_dir.glob("*_prep.nc"))[:2]
    watch = tmp_path / "landing"
    watch.mkdir()
    (watch / late.name).write_bytes(late.read_bytes())
    made_from: dict[str, list[str]] = {}  # scene -> the earlier files in the folder when it was charted

    def earlier(path):
        return sorted(p.name for p in watch.glob("*_prep.nc") if p.name < path.name)

    def chart(path):
        made_from[path.name] = earlier(path)
        if path.name == late.name and not (watch / early.name).exists():
            (watch / early.name).write_bytes(early.read_bytes())  # its earlier acquisition lands late
        return Charted(path, 1, 0.0)

    counts = follow(watch, chart, done=lambda path: made_from.get(path.name) == earlier(path), poll_s=0.01,
                    max_scenes=2, report=lambda line: None)
    assert (counts["charted"], counts["again"], counts["stopped_by"]) == (2, 1, "--max-scenes 2")
    assert [r["scene"] for r in counts["scenes"]] == [late.name, early.name, late.name]
    assert made_from[late.name] == [early.name]  # its last chart was made with it


@pytest.mark.parametrize("args, named", [
    (["predict", "no_run", "--out", "o"], "--follow DIR"),
    (["predict", "no_run", "x_prep.nc", "--out", "o", "--idle-exit", "3"], "--idle-exit needs --follow"),
    (["predict", "no_run", "--follow", "nowhere", "--out", "o"], "--follow nowhere: no such folder"),
    (["predict", "no_run", "a_prep.nc", "--follow", ".", "--out", "o"], "name no scene files"),
    (["predict", "no_run", "--follow", ".", "--out", "o", "--poll", "0"], "--poll must be a finite number > 0"),
    (["predict", "no_run", "--follow", ".", "--out", "o", "--max-scenes", "0"], "--max-scenes must"),
])
def test_follow_usage_errors_are_one_line_and_exit_2(args, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert named in usage_error(args, capsys)


def test_sigterm_while_a_scene_is_charted_leaves_no_file_of_it(synthetic_dir, tmp_path,
                                                               run_dir):
    watch, out = tmp_path / "landing", tmp_path / "charts"
    watch.mkdir()
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    (watch / scene.name).write_bytes(scene.read_bytes())
    stopped = sigterm_while_charting(["predict", run_dir, "--follow", watch, "--out", out,
                                      "--poll", "0.2", "--quiet"], out, tmp_path / "charting")
    assert stopped.returncode == STOPPED_EXIT_CODE and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stdout.splitlines()[-1] == f"no scene charted (nothing written into {out}), " \
                                              "skipped 0; stopped by SIGTERM"
    assert list(written(out)) == []  # neither a chart nor a temporary file
    # the next start charts it
    proc = _follow(run_dir, watch, out, "--max-scenes", "1")
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0 and stdout.splitlines()[-1].endswith("stopped by --max-scenes 1")
    assert [p.name for p in written(out)] == [cf.charts_path(out, scene.name[:19]).name]
    assert cf.read_charts(cf.charts_path(out, scene.name[:19]))[0] == scene.name[:19]


def test_tile_latency_is_each_batchs_time_shared_by_its_tiles():
    # 8 tiles at 10 ms, 8 at 20 ms, 4 at 100 ms: the middle tiles (10th, 11th) are at 20 ms
    assert tile_latency_ms([(0.08, 8), (0.16, 8), (0.4, 4)]) == pytest.approx(
        {"median": 20.0, "p95": 100.0, "max": 100.0})
    # 19 tiles at 10 ms and one at 30 ms: p95 at position 0.95 * 19 = 18.05, 5 % of the way to 30
    assert tile_latency_ms([(0.19, 19), (0.03, 1)]) == pytest.approx(
        {"median": 10.0, "p95": 11.0, "max": 30.0})
    assert tile_latency_ms([]) == {}


def test_predict_times_each_forward_pass_of_the_model(run_dir, patch_store,
                                                      synthetic_dir):
    model, cfg = load_model(run_dir), config_from_store(patch_store)
    now, sizes = [0.0], []

    def slow(module, args):  # batch k takes 5 (k + 1) ms per tile by the fake clock
        sizes.append(len(args[0]["sar"]))
        now[0] += 0.005 * len(sizes) * sizes[-1]

    target = sorted(synthetic_dir.glob("*_prep.nc"))[3]
    with timed_batches(model, BatchTimes(lambda: now[0])) as times:
        hook = model.register_forward_pre_hook(slow)  # runs after the timer's start
        charts = predict_scene(model, target, synthetic_dir, cfg, batch_size=3)
        hook.remove()
    assert len(sizes) > 2 and sum(sizes) == charts.n_tiles
    assert [n for _, n in times.batches] == sizes
    assert [s for s, _ in times.batches] == pytest.approx([0.005 * (k + 1) * n
                                                          for k, n in enumerate(sizes)])
    predict_scene(model, target, synthetic_dir, cfg, batch_size=3)
    assert len(times.batches) == len(sizes)  # not timed after the block
