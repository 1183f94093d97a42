"""`seaice batch`: a notebook over a grid of parameter sets; failures reported, the rest goes on."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from seaice_lib import batch, cli
from tests.notebook_files import (
    ROOT,
    code_notebook,
    job_env,
    kernel_started,
    running,
    still_running,
    waiting_batch,
    write_grid,
    write_notebook,
)


def test_every_combination_runs_a_failure_is_reported_and_the_rest_go_on(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3, 6], "b": [0, 2]})
    code = cli.main(["batch", str(notebook), str(grid), "--name", "ratios", "--runs", str(tmp_path / "runs"),
                     "--jobs", "2"])
    assert code == 1  # two of four failed
    out = tmp_path / "runs" / "ratios"
    table = pd.read_csv(out / "summary.csv")
    assert list(table.set) == ["a-3_b-0", "a-3_b-2", "a-6_b-0", "a-6_b-2"]
    assert list(table.status) == ["failed", "completed", "failed", "completed"]
    assert all("ZeroDivisionError" in e for e in table.error[table.status == "failed"])
    for name, expected in (("a-3_b-2", 1.5), ("a-6_b-2", 3.0)):
        assert float((out / name / "ratio.txt").read_text()) == expected  # {run_dir} became the set's folder
        executed = nbformat.read(out / name / "ratio.ipynb", as_version=4)
        assert executed.cells[1].outputs == [] and "injected-parameters" in executed.cells[1].metadata.tags
    assert list(table.notebook) == [str((out / name / "ratio.ipynb").resolve()) for name in table.set]
    assert json.loads((out / "a-3_b-0" / "status.json").read_text())["parameters"]["b"] == 0
    assert "| a-3_b-0 | failed" in capsys.readouterr().out.replace("  ", " ")


@pytest.mark.parametrize("deaths, status", [(1, "completed"), (batch.KERNEL_START_RETRIES + 1, "failed")])
def test_an_execution_whose_kernel_died_before_running_anything_starts_again(tmp_path, monkeypatch, deaths, status):
    """Kernels started side by side can race for ports and die before their first reply: such an
    execution (nothing ran) starts again, up to KERNEL_START_RETRIES times, then fails."""
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    real, calls = batch.Executions.run, []

    def dies_first(self, argv, env):
        calls.append(argv)
        if len(calls) <= deaths:
            return batch.subprocess.CompletedProcess(argv, 1, "", f"RuntimeError: {batch.KERNEL_START_FAILURE}\n")
        return real(self, argv, env)

    monkeypatch.setattr(batch.Executions, "run", dies_first)
    result = batch.execute(notebook, "a-3_b-2", {"a": 3, "b": 2, "out_dir": "{run_dir}"}, tmp_path / "runs",
                           tmp_path, rerun=False, threads=1)
    assert result["status"] == status and len(calls) == min(deaths + 1, batch.KERNEL_START_RETRIES + 1)
    if status == "completed":
        assert float((tmp_path / "runs" / "a-3_b-2" / "ratio.txt").read_text()) == 1.5
    else:
        assert batch.KERNEL_START_FAILURE in result["error"]


def _spans(out) -> list[tuple[float, float]]:
    return [tuple(map(float, p.read_text().split())) for p in sorted(out.glob("*/span.txt"))]


def test_jobs_run_executions_side_by_side(tmp_path):
    """--jobs 2: the two executions' wall-clock spans overlap; --jobs 1: they follow each other."""
    code_notebook(tmp_path / "nap.ipynb", 'nap = 0.0\nout_dir = "."',
                  "import time\nfrom pathlib import Path\nstart = time.time()\ntime.sleep(nap)\n"
                  "Path(out_dir, 'span.txt').write_text(f'{start} {time.time()}')")
    grid = write_grid(tmp_path / "grid.yaml", {"nap": [2.0, 2.5]})
    for jobs in (2, 1):
        out = tmp_path / f"jobs{jobs}"
        assert cli.main(["batch", str(tmp_path / "nap.ipynb"), str(grid), "--name", "naps", "--runs", str(out),
                         "--jobs", str(jobs)]) == 0
        (start_a, end_a), (start_b, end_b) = _spans(out / "naps")
        overlap = max(start_a, start_b) < min(end_a, end_b)
        assert overlap == (jobs == 2), (jobs, _spans(out / "naps"))


