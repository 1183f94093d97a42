"""Options that could only yield nothing, and settings a model or device refuses, end in one line;
--debug shows the traceback."""

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
    assert _status(["train", "--config", config]) == 1
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
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
    assert code == 2 and "--include 2099*_prep.nc: matches none of the 2 files" in err
