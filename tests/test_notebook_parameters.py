"""Notebook parameters checked: names the notebook does not declare and values of another type are
refused by `seaice notebook`, `seaice batch` and the notebooks' own first call."""

import os
import subprocess

import nbformat
import papermill
import pytest

from seaice_lib import cli
from seaice_lib.notebook import (
    KERNEL,
    KERNEL_DISPLAY_NAME,
    NOTEBOOKS,
    check_parameters,
    declared_parameters,
    kernel_log,
    notebook_path,
)
from tests.commands import usage_error
from tests.notebook_files import ROOT, code_notebook, job_env, kernel_started, still_running, write_grid


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('flag = False\nsteps = 3\nrate = 0.5\nname = "x"\nout_dir = "."',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from pathlib import Path\nPath(out_dir, 'seen.txt').write_text("
                                          "f'{flag!r} {steps!r} {rate!r} {name!r}')")]
    nbformat.write(nb, path)
    return path


# an executed notebook as papermill leaves it (its record in the metadata), made by someone else
EXECUTED = '{"cells": [], "metadata": {"papermill": {"parameters": {}}}, "nbformat": 4, "nbformat_minor": 5}'


def _usage(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()[-1]) > 0
    return err.strip().splitlines()[-1]


def test_declared_parameters_are_the_parameters_cell_s_defaults(tmp_path):
    assert declared_parameters(_notebook(tmp_path / "nb.ipynb")) == {
        "flag": False, "steps": 3, "rate": 0.5, "name": "x", "out_dir": "."}
    assert declared_parameters(NOTEBOOKS / "02_explore.ipynb")["generate_if_missing"] is False


@pytest.mark.parametrize("values, problem", [
    ({"flag": "no"}, "flag must be true or false, not 'no' (str)"),
    ({"flag": 1}, "flag must be true or false, not 1 (int)"),
    ({"steps": 2.5}, "steps must be an integer, not 2.5 (float)"),
    ({"steps": True}, "steps must be an integer, not True (bool)"),
    ({"rate": "fast"}, "rate must be a number, not 'fast' (str)"),
    ({"name": 3}, "name must be a string, not 3 (int)"),
    ({"steps": 0}, "steps must be >= 1, not 0"),  # RT17-R8: no Python None in the words
])
def test_a_value_of_another_type_or_out_of_range_is_named(tmp_path, values, problem):
    path = _notebook(tmp_path / "nb.ipynb")
    with pytest.raises(ValueError, match="nb.ipynb: ") as err:
        check_parameters(path, values, steps=(1, None))
    assert problem in str(err.value)
    check_parameters(path, {"flag": True, "steps": 4, "rate": 2, "name": "y"}, steps=(1, None))  # fine


@pytest.mark.parametrize("value, ranges, refused", [
    (float("nan"), {"rate": (0, 1)}, True),  # every comparison with NaN is false: it used to pass any range
    (float("nan"), {"rate": (None, None)}, True),
    (float("inf"), {"rate": (0, None)}, True),
    (float("-inf"), {"rate": (None, 1)}, True),
    (float("nan"), {}, False),  # no range: a NaN set of a grid stays a set (test_batch)
    (0.25, {"rate": (0, 1)}, False),
])
def test_a_parameter_with_a_range_is_a_finite_number(tmp_path, value, ranges, refused):
    """RT13-R7: NaN and inf are in no range; the parameter is named."""
    path = _notebook(tmp_path / "nb.ipynb")
    if not refused:
        check_parameters(path, {"rate": value}, **ranges)
        return
    with pytest.raises(ValueError, match="nb.ipynb: rate must be a finite number") as err:
        check_parameters(path, {"rate": value}, **ranges)
    assert str(err.value).endswith(f"not {value!r}")


def test_a_parameter_in_the_parameters_file_and_given_by_p_is_a_usage_error(tmp_path, capsys):
    """RT13-R7: `-f FILE -p NAME V` with NAME in FILE took -p's value unseen; refused whatever the
    values, as batch refuses a parameter both fixed and in the grid, and nothing runs."""
    import yaml

    path = _notebook(tmp_path / "nb.ipynb")
    given = tmp_path / "p.yaml"
    given.write_text(yaml.safe_dump({"steps": 1, "rate": 0.25, "out_dir": str(tmp_path)}))
    out = tmp_path / "out.ipynb"
    for steps in ("2", "1"):  # another value, and the same
        line = _usage(["notebook", path, out, "-f", given, "-p", "steps", steps, "-p", "name", "y"], capsys)
        assert line == f"seaice notebook: error: ['steps'] both in {given} (-f) and given by -p: give each parameter once"
    assert not out.exists() and not (tmp_path / "seen.txt").exists()
    assert cli.main(["notebook", str(path), str(out), "-f", str(given), "-p", "name", "y"]) == 0
    assert (tmp_path / "seen.txt").read_text() == "False 1 0.25 'y'"


