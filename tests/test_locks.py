"""One writer per output folder: a second process ends at once naming the holder; a lock left by
a killed process is taken over."""

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from seaice_lib.atomic import LOCK_NAME, FolderBusy, folder_lock, remove_unused
from seaice_lib.cli import main
from tests.notebook_files import write_grid, write_notebook

ROOT = Path(__file__).parents[1]
HOLD = ("import sys\nfrom seaice_lib.atomic import folder_lock\n"
        "with folder_lock(sys.argv[1], 'holding', *sys.argv[2:]):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def _holder(folder, *lock_name):
    """A process that holds ``folder`` (its lock file ``lock_name``, default the folder's own)
    until its stdin closes (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), *lock_name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _status(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_s_lock_is_taken_over(tmp_path):
    proc = _holder(tmp_path / "out")
    try:
        with pytest.raises(FolderBusy) as err:
            with folder_lock(tmp_path / "out", "charting"):
                pass
        message = str(err.value)
        assert f"pid {proc.pid} on host {platform.node()}" in message and "holding" in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with folder_lock(tmp_path / "out", "charting") as lock:  # the dead holder's lock is free
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    with folder_lock(tmp_path / "out", "again"):  # and released when the block ends
        pass
    assert (tmp_path / "out" / LOCK_NAME).exists()


def test_a_lock_file_that_is_a_link_is_refused_and_what_it_points_to_untouched(tmp_path):
    """RT16-R16: a folder copied as links (or a planted link) had the lock written through it into
    another file; the lock is never opened through a link."""
    outside = tmp_path / "notes.txt"
    outside.write_text("important notes")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).symlink_to(outside)
    with pytest.raises(ValueError, match=f"{tmp_path / 'out' / LOCK_NAME}: a symbolic link where this folder's lock"):
        with folder_lock(tmp_path / "out", "charting"):
            pass
    assert outside.read_text() == "important notes"


def test_a_folder_the_lock_made_goes_again_when_the_block_ends_having_written_nothing(tmp_path):
    """A failed command, or one that charted no scene, leaves no empty output folder that looks like a
    result (CI: an empty patch store; RT18-R18: a predict whose every scene failed)."""
    for folder, writes, stays in ((tmp_path / "new", False, False), (tmp_path / "new_written", True, True)):
        with pytest.raises(RuntimeError), folder_lock(folder, "charting"):
            if writes:
                (folder / "part.json").write_text("{}")
            raise RuntimeError("failed")
        assert folder.exists() == stays
        with folder_lock(folder, "charting"):  # ended without failing
            if writes:
                (folder / "part.json").write_text("{}")
        assert folder.exists() == stays
    with folder_lock(tmp_path / "a" / "b" / "c", "charting"):  # RT19-R11: the folders above it that it made go too
        (tmp_path / "a" / "notes.txt").write_text("another's")  # but not one that got something meanwhile
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["notes.txt"]
    (tmp_path / "there").mkdir()  # a folder that was there before is never removed
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "there", "charting"):
        raise RuntimeError("failed")
    assert (tmp_path / "there").is_dir()


def test_a_folder_an_ended_writer_left_holding_only_locks_is_removed_and_no_other(tmp_path):
    """What `seaice notebook` and `batch` do with the out_dir a refused kernel made (RT18-R22)."""
    nested = tmp_path / "nested"
    (nested / "out" / "charts").mkdir(parents=True)  # nested/ itself on the way to the out_dir: empty
    for folder in (nested / "out", nested / "out" / "charts"):
        (folder / LOCK_NAME).write_text("{}")  # as a kernel that held them and ended leaves them
    written = tmp_path / "written"
    (written / "sub").mkdir(parents=True)
    (written / LOCK_NAME).write_text("{}")
    (written / "sub" / "notes.txt").write_text("mine")
    held = tmp_path / "held"
    proc = _holder(held)
    try:
        assert remove_unused(held) is False and (held / LOCK_NAME).exists()  # its writer still runs
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert remove_unused(nested) is True and not nested.exists()
    assert remove_unused(written) is False and (written / "sub" / "notes.txt").read_text() == "mine"
    assert remove_unused(held) is True and not held.exists()  # free once its writer is gone


def test_a_second_training_on_one_out_dir_ends_at_once_and_leaves_the_first_s_config(patch_store, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    out = tmp_path / "run"
    config.write_text(yaml.safe_dump({
        "store": str(patch_store), "out_dir": str(out), "model": "unet", "model_size": "tiny", "steps": 3,
        "steps_per_epoch": 3, "warmup_steps": 1, "batch_size": 4, "device": "cpu", "val_fraction": 0.3,
        "progress": False, "checkpoint_every": 0, "evaluate": False, "lr": 1e-3}))
    go = tmp_path / "go"
    first = subprocess.Popen([sys.executable, str(ROOT / "tests" / "pausing_train.py"), "1", str(go), "--no-signal",
                              "--config", str(config)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert first.stdout.readline().strip() == f"paused 0 {first.pid}"
        assert _status(["train", "--config", config, "--set", "lr=0.01"]) == 1
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "training" in err and "Traceback" not in err
        assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 1e-3  # the first's, not overwritten
    finally:
        go.touch()
        assert first.wait(timeout=300) == 0


def test_predict_into_a_folder_another_process_writes_is_refused(tmp_path, rtt_paths, patch_store, capsys):
    from seaice_lib.engine.config import TrainConfig
    from seaice_lib.engine.training import train

    run_dir = tmp_path / "run"
    train(TrainConfig(store=str(patch_store), out_dir=str(run_dir), model="unet", model_size="tiny", steps=1,
                      steps_per_epoch=1, warmup_steps=1, batch_size=4, device="cpu", val_fraction=0.3,
                      progress=False, checkpoint_every=0, evaluate=False))
    proc = _holder(tmp_path / "charts")
    try:
        assert _status(["predict", run_dir, rtt_paths[0], "--out", tmp_path / "charts", "--quiet"]) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert not list((tmp_path / "charts").glob("*.nc"))
    finally:
        proc.stdin.close()
        proc.wait()


@pytest.mark.parametrize("into", ["run", "out"])
def test_evaluate_into_a_folder_another_process_writes_is_refused(into, run_dir, rtt_paths, tmp_path, capsys):
    """Its default output into a run folder that a training holds, or --out into a held folder:
    refused naming the holder, nothing written (an evaluation of a checkpoint would stand beside
    the run's final model.pt)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns(LOCK_NAME))
    before = _listed(run)
    held = run if into == "run" else tmp_path / "scores"
    proc = _holder(held)
    try:
        argv = ["evaluate", run, "--scenes", rtt_paths[0].parent, "--targets", rtt_paths[0].name[:19], "--quiet"]
        assert _status(argv + (["--out", held / "test.json"] if into == "out" else [])) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert _listed(run) == before and _listed(held) == (before if into == "run" else set())  # nothing written
    finally:
        proc.stdin.close()
        proc.wait()
    assert _status(argv) == 0 and _listed(run) == before | {"evaluation_scenes.json"}  # once the holder is gone


def _listed(folder) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != LOCK_NAME}


@pytest.mark.parametrize("stage", ["export", "figures"])
def test_export_and_figures_into_a_folder_another_process_writes_are_refused(stage, run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        argv = [stage, run_dir, "--out", out] if stage == "export" else [stage, run_dir.parent, out]
        assert _status(argv) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_batch_set_another_process_runs_is_reported_and_left_alone(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3], "b": [1, 2]})
    out = tmp_path / "runs" / "ratios"
    proc = _holder(out / "a-3_b-1", ".batch.lock")
    try:
        assert main(["batch", str(notebook), str(grid), "--name", "ratios", "--runs", str(tmp_path / "runs")]) == 1
        assert sorted(p.name for p in (out / "a-3_b-1").iterdir()) == [".batch.lock"]  # nothing written there
    finally:
        proc.stdin.close()
        proc.wait()
    table = pd.read_csv(out / "summary.csv")
    assert list(table.status) == ["not run", "completed"]  # the held set: no status of this process's
    assert f"pid {proc.pid}" in capsys.readouterr().out


