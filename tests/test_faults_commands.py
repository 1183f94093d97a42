"""Faults at the command line and around models (issue 12, rows 5 and 7): every wrong argument of
every ``seaice`` stage ends in one line (status 2 for usage, nonzero for data) and no traceback;
config errors are found before any data is read; a checkpoint that does not fit its model names the
file and the problem; temporaries of killed checkpoint writers do not stay behind; a model scored on
a store of another ``downsample`` is refused."""

import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from seaice_lib.cli import main
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.engine import training
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.evaluation import evaluate_patch_proxy
from seaice_lib.engine.run import load_model
from seaice_lib.engine.training import train
from seaice_lib.models import create_model
from seaice_lib.testing.portal_server import demo_portal


def _config(store, out_dir, **entries) -> dict:
    return {"store": str(store), "out_dir": str(out_dir), "model": "unet", "model_size": "tiny",
            "steps": 1, "steps_per_epoch": 1, "warmup_steps": 1, "batch_size": 2, "device": "cpu",
            "evaluate": False, "progress": False, "augment": False, "balance_power": 0.0,
            "val_fraction": 0.3, "checkpoint_every": 0} | entries


@pytest.fixture(scope="module")
def run_dir(patch_store, tmp_path_factory):
    """A tiny U-Net trained for one step (model.pt and checkpoints/last.pt, no evaluation)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    train(TrainConfig.from_dict(_config(patch_store, out)))
    return out


@pytest.fixture
def config_file(patch_store, tmp_path):
    """A valid training config on the session's store."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(patch_store, tmp_path / "run")))
    return path


def _one_error(capsys) -> str:
    """The single ``error:`` line the command wrote to stderr (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _status(argv: list[str]) -> int:
    """``seaice ARGV`` in this process: its exit status (returned or raised)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


# ---- row 5: patch-proxy scoring checks the model's downsample against the store's -----------------

def test_patch_scoring_refuses_a_model_built_for_another_downsample(patch_store):
    dataset = PatchDataset(patch_store)
    assert dataset.downsample == 2  # the session store (conftest)
    sar = len(dataset.settings["sar_variables"])
    other = create_model("unet", "tiny", downsample=4, sar_channels=sar)
    with pytest.raises(ValueError) as raised:
        evaluate_patch_proxy(other, dataset)
    message = str(raised.value)
    assert "downsample 4" in message and "downsample 2" in message and str(patch_store) in message
    own = create_model("unet", "tiny", downsample=2, sar_channels=sar)
    assert evaluate_patch_proxy(own, dataset).n_patches == len(dataset)


# ---- row 7: seaice train: config errors are one line, status 2, before any data is read -----------

