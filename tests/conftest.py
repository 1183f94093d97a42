"""Shared fixtures: a tiny synthetic AI4Arctic set (RTT + raw), generated once per session, its
patch store, and a run trained on it by `seaice train` (once per module that asks for it)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from seaice_lib import logs, synthetic  # noqa: E402
from seaice_lib.data.scene import find_scenes  # noqa: E402
from tests.commands import train_run  # noqa: E402

# Torch on one thread in the test process, for the whole session, set here once (three test
# modules used to set it at import, which had the same effect unannounced): trainers, servers
# and jobs that tests start keep the other core, and results do not depend on thread scheduling.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def default_logging():
    """Each test starts with the default log set-up: an earlier command's -q or --quiet does not carry over."""
    logs.configure()


# 110 x 135 pixels at 80 m: not a multiple of 25, so the 2 km grid ends one cell short
TINY_SIZE = (110, 135)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """Two regions x three scenes, ready-to-train in the root and raw 40 m files under raw/."""
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, regions=2, scenes_per_region=3, size=TINY_SIZE, seed=3, raw=True,
                       progress=False)
    return out


@pytest.fixture(scope="session")
def rtt_paths(synthetic_dir):
    return find_scenes(synthetic_dir)


@pytest.fixture(scope="session")
def raw_paths(synthetic_dir):
    return sorted((synthetic_dir / "raw").glob("*.nc"))


@pytest.fixture(scope="session")
def patch_store(synthetic_dir, tmp_path_factory):
    """A patch store of the tiny set: 16 x 16 patches at 160 m, sequences of up to 3 steps."""
    from seaice_lib.data import patches

    path = tmp_path_factory.mktemp("store") / "patches.zarr"
    cfg = patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30, min_overlap=0.1)
    result = patches.extract_store(synthetic_dir, path, cfg, progress=False)
    assert result["written"] and not result["failed"]
    return path


@pytest.fixture(scope="session")
def four_regions(tmp_path_factory):
    """Four regions x two scenes (CentralEast, SGRDIFOXE, SouthEast, SGRDINFLD) and their store."""
    from seaice_lib.data import patches

    root = tmp_path_factory.mktemp("experiment")
    scenes = root / "scenes"
    synthetic.generate(scenes, regions=4, scenes_per_region=2, size=(100, 100), seed=5, progress=False)
    store = root / "patches.zarr"
    patches.extract_store(scenes, store, patches.PatchConfig(patch=16, downsample=2, max_steps=2, window_days=30,
                                                             min_overlap=0.1), progress=False)
    return scenes, store


@pytest.fixture(scope="module")
def run_dir(patch_store, tmp_path_factory):
    """A tiny U-Net trained for two steps by ``seaice train``."""
    return train_run(patch_store, tmp_path_factory.mktemp("cli") / "run")