def test_the_next_writer_removes_what_a_killed_writer_left_half_written(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        out.mkdir()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()  # a process that has ended
        (out / f".chart_prep.nc.{dead}.tmp").write_bytes(b"half")
        (out / f".folder.{dead}.tmp").mkdir()
        (out / f".chart_prep.nc.{proc.pid}.tmp").write_bytes(b"being written")  # a live writer's
        (out / "notes.1.tmp").write_text("not a temporary of ours")
        with folder_lock(out, "charting"):
            left = sorted(p.name for p in out.iterdir())
    finally:
        proc.kill()
        proc.wait()
    assert left == sorted([LOCK_NAME, f".chart_prep.nc.{proc.pid}.tmp", "notes.1.tmp"])


def test_prepare_into_a_folder_another_process_writes_is_refused(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "prepared"
    proc = _holder(out)
    try:
        assert _status(["prepare", "--raw", synthetic_dir / "raw", "--out", out]) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        proc.stdin.close()
        proc.wait()


def test_synthetic_into_a_folder_another_process_writes_is_refused(tmp_path, capsys):
    """Two `synthetic` runs into one folder would leave two sets side by side under one record."""
    out = tmp_path / "scenes"
    proc = _holder(out)
    try:
        args = ["synthetic", "--out", out, "--regions", "1", "--scenes-per-region", "1", "--size", "40", "40", "--quiet"]
        assert _status(args) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_notebook_holds_its_output_folder_for_its_kernel_s_life_and_a_cell_run_again_keeps_it(tmp_path):
    """``hold_output`` (each writing notebook's call after its parameters): another process writing
    there is refused naming the kernel; the same kernel asking again holds it still; the lock goes
    with the kernel, however it ends."""
    script = ("import sys\nfrom seaice_lib.notebook import hold_output\n"
              "print(hold_output(sys.argv[1]), flush=True)\nprint(hold_output(sys.argv[1]), flush=True)\n"
              "sys.stdin.read()\n")
    out = tmp_path / "out"
    kernel = subprocess.Popen([sys.executable, "-c", script, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert [kernel.stdout.readline().strip() for _ in range(2)] == [str(out.resolve())] * 2  # asked twice
        with pytest.raises(FolderBusy, match=f"another process is running a notebook here \\(pid {kernel.pid}"):
            with folder_lock(out, "charting"):
                pass
    finally:
        kernel.send_signal(signal.SIGKILL)
        kernel.wait()
    with folder_lock(out, "charting"):  # free once the kernel is gone
        pass


def test_a_notebook_output_folder_that_is_a_link_to_nothing_is_refused_and_its_target_not_made(tmp_path):
    """RT19-R13: a notebook's out_dir that was a dangling symbolic link made the link's target and
    wrote there, where the commands refuse that --out."""
    from seaice_lib.notebook import hold_output

    link, target = tmp_path / "out", tmp_path / "elsewhere" / "target"
    link.symlink_to(target)
    with pytest.raises(ValueError, match=f"^{link}: a symbolic link to nothing, not a folder to write into$"):
        hold_output(link)
    assert not (tmp_path / "elsewhere").exists()


def test_a_batch_whose_sets_would_write_into_one_output_folder_is_a_usage_error(tmp_path, capsys):
    """Notebook 02 writes into ``out_dir``: two sets that leave it at its default (or give one path)
    would write into one folder at once; a value with ``{run_dir}`` gives each set its own."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"grid": {"data_dir": [str(tmp_path / "a"), str(tmp_path / "b")]}}))
    argv = ["batch", "02_explore", grid, "--name", "explore", "--runs", tmp_path / "runs", "--summary"]
    assert _status(argv) == 2
    err = capsys.readouterr().err
    default = (ROOT / "runs" / "notebooks" / "explore").resolve()  # the notebook's default, from notebooks/
    assert f"both write into out_dir {default}: one writer per output folder" in err and "Traceback" not in err
    grid.write_text(yaml.safe_dump({"parameters": {"out_dir": "{run_dir}/explore"},
                                    "grid": {"data_dir": [str(tmp_path / "a"), str(tmp_path / "b")]}}))
    assert _status(argv) == 1  # accepted: the summary says neither set ran yet
    assert "both write" not in capsys.readouterr().err


def test_a_patches_batch_whose_sets_would_build_one_store_is_a_usage_error(tmp_path, capsys):
    """RT16-R8: notebook 03 builds its ``store``: two sets that name one store (each with its own
    out_dir) would write its scene groups at once; refused before anything runs, where the training
    notebook's ``store``, which it only reads, may be shared."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"parameters": {"store": str(tmp_path / "p.zarr"), "out_dir": "{run_dir}/out"},
                                    "grid": {"scenes_dir": [str(tmp_path / "a"), str(tmp_path / "b")]}}))
    assert _status(["batch", "03_patches", grid, "--name", "p", "--runs", tmp_path / "runs", "--summary"]) == 2
    assert f"both write into store {tmp_path / 'p.zarr'}: one writer per output folder" in capsys.readouterr().err
    grid.write_text(yaml.safe_dump({"parameters": {"store": str(tmp_path / "p.zarr"), "out_dir": "{run_dir}/out"},
                                    "grid": {"seed": [0, 1]}}))
    assert _status(["batch", "04_train", grid, "--name", "t", "--runs", tmp_path / "runs", "--summary"]) == 1
    assert "both write" not in capsys.readouterr().err  # accepted: the summary says neither set ran yet


def test_a_training_batch_whose_sets_leave_out_dir_empty_is_a_usage_error(tmp_path, capsys):
    """RT16-R9, RT18-R15, RT19-R3: 04_train derives an empty out_dir from its config's out_dir, else
    from its model (NOTEBOOK_RUN_FOLDER): sets whose derived folders meet each other, or a folder a
    set names, are refused; a grid over models (a folder each) is not."""
    cwd = tmp_path / "notebooks"
    cwd.mkdir()
    grid = tmp_path / "grid.yaml"
    argv = ["batch", "04_train", grid, "--name", "t", "--runs", tmp_path / "runs", "--cwd", cwd, "--summary"]
    store = {"store": str(tmp_path / "p.zarr")}
    for name in ("c1", "c2"):  # two configs of one out_dir
        (tmp_path / f"{name}.yaml").write_text(f"model: unet\nout_dir: {tmp_path / 'runC'}\nseed: {name[1]}\n")
    refused = [({"parameters": {**store, "model": "unet"}, "grid": {"seed": [0, 1]}},
                f"sets seed-0 and seed-1 both write into out_dir {(cwd / '../runs/notebooks/train/unet').resolve()}"),
               ({"parameters": {**store}, "grid": {"seed": [0, 1]}},
                f"sets seed-0 and seed-1 both write into out_dir {(cwd / '../runs/notebooks/train/tsvit_v2').resolve()}"),
               # RT20-R12: the notebook's default model and that model named derive one folder
               ({"parameters": {**store}, "sets": [{"name": "a", "parameters": {"seed": 0}},
                                                   {"name": "b", "parameters": {"model": "tsvit_v2", "seed": 1}}]},
                f"sets a and b both write into out_dir {(cwd / '../runs/notebooks/train/tsvit_v2').resolve()}"),
               ({"parameters": {}, "grid": {"config": [str(tmp_path / "c1.yaml"), str(tmp_path / "c2.yaml")]}},
                f"both write into out_dir {tmp_path / 'runC'}"),
               ({"parameters": {**store}, "sets": [{"name": "a", "parameters": {"model": "unet"}},
                                                   {"name": "b", "parameters": {"model": "tsvit_v1",
                                                                                "out_dir": "../runs/notebooks/train/unet"}}]},
                "sets a and b both write into out_dir")]
    for doc, said in refused:
        grid.write_text(yaml.safe_dump(doc))
        assert _status(argv) == 2, doc
        assert said in capsys.readouterr().err, doc
    for sets in ({"seed": [0]}, {"model": ["unet", "tsvit_v1"]}):  # one set; a folder per model
        grid.write_text(yaml.safe_dump({"parameters": {**store}, "grid": sets}))
        assert _status(argv) == 1 and "both" not in capsys.readouterr().err  # accepted: none ran yet


def test_a_whole_extraction_holds_its_store_and_array_tasks_share_it(synthetic_dir, tmp_path, capsys):
    """RT16-R8: `seaice patches` without --scene holds the store (a second whole extraction, or
    notebook 03 building it, ends at once naming the first); a --scene task (one of a SLURM array
    that cut one store together) does not, and writes its scene's group."""
    store = tmp_path / "p.zarr"
    first = _holder(store)
    try:
        whole = ["patches", "--scenes", synthetic_dir, "--out", store, "--patch", "16", "--quiet"]
        assert _status(whole) == 1
        err = capsys.readouterr().err
        assert f"{store}: another process is holding here (pid {first.pid}" in err and "Traceback" not in err
        assert not (store / "zarr.json").exists()
        scene = sorted(synthetic_dir.glob("*_prep.nc"))[-1].name[:19]
        assert _status([*whole, "--scene", scene]) == 0
        assert (store / "scenes" / scene / "zarr.json").is_file()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_two_experiment_runners_on_other_runs_folders_share_the_results_folder_so_one_ends(four_regions, tmp_path,
                                                                                             capsys):
    """RT15-R1: runners with other --runs wrote the same results at once; the results folder is held
    too, so a second runner ends at once naming the first, before any job runs."""
    from seaice_lib import experiments
    from tests.experiment_files import write_experiment

    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    first = _holder(exp.results)  # a runner with another --runs, holding the results
    try:
        assert _status(["experiment", "run", exp.path, "--runs", tmp_path / "runs2", "--only", "floors"]) == 1
        err = capsys.readouterr().err
        assert f"{exp.results}: another process is holding here (pid {first.pid}" in err and "Traceback" not in err
        assert not list(exp.results.glob("jobs/*.json"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_a_second_prober_ends_at_once_naming_the_first_and_writes_no_probe(four_regions, tmp_path, capsys):
    """Two `experiment probe`s wrote the same probe files at once: the results' probes/ folder is
    held, so the second ends at once naming the first, before it loads any weights."""
    from seaice_lib import experiments
    from tests.experiment_files import write_experiment, write_results

    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    (tmp_path / "runs").mkdir()
    first = _holder(exp.results / "probes")
    try:
        assert _status(["experiment", "probe", exp.path, "--runs", tmp_path / "runs", "--only", "unet_sar"]) == 1
        err = capsys.readouterr().err
        assert f"{exp.results / 'probes'}: another process is holding here (pid {first.pid}" in err
        assert "Traceback" not in err and "no such folder" not in err  # ended before probing any job
        assert not list((exp.results / "probes").glob("history_*.json"))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_a_second_reporter_ends_at_once_and_a_report_beside_a_runner_is_drawn(four_regions, tmp_path, capsys):
    """RT16-R3: `experiment report` writes summary.json and report.md under a lock of its own in the
    results folder: a second reporter ends naming the first and writes nothing; beside a runner (which
    writes only jobs/ there) the report is drawn."""
    from seaice_lib import experiments
    from seaice_lib.experiments.cli import REPORT_LOCK
    from tests.experiment_files import write_experiment, write_results

    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    reporter = _holder(exp.results, REPORT_LOCK)
    try:
        assert _status(["experiment", "report", exp.path]) == 1
        err = capsys.readouterr().err
        assert f"{exp.results}: another process is holding here (pid {reporter.pid}" in err and "Traceback" not in err
        assert not (exp.results / "summary.json").exists() and not (exp.results / "report.md").exists()
    finally:
        reporter.send_signal(signal.SIGKILL)
        reporter.wait()
    runner = _holder(exp.results)
    try:
        assert _status(["experiment", "report", exp.path]) == 0
        assert json.loads((exp.results / "summary.json").read_text())["missing"] == []
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