@pytest.mark.parametrize("overrides, named", [
    (["steps=abc"], "steps must be an integer, not 'abc'"),
    (["lr=-1"], "lr must be in (0, 10], not -1.0"),
    (["lr=fast"], "lr must be a number, not 'fast'"),
    (["steps=0"], "steps must be >= 1, not 0"),
    (["weight_decay=-0.5"], "weight_decay must be >= 0"),
    (["min_lr_ratio=1.5"], "min_lr_ratio must be in [0, 1]"),
    (["momentum=1"], "momentum must be in [0, 1)"),
    (["val_fraction=1"], "val_fraction must be in [0, 1)"),
    (["batch_size=2.5"], "batch_size must be an integer, not 2.5"),
    (["augment=maybe"], "augment must be true or false, not 'maybe'"),
    (["optimizer=adam"], "optimizer must be one of ('adamw', 'sgd'), not 'adam'"),
    (["model=resnet"], "model must be one of"),
    (["model_size=huge"], "model_size must be one of ('tiny', 'small', 'base'), not 'huge'"),
    (["modalities=[sar, optical]"], "modalities must be among"),
    (["train_scenes=[a]"], "give both train_scenes and val_scenes"),
    (["grad_clip=-1"], "grad_clip must be >= 0 or null"),
    (["seed=-1"], "seed must be in [0, 2**32), not -1"),
    (["split_seed=4294967296"], "split_seed must be in [0, 2**32), not 4294967296"),
    (["learning_rate=0.1"], "unknown keys ['learning_rate']"),
    (["loss.kind=hinge"], "loss kind must be one of"),
    (["loss.focal_gamma=strong"], "focal_gamma must be a number, not 'strong'"),
    (["loss.gamma=2"], "loss: unknown keys ['gamma']"),
    (["loss=focal"], "loss must be a mapping, not 'focal'"),
    (["steps"], "--set expects key=value, not 'steps'"),
    (["lr=[0.1"], "--set lr=[0.1: not a YAML value"),
    (["lr=1", "lr.x=2"], "lr is set to a value"),
])
def test_config_errors_are_one_line_and_exit_2_before_any_data_is_read(overrides, named, config_file,
                                                                        capsys, monkeypatch):
    def no_training(cfg, *args, **kwargs):
        raise AssertionError("the run started: the store was opened with a bad config")

    monkeypatch.setattr(training, "train", no_training)
    sets = [a for o in overrides for a in ("--set", o)]
    assert _status(["train", "--config", config_file, *sets]) == 2
    line = _one_error(capsys)
    assert line.startswith("seaice train: error: ") and named in line


def test_a_bad_set_value_is_named_as_the_override_not_as_the_file(config_file, capsys):
    """The file says lr: 1e-3; the error comes from --set, so the line names the override."""
    assert _status(["train", "--config", config_file, "--set", "lr=inf", "--set", "loss.kind=focal"]) == 2
    assert f"{config_file} (overridden: lr='inf', loss.kind='focal'): lr must be a number" in _one_error(capsys)


@pytest.mark.parametrize("content, named", [
    (None, "cannot read the training config"),
    ("- a\n- list\n", "a training config must be a mapping, not list"),
    ("store: [unclosed\n", "cannot read the training config"),
    ("store: [unclosed\nmodel: unet\n",  # RT16-R6: where, and what the parser expected there
     "cannot read the training config: line 2, column 6: expected ',' or ']', but got ':'; while parsing a flow"),
    ("out_dir: o\n", "missing keys ['store']"),
])
def test_an_unusable_config_file_is_one_line_and_exit_2(content, named, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    assert _status(["train", "--config", path]) == 2
    line = _one_error(capsys)
    assert str(path) in line and named in line


def test_a_store_that_does_not_exist_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path / "no_such.zarr", tmp_path / "run")))
    assert _status(["train", "--config", path]) == 2
    assert f"store {tmp_path / 'no_such.zarr'}: no such patch store" in _one_error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entries, named", [
    ({"scenes_dir": "no_such_scenes", "evaluate": True}, "scenes_dir {tmp}/no_such_scenes: no such folder"),
    ({"model_kwargs": {"foo": 1}}, "model_kwargs {'foo': 1}: unet (tiny) refuses them"),
])
def test_config_entries_found_unusable_once_the_store_is_read_are_usage_errors(entries, named, patch_store, tmp_path,
                                                                                capsys):
    """RT13-R8: a mistyped scenes_dir and model_kwargs the model refuses are config problems, as a
    mistyped store is: one line, exit 2, before the run's folder is made."""
    path = tmp_path / "c.yaml"
    entries = {k: str(tmp_path / v) if k == "scenes_dir" else v for k, v in entries.items()}
    path.write_text(yaml.safe_dump(_config(patch_store, tmp_path / "run", **entries)))
    assert _status(["train", "--config", path]) == 2
    assert named.replace("{tmp}", str(tmp_path)) in _one_error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_bad_value_in_python_fails_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"^lr must be in \(0, 10\], not -1.0$"):
        TrainConfig(store="never_opened.zarr", out_dir="o", lr=-1)
    with pytest.raises(ValueError, match=r"^c.yaml: steps must be an integer, not 'abc'$"):
        TrainConfig.from_dict({"store": "s", "out_dir": "o", "steps": "abc"}, "c.yaml")
    # numbers YAML 1.1 reads as strings, and integral floats for integers, are what they say
    cfg = TrainConfig.from_dict({"store": "s", "out_dir": "o", "lr": "3e-4", "steps": 1e3})
    assert (cfg.lr, cfg.steps) == (3e-4, 1000) and type(cfg.steps) is int


