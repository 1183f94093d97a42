"""The edge runtime: torch-free tiles, `seaice edge-predict`, and a venv without torch.

The tiles the runtime cuts are the PyTorch path's (one numpy batch builder checked against
`collate` of the stored-sample code), the runtime's import closure holds no torch, the command
writes CF chart files that hold the PyTorch path's classes, and (slow) a fresh venv with
``pip install "seaice_lib[edge]"`` charts a scene without torch.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch

from seaice_lib import cli, schema
from seaice_lib.charts import cf
from seaice_lib.data.dataset import collate
from seaice_lib.data.patches import config_from_store
from seaice_lib.engine import scenes
from seaice_lib.engine.training import load_model
from tests.test_cli import train_run

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SAME_CLASSES = 0.999  # the parity bound of tests/test_export.py


@pytest.fixture(scope="module")
def exported_run(patch_store, tmp_path_factory):
    """A tiny TSViT v3 trained 5 steps by `seaice train`, exported (fp32 only)."""
    run = train_run(patch_store, tmp_path_factory.mktemp("edge") / "run", model="tsvit_v3", steps=5,
                    steps_per_epoch=5, batch_size=8, lr=3e-3, evaluate=False)
    assert cli.main(["export", str(run)]) == 0
    return run


def test_tile_batches_are_the_collated_samples_of_the_tiles(patch_store, synthetic_dir):
    cfg = config_from_store(patch_store)
    target = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    tiles = scenes.SceneTiles(scenes.scene_sequence(target, synthetic_dir, cfg), cfg)
    assert len(tiles.sequence) > 1
    origins = tiles.origins[1:4]
    expected = collate([tiles.sample(r, c) for r, c in origins])
    arrays = tiles.arrays(origins)
    got = tiles.batch(origins)
    assert set(arrays) == set(got) == set(expected)
    for key, value in expected.items():
        if key == "labels":
            for chart in schema.CHARTS:
                assert arrays[key][chart].dtype == value[chart].numpy().dtype
                np.testing.assert_array_equal(arrays[key][chart], value[chart].numpy())
                assert torch.equal(got[key][chart], value[chart])
            continue
        assert arrays[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(arrays[key], value.numpy(), err_msg=key)
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_the_runtime_and_the_command_load_no_torch():
    code = ("import sys, seaice_lib.edge, seaice_lib.edge.runtime, seaice_lib.cli, seaice_lib.data.tiles; "
            "print(sorted(m for m in ('torch', 'seaice_lib.models', 'seaice_lib.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _charts_of_pytorch(run, target, scenes_dir, store):
    return scenes.predict_scene(load_model(run), target, scenes_dir, config_from_store(store)).charts


def _assert_same_classes(got: dict, expected: dict) -> None:
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(got[chart] == 255, expected[chart] == 255)
        assert (got[chart] == expected[chart]).mean() >= SAME_CLASSES, chart


def test_edge_predict_writes_cf_charts_and_goes_on_past_a_bad_scene(exported_run, patch_store,
                                                                     synthetic_dir, tmp_path, capsys):
    paths = sorted(synthetic_dir.glob("*_prep.nc"))
    broken = tmp_path / f"{paths[0].name[:19]}_prep.nc"  # a truncated copy, charted from its own folder
    broken.write_bytes(paths[0].read_bytes()[:5000])
    out = tmp_path / "charts"
    status = cli.main(["edge-predict", str(exported_run), str(broken), str(paths[4]), str(paths[5]),
                       "--scenes", str(synthetic_dir), "--out", str(out), "--quiet", "--probabilities",
                       "--threads", "1"])
    err = capsys.readouterr().err
    assert status == 1 and str(broken) in err and "failed" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{p.name[:19]}_charts.nc" for p in paths[4:]]
    for path in paths[4:]:
        file = cf.charts_path(out, path.name[:19])
        sid, charts = cf.read_charts(file)
        assert sid == path.name[:19]
        _assert_same_classes(charts, _charts_of_pytorch(exported_run, path, synthetic_dir, patch_store))
        assert set(cf.read_probabilities(file)) == set(schema.CHARTS)  # SIC classified
        with netCDF4.Dataset(file) as nc:
            assert nc.model == "tsvit_v3" and nc.model_runtime == "onnxruntime fp32 (model.onnx)"
            assert nc.input_files.split(", ")[-1] == path.name
            assert nc.model_config_sha256 == cf.config_sha256(exported_run / "config.yaml")
    # without the modalities v3 can chart without
    assert cli.main(["edge-predict", str(exported_run / "export"), str(paths[5]), "--out",
                     str(tmp_path / "without"), "--without", "amsr2", "era5", "--quiet"]) == 0
    with netCDF4.Dataset(cf.charts_path(tmp_path / "without", paths[5].name[:19])) as nc:
        assert nc.modalities_absent == "amsr2, era5"


@pytest.mark.parametrize("argv, message", [
    (["{run}", "{scene}", "--out", "{tmp}", "--int8"], "no int8 model (export with --int8)"),
    (["{tmp}", "{scene}", "--out", "{tmp}"], "no export.json here or in"),
    (["{run}", "{tmp}/missing_prep.nc", "--out", "{tmp}"], "no such scene file or folder"),
    (["{run}", "{scene}", "--out", "{tmp}", "--threads", "0"], "--threads must be >= 1, not 0"),
])
def test_edge_predict_usage_errors_are_one_line(exported_run, synthetic_dir, tmp_path, capsys, argv, message):
    scene = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    argv = [a.format(run=exported_run, scene=scene, tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as stop:
        cli.main(["edge-predict"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("seaice edge-predict: error: ") and message in err[-1]
    assert not list(tmp_path.glob("*_charts.nc"))


@pytest.mark.slow
def test_a_venv_with_the_edge_extra_charts_a_scene_without_torch(exported_run, patch_store, synthetic_dir,
                                                                 tmp_path):
    """``pip install "seaice_lib[edge]"`` into a fresh venv (from a copy of the package, so nothing
    is built in the repository), then `seaice edge-predict` there."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "seaice_lib", source / "seaice_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([python, "-m", "pip", "install", "-q", f"{source}[edge]"], capture_output=True,
                             text=True, env=env)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    target = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    out = tmp_path / "charts"
    run = subprocess.run([env_dir / "bin" / "seaice", "edge-predict", exported_run, target, "--scenes",
                          synthetic_dir, "--out", out, "--threads", "1", "--quiet"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    _, charts = cf.read_charts(cf.charts_path(out, target.name[:19]))
    _assert_same_classes(charts, _charts_of_pytorch(exported_run, target, synthetic_dir, patch_store))