def test_a_parameter_declared_t_none_takes_a_t_or_none(tmp_path, capsys):
    """``name: int = None`` (a setting from elsewhere unless given, 04_train's): an integer or None,
    ranges checked on a given number; papermill reads the name (no 'unknown parameter' warning)."""
    path = code_notebook(tmp_path / "nb.ipynb", 'steps: int = None\nrate: float = None\nout_dir = "."',
                         "from pathlib import Path\nPath(out_dir, 'seen.txt').write_text(f'{steps!r} {rate!r}')")
    assert declared_parameters(path) == {"steps": None, "rate": None, "out_dir": "."}
    check_parameters(path, {"steps": None, "rate": 2}, steps=(1, None))
    with pytest.raises(ValueError) as err:
        check_parameters(path, {"steps": "4", "rate": True}, steps=(1, None))
    assert "steps must be an integer or None, not '4' (str)" in str(err.value)
    assert "rate must be a number or None, not True (bool)" in str(err.value)
    with pytest.raises(ValueError, match="steps must be >= 1, not 0"):
        check_parameters(path, {"steps": 0}, steps=(1, None))
    assert cli.main(["notebook", str(path), str(tmp_path / "out.ipynb"), "-p", "steps", "7",
                     "-p", "out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "seen.txt").read_text() == "7 None"
    assert "unknown parameter" not in capsys.readouterr().err
    bad = code_notebook(tmp_path / "bad.ipynb", "steps: list = None")
    with pytest.raises(ValueError, match="parameter steps: annotated list = None; an annotated parameter is declared "
                                         "T = None, T one of bool, int, float, str"):
        declared_parameters(bad)


def test_seaice_notebook_refuses_unknown_names_and_wrong_types_and_runs_the_rest(tmp_path, capsys):
    path = _notebook(tmp_path / "nb.ipynb")
    out = tmp_path / "missing" / "folder" / "nb.ipynb"
    assert "no parameter ['stpes']" in _usage(["notebook", path, out, "-p", "stpes", "4"], capsys)
    assert "flag must be true or false, not 'no'" in _usage(["notebook", path, out, "-p", "flag", "no"], capsys)
    assert not out.exists()
    assert cli.main(["notebook", str(path), str(out), "-p", "flag", "True", "-p", "steps", "7",
                     "-p", "out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "seen.txt").read_text() == "True 7 0.5 'x'" and out.exists()  # its folder was created


def test_an_executed_copy_never_writes_through_a_link_into_the_notebook_or_another_file(tmp_path, capsys):
    path = _notebook(tmp_path / "nb.ipynb")
    source = path.read_bytes()
    linked = tmp_path / "runs" / "nb.ipynb"
    linked.parent.mkdir()
    os.link(path, linked)  # the "executed copy" is the notebook under another name
    assert "the notebook itself" in _usage(["notebook", path, linked], capsys)
    other = tmp_path / "other.ipynb"
    other.write_text(EXECUTED)
    out = tmp_path / "runs" / "copy.ipynb"
    os.link(other, out)  # an earlier output hard-linked elsewhere: replaced, not written through
    assert cli.main(["notebook", str(path), str(out), "-p", "out_dir", str(tmp_path)]) == 0
    assert other.read_text() == EXECUTED and path.read_bytes() == source
    assert "seen.txt" in out.read_text()


@pytest.mark.parametrize("name, content", [
    ("victim_prep.nc", b"CDF\x01 a scene"),  # a data file in the output's place: not an .ipynb name
    ("out", None),  # no suffix at all, nothing there yet
    ("notes.ipynb.txt", None),
    ("02_explore.ipynb", b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'),  # a source notebook
    ("broken.ipynb", b"not JSON"),
    ("list.ipynb", b"[1, 2]"),
    ("odd.ipynb", b'{"metadata": ["papermill"]}'),
])
def test_an_output_that_is_not_an_executed_notebook_s_file_is_refused_and_kept(tmp_path, capsys, name, content):
    """R23: OUTPUT is the executed notebook's .ipynb file; an existing file there is replaced only
    when it is an executed notebook (papermill's record in its metadata): anything else (a scene
    given in the output's place, a notebook that was never executed) is a usage error naming it,
    and the file stays as it was (an executed one is replaced: the test of links above)."""
    path = _notebook(tmp_path / "nb.ipynb")
    out = tmp_path / name
    if content is not None:
        out.write_bytes(content)
    line = _usage(["notebook", path, out, "-p", "out_dir", tmp_path], capsys)
    assert line.startswith(f"seaice notebook: error: output {out}: ")
    assert ("(.ipynb)" in line) == (not name.endswith(".ipynb"))
    assert (out.read_bytes() == content) if content is not None else not out.exists()
    assert not (tmp_path / "seen.txt").exists()  # nothing ran


def test_notebook_sbatch_names_the_executed_copy_of_a_bare_notebook_name_ipynb(tmp_path):
    """slurm/notebook.sbatch NOTEBOOK NAME (outside SLURM): a bare name (as ``seaice notebook`` takes
    it) gives the executed copy runs/NAME/local/NAME.ipynb, the .ipynb name `seaice notebook` asks for."""
    _notebook(tmp_path / "nb.ipynb")
    (tmp_path / "notebooks").mkdir()  # the script's kernel folder
    proc = subprocess.run(["bash", str(ROOT / "slurm" / "notebook.sbatch"), "nb", "named", "-p", "out_dir",
                           str(tmp_path)], cwd=tmp_path, env=job_env(tmp_path / "env"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"papermill"' in (tmp_path / "runs" / "named" / "local" / "nb.ipynb").read_text()
    assert (tmp_path / "seen.txt").read_text() == "False 3 0.5 'x'"


def test_a_string_parameter_takes_the_value_as_written(tmp_path):
    """papermill's -p reads 007 as the integer 7: a string parameter gets '007', the others are still read."""
    path = _notebook(tmp_path / "nb.ipynb")
    assert cli.main(["notebook", str(path), str(tmp_path / "out.ipynb"), "-p", "name", "007", "-p", "steps", "7",
                     "-p", "out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "seen.txt").read_text() == "False 7 0.5 '007'"


@pytest.mark.parametrize("write, problem", [
    (lambda path: code_notebook(path, "a = 1\nb = (\n"), "its parameters cell is not Python (line 2: '(' was never closed)"),
    (lambda path: code_notebook(path, "import os\na = os.getcwd()"), "parameter a: its default is not a constant (line 2)"),
    (lambda path: path.write_text('{"cells": 5}'), "not a notebook"),
])
def test_a_notebook_whose_parameters_cannot_be_read_is_one_line_naming_it(tmp_path, capsys, write, problem):
    path = tmp_path / "nb.ipynb"
    write(path)
    grid = write_grid(tmp_path / "grid.yaml", {"a": [1]})
    for argv in (["notebook", path, tmp_path / "out.ipynb"], ["batch", path, grid, "--name", "g", "--runs", tmp_path]):
        assert f"{path}: {problem}" in usage_error([str(a) for a in argv], capsys)
    assert not (tmp_path / "out.ipynb").exists() and not (tmp_path / "g").exists()


def test_a_bare_notebook_name_is_one_of_notebooks_else_one_usage_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert notebook_path("04_train") == notebook_path("04_train.ipynb") == NOTEBOOKS / "04_train.ipynb"
    out = tmp_path / "out.ipynb"
    # found there: its parameters are checked (and refused) before anything runs
    assert "02_explore.ipynb: no parameter ['nope']" in usage_error(["notebook", "02_explore", str(out), "-p", "nope", "1"],
                                                                     capsys)
    grid = write_grid(tmp_path / "grid.yaml", {"nope": [1]})
    assert "are not parameters of 02_explore.ipynb" in usage_error(["batch", "02_explore", str(grid), "--name", "g"], capsys)
    (tmp_path / "notes.txt").write_text("not a notebook")
    for name, problem in (("01_data", "notebook 01_data: no such notebook"), ("elsewhere/04_train", "no such file"),
                          ("notes.txt", "notes.txt: not a notebook (.ipynb)")):
        line = usage_error(["notebook", name, str(out)], capsys)
        assert problem in line, line
    assert "01_download, 02_explore" in usage_error(["notebook", "01_data", str(out)], capsys)  # what there is
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_the_notebooks_refuse_a_string_for_a_boolean_before_writing_anything(tmp_path):
    """`-p generate_if_missing no` used to write synthetic scenes into data_dir: "no" is true."""
    data = tmp_path / "scenes"
    with pytest.raises(papermill.PapermillExecutionError, match="generate_if_missing must be true or false"):
        papermill.execute_notebook(str(NOTEBOOKS / "02_explore.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"data_dir": str(data), "generate_if_missing": "no",
                                               "out_dir": str(tmp_path / "explore")},
                                   cwd=str(NOTEBOOKS), progress_bar=False, kernel_name=KERNEL)
    assert not data.exists() or not any(data.iterdir())


def test_batch_refuses_a_set_with_a_value_of_another_type(tmp_path, capsys):
    import yaml

    path = _notebook(tmp_path / "nb.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"parameters": {"out_dir": "{run_dir}"}, "grid": {"flag": [True, "no"]}}))
    line = _usage(["batch", path, grid, "--name", "g", "--runs", tmp_path / "runs"], capsys)
    assert "set flag-no" in line and "flag must be true or false" in line
    assert not (tmp_path / "runs" / "g").exists()


def test_log_output_copies_the_cells_output_to_the_log(tmp_path):
    import subprocess
    import sys

    path = _notebook(tmp_path / "nb.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('the cell said', steps * 2)"))
    nbformat.write(nb, path)
    proc = subprocess.run([sys.executable, "-m", "seaice_lib", "notebook", str(path), str(tmp_path / "out.ipynb"),
                           "--log-output", "-p", "steps", "21", "-p", "out_dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "the cell said 42" in proc.stderr + proc.stdout
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr  # RT15-R22: the kernel's noise is not passed on


def test_the_kernel_log_loses_its_noise_and_keeps_the_rest():
    log = ("[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication ...\n"
           "Traceback (most recent call last):\n  MemoryError\n"
           "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n")
    assert kernel_log(log) == "Traceback (most recent call last):\n  MemoryError\n"


def test_every_notebook_runs_on_the_project_kernel_that_make_and_jupyter_sbatch_install():
    """JupyterHub starts the kernel a notebook names; ``python3`` there is the Hub's own Python,
    without seaice_lib. Each notebook names the project's kernel, which both installers register."""
    root = NOTEBOOKS.parent
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        spec = nbformat.read(path, as_version=4).metadata["kernelspec"]
        assert (spec["name"], spec["display_name"]) == (KERNEL, KERNEL_DISPLAY_NAME), path.name
    install = f'ipykernel install --{{}} --name {KERNEL} --display-name "{KERNEL_DISPLAY_NAME}"'
    assert install.format("sys-prefix") in (root / "Makefile").read_text()
    assert install.format("user") in (root / "slurm" / "jupyter.sbatch").read_text()


def test_evaluate_notebook_names_test_scenes_that_are_not_scenes(run_dir, synthetic_dir, tmp_path, capfd):
    """05_evaluate's test_scenes: an id that is no scene of scenes_dir is named, not a KeyError."""
    import shutil

    shutil.copytree(run_dir, tmp_path / "train" / "unet")
    assert cli.main(["notebook", "05_evaluate", str(tmp_path / "05.ipynb"), "-p", "runs_dir", str(tmp_path / "train"),
                     "-p", "scenes_dir", str(synthetic_dir), "-p", "out_dir", str(tmp_path / "evaluate"),
                     "-p", "test_scenes", "20990101T000000_dmi"]) == 1
    out = capfd.readouterr().out
    assert f"ValueError: test_scenes: 20990101T000000_dmi not among the scenes of {synthetic_dir}" in out
    # named as a reader finds it in the notebook (papermill's count takes in the markdown cells; RT18-R23)
    assert "05_evaluate.ipynb failed in code cell 2 (from seaice_lib.notebook import OutputFolder, " in out
    assert not (tmp_path / "evaluate").exists()  # made, held, refused before any file: gone again (RT18-R22)


def test_seaice_notebook_stopped_says_so_exits_124_and_leaves_no_executed_notebook(tmp_path):
    """R14: SIGTERM to `seaice notebook` (scancel, a time limit) while a cell runs: one line naming
    the stop and the output, exit 124, its kernel ends, and neither OUTPUT (an earlier execution's
    included) nor a temporary is left to pass for a finished execution; a failing cell's executed
    notebook stays, marked failed by papermill's record."""
    import json
    import signal
    import sys

    hold = tmp_path / "hold"  # the notebook waits while it exists
    hold.touch()
    notebook = code_notebook(tmp_path / "wait.ipynb", 'hold = ""\nout_dir = "."\nfail = False',
                             "import os, time\nfrom pathlib import Path\n"
                             "assert not fail, 'asked to fail'\n"
                             "Path(out_dir, f'pid_{os.getpid()}').touch()\nwhile Path(hold).exists():\n"
                             "    time.sleep(0.1)")
    out = tmp_path / "runs" / "w.ipynb"
    out.parent.mkdir()
    out.write_text(EXECUTED)  # an earlier execution
    command = [sys.executable, "-m", "seaice_lib", "notebook", str(notebook), str(out), "-p", "hold", str(hold),
               "-p", "out_dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kernel = kernel_started(tmp_path, proc)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert not still_running([kernel]), f"the kernel {kernel} of the stopped notebook is still running"
    finally:
        hold.unlink()  # a kernel left running ends here, not never
    lines = [line for line in err.splitlines() if "seaice notebook" in line]
    assert proc.returncode == 124 and len(lines) == 1 and "stopped by SIGTERM" in lines[0] and str(out) in lines[0], err
    # RT13-R17: the one line alone, not the kernel's log of its sockets closing under it (a ZMQ traceback)
    assert err.strip().splitlines() == lines, err
    assert list(out.parent.iterdir()) == []  # neither OUTPUT nor a temporary
    ran = subprocess.run([*command, "-p", "fail", "True"], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 1 and "asked to fail" in ran.stdout, (ran.stdout, ran.stderr)
    assert json.loads(out.read_text())["metadata"]["papermill"]["exception"] is True
    assert [p.name for p in out.parent.iterdir()] == [out.name]


# 04_train's parameters that are not training settings: they never replace a config's entries
TRAIN_NOTEBOOK_OWN = {"config", "scenes_dir", "generate_if_missing", "experiment", "run", "fold"}


def test_train_notebook_settings_default_to_the_config_s_and_else_to_the_documented_defaults(tmp_path):
    """RT13-R11: each training setting of 04_train defaults to None or "" (papermill cannot tell a
    given parameter from a default), which notebook_config takes as "the config's"; without a config
    the defaults noted beside the parameters apply."""
    import re

    import yaml

    from seaice_lib.engine.config import TrainConfig, notebook_config

    declared = declared_parameters("04_train")
    settings = {name: default for name, default in declared.items() if name not in TRAIN_NOTEBOOK_OWN}
    assert {name: default for name, default in settings.items() if default not in (None, "")} == {}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": "s.zarr", "out_dir": "o", "model": "unet", "model_size": "small",
                                      "loss": {"kind": "focal", "class_weighting": "none"}, "seed": 5, "lr": 0.01}))
    assert notebook_config(str(config), **settings) == TrainConfig.from_yaml(config)  # the file, all of it
    given = notebook_config(str(config), **settings | {"steps": 7, "class_weighting": "inverse", "store": "t.zarr"})
    assert (given.steps, given.store, given.model, given.seed, given.lr) == (7, "t.zarr", "unet", 5, 0.01)
    assert (given.loss.kind, given.loss.class_weighting) == ("focal", "inverse")
    # without a config: the defaults the parameters cell notes "(default X)", as the notebook ran before
    cell = next(c for c in nbformat.read(NOTEBOOKS / "04_train.ipynb", as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    noted = dict(re.findall(r"^(\w+)\b.*\(default ([^)]+)\)$", cell.source, re.M))
    assert set(noted) == set(settings)
    plain = notebook_config("", **settings).to_dict()
    plain |= {"loss": plain["loss"]["kind"], "class_weighting": plain["loss"]["class_weighting"]}
    assert {name: str(plain[name]) for name in noted} == noted | {"out_dir": "../runs/notebooks/train/tsvit_v2"}
    assert noted["model"] == "tsvit_v2" and noted["steps"] == "30" and noted["class_weighting"] == "inverse_sqrt"
    assert noted["out_dir"] == "../runs/notebooks/train/MODEL"  # RT15-R19: each model its own folder
    assert notebook_config("", **settings | {"model": "unet", "seed": 2}).to_dict() == {
        **notebook_config("", **settings).to_dict(), "model": "unet", "seed": 2,
        "out_dir": "../runs/notebooks/train/unet"}