def test_one_task_runs_one_set_and_the_summary_marks_sets_that_never_ran(tmp_path):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [1], "b": [1, 4]})
    args = ["batch", str(notebook), str(grid), "--name", "one", "--runs", str(tmp_path / "runs")]
    assert cli.main(args + ["--task", "1"]) == 0
    assert cli.main(args + ["--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "one" / "summary.csv")
    assert list(table.status) == ["not run", "completed"]
    assert table.error[0] == "not started yet"  # RT20-R10: not "never ended": it never began
    (tmp_path / "runs" / "one" / "a-1_b-1").mkdir()
    (tmp_path / "runs" / "one" / "a-1_b-1" / "parameters.yaml").write_text("a: 1\nb: 1\n")  # began, then killed
    assert cli.main(args + ["--summary"]) == 1
    assert "the execution never ended" in pd.read_csv(tmp_path / "runs" / "one" / "summary.csv").error[0]
    status = next((tmp_path / "runs" / "one").glob("*/status.json"))
    status.write_text('["completed"]')  # damaged: counted as unknown, named, and run again
    assert cli.main(args + ["--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "one" / "summary.csv")
    assert list(table.status) == ["not run", "unknown"] and "status.json: holds a list" in table.error[1]
    assert cli.main(args + ["--task", "1"]) == 0 and '"completed"' in status.read_text()
    # the grid's fixed parameters change: the earlier execution's status no longer stands for the set
    write_grid(grid, {"a": [1], "b": [1, 4]}, parameters={"out_dir": "{run_dir}/elsewhere"})
    assert cli.main(args + ["--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "one" / "summary.csv")
    assert list(table.status) == ["not run", "stale"] and "with other parameters" in table.error[1]


@pytest.mark.parametrize("grid, expected", [
    ({"parameters": {"c": 1}, "grid": {"a": [1]}}, "['c'] are not parameters of ratio.ipynb"),
    ({"grid": {"a": []}}, "grid entry 'a' must be a non-empty list"),
    ({"grid": {"a": [1]}, "extra": 1}, "'parameters' and either 'grid' or 'sets'"),
    ({"grid": {"a": [1]}, "sets": []}, "'parameters' and either 'grid' or 'sets'"),
    ({"sets": [{"name": "x y", "parameters": {}}]}, "sets[0] must be {name: a folder name"),
    ({"sets": [{"name": "x", "parameters": {}}, {"name": "x", "parameters": {}}]}, "two sets have the same name"),
    ({"parameters": {"a": 1}, "grid": {"a": [1]}}, "both fixed and in the grid"),
    ({"sets": [{"name": "summary.csv", "parameters": {}}]}, "sets[0] is named 'summary.csv', a file of the batch itself"),
    ({"sets": [{"name": "x", "parameters": {}}, {"name": "Logs", "parameters": {}}]}, "sets[1] is named 'Logs'"),
    ({"grid": {"a": [1, int("9" * 240)]}}, "gets a folder name of 242 characters"),  # over the 255-byte limit
    ({"sets": [{"name": "s" * 256, "parameters": {}}]}, "sets[0]: its name has 256 characters"),
])
def test_grid_mistakes_are_usage_errors_naming_the_entry(tmp_path, capsys, grid, expected):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["batch", str(notebook), str(tmp_path / "grid.yaml"), "--name", "x", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in err and "Traceback" not in err
    assert err.count(str(tmp_path / "grid.yaml")) <= 1  # the file named once
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b"])
def test_a_batch_name_stays_under_the_runs_folder(tmp_path, capsys, name):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [1], "b": [1]})
    with pytest.raises(SystemExit) as stop:
        cli.main(["batch", str(notebook), str(grid), "--name", name, "--runs", str(tmp_path / "runs")])
    assert stop.value.code == 2 and "a folder under --runs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_a_missing_notebook_or_grid_file_is_a_usage_error(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    for argv in (["batch", str(tmp_path / "nope.ipynb"), str(tmp_path / "g.yaml"), "--name", "x"],
                 ["batch", str(notebook), str(tmp_path / "nope.yaml"), "--name", "x"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2 and "nope" in capsys.readouterr().err


def test_set_names_are_folder_names():
    sets = batch.parameter_sets({"out_dir": "{run_dir}"}, {"model": ["unet", "tsvit v3"], "lr": [1e-3]})
    assert [n for n, _ in sets] == ["model-unet_lr-0.001", "model-tsvit-v3_lr-0.001"]
    assert sets[1][1] == {"out_dir": "{run_dir}", "model": "tsvit v3", "lr": 0.001}


def test_listed_sets_run_as_named_and_a_second_run_skips_the_completed_ones(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = tmp_path / "sets.yaml"
    grid.write_text(yaml.safe_dump({"parameters": {"out_dir": "{run_dir}", "a": 6},
                                    "sets": [{"name": "half", "parameters": {"b": 2}},
                                             {"name": "broken", "parameters": {"b": 0}}]}))
    args = ["batch", str(notebook), str(grid), "--name", "listed", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert cli.main(args) == 1
    out = tmp_path / "runs" / "listed"
    assert float((out / "half" / "ratio.txt").read_text()) == 3.0
    first = (out / "half" / "status.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(args) == 1  # the failed set is tried again, the completed one is not
    printed = capsys.readouterr().out
    assert "half: completed before with these parameters, skipped (the data they name, but for a config file, is " \
        "not compared: --rerun after it changed)" in printed and "broken: failed" in printed
    assert (out / "half" / "status.json").stat().st_mtime_ns == first
    assert list(pd.read_csv(out / "summary.csv").status) == ["completed", "failed"]
    assert cli.main(args + ["--rerun"]) == 1 and (out / "half" / "status.json").stat().st_mtime_ns != first
    # other parameters for the same folder: not the same execution, so it runs
    assert (out / "broken" / "papermill.log").is_file()
    grid.write_text(yaml.safe_dump({"parameters": {"out_dir": "{run_dir}", "a": 8},
                                    "sets": [{"name": "half", "parameters": {"b": 2}},
                                             {"name": "broken", "parameters": {"b": 4}}]}))
    assert cli.main(args) == 0 and float((out / "half" / "ratio.txt").read_text()) == 4.0
    assert not (out / "broken" / "papermill.log").exists()  # the earlier failure's log is gone with it


def test_executions_share_the_cpus_slurm_grants_instead_of_each_taking_all(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")  # a task on a node of many more cores
    grid = write_grid(tmp_path / "grid.yaml", {"k": [1, 2, 3]}, {"out_dir": "{run_dir}"})
    code_notebook(tmp_path / "env.ipynb", 'out_dir = "."\nk = 0',
                  "import os\nfrom pathlib import Path\nPath(out_dir, 'omp.txt').write_text(os.environ['OMP_NUM_THREADS'])")
    assert cli.main(["batch", str(tmp_path / "env.ipynb"), str(grid), "--name", "env", "--runs", str(tmp_path),
                     "--jobs", "2"]) == 0
    assert {p.read_text() for p in (tmp_path / "env").glob("*/omp.txt")} == {"4"}  # 8 CPUs, 2 at a time


def test_available_cpus_are_slurm_s_grant_else_the_process_s_affinity(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert batch.available_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert batch.available_cpus() == len(os.sched_getaffinity(0))


def test_slurm_task_sizes_are_checked_and_passed_to_sbatch(tmp_path, monkeypatch, capsys):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3], "b": [1, 2]})
    argv = ["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs")]
    for extra, message in ((["--slurm", "--mem", "lots"], "--mem 'lots': a SLURM memory size"),
                           (["--slurm", "--cpus-per-task", "0"], "--cpus-per-task must be at least 1"),
                           (["--mem", "8G"], "--cpus-per-task and --mem size the array tasks of --slurm")):
        with pytest.raises(SystemExit) as stop:
            cli.main(argv + extra)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    submitted = []
    monkeypatch.setattr(batch, "submit_array", lambda *a: submitted.append(a) or ("1", "2"))
    assert cli.main(argv + ["--slurm", "--cpus-per-task", "8", "--mem", "16G"]) == 0
    assert submitted[0][-1] == ["--cpus-per-task=8", "--mem=16G"]


@pytest.mark.parametrize("refuses, message", [
    ("", "sbatch refused the job array: sbatch: error: invalid partition specified: nope"),
    ("--dependency", "sbatch refused the summary job (job array 41 is submitted): "
                     "sbatch: error: invalid partition specified: nope")])
def test_a_submission_sbatch_refuses_is_one_error_line_exit_1(tmp_path, monkeypatch, capsys, refuses, message):
    """A fake sbatch (first on PATH, no cluster) refuses every submission, or only the summary job's."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase " $* " in *" {refuses}"*) echo "sbatch: error: invalid partition specified: '
                    'nope" >&2; exit 1;; esac\necho 41\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3], "b": [1, 2]})
    code = cli.main(["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--slurm"])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [f"seaice batch: error: {message}"]


def test_an_executed_copy_hard_linked_to_another_file_is_replaced_not_written_through(tmp_path):
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [3], "b": [1]})
    other = tmp_path / "kept.ipynb"
    other.write_text("another file")
    (tmp_path / "runs" / "r" / "a-3_b-1").mkdir(parents=True)
    os.link(other, tmp_path / "runs" / "r" / "a-3_b-1" / "ratio.ipynb")
    assert cli.main(["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs")]) == 0
    assert other.read_text() == "another file"
    assert "injected-parameters" in (tmp_path / "runs" / "r" / "a-3_b-1" / "ratio.ipynb").read_text()


@pytest.mark.parametrize("edit", ["gone", "failed", "other parameters", "claimed"])
def test_a_status_that_says_completed_is_checked_against_the_executed_notebook(tmp_path, capsys, edit):
    """A set is skipped only when its executed notebook is there and records (papermill's metadata)
    a finished execution without an exception, with the set's parameters: a status.json that says
    completed over a notebook that is gone, failed, ran other parameters, or one edited from
    failed to completed, does not skip the set; it runs again, and the summary never calls it
    completed before it does."""
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    b = 0 if edit == "claimed" else 2
    grid = write_grid(tmp_path / "grid.yaml", {"a": [6], "b": [b]})
    args = ["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    cli.main(args)
    run_dir = tmp_path / "runs" / "r" / f"a-6_b-{b}"
    executed, status_file = run_dir / "ratio.ipynb", run_dir / "status.json"
    nb = json.loads(executed.read_text())
    if edit == "gone":
        executed.unlink()
    elif edit == "failed":
        nb["metadata"]["papermill"]["exception"] = True
        executed.write_text(json.dumps(nb))
    elif edit == "other parameters":
        nb["metadata"]["papermill"]["parameters"]["a"] = 3
        executed.write_text(json.dumps(nb))
    else:  # a failed execution's status edited by hand
        status = json.loads(status_file.read_text())
        assert status["status"] == "failed"
        status_file.write_text(json.dumps(status | {"status": "completed", "error": ""}))
    assert json.loads(status_file.read_text())["status"] == "completed"
    table = batch.summarise([(f"a-6_b-{b}", {"a": 6, "b": b, "out_dir": "{run_dir}"})], tmp_path / "runs" / "r",
                            notebook, tmp_path)
    assert list(table.status) == ["stale"] and str(executed) in table.error[0]
    capsys.readouterr()
    (run_dir / "ratio.txt").unlink(missing_ok=True)
    assert cli.main(args) == (1 if edit == "claimed" else 0)
    printed = capsys.readouterr().out
    assert "skipped" not in printed
    if edit != "claimed":
        assert float((run_dir / "ratio.txt").read_text()) == 3.0  # it ran again
        assert json.loads(executed.read_text())["metadata"]["papermill"]["parameters"]["a"] == 6


def test_the_summary_calls_a_set_of_another_or_an_edited_notebook_stale_as_a_rerun_would_run_it(tmp_path, capsys):
    """`--summary` (the SLURM summary job) applies the skip's test: sets completed by the notebook
    before it was edited, or by another notebook, are "stale" naming why, exit 1; not completed."""
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [6], "b": [2, 3]})
    args = [str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert cli.main(["batch", str(notebook), *args]) == 0
    other = tmp_path / "other.ipynb"
    other.write_bytes(notebook.read_bytes())
    capsys.readouterr()
    assert cli.main(["batch", str(other), *args, "--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "r" / "summary.csv")
    assert list(table.status) == ["stale", "stale"]
    assert all("with another notebook (ratio.ipynb, not other.ipynb)" in e for e in table.error)
    code_notebook(notebook, 'a = 1\nb = 1\nout_dir = "."',
                  "from pathlib import Path\nPath(out_dir, 'ratio.txt').write_text(str(2 * a / b))")
    assert cli.main(["batch", str(notebook), *args, "--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "r" / "summary.csv")
    assert list(table.status) == ["stale", "stale"]
    assert all(f"with {notebook} as it was before it changed" in e for e in table.error)
    assert cli.main(["batch", str(notebook), *args]) == 0  # the plain command runs both again
    assert "skipped" not in capsys.readouterr().out
    assert float((tmp_path / "runs" / "r" / "a-6_b-2" / "ratio.txt").read_text()) == 6.0


@pytest.mark.parametrize("parameter", ["config", "experiment"])
def test_a_set_whose_config_file_changed_is_stale_and_runs_again(parameter, tmp_path, capsys):
    """RT19-R10: a set of 04_train over an edited config was skipped as completed, its run of the old
    settings standing for the new ones; the config's SHA-256 is part of what a set ran with
    (RT20-R4: and the experiment file's)."""
    notebook = code_notebook(tmp_path / "reads.ipynb", f'{parameter} = ""\nout_dir = "."',
                             f"from pathlib import Path\nPath(out_dir, 'seen.txt').write_text(Path({parameter}).read_text())")
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.001\n")
    grid = write_grid(tmp_path / "grid.yaml", {parameter: [str(config)]})
    args = ["batch", str(notebook), str(grid), "--name", "c", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0 and "skipped" in capsys.readouterr().out  # the same file: skipped
    config.write_text("lr: 0.005\n")
    assert cli.main([*args, "--summary"]) == 1
    table = pd.read_csv(tmp_path / "runs" / "c" / "summary.csv")
    assert list(table.status) == ["stale"] and f"with {parameter} {config} as it was before it changed" in table.error[0]
    capsys.readouterr()
    assert cli.main(args) == 0 and "skipped" not in capsys.readouterr().out
    assert (next((tmp_path / "runs" / "c").glob("*/seen.txt"))).read_text() == "lr: 0.005\n"


def test_a_set_with_a_nan_parameter_completes_once_and_is_skipped_after(tmp_path, capsys):
    """R17: NaN is not equal to itself under ==, but a set with a NaN parameter (`.nan` in the grid)
    is the same set on the next call: summarised completed (exit 0), then skipped."""
    notebook = code_notebook(tmp_path / "half.ipynb", 'y = 0.5\nout_dir = "."',
                             "from pathlib import Path\nPath(out_dir, 'half.txt').write_text(str(y / 2))")
    grid = write_grid(tmp_path / "grid.yaml", {"y": [float("nan")]})
    args = ["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert cli.main(args) == 0
    assert list(pd.read_csv(tmp_path / "runs" / "r" / "summary.csv").status) == ["completed"]
    assert (tmp_path / "runs" / "r" / "y-nan" / "half.txt").read_text() == "nan"
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "y-nan: completed before with these parameters, skipped" in capsys.readouterr().out


def test_run_dir_is_the_sets_folder_in_strings_inside_lists_and_mappings_too(tmp_path):
    """A parameter that is a list or mapping of paths gets each set's own folder, never the literal
    ``{run_dir}`` that every set would share."""
    values = batch._resolved({"paths": ["{run_dir}/a.txt", "b.txt", 3], "where": {"out": "{run_dir}", "n": [None]},
                              "name": "run {run_dir}", "k": 1.5}, tmp_path / "set")
    assert values == {"paths": [f"{tmp_path}/set/a.txt", "b.txt", 3], "where": {"out": f"{tmp_path}/set", "n": [None]},
                      "name": f"run {tmp_path}/set", "k": 1.5}


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """A fake ``sbatch`` first on PATH (no cluster) that records each submission; the fixture
    returns a function running the recorded jobs as SLURM would start them: each task of an array
    (``SLURM_ARRAY_TASK_ID``), then the next job, from the folder ``where``, with the environment
    of :func:`job_env`. It returns (task id or None, finished process) per job started."""
    calls = tmp_path / "fakebin" / "calls.jsonl"
    calls.parent.mkdir()
    (calls.parent / "sbatch").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                         f"with open({str(calls)!r}, 'a') as f:\n"
                                         f"    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                                         f"print(40 + len(open({str(calls)!r}).readlines()))\n")
    (calls.parent / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{calls.parent}:{os.environ['PATH']}")

    def run_jobs(where: Path) -> list[tuple[int | None, subprocess.CompletedProcess]]:
        started, env = [], job_env(tmp_path / "fakebin" / "env")
        for argv in map(json.loads, calls.read_text().splitlines()):
            first = next(k for k, a in enumerate(argv) if not a.startswith("-"))  # the job script
            array = next((o.split("=", 1)[1].split("%")[0] for o in argv[:first] if o.startswith("--array=")), None)
            low, _, high = (array or "").partition("-")
            for task in [None] if array is None else range(int(low), int(high or low) + 1):
                started.append((task, subprocess.run(
                    ["bash", *argv[first:]], cwd=where, capture_output=True, text=True,
                    env=env | ({} if task is None else {"SLURM_ARRAY_TASK_ID": str(task)}))))
        calls.unlink()
        return started

    return run_jobs


def _reader(path: Path) -> Path:
    """A notebook copying the file ``src`` (relative to its working directory) to out_dir/out.txt."""
    return code_notebook(path, 'src = "input.txt"\nout_dir = "."',
                         "from pathlib import Path\nPath(out_dir, 'out.txt').write_text(Path(src).read_text())")


def _folders(tmp_path: Path, **texts: str) -> dict[str, Path]:
    """A folder per keyword under tmp_path, each holding input.txt with the given text."""
    for name, text in texts.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "input.txt").write_text(text)
    return {name: tmp_path / name for name in texts}


def test_slurm_array_tasks_and_the_summary_run_in_the_working_directory_asked_for(tmp_path, fake_sbatch,
                                                                                   monkeypatch, capsys):
    """R1: ``--cwd`` (relative here) reaches every array task and the summary job, as --rerun does:
    relative paths in the parameters name that folder's files, never the notebook folder's."""
    folders = _folders(tmp_path, nb="the notebook folder's", work="the asked folder's")
    notebook = _reader(folders["nb"] / "r.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"src": ["input.txt"]})
    monkeypatch.chdir(tmp_path)
    argv = ["batch", str(notebook), str(grid), "--name", "b", "--runs", "runs", "--cwd", "work", "--slurm"]
    assert cli.main(argv) == 0
    jobs = fake_sbatch(ROOT)  # the jobs start elsewhere: the folder is passed resolved
    assert [(task, proc.returncode) for task, proc in jobs] == [(0, 0), (None, 0)], [p.stderr for _, p in jobs]
    run_dir = tmp_path / "runs" / "b" / "src-input.txt"
    assert (run_dir / "out.txt").read_text() == "the asked folder's"
    assert list(pd.read_csv(tmp_path / "runs" / "b" / "summary.csv").status) == ["completed"]
    first = (run_dir / "status.json").stat().st_mtime_ns
    assert cli.main(argv + ["--rerun"]) == 0
    assert [proc.returncode for _, proc in fake_sbatch(ROOT)] == [0, 0]
    assert (run_dir / "status.json").stat().st_mtime_ns != first  # --rerun reached the task too


def test_slurm_with_task_submits_only_that_set(tmp_path, fake_sbatch, capsys):
    """R24: ``--slurm --task N`` submits set N alone (and the summary of the grid); a task the grid
    does not have is a usage error before anything is submitted."""
    folders = _folders(tmp_path, nb="nb")
    (folders["nb"] / "other.txt").write_text("other")
    notebook = _reader(folders["nb"] / "r.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"src": ["input.txt", "other.txt"]})
    argv = ["batch", str(notebook), str(grid), "--name", "b", "--runs", str(tmp_path / "runs"), "--slurm"]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv + ["--task", "2"])
    assert stop.value.code == 2 and "--task 2: the grid has sets 0..1" in capsys.readouterr().err
    assert not (tmp_path / "fakebin" / "calls.jsonl").exists()
    assert cli.main(argv + ["--task", "1"]) == 0
    assert "submitted set 1 (src-other.txt) as job array 41" in capsys.readouterr().out
    jobs = fake_sbatch(tmp_path)
    assert [(task, proc.returncode) for task, proc in jobs] == [(1, 0), (None, 1)]  # the summary: set 0 not run
    assert (tmp_path / "runs" / "b" / "src-other.txt" / "out.txt").read_text() == "other"
    assert not (tmp_path / "runs" / "b" / "src-input.txt").exists()
    assert list(pd.read_csv(tmp_path / "runs" / "b" / "summary.csv").status) == ["not run", "completed"]


def test_a_set_completed_in_another_working_directory_runs_again(tmp_path, capsys):
    """R2: relative paths in the parameters name the files of the kernel's working directory: a set
    that completed in another one (another --cwd, or the notebook's folder of a copy elsewhere by
    default, or one not recorded) is stale in the summary and runs again, not skipped."""
    folders = _folders(tmp_path, a="A", b="B", copy="the copy's folder")
    notebook = _reader(tmp_path / "r.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"src": ["input.txt"]})
    args = [str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    out = tmp_path / "runs" / "r" / "src-input.txt" / "out.txt"
    assert cli.main(["batch", str(notebook), *args, "--cwd", str(folders["a"])]) == 0 and out.read_text() == "A"
    capsys.readouterr()
    assert cli.main(["batch", str(notebook), *args, "--cwd", str(folders["b"]), "--summary"]) == 1
    assert f"ran completed in {folders['a']}, not {folders['b']}" in pd.read_csv(tmp_path / "runs" / "r" / "summary.csv").error[0]
    assert cli.main(["batch", str(notebook), *args, "--cwd", str(folders["b"])]) == 0
    assert "skipped" not in capsys.readouterr().out and out.read_text() == "B"
    copy = folders["copy"] / "r.ipynb"
    copy.write_bytes(notebook.read_bytes())  # the same notebook (name and content) in another folder
    assert cli.main(["batch", str(copy), *args]) == 0 and out.read_text() == "the copy's folder"
    status = out.parent / "status.json"
    doc = json.loads(status.read_text())
    assert doc["cwd"] == str(folders["copy"])
    status.write_text(json.dumps({k: v for k, v in doc.items() if k != "cwd"}))  # as written before it was recorded
    out.unlink()
    assert cli.main(["batch", str(copy), *args]) == 0 and out.read_text() == "the copy's folder"
    assert cli.main(["batch", str(copy), *args]) == 0 and "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("made_by", [{"package": "seaice_lib", "version": "0.0.1"}, None])
def test_a_set_completed_by_another_release_runs_again(tmp_path, capsys, made_by):
    """R8: what another seaice_lib release made is made again (provenance.another_release, as
    prepare, patches and charts do): such a set is stale in the summary and runs, not skipped."""
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / "grid.yaml", {"a": [6], "b": [2]})
    args = ["batch", str(notebook), str(grid), "--name", "r", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert cli.main(args) == 0
    status = tmp_path / "runs" / "r" / "a-6_b-2" / "status.json"
    doc = json.loads(status.read_text())
    status.write_text(json.dumps(doc | {"made_by": made_by} if made_by else
                                 {k: v for k, v in doc.items() if k != "made_by"}))
    assert cli.main(args + ["--summary"]) == 1
    error = pd.read_csv(tmp_path / "runs" / "r" / "summary.csv").error[0]
    assert ("by seaice_lib 0.0.1" if made_by else "by a version that did not record itself") in error
    (status.parent / "ratio.txt").unlink()
    capsys.readouterr()
    assert cli.main(args) == 0 and "skipped" not in capsys.readouterr().out
    assert float((status.parent / "ratio.txt").read_text()) == 3.0
    assert json.loads(status.read_text())["made_by"]["version"] != "0.0.1"


def test_an_array_task_stopped_by_a_signal_speaks_of_its_own_set(tmp_path):
    """RT16-R13: a task of a job array (--task, one set) stopped by scancel said "0 of 2 sets
    completed", counting the sets other tasks run; it names its own set."""
    import signal

    command, env, hold = waiting_batch(tmp_path, [1, 2])
    proc = subprocess.Popen([*command, "--task", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        kernel_started(tmp_path / "runs" / "w" / "n-2", proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        hold.unlink()
    assert proc.returncode == 124, (out, err)
    assert err.strip().splitlines()[-1] == ("w: stopped by SIGTERM, its running executions ended with it; set 1 (n-2) "
                                            "not run; the same task runs it again")


def test_a_stop_signal_ends_the_running_kernels_with_the_batch_and_the_next_run_resumes(tmp_path):
    """SIGTERM to `seaice batch` (scancel, a time limit, `kill`): its running notebook's kernel ends
    too (none is left running unwatched), no further set starts, it exits 124 with one line, the
    sets record no status and the same command runs them again."""
    import signal

    command, env, hold = waiting_batch(tmp_path, [1, 2])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = tmp_path / "runs" / "w" / "n-1"
    kernel = kernel_started(first, proc)
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 124, (out, err)
        assert "stopped by SIGTERM" in err and "0 of 2 sets completed" in err and "Traceback" not in err
        assert not still_running([kernel]), f"the kernel {kernel} of the stopped execution is still running"
    finally:
        hold.unlink()  # a kernel left running (the fault tested) ends here, not never
    second = tmp_path / "runs" / "w" / "n-2"
    assert not (first / "status.json").exists() and not list(second.glob("pid_*"))  # the second never started
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0 and "n-1: completed" in rerun.stdout and "n-2: completed" in rerun.stdout, \
        (rerun.stdout, rerun.stderr)


def test_an_execution_of_the_notebook_before_it_changed_written_over_a_completed_set_is_not_skipped(tmp_path, capsys):
    """R6: an execution of the notebook as it was (one left running by a killed batch) that ends
    after the rerun of the changed notebook writes its executed notebook over the rerun's, under a
    status.json that names the changed notebook: the set is stale, and the next run runs it again
    instead of skipping it."""
    notebook = code_notebook(tmp_path / "s.ipynb", 'tag = "a"\nout_dir = "."',
                             "from pathlib import Path\nPath(out_dir, 'out.txt').write_text(f'{tag} done')")
    grid = write_grid(tmp_path / "grid.yaml", {"tag": ["a"]})
    args = ["batch", str(notebook), str(grid), "--name", "b", "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    run_dir = tmp_path / "runs" / "b" / "tag-a"
    assert cli.main(args) == 0
    old_execution = (run_dir / "s.ipynb").read_bytes()
    code_notebook(notebook, 'tag = "a"\nout_dir = "."',
                  "from pathlib import Path\nPath(out_dir, 'out.txt').write_text(f'{tag} NEW notebook')")
    assert cli.main(args) == 0
    assert (run_dir / "out.txt").read_text() == "a NEW notebook"
    (run_dir / "s.ipynb").write_bytes(old_execution)  # the old notebook's execution ends last
    (run_dir / "out.txt").write_text("a done")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["notebook_sha256"] == batch.file_sha256(notebook)
    table = batch.summarise([("tag-a", {"tag": "a", "out_dir": "{run_dir}"})], tmp_path / "runs" / "b", notebook,
                            notebook.parent.resolve())
    assert list(table.status) == ["stale"] and "other cells" in table.error[0], table.error[0]
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "skipped" not in capsys.readouterr().out
    assert (run_dir / "out.txt").read_text() == "a NEW notebook"


def test_an_execution_ends_with_its_batch_killed_outright_and_the_rerun_runs_alone(tmp_path):
    """R6: SIGKILL (the OOM killer, kill -9) of `seaice batch` cannot run its handler, and the set's
    lock is free at once: the papermill execution (in a session of its own) and its kernel end with
    the batch (Linux's parent-death signal) instead of running on beside a rerun and writing over
    its outputs."""
    import signal

    command, env, hold = waiting_batch(tmp_path, [1])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kernel = kernel_started(tmp_path / "runs" / "w" / "n-1", proc)
    papermill = [pid for pid in _children(proc.pid) if "papermill" in _command_line(pid)]
    assert len(papermill) == 1, [_command_line(pid) for pid in _children(proc.pid)]
    try:
        proc.kill()
        proc.communicate(timeout=60)
        alive = still_running([papermill[0], kernel])
        assert not alive, f"{_command_line(alive[0])} (pid {alive[0]}) runs on after its batch was killed"
    finally:
        hold.unlink()  # a kernel left running (the fault tested) ends here, not never
        if running(papermill[0]):
            os.killpg(papermill[0], signal.SIGKILL)
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0 and ": completed in" in rerun.stdout, (rerun.stdout, rerun.stderr)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_child_whose_starter_ended_before_it_could_ask_for_the_death_signal_does_not_run(tmp_path):
    """R6, the race: the command of :func:`ending_with_this_process` started after its parent died
    (its parent is then another process) ends without running the program; otherwise it becomes
    the program (the same pid, so a stop signal to its group reaches it)."""
    from seaice_lib.stopping import ending_with_this_process

    marker = tmp_path / "ran"
    program = [sys.executable, "-c", "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid()))", str(marker)]
    command = ending_with_this_process(program)
    proc = subprocess.Popen(command)
    assert proc.wait(timeout=60) == 0 and marker.read_text() == str(proc.pid)
    marker.unlink()
    orphaned = [*command[:3], str(os.getpid() + 1_000_000), *command[4:]]  # a parent that is not its parent
    ran = subprocess.run(orphaned, capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0 and "has ended" in ran.stderr and not marker.exists()


def test_a_failed_set_says_the_error_its_notebook_recorded_whatever_its_name(tmp_path):
    """RT20-R12: the summary took the last stderr line holding "Error", so an exception named
    otherwise (FolderBusy) was reported as a source line of the traceback mentioning ValueError."""
    notebook = code_notebook(tmp_path / "held.ipynb", 'out_dir = "."\nx = 0',
                             "y = x", "class FolderHeld(Exception):  # except (OSError, ValueError): elsewhere\n"
                             "    pass\nraise FolderHeld('another process writes here')")
    grid = write_grid(tmp_path / "grid.yaml", {"x": [1]})
    assert cli.main(["batch", str(notebook), str(grid), "--name", "h", "--runs", str(tmp_path / "runs"),
                     "--jobs", "1"]) == 1
    assert pd.read_csv(tmp_path / "runs" / "h" / "summary.csv").error[0] == \
        "failed in code cell 3 (class FolderHeld(Exception):  # except (OSError, ValueError)...): " \
        "FolderHeld: another process writes here"


def test_a_set_records_the_commit_checked_out_as_its_kernel_starts(tmp_path, monkeypatch, caplog):
    """RT22-R7: a set's status named the commit the batch started with, though its kernel, a new
    process, imported whatever was checked out when the set began (a commit landed in between)."""
    import seaice_lib
    from seaice_lib.provenance import provenance

    asked = []
    monkeypatch.setattr(batch, "git_commit", lambda folder: asked.append(folder) or "f" * 40)  # the checkout moved
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = tmp_path / "sets.yaml"
    grid.write_text(yaml.safe_dump({"parameters": {"out_dir": "{run_dir}", "a": 6, "b": 2}}))
    with caplog.at_level(logging.WARNING, logger="seaice_lib.batch"):
        assert cli.main(["batch", str(notebook), str(grid), "--name", "moved", "--runs", str(tmp_path / "runs")]) == 0
    status = json.loads((tmp_path / "runs" / "moved" / "default" / "status.json").read_text())
    assert status["made_by"]["commit"] == "f" * 40 and asked == [Path(seaice_lib.__file__).resolve().parent]
    assert [r.getMessage() for r in caplog.records] == [
        f"default: runs commit {'f' * 40}, checked out since this batch started on {provenance()['commit']}"]