def test_every_training_setting_says_whether_a_resume_must_match_it():
    """A new setting without the mark would let a checkpoint resume a run of another value silently."""
    import dataclasses

    from seaice_lib.engine.config import RESUME_FIELDS

    fields = dataclasses.fields(TrainConfig)
    assert [f.name for f in fields if "resume" not in f.metadata] == []
    assert set(RESUME_FIELDS) == {f.name for f in fields if f.metadata["resume"]}
    # what only says where and how fast to run, where the data lies (the data itself is checked on
    # resume) and where the run ends (the stopping rule) may change between a run and its resume
    assert set(f.name for f in fields) - set(RESUME_FIELDS) == {
        "out_dir", "num_workers", "compile", "checkpoint_every", "scenes_dir", "device", "eval_batch_size",
        "progress", "time_budget_s", "store", "job_mem", "converge_min_gain", "converge_patience",
        "converge_max_dip"}


def test_a_run_that_cannot_resume_is_one_line(run_dir, patch_store, tmp_path, capsys):
    """Another lr for the run's out_dir: the checkpoint refuses it (found once the run is set up)."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(patch_store, run_dir, lr=0.5)))
    assert _status(["train", "--config", path]) == 1
    line = _one_error(capsys)
    assert "last.pt: cannot resume" in line and "lr: 0.001 -> 0.5" in line


def test_python_m_prints_no_traceback_for_a_bad_value(config_file, tmp_path):
    result = subprocess.run([sys.executable, "-m", "seaice_lib", "train", "--config", str(config_file),
                             "--set", "lr=-1"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"seaice train: error: {config_file} (overridden: lr=-1): lr must be in (0, 10], not -1.0"


# ---- row 7: seaice download --dest naming a file ---------------------------------------------------

def test_download_into_an_existing_file_is_one_line_and_exit_2(tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.write_text("not a folder")
    with demo_portal(1, 1000, rate=None) as server:  # the listing works: only DEST is wrong
        url = server.url
        assert _status(["download", "--article", "rtt-train", "--dest", existing, "--api-url", url,
                        "--quiet"]) == 2
        assert f"--dest {existing}: not a folder" in _one_error(capsys)
        # a DEST below a file fails when the folder is made: one line, status 2 (nothing could be done)
        assert _status(["download", "--article", "rtt-train", "--dest", existing / "sub", "--api-url", url,
                        "--quiet"]) == 2
        assert str(existing / "sub") in _one_error(capsys)
    assert existing.read_text() == "not a folder"


# ---- row 7: load_model names the file and what is wrong --------------------------------------------

def _edited(run_dir, tmp_path, name, edit):
    """A copy of the run's model.pt with ``edit(doc)`` applied."""
    doc = torch.load(run_dir / "model.pt", weights_only=True)
    edit(doc)
    path = tmp_path / name
    torch.save(doc, path)
    return path


