"""Options that could only yield nothing, and settings a model or device refuses, end in one line;
--debug shows the traceback."""

import argparse

import pytest
import yaml

from seaice_lib.cli import main
from seaice_lib.testing.portal_server import demo_portal


def _status(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def _config(tmp_path, store, **settings):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"store": str(store), "out_dir": str(tmp_path / "run"), "model": "unet",
                                    "model_size": "tiny", "steps": 1, "steps_per_epoch": 1, "warmup_steps": 1,
                                    "batch_size": 4, "evaluate": False, "progress": False, **settings}))
    return path


@pytest.mark.parametrize("settings, named", [
    ({"model_kwargs": {"no_such_argument": 1}, "device": "cpu"}, "model_kwargs {'no_such_argument': 1}"),
    ({"device": "cuda"}, "device='cuda' but CUDA is not available"),
    ({"model_kwargs": {"grid2km": "false"}, "device": "cpu"}, "grid2km must be true or false, not 'false'"),
    ({"model_kwargs": {"steps": "3"}, "device": "cpu"}, "steps must be an integer, not '3'"),
])
def test_model_kwargs_and_device_errors_are_one_line(patch_store, tmp_path, capsys, settings, named):
    import torch

    if settings.get("device") == "cuda" and torch.cuda.is_available():
        settings = {**settings, "device": "cuda:99"}  # a device this machine lacks either way
    config = _config(tmp_path, patch_store, **settings)
    # a config the model refuses is a usage error (exit 2, RT13-R8); a device this machine lacks, exit 1
    assert _status(["train", "--config", config]) == (1 if "device" in named else 2)
    err = capsys.readouterr().err
    assert named in err.strip().splitlines()[-1] and "Traceback" not in err
    with pytest.raises(ValueError):  # --debug: the exception itself, with its traceback
        main(["--debug", "train", "--config", str(config)])


@pytest.mark.parametrize("option, value", [("--min-labelled", "2"), ("--min-overlap", "-0.1"),
                                           ("--window-days", "-1")])
def test_patch_settings_that_keep_every_patch_or_none_are_usage_errors(synthetic_dir, tmp_path, capsys, option,
                                                                       value):
    assert _status(["patches", "--scenes", synthetic_dir, "--out", tmp_path / "s.zarr", option, value]) == 2
    err = capsys.readouterr().err
    assert option.removeprefix("--").replace("-", "_") in err and "Traceback" not in err
    assert not (tmp_path / "s.zarr").exists()


def test_an_include_that_matches_no_file_is_an_error_not_an_empty_success(tmp_path, capsys):
    with demo_portal(files_per_article=2, size=1000) as portal:
        code = _status(["download", "--article", "rtt-train", "--dest", tmp_path / "d", "--api-url", portal.url,
                        "--include", "2099*_prep.nc", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "error: include 2099*_prep.nc: matches none of the 2 files" in err  # --include, or 01's include


# options made to be repeated, adding up (docs/data.md, "Bad items"); a new one is added here on purpose
ACCUMULATING = {("notebook", "-p"), ("train", "--set"), ("download", "--include"), ("figures", "--explain"),
                ("figures", "--experiment"), ("evaluate", "--targets"), ("edge-predict", "--without"),
                ("experiment run", "--only"), ("experiment run", "--folds"), ("experiment run", "--seeds"),
                ("experiment probe", "--only"), ("experiment probe", "--folds"), ("experiment probe", "--seeds")}


class _Captured(Exception):
    pass


def _parsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    """Every stage's parser and its sub-commands', by name (``experiment run``), taken as its main
    starts to parse."""
    import importlib

    from seaice_lib import cli

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    found: dict[str, argparse.ArgumentParser] = {"seaice": cli.build_parser()}
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        for stage, (where, _) in cli.STAGES.items():
            module, function = where.split(":")
            with pytest.raises(_Captured) as caught:
                getattr(importlib.import_module(module), function)([], prog=f"seaice {stage}")
            found[stage] = caught.value.args[0]
    for name, parser in list(found.items()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found |= {f"{name} {sub}": subparser for sub, subparser in action.choices.items()}
    return found


def _value(action: argparse.Action, tmp_path, k: int) -> str:
    """A value ``action`` takes (its type and choices), the ``k``th of those tried."""
    if action.choices:
        choices = [str(c) for c in action.choices]
        return choices[k % len(choices)]
    for text in (str(k + 1), str(tmp_path / f"v{k}.ipynb"), f"v{k}", "x=1"):
        try:
            if action.type is not None:
                action.type(text)
            return text
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
    raise AssertionError(f"{action.option_strings}: no test value fits its type {action.type}")


def test_every_option_that_takes_a_value_given_twice_is_a_usage_error_naming_it_and_both_values(
        monkeypatch, capsys, tmp_path):
    """R7: the last of two values was taken silently (`predict --out A --out B` charted into B only).
    Every stage's every option that takes a value, given twice, is refused with one line naming it and
    both values, exit 2; the options that add up are the listed ones."""
    accumulating, tried = set(), 0
    for name, parser in _parsers(monkeypatch).items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue  # positionals, flags, --help, --version
            if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
                accumulating.add((name, action.option_strings[0]))
                continue
            count = action.nargs if isinstance(action.nargs, int) else 1
            first = [_value(action, tmp_path, 0)] * count
            second = [_value(action, tmp_path, 1)] * count
            option = action.option_strings[-1]
            with pytest.raises(SystemExit) as stop:
                parser.parse_args([option, *first, option, *second])
            err = capsys.readouterr().err.strip().splitlines()
            assert stop.value.code == 2 and len(err) > 0 and "given twice" in err[-1], (name, option, err)
            assert option in err[-1] and " ".join(first) in err[-1] and " ".join(second) in err[-1], err[-1]
            tried += 1
    assert accumulating == ACCUMULATING
    assert tried > 100  # every stage's options were reached


def test_a_notebook_parameter_or_a_training_setting_given_twice_is_a_usage_error(tmp_path, capsys):
    """R7: `-p secs 1 -p secs 2` ran with secs=2, `train --set lr=0.1 --set lr=0.5` with 0.5."""
    from tests.commands import usage_error
    from tests.notebook_files import code_notebook

    notebook = code_notebook(tmp_path / "s.ipynb", "secs = 1", "print(secs)")
    line = usage_error(["notebook", str(notebook), str(tmp_path / "x.ipynb"), "-p", "secs", "1", "-p", "secs", "2"],
                       capsys)
    assert "-p secs given twice (1, then 2)" in line and not (tmp_path / "x.ipynb").exists()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"store": str(tmp_path), "out_dir": str(tmp_path / "run")}))
    line = usage_error(["train", "--config", str(config), "--set", "lr=0.1", "--set", "lr=0.5"], capsys)
    assert "--set lr given twice (0.1, then 0.5)" in line
    line = usage_error(["train", "--config", str(config), "--set", "loss={kind: dice}", "--set", "loss.kind=focal"],
                       capsys)
    assert "loss.kind is set by another --set too" in line