def test_load_model_loads_the_runs_model(run_dir):
    model = load_model(run_dir)
    weights = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert not model.training and all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("case, named", [
    ("missing key", "missing: "),
    ("unexpected key", "unexpected: extra.weight"),
    ("other size", "other shapes: "),
    ("other model", "cannot build its model from the spec"),
    ("no spec", "holds no model spec and weights"),
    ("a tensor", "not a checkpoint of `seaice train` (it holds a Tensor)"),
    ("text", "not a readable checkpoint (truncated, or not written by `seaice train`): not the whole zip archive"),
    ("empty", "not a readable checkpoint"),
    ("truncated", "not a readable checkpoint"),
])
def test_load_model_on_a_file_that_does_not_fit_names_it_and_the_problem(case, named, run_dir, tmp_path):
    good = (run_dir / "model.pt").read_bytes()
    first_key = next(iter(torch.load(run_dir / "model.pt", weights_only=True)["model"]))
    edits = {
        "missing key": lambda d: d["model"].pop(first_key),
        "unexpected key": lambda d: d["model"].__setitem__("extra.weight", torch.zeros(1)),
        "other size": lambda d: d["spec"].__setitem__("size", "small"),
        "other model": lambda d: d["spec"].__setitem__("name", "no_such_model"),
        "no spec": lambda d: d.pop("spec"),
    }
    if case in edits:
        path = _edited(run_dir, tmp_path, "model.pt", edits[case])
    else:
        path = tmp_path / "model.pt"
        if case == "a tensor":
            torch.save(torch.zeros(3), path)
        else:
            path.write_bytes({"text": b"weights: none\n", "empty": b"", "truncated": good[:len(good) // 2]}[case])
    with pytest.raises(ValueError) as raised:
        load_model(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and named in message and "\n" not in message
    if case == "missing key":
        assert first_key in message


def test_a_run_whose_model_does_not_fit_is_one_line_at_the_command_line(run_dir, tmp_path, capsys):
    bad = tmp_path / "run"
    bad.mkdir()
    _edited(run_dir, bad, "model.pt", lambda d: d["spec"].__setitem__("size", "small"))
    assert _status(["predict", bad, "missing_prep.nc", "--out", tmp_path / "o"]) == 2  # the scene first
    _one_error(capsys)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    assert _status(["evaluate", bad, "--scenes", scenes]) == 2
    assert f"{bad / 'model.pt'}: the weights do not fit its model unet (small)" in _one_error(capsys)


@pytest.mark.parametrize("name, content, named", [
    ("config.yaml", "store: [unclosed\n", "config.yaml: cannot read the training config"),
    ("config.yaml", "lr: 0.1\n", "config.yaml: missing keys ['store', 'out_dir'] (or name the store with --store)"),
    ("evaluation.json", "{\"scores\": ", "evaluation.json: not JSON"),
    ("evaluation.json", "[1, 2]", "evaluation.json: records no validation scenes"),
])
def test_a_damaged_run_folder_is_one_line_at_the_command_line(name, content, named, run_dir, synthetic_dir,
                                                              tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / name).write_text(content)
    assert _status(["evaluate", run, "--scenes", synthetic_dir, "--quiet"]) == 2
    line = _one_error(capsys)
    assert str(run / name) in line and named in line


# ---- row 7: temporaries of killed checkpoint writers are cleaned on the next write -----------------

def test_stale_checkpoint_temporaries_go_on_the_next_write_and_a_live_writers_stay(patch_store, tmp_path):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = [checkpoints / f".last.pt.{dead_pid}.tmp", out / f".model.pt.{dead_pid}.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = checkpoints / f".last.pt.{writer.pid}.tmp"
        live.write_bytes(b"being written")
        summary = train(TrainConfig.from_dict(_config(patch_store, out)))
        assert summary["status"] == "completed"
        assert (checkpoints / "last.pt").is_file() and (out / "model.pt").is_file()
        assert not any(p.exists() for p in stale)
        assert live.read_bytes() == b"being written"  # its writer is alive: left alone
    finally:
        writer.kill()
        writer.wait()


# ---- every stage: wrong arguments end in one line, never a traceback -------------------------------

@pytest.fixture
def places(tmp_path, run_dir, synthetic_dir):
    """Names the argument lists below use: a plain file, an empty folder, the run, the scenes."""
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "empty").mkdir()
    return {"FILE": tmp_path / "afile", "EMPTY": tmp_path / "empty", "RUN": run_dir,
            "SCENES": synthetic_dir, "TARGET": sorted(synthetic_dir.glob("*_prep.nc"))[0],
            "OUT": tmp_path / "out", "UNDER_FILE": tmp_path / "afile" / "st.zarr"}


@pytest.mark.parametrize("argv, status, named", [
    ([], 2, "the following arguments are required"),
    (["no-such-stage"], 2, "invalid choice: 'no-such-stage'"),
    (["synthetic", "--out", "OUT", "--regions", "0"], 2, "regions must be 1..12, not 0"),
    (["synthetic", "--out", "OUT", "--regions", "two"], 2, "argument --regions: invalid int value"),
    (["synthetic", "--out", "OUT", "--scenes-per-region", "0"], 2, "scenes_per_region must be >= 1"),
    (["synthetic", "--out", "OUT", "--size", "10", "10"], 2, "at least 50 pixels a side"),
    (["synthetic", "--out", "OUT", "--size", "100000", "60"], 2, "at most 6000 pixels a side"),
    (["synthetic", "--out", "FILE", "--regions", "1", "--scenes-per-region", "1", "--size", "50", "50",
      "--quiet"], 1, "{FILE}"),
    (["prepare", "--raw", "EMPTY", "--out", "OUT"], 2, "no raw .nc files in"),
    (["prepare", "--out", "OUT"], 2, "the following arguments are required: --raw"),
    (["patches", "--scenes", "SCENES", "--out", "OUT", "--patch", "0"], 2, "must be positive"),
    (["patches", "--scenes", "SCENES", "--out", "OUT", "--downsample", "x"], 2, "--downsample"),
    (["patches", "--scenes", "SCENES", "--out", "OUT", "--scene", "nope", "--quiet"], 2, "no scene 'nope'"),
    (["patches", "--out", "OUT", "--scenes", "SCENES", "--consolidate-only"], 1, "{OUT}"),
    (["patches", "--scenes", "SCENES", "--out", "OUT", "--partial"], 2, "--partial goes with --consolidate-only"),
    (["patches", "--scenes", "SCENES", "--out", "FILE", "--scene", "TARGET_ID", "--quiet"], 2,
     "argument --out: {FILE}: a file, not a folder to write into"),
    (["patches", "--scenes", "SCENES", "--out", "UNDER_FILE"], 2,
     "argument --out: {UNDER_FILE}: {FILE} is a file, not a folder to write into"),
    (["batch", "NOTEBOOK", "GRID", "--runs", "FILE"], 2, "argument --runs: {FILE}: a file, not a folder to write into"),
    (["train"], 2, "the following arguments are required: --config"),
    (["train", "--config", "FILE"], 2, "a training config must be a mapping, not str"),
    (["train", "--config", "EMPTY"], 2, "cannot read the training config"),
    (["train", "--config", "CFG", "--unknown"], 2, "unrecognized arguments: --unknown"),
    (["evaluate", "RUN"], 2, "the following arguments are required: --scenes"),
    (["evaluate", "OUT", "--scenes", "SCENES"], 2, "no model.pt or checkpoints/last.pt"),
    (["evaluate", "FILE", "--scenes", "SCENES"], 2, "not a readable checkpoint"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--batch-size", "0"], 2, "--batch-size must be >= 1, not 0"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--overlap", "1.5"], 2, "--overlap must be in [0, 1), not 1.5"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--device", "gpu7"], 2, "--device gpu7"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--store", "EMPTY", "--targets", "x"], 2, "{EMPTY}"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--targets", "19990101T000000"], 2, "19990101T000000: not a scene id"),
    (["evaluate", "RUN", "--scenes", "SCENES", "--targets", "TARGET_ID", "--targets", "x1"], 2,
     "x1: not a scene id"),  # a repeated option adds to the first, never replaces it
    (["evaluate", "RUN", "--scenes", "SCENES", "--targets", "TARGET_ID", "20201110T085712_dmi_prep.nc"], 2,
     "20201110T085712_dmi_prep.nc: not a scene id"),  # a prefix match would count a scene twice
    (["predict", "RUN", "TARGET"], 2, "the following arguments are required: --out"),
    (["predict", "RUN", "TARGET", "--out", "OUT", "--batch-size", "-1"], 2, "--batch-size must be >= 1"),
    (["download", "--dest", "OUT"], 2, "the following arguments are required: --article"),
    (["download", "--article", "nope", "--dest", "OUT", "--api-url", "http://127.0.0.1:9/v2", "--retries", "0"],
     2, "unknown article 'nope'"),
    (["download", "--article", "rtt-train", "--dest", "OUT", "--workers", "0"], 2, "workers must be at least 1"),
    (["download", "--article", "rtt-train", "--dest", "OUT", "--chunk-size", "lots"], 2, "not a size: 'lots'"),
    (["download", "--article", "rtt-train", "--dest", "FILE"], 2, "not a folder"),
    (["export", "RUN", "--opset", "7"], 2, "--opset must be 18.."),
    (["export", "RUN", "--opset", "1000"], 2, "not 1000"),
    (["synthetic", "--out", "FILE"], 2, "a file, not a folder"),
    (["synthetic", "--out", "OUT", "--seed", "-1"], 2, "--seed must be >= 0"),
    (["predict", "RUN", "TARGET", "--out", "FILE"], 2, "a file, not a folder to write into"),
    (["predict", "RUN", "TARGET", "--out", "UNDER_FILE"], 2, "{FILE} is a file, not a folder to write into"),
    (["experiment", "status", "EMPTY"], 2, "experiment {EMPTY}: a folder, not a file"),
    (["experiment", "status", "OUT"], 2, "experiment {OUT}: no such file"),
    (["figures", "OUT", "--experiment", "EMPTY"], 2, "--experiment {EMPTY}: a folder, not a file"),
    (["predict", "RUN", "TARGET", "--out", "OUT", "--history", "FILE"], 2, "--history {FILE}: a file, not a folder"),
    (["portal", "--port", "70000"], 2, "--port must be 0..65535, not 70000"),
    (["portal", "--size", "big"], 2, "not a size: 'big'"),
])
def test_every_stage_ends_wrong_arguments_in_one_line(argv, status, named, places, config_file, capsys):
    """Status 2: a usage problem, exactly 2; status 1: a data problem, any nonzero status."""
    names = {k: str(v) for k, v in places.items()} | {"CFG": str(config_file),
                                                      "TARGET_ID": places["TARGET"].name[:19]}
    code = _status([names.get(a, a) for a in argv])
    assert code == 2 if status == 2 else code not in (0, None), code
    line = _one_error(capsys)
    stage = f"seaice {argv[0]}" if argv and argv[0] != "no-such-stage" else "seaice"
    assert line.startswith(f"{stage}: error: ") and named.format_map(names) in line


def test_a_checkpoint_of_another_version_says_so_and_what_to_do(tmp_path):
    from seaice_lib.engine.checkpoints import check_resumable
    from seaice_lib.engine.config import TrainConfig

    cfg = TrainConfig(store=str(tmp_path / "s.zarr"), out_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"last\.pt: a seaice-checkpoint/1 checkpoint, written by another "
                                         r"version.*new out_dir or delete that run"):
        check_resumable(cfg, {"format": "seaice-checkpoint/1"}, tmp_path / "last.pt", 1)
    with pytest.raises(ValueError, match=r"last\.pt: not a seaice-checkpoint/2 checkpoint"):
        check_resumable(cfg, {"weights": 1}, tmp_path / "last.pt", 1)
