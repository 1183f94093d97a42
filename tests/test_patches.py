import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import netCDF4
import numpy as np
import pytest
import zarr

import seaice_lib
from seaice_lib import schema, synthetic
from seaice_lib.data import patches
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.scene import Scene
from seaice_lib.data.store import check_store, store_lacking
from seaice_lib.engine.training import train
from tests.scene_edits import copy_scenes, edit_variable
from tests.training_runs import train_config

CFG = patches.PatchConfig(patch=16, downsample=2, window_days=30, min_overlap=0.1, min_labelled=0.05)


@pytest.fixture(scope="module")
def store(synthetic_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "patches.zarr"
    result = patches.extract_store(synthetic_dir, path, CFG, progress=False)
    assert len(result["written"]) == 6 and not result["failed"]
    return path


def test_store_layout(store, synthetic_dir):
    root = zarr.open_group(store, mode="r")
    assert root.attrs["format"] == patches.FORMAT and root.attrs["grid_cells"] == CFG.grid_cells
    index = root["index"]
    ids = index.attrs["scene_ids"]
    assert len(ids) == 6
    total = 0
    for sid in ids:
        g = root[f"scenes/{sid}"]
        n, t = g.attrs["n_patches"], len(g.attrs["steps"])
        total += n
        assert g.attrs["steps"][-1] == sid and g.attrs["days_before"][-1] == 0
        assert g["sar"].shape == (n, t, 3, 16, 16) and g["sar"].dtype == np.float16
        assert g["sar_mask"].shape == (n, t, 16, 16) and g["labels"].shape == (n, 3, 16, 16)
        assert g["amsr2"].shape == (n, 14, CFG.grid_cells, CFG.grid_cells)
        np.testing.assert_array_equal(g["histograms"][...].sum(axis=0),
                                      index["histograms"][...][index["scene"][...] == ids.index(sid)].sum(axis=0))
    assert index["scene"].shape == (total,)
    assert max(len(root[f"scenes/{s}"].attrs["steps"]) for s in ids) == 3  # sequences were built
    totals = index.attrs["class_totals"]
    assert [len(totals[c]) for c in schema.CHARTS] == [11, 6, 7]


@pytest.mark.parametrize("scene", range(6))  # some patches hold 2 x 2 blocks with one valid pixel
def test_patches_match_the_scene(store, synthetic_dir, scene):
    root = zarr.open_group(store, mode="r")
    sid = root["index"].attrs["scene_ids"][scene]
    g = root[f"scenes/{sid}"]
    downsample, p, cell = CFG.downsample, CFG.patch, schema.CELL_80M
    with Scene(synthetic_dir / f"{sid}_prep.nc") as scene:
        charts = scene.charts()
        hh = scene.read("nersc_sar_primary")
        valid = scene.sar_valid()
        full, _ = scene.read_grid2km(schema.AMSR2_CHANNELS)
        for k in range(g.attrs["n_patches"]):
            r0, c0 = g["origin"][k]
            steps = np.arange(p) * downsample + downsample // 2
            centre = (r0 + steps, c0 + steps)
            inside = (centre[0] < scene.shape[0])[:, None] & (centre[1] < scene.shape[1])[None, :]
            rr = np.minimum(centre[0], scene.shape[0] - 1)
            cc = np.minimum(centre[1], scene.shape[1] - 1)
            labels = g["labels"][k]
            expected = np.where(inside & g["sar_mask"][k, -1], charts["SIC"][np.ix_(rr, cc)], 255)
            np.testing.assert_array_equal(labels[0], expected)
            counts = [(labels[i] == v).sum() for i, c in enumerate(schema.CHARTS)
                      for v in range(schema.N_CLASSES[c])]  # every class of SIC, SOD, FLOE in turn
            np.testing.assert_array_equal(g["histograms"][k], counts)
            # target SAR: the mean of the valid 80 m pixels of each 2 x 2 block, 0 where under half are valid
            h = min(p, (scene.shape[0] - r0) // downsample)
            w = min(p, (scene.shape[1] - c0) // downsample)
            block_hh = hh[r0:r0 + h * downsample, c0:c0 + w * downsample].reshape(h, downsample, w, downsample)
            block_ok = valid[r0:r0 + h * downsample, c0:c0 + w * downsample].reshape(h, downsample, w, downsample)
            n_ok = block_ok.sum(axis=(1, 3))
            total = np.where(block_ok, block_hh, 0).sum(axis=(1, 3), dtype=np.float64)
            mean = np.where(2 * n_ok >= downsample ** 2, total / np.maximum(n_ok, 1), 0)
            np.testing.assert_allclose(g["sar"][k, -1, 0, :h, :w], mean, atol=1e-3, rtol=1e-3)
            # AMSR2 cells: the stored block and offset give each pixel the cell under it
            off = g["grid2km_offset"][k]
            block = g["amsr2"][k]
            cr = (off[0] + np.arange(p) * downsample) // cell
            ccl = (off[1] + np.arange(p) * downsample) // cell
            got = block[:, cr[:, None], ccl[None, :]]
            ref_r = np.minimum(rr // cell, full.shape[1] - 1)
            ref_c = np.minimum(cc // cell, full.shape[2] - 1)
            ref = full[:, ref_r[:, None], ref_c[None, :]].astype(np.float16)
            np.testing.assert_array_equal(got[:, inside], ref[:, inside])


def test_earlier_steps_are_masked_where_they_do_not_cover(store):
    root = zarr.open_group(store, mode="r")
    for sid in root["index"].attrs["scene_ids"]:
        g = root[f"scenes/{sid}"]
        if len(g.attrs["steps"]) > 1 and g.attrs["n_patches"]:
            sar, mask = g["sar"][...], g["sar_mask"][...]
            assert np.all(sar[:, :-1][~np.repeat(mask[:, :-1, None], 3, axis=2)] == 0)
            assert mask[:, :-1].any()


def test_few_files_per_scene(store):
    files = [f for f in (store / "scenes").rglob("*") if f.is_file()]
    assert len(files) <= 6 * 8 * 2 + 6  # per array: its zarr.json and one shard; per group a zarr.json


def test_other_settings_on_the_same_store_are_refused(store, synthetic_dir):
    with pytest.raises(ValueError, match="other settings"):
        patches.extract_store(synthetic_dir, store, patches.PatchConfig(patch=32), progress=False)


def test_the_store_records_its_latest_scenes_folder(store, synthetic_dir, tmp_path):
    assert patches.store_scenes_dir(store) == synthetic_dir.resolve()
    assert "scenes_dir" not in CFG.attrs()  # not a setting: another folder may extend the store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    root = json.loads((copy / "zarr.json").read_text())
    del root["attributes"]["scenes_dir"]  # a store built before the folder was recorded
    (copy / "zarr.json").write_text(json.dumps(root))
    assert patches.store_scenes_dir(copy) is None
    assert patches.config_from_store(copy) == patches.config_from_store(store)
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in sorted(synthetic_dir.glob("*_prep.nc")):
        (moved / path.name).symlink_to(path)
    for folder in (synthetic_dir, moved):  # reopening works, and the latest folder is kept
        result = patches.extract_store(folder, copy, CFG, progress=False)
        assert len(result["skipped"]) == 6 and not result["failed"]
        assert patches.store_scenes_dir(copy) == folder.resolve()
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):  # no scenes: an error, nothing recorded
        with pytest.raises(ValueError, match=str(folder)):
            patches.extract_store(folder, copy, CFG, progress=False)
    assert patches.store_scenes_dir(copy) == moved.resolve()
    with pytest.raises(ValueError, match="not a patch store"):
        patches.store_scenes_dir(tmp_path)


def test_bad_scenes_are_reported_and_skipped(rtt_paths, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for p in rtt_paths[:2]:
        (scenes / p.name).write_bytes(p.read_bytes())
    (scenes / "20190101T000000_dmi_prep.nc").write_bytes(b"garbage")
    code = patches.main(["--scenes", str(scenes), "--out", str(tmp_path / "s.zarr"), "--patch", "16",
                         "--downsample", "2", "--quiet"])
    assert code == 1
    root = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert len(root["index"].attrs["scene_ids"]) == 2


def test_groups_of_scenes_gone_from_the_folder_or_failing_now_are_set_aside_not_indexed(rtt_paths, tmp_path,
                                                                                          capsys):
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    gone, broken = scenes / rtt_paths[0].name, scenes / rtt_paths[1].name
    gone.unlink()  # a scene taken out of the folder
    broken.write_bytes(broken.read_bytes()[:30000])  # a scene that now fails to read
    args = ["--scenes", str(scenes), "--out", str(store), "--patch", "16", "--downsample", "2", "--window-days", "30",
            "--min-overlap", "0.1", "--min-labelled", "0.05", "--quiet"]
    assert patches.main(args) == 1  # the broken scene fails
    out = capsys.readouterr().out
    aside = sorted(p.name[:19] for p in (rtt_paths[0], rtt_paths[1]))
    assert "2 scene groups set aside" in out and ", ".join(aside) in out
    indexed = list(zarr.open_group(store, mode="r")["index"].attrs["scene_ids"])
    assert sorted(indexed) == sorted(set(first["written"]) - set(aside))
    assert sorted(p.name for p in (store / "scenes").glob(".removed-*")) == [f".removed-{sid}" for sid in aside]
    assert all(sid not in PatchDataset(store).scene_ids for sid in aside)


def test_a_scene_task_whose_scene_fails_now_sets_its_earlier_group_aside(rtt_paths, tmp_path):
    """``--scene S`` (one SLURM array task) for a scene reprocessed into a file that now fails: its
    group of the earlier file goes aside as a whole extraction's would, so the index lacks it and
    nothing trains on patches of the earlier file; another scene's task leaves it alone."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    patches.extract_store(scenes, store, CFG, progress=False)
    target = scenes / rtt_paths[-1].name
    sid = target.name[:19]
    with netCDF4.Dataset(target, "r+") as nc:
        nc["u10m_rotated"][0, 0] = float("inf")
    result = patches.extract_store(scenes, store, CFG, scene=sid, progress=False)
    assert len(result["failed"]) == 1 and result["removed"] == [sid]
    assert not (store / "scenes" / sid).exists() and (store / "scenes" / f".removed-{sid}" / "zarr.json").is_file()
    assert sid not in zarr.open_group(store, mode="r")["index"].attrs["scene_ids"]
    assert store_lacking(store) == [sid]
    other = rtt_paths[0].name[:19]
    assert patches.extract_store(scenes, store, CFG, scene=other, progress=False)["removed"] == []


def test_a_group_cut_by_another_release_is_cut_again(rtt_paths, tmp_path, monkeypatch):
    """A release may cut other patches from the same files: its groups are cut again, not kept."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    assert patches.extract_store(scenes, store, CFG, progress=False)["written"] == []  # this release: kept
    from seaice_lib import provenance

    monkeypatch.setattr(provenance, "__version__", "99.0")  # a later release, which records itself
    again = patches.extract_store(scenes, store, CFG, progress=False)
    assert sorted(again["again"]) == sorted(first["written"]) and not again["skipped"]
    assert set(again["again"].values()) == {f"made by seaice_lib {seaice_lib.__version__}"}
    sid = first["written"][0]
    assert zarr.open_group(store / "scenes" / sid, mode="r").attrs["made_by"]["version"] == "99.0"


def test_a_group_whose_arrays_changed_since_it_was_cut_is_cut_again(rtt_paths, tmp_path, capsys):
    """Labels overwritten in a group after it was cut (its input files unchanged): the rerun finds
    its arrays are not the ones it recorded (``content_sha256``), cuts it again and says so; so
    does a group that records no content_sha256 (an edit could not be told)."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    edited, unrecorded = first["written"][0], first["written"][1]
    labels = zarr.open_array(store / "scenes" / edited / "labels", mode="r+")
    cut = labels[...]
    assert (cut != 255).any()
    labels[...] = np.where(cut == 255, 255, cut == 0).astype(np.uint8)  # every label made another class
    meta_path = store / "scenes" / unrecorded / "zarr.json"  # as a group cut before groups recorded it
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["content_sha256"]
    meta_path.write_text(json.dumps(meta))
    args = ["--scenes", str(scenes), "--out", str(store), "--quiet"]
    assert patches.main(args) == 0
    out = capsys.readouterr().out
    assert "2 scenes written (1 cut again: changed since it was cut" in out
    assert "1 cut again: it records no content_sha256" in out and f"{len(first['written']) - 2} already there" in out
    np.testing.assert_array_equal(zarr.open_array(store / "scenes" / edited / "labels", mode="r")[...], cut)
    assert "content_sha256" in json.loads(meta_path.read_text())["attributes"]
    assert patches.main(args) == 0  # as cut now: every group kept
    assert f"0 scenes written, {len(first['written'])} already there" in capsys.readouterr().out


def test_a_scene_set_aside_twice_keeps_both_groups(rtt_paths, tmp_path):
    """A scene taken out, put back (cut again) and taken out again: the second set-aside takes a
    numbered name, the first stays as it was."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    patches.extract_store(scenes, store, CFG, progress=False)
    moved = tmp_path / rtt_paths[-1].name
    sid = moved.name[:19]
    (scenes / moved.name).rename(moved)
    assert patches.extract_store(scenes, store, CFG, progress=False)["removed"] == [sid]
    first = {p.relative_to(store): p.read_bytes() for p in (store / "scenes" / f".removed-{sid}").rglob("*")
             if p.is_file()}
    assert first
    moved.rename(scenes / moved.name)
    assert sid in patches.extract_store(scenes, store, CFG, progress=False)["written"]
    (scenes / moved.name).rename(moved)
    assert patches.extract_store(scenes, store, CFG, progress=False)["removed"] == [sid]
    assert sorted(p.name for p in (store / "scenes").glob(".removed-*")) == [f".removed-{sid}", f".removed-{sid}.2"]
    assert {p: b for p, b in first.items() if (store / p).is_file() and (store / p).read_bytes() == b} == first
    assert (store / "scenes" / f".removed-{sid}.2" / "zarr.json").is_file()


def test_a_group_is_cut_again_once_a_file_it_was_cut_from_changed(rtt_paths, tmp_path):
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    assert not first["again"] and not first["failed"]
    root = zarr.open_group(store, mode="r")
    steps = {sid: list(root[f"scenes/{sid}"].attrs["steps"]) for sid in first["written"]}
    assert patches.extract_store(scenes, store, CFG, progress=False)["skipped"] == first["written"]
    touched = scenes / rtt_paths[0].name
    os.utime(touched, ns=(1, 1))  # a copy without its times: same bytes, kept
    assert sorted(patches.extract_store(scenes, store, CFG, progress=False)["skipped"]) == sorted(first["written"])
    edit_variable(touched, "nersc_sar_primary", lambda values: values.__imul__(0.5))
    result = patches.extract_store(scenes, store, CFG, progress=False)
    reading = sorted(sid for sid, ids in steps.items() if touched.name[:19] in ids)
    assert 0 < len(reading) < len(steps) and sorted(result["again"]) == sorted(result["written"]) == reading
    assert sorted(result["skipped"]) == sorted(set(first["written"]) - set(reading))
    group = zarr.open_group(store / "scenes" / reading[0], mode="r")
    assert {r["file"]: r["sha256"] for r in group.attrs["inputs"]}[touched.name] == hashlib.sha256(
        touched.read_bytes()).hexdigest()


def _open_store_at_once(store: str, start, results) -> None:
    start.wait()
    try:
        root = patches.open_store(store, CFG, "/scenes")
        results.put(dict(root.attrs))
    except Exception as err:  # reported to the test, which fails on it
        results.put(repr(err))


def test_extractions_started_side_by_side_share_one_root(tmp_path):
    """SLURM array tasks create the same store at the same moment: every one gets the root with all
    its settings (once, a task read the root before its settings were written and failed)."""
    ctx = multiprocessing.get_context("fork")
    start, results, n = ctx.Barrier(6), ctx.Queue(), 6
    for round_ in range(5):
        store = tmp_path / f"s{round_}.zarr"
        procs = [ctx.Process(target=_open_store_at_once, args=(str(store), start, results)) for _ in range(n)]
        for proc in procs:
            proc.start()
        got = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        assert got == [got[0]] * n and isinstance(got[0], dict), got
        settings = json.loads(json.dumps(CFG.attrs()))
        hashes = {name: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
                  for name, value in settings.items()}  # each setting's, by name
        assert got[0] == settings | {"scenes_dir": "/scenes", "settings_sha256": hashes}
        assert not list(tmp_path.glob(".*.tmp"))  # no temporary root left beside the store


def test_a_folder_that_is_not_a_store_is_refused_not_overwritten(synthetic_dir, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a patch store"):
        patches.extract_store(synthetic_dir, folder, CFG, progress=False)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_killed_extraction_resumes_cleanly(tmp_path):
    scenes = tmp_path / "scenes"
    synthetic.generate(scenes, regions=2, scenes_per_region=4, size=(300, 300), seed=4, progress=False)
    store = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "seaice_lib", "patches", "--scenes", str(scenes), "--out", str(store),
           "--patch", "32", "--downsample", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((store / "scenes").glob("2*/zarr.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in (store / "scenes").glob("2*/zarr.json")}
    assert 0 < len(done_before) < 8
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    done_after = {p.parent.name: p.stat().st_mtime_ns for p in (store / "scenes").glob("2*/zarr.json")}
    assert len(done_after) == 8
    assert all(done_after[s] == t for s, t in done_before.items())  # finished scenes kept
    assert not list((store / "scenes").glob(".*"))  # no temporary groups left
    root = zarr.open_group(store, mode="r")
    assert len(root["index"].attrs["scene_ids"]) == 8


def test_patch_origins_cover_the_axis():
    assert patches.patch_origins(10, 16, 16) == [0]
    assert patches.patch_origins(40, 16, 16) == [0, 16, 24]
    assert patches.patch_origins(32, 16, 8) == [0, 8, 16]


def test_a_group_written_after_the_index_is_refused_until_indexed(rtt_paths, tmp_path, capsys):
    """SLURM array tasks write groups (--scene) and one job indexes them: a reader never trains on
    an index that leaves out, or counts stale, a group on disk."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first, second = (p.name for p in rtt_paths[:2])
    common = ["--scenes", str(scenes), "--out", str(store), "--patch", "16", "--downsample", "2", "--quiet"]
    assert patches.main(common + ["--scene", first]) == 0
    assert patches.main(common + ["--consolidate-only", "--partial"]) == 0
    assert check_store(store) == [first[:19]]
    assert patches.main(common + ["--scene", second]) == 0
    with pytest.raises(ValueError, match=f"scene group {second[:19]} was written after the store's index"):
        check_store(store)
    assert patches.main(common + ["--consolidate-only", "--partial"]) == 0
    assert check_store(store) == sorted([first[:19], second[:19]])


def test_scene_groups_swapped_by_name_are_refused_naming_the_group(patch_store, tmp_path):
    """Two groups cut in the same second carry the same ``written`` stamp: the group's own scene id
    says whose data a folder holds, so swapped folders are not read as each other's scenes."""
    store = tmp_path / "s.zarr"
    shutil.copytree(patch_store, store)
    a, b = sorted(p.name for p in (store / "scenes").iterdir() if not p.name.startswith("."))[:2]
    (store / "scenes" / a).rename(store / "scenes" / "tmp")
    (store / "scenes" / b).rename(store / "scenes" / a)
    (store / "scenes" / "tmp").rename(store / "scenes" / b)
    for group in (a, b):  # as if both were written in one second
        meta = json.loads((store / "scenes" / group / "zarr.json").read_text())
        index = json.loads((store / "index" / "zarr.json").read_text())
        meta["attributes"]["written"] = index["attributes"]["written"][group]
        (store / "scenes" / group / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"scenes/{a} holds the group of scene {b} .and 1 more. .renamed or swapped"):
        check_store(store)
    with pytest.raises(ValueError, match=f"scenes/{a} holds the group of scene {b}"):
        PatchDataset(store)


def test_indexing_a_store_without_scenes_of_its_folder_is_refused_unless_partial(rtt_paths, tmp_path, capsys,
                                                                                 caplog):
    """After an array job whose tasks partly failed, the index names what the store lacks: refused
    without --partial (no index written), recorded in the index with it, and named by training."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    common = ["--scenes", str(scenes), "--out", str(store), "--patch", "16", "--downsample", "2", "--quiet"]
    assert patches.main(common + ["--scene", rtt_paths[0].name]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        patches.main(common + ["--consolidate-only"])
    err = capsys.readouterr().err
    others = sorted(p.name[:19] for p in rtt_paths[1:])
    assert stop.value.code == 2 and f"{len(others)} scenes of {scenes.resolve()} have no group yet" in err
    assert all(sid in err for sid in others) and "Traceback" not in err
    assert not (store / "index").exists()
    with pytest.raises(ValueError, match="no index"):
        check_store(store)
    assert patches.main(common + ["--consolidate-only", "--partial"]) == 0
    assert f"without {len(others)} scenes of {scenes.resolve()}" in capsys.readouterr().out
    assert check_store(store) == [rtt_paths[0].name[:19]]
    assert store_lacking(store) == others
    with caplog.at_level(logging.WARNING, logger="seaice_lib"):
        train(train_config(store, tmp_path / "run", steps=1, steps_per_epoch=1, warmup_steps=0, val_fraction=0.0,
                           evaluate=False))
    assert f"indexed without {len(others)} scenes of its folder that have no group ({', '.join(others)})" in caplog.text
    assert patches.main(common) == 0  # the rest extracted: the index lacks nothing
    assert store_lacking(store) == []


def test_stores_cut_from_the_same_files_into_the_same_patches_hold_the_same_groups_hash(synthetic_dir, patch_store,
                                                                                          tmp_path):
    """The hash results record of the groups they trained on depends on what the groups hold, not
    on when or where they were cut: a second cut (a second later, elsewhere, from copies of the
    files, as on another machine) gives the same hash, a cut with another stride another, and so
    does one group's arrays changed under the same inputs."""
    from seaice_lib.data.store import store_groups_sha256

    cfg = patches.config_from_store(patch_store)
    ids = check_store(patch_store)
    time.sleep(1.1)  # the groups' write times and the copies' modification times differ
    copies = tmp_path / "copies"
    shutil.copytree(synthetic_dir, copies, copy_function=shutil.copyfile)  # new modification times
    assert {f.name: f.stat().st_mtime_ns for f in copies.iterdir()} != \
        {f.name: f.stat().st_mtime_ns for f in synthetic_dir.iterdir()}
    again = tmp_path / "again.zarr"
    patches.extract_store(copies, again, cfg, progress=False)
    assert check_store(again) == ids
    assert store_groups_sha256(again, ids) == store_groups_sha256(patch_store, ids)
    other = tmp_path / "other.zarr"
    patches.extract_store(synthetic_dir, other, dataclasses.replace(cfg, stride=cfg.patch // 2), progress=False)
    assert store_groups_sha256(other, ids) != store_groups_sha256(patch_store, ids)
    meta_path = again / "scenes" / ids[0] / "zarr.json"  # as a cut by other code of the same files would record
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["content_sha256"] = hashlib.sha256(b"other patches").hexdigest()
    meta_path.write_text(json.dumps(meta))
    assert store_groups_sha256(again, ids) != store_groups_sha256(patch_store, ids)


def _edited(value):
    """Another value of a group attribute's kind: a string, a number or a list changed."""
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value[::-1] if len(set(map(str, value))) > 1 else value + value
    return value + 1


def test_a_group_whose_attributes_changed_since_it_was_cut_is_refused_and_cut_again(rtt_paths, tmp_path, capsys):
    """The attributes read as data (the sequence's dates fed to the model, the region splits and
    folds take, the ids and counts the checks read) edited in a group after it was cut, its arrays
    untouched: the content check refuses the group naming the attribute, splits refuse the store,
    and ``seaice patches`` cuts the group again, back to what the scene gives."""
    from seaice_lib.data.splits import split_scenes

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    sid = max(first["written"], key=lambda s: len(zarr.open_group(store / "scenes" / s, mode="r").attrs["steps"]))
    meta_path = store / "scenes" / sid / "zarr.json"
    as_cut = meta_path.read_text()
    cut_attrs = json.loads(as_cut)["attributes"]
    assert len(cut_attrs["steps"]) > 1
    for name in ("scene_id", "region", "time", "steps", "days_before", "day_of_year", "n_patches"):
        meta = json.loads(as_cut)
        meta["attributes"][name] = _edited(meta["attributes"][name])
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=rf"{store}: out of date: scene group {sid}: its attribute {name} changed "
                                             rf"since it was cut .*`seaice patches --scenes {scenes.resolve()} "):
            patches.check_up_to_date(store, None, [sid], read_arrays=True)
    meta = json.loads(as_cut)
    meta["attributes"]["region"] = "elsewhere"
    meta["attributes"]["days_before"] = [30.0] * len(cut_attrs["days_before"])
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"scene group scenes/{sid}: its attributes region, days_before changed"):
        split_scenes(store, 0.5, by="region")
    assert patches.main(["--scenes", str(scenes), "--out", str(store), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 scenes written (1 cut again: its attributes region, days_before changed since it was cut" in out
    again = json.loads(meta_path.read_text())["attributes"]
    assert {k: again[k] for k in ("region", "days_before", "content_sha256")} == \
        {k: cut_attrs[k] for k in ("region", "days_before", "content_sha256")}
    patches.check_up_to_date(store, scenes, [sid], read_arrays=True)


def test_groups_cut_before_attrs_sha256_are_refused_by_readers_and_cut_again_into_the_same_groups_hash(
        synthetic_dir, patch_store, tmp_path, caplog, capsys):
    """Groups of a store cut before groups recorded ``attrs_sha256``: ``seaice patches`` cuts them
    again, so training refuses them (one error naming the groups, the reason and the command); an
    experiment's status reads them with a warning (their results stay theirs). The same files give
    the same arrays, so the hash results record of the groups (``store_groups_sha256``) stays."""
    from seaice_lib.data.store import store_groups_sha256

    store = tmp_path / "patches.zarr"
    shutil.copytree(patch_store, store)
    ids = check_store(store)
    for sid in ids:
        meta_path = store / "scenes" / sid / "zarr.json"
        meta = json.loads(meta_path.read_text())
        del meta["attributes"]["attrs_sha256"]
        meta_path.write_text(json.dumps(meta))
    before = store_groups_sha256(store, ids)
    assert before == store_groups_sha256(patch_store, ids)
    with pytest.raises(ValueError, match=rf"{store}: out of date with {synthetic_dir}: scene groups {ids[0]}, "
                                         rf".*: it records no attrs_sha256 .*; cut it again with `seaice patches"):
        patches.check_up_to_date(store, synthetic_dir, ids, read_arrays=True)
    with caplog.at_level(logging.WARNING, logger="seaice_lib"):
        patches.check_up_to_date(store, synthetic_dir, ids, unhashed_ok=True)
    assert f"{store}: {len(ids)} scene groups record no content_sha256 or attrs_sha256" in caplog.text
    assert patches.main(["--scenes", str(synthetic_dir), "--out", str(store), "--quiet"]) == 0
    assert f"{len(ids)} scenes written ({len(ids)} cut again: it records no attrs_sha256" in capsys.readouterr().out
    assert all("attrs_sha256" in zarr.open_group(store / "scenes" / sid, mode="r").attrs for sid in ids)
    assert check_store(store) == ids and store_groups_sha256(store, ids) == before
    patches.check_up_to_date(store, synthetic_dir, ids, read_arrays=True)


def _edit_attrs(store, sid, edit):
    meta_path = store / "scenes" / sid / "zarr.json"
    meta = json.loads(meta_path.read_text())
    edit(meta["attributes"])
    meta_path.write_text(json.dumps(meta))


def _unhash(store, ids):
    """Drop every group's content and attrs hashes, as groups were cut before they recorded them
    (each keeps when it was ``written``, by which the store's identity then stood in)."""
    for sid in ids:
        _edit_attrs(store, sid, lambda a: (a.pop("content_sha256"), a.pop("attrs_sha256")))


def test_groups_cut_before_content_hashes_cut_again_into_the_same_patches_keep_the_store_identity_for_results(
        rtt_paths, patch_store, tmp_path, capsys):
    """A store whose groups record no content or attrs hash: ``seaice patches`` (here from copies
    of its scenes, which lost their times) cuts them again into the same patches, says so, and
    records in each new group when the group it replaced was written and its inputs, so that
    ``store_groups_sha256(former=True)`` gives the identity results recorded before (the store's
    identity now is of the groups' content); a reader then accepts the store. Cut again by another
    release into the same patches, the groups carry the record on; one whose attrs_sha256 was
    dropped (the record no longer covered) does not."""
    from seaice_lib.data.store import store_groups_sha256

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "patches.zarr"
    shutil.copytree(patch_store, store)
    ids = check_store(store)
    _unhash(store, ids)
    old = {sid: zarr.open_group(store / "scenes" / sid, mode="r").attrs.asdict() for sid in ids}
    identity = hashlib.sha256()  # as store_groups_sha256 took it of groups without a content hash
    for sid in ids:
        identity.update(json.dumps([sid, old[sid]["inputs"], old[sid]["written"]], sort_keys=True).encode())
    assert store_groups_sha256(store, ids) == identity.hexdigest()
    assert patches.main(["--scenes", str(scenes), "--out", str(store), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{len(ids)} cut again with the same patches as before: the store's earlier identity kept for results" in out
    patches.check_up_to_date(store, scenes, ids, read_arrays=True)
    for sid in ids:
        new = zarr.open_group(store / "scenes" / sid, mode="r").attrs.asdict()
        assert new["same_as_unhashed"] == {"written": old[sid]["written"], "inputs": old[sid]["inputs"]}
        assert new["inputs"] != old[sid]["inputs"]  # the copies' times
    assert store_groups_sha256(store, ids) != identity.hexdigest()
    assert store_groups_sha256(store, ids, former=True) == identity.hexdigest()
    for sid in ids:  # cut by another release: cut again into the same patches, the record carried on
        _edit_attrs(store, sid, lambda a: _release(a, "0.0.9"))
    assert patches.main(["--scenes", str(scenes), "--out", str(store), "--quiet"]) == 0
    assert f"{len(ids)} cut again with the same patches as before" in capsys.readouterr().out
    assert store_groups_sha256(store, ids, former=True) == identity.hexdigest()
    _edit_attrs(store, ids[0], lambda a: (a.pop("attrs_sha256"), _release(a, "0.0.9")))  # the record's hash dropped
    assert patches.main(["--scenes", str(scenes), "--out", str(store), "--quiet"]) == 0
    assert "same patches as before" not in capsys.readouterr().out
    assert "same_as_unhashed" not in zarr.open_group(store / "scenes" / ids[0], mode="r").attrs
    assert store_groups_sha256(store, ids, former=True) != identity.hexdigest()


def test_a_former_identity_added_by_hand_to_a_group_is_refused_and_cut_again_without_it(synthetic_dir, patch_store,
                                                                                         tmp_path):
    """The record of the unhashed group a group replaced is covered by its ``attrs_sha256``: added
    by hand to a group cut with hashes, readers refuse the group and ``seaice patches`` cuts it
    again without it, so the store has no former identity."""
    from seaice_lib.data.store import store_groups_sha256

    store = tmp_path / "patches.zarr"
    shutil.copytree(patch_store, store)
    ids = check_store(store)
    sid = ids[0]
    _edit_attrs(store, sid, lambda a: a.update(same_as_unhashed={"written": "2020-01-01T00:00:00+00:00",
                                                                 "inputs": a["inputs"]}))
    with pytest.raises(ValueError, match=rf"scene group {sid}: its attribute same_as_unhashed changed since it was cut"):
        patches.check_up_to_date(store, synthetic_dir, ids)
    result = patches.extract_store(synthetic_dir, store, patches.config_from_store(store), progress=False)
    assert list(result["again"]) == [sid]
    assert "same_as_unhashed" not in zarr.open_group(store / "scenes" / sid, mode="r").attrs
    assert store_groups_sha256(store, ids, former=True) == store_groups_sha256(store, ids)


def _swap_in_group(store, scenes, sid, tmp_path, cfg):
    """Put the group of ``sid`` cut with ``cfg`` (another store) in place of ``store``'s own."""
    other = tmp_path / "other.zarr"
    patches.extract_store(scenes, other, cfg, scene=sid, progress=False)
    shutil.rmtree(store / "scenes" / sid)
    shutil.copytree(other / "scenes" / sid, store / "scenes" / sid)


def _release(attrs, version):
    attrs["made_by"] = {**attrs["made_by"], "version": version}


GROUP_EDITS = {  # how a group is changed -> what the reason to cut it again says
    "hashes dropped, days_before edited": (lambda a: (a.pop("attrs_sha256"), a.pop("content_sha256"),
                                                      a.update(days_before=[0.5] * len(a["days_before"]))),
                                           "it records no content_sha256"),
    "no attrs_sha256": (lambda a: a.pop("attrs_sha256"), "it records no attrs_sha256"),
    "another release": (lambda a: _release(a, "0.0.9"), "made by seaice_lib 0.0.9"),
    "no inputs": (lambda a: a.pop("inputs"), "it records no inputs"),
    "day_of_year edited": (lambda a: a.update(day_of_year=[d + 1 for d in a["day_of_year"]]),
                           "its attribute day_of_year changed since it was cut"),
    "labels edited": (None, "changed since it was cut (the SHA-256 of its arrays"),
    "patch 24": ({"patch": 24}, "cut with other patch settings than the store's (patch 16, downsample 2): patches of "
                                "sar (3, 3, 24, 24), not (3, 3, 16, 16); sar_mask (3, 24, 24), not (3, 16, 16); "
                                "labels (3, 24, 24), not (3, 16, 16)"),
    "downsample 4": ({"downsample": 4}, "cut with other patch settings than the store's (patch 16, downsample 2): "
                                       "patches of amsr2 (14, 4, 4), not (14, 3, 3)"),
}


@pytest.mark.parametrize("edit", list(GROUP_EDITS))
def test_readers_refuse_every_group_patches_would_cut_again(rtt_paths, tmp_path, edit):
    """One judgement (``patches.why_cut_again``): for each reason ``seaice patches`` has to cut a
    group again (an edit hidden by dropping its hashes, hashes not recorded, another release, no
    inputs, attrs or arrays edited, patches of other settings copied in), the check training,
    experiments and int8 export run names exactly that group with that reason, and the extraction
    then cuts exactly it again, after which the check passes."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    ids = sorted(patches.extract_store(scenes, store, CFG, progress=False)["written"])
    sid = max(ids, key=lambda s: len(_steps(store, s)))
    change, why = GROUP_EDITS[edit]
    if isinstance(change, dict):
        _swap_in_group(store, scenes, sid, tmp_path, dataclasses.replace(CFG, **change))
    elif change is None:
        labels = zarr.open_array(store / "scenes" / sid / "labels", mode="r+")
        cut = labels[...]
        labels[...] = np.where(cut == 255, 255, cut == 0).astype(np.uint8)  # every label made another class
    else:
        _edit_attrs(store, sid, change)
    stale = patches.out_of_date(store, scenes, ids, read_arrays=True)
    assert list(stale) == [sid] and stale[sid].startswith(why)
    with pytest.raises(ValueError, match=rf"{store}: out of date with {scenes}: scene group {sid}: {re.escape(why)}.*; cut it "
                                         rf"again with `seaice patches --scenes {scenes} --out {store}`"):
        patches.check_up_to_date(store, scenes, ids, read_arrays=True)
    result = patches.extract_store(scenes, store, CFG, progress=False)
    assert list(result["again"]) == [sid] and result["again"][sid].startswith(why)
    patches.check_up_to_date(store, scenes, check_store(store), read_arrays=True)


@pytest.mark.parametrize("edit", ["hashes dropped, days_before edited", "another release"])
def test_training_refuses_a_group_patches_would_cut_again(rtt_paths, tmp_path, edit):
    """RT12 R8, R9: a group whose hashes were dropped (and a model input edited), or every group
    cut by another release: training stops before a step, naming the store, the groups, the reason
    and the command (it warned of the first and said nothing of the second)."""
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    ids = sorted(patches.extract_store(scenes, store, CFG, progress=False)["written"])
    change, why = GROUP_EDITS[edit]
    edited = ids[:1] if edit.startswith("hashes") else ids
    for sid in edited:
        _edit_attrs(store, sid, change)
    named = f"scene group {ids[0]}" if len(edited) == 1 else f"scene groups {ids[0]}, {ids[1]}"
    run = dict(out_dir=str(tmp_path / "run"), evaluate=False, schedule="constant", steps=2, train_scenes=ids,
               val_scenes=[])
    with pytest.raises(ValueError, match=rf"{store}: out of date with {scenes.resolve()}: {named}.*: {re.escape(why)}.*; cut it "
                                         rf"again with `seaice patches --scenes {scenes.resolve()} --out {store}`"):
        train(train_config(store, **run))
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_group_of_another_downsample_in_patches_of_the_same_shape_is_refused_and_cut_again(
        rtt_paths, tmp_path, capsys):
    """RT12 R3: a group cut at another spacing whose arrays happen to have the store's shapes
    (patch 4 at downsample 2 and 4: two 2 km cells a side both) copied into a store: its 2 km
    offsets are not those the store's downsample gives its origins, so ``--consolidate-only`` refuses it by name and
    ``seaice patches`` cuts it again saying why."""
    cfg = dataclasses.replace(CFG, patch=4)
    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    ids = sorted(patches.extract_store(scenes, store, cfg, progress=False)["written"])
    _swap_in_group(store, scenes, ids[0], tmp_path, dataclasses.replace(cfg, downsample=4))
    why = "its 2 km offsets are not those the store's downsample 2 gives its patch origins"
    with pytest.raises(SystemExit) as stop:
        patches.main(["--scenes", str(scenes), "--out", str(store), "--consolidate-only"])
    assert stop.value.code == 2
    assert f"{store}: scene group scenes/{ids[0]}: {why}" in capsys.readouterr().err
    assert patches.main(["--scenes", str(scenes), "--out", str(store), "--quiet"]) == 0
    assert f"1 scenes written (1 cut again: {why}" in capsys.readouterr().out


def test_a_group_of_other_patch_settings_is_named_by_the_store_check_and_the_reader(rtt_paths, tmp_path,
                                                                                    monkeypatch, capsys):
    """RT12 R3: a group of patch 24 copied into a patch-16 store and indexed: ``--consolidate-only``
    and the store check refuse it by name with the mismatch; a reader that gets past them (its
    scratch buffers sized by the store's patches) names that group, not the batch's first."""
    from seaice_lib.data import dataset

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    ids = sorted(patches.extract_store(scenes, store, CFG, progress=False)["written"])
    foreign = ids[-1]
    _swap_in_group(store, scenes, foreign, tmp_path, dataclasses.replace(CFG, patch=24))
    why = rf"scene group scenes/{foreign}: cut with other patch settings than the store's \(patch 16, downsample 2\)"
    with pytest.raises(SystemExit):
        patches.main(["--scenes", str(scenes), "--out", str(store), "--consolidate-only"])
    assert re.search(why, capsys.readouterr().err)
    shutil.rmtree(store / "index")
    monkeypatch.setattr(patches, "group_settings_problem", lambda *args: None)
    patches.consolidate(store)  # an index that lists the foreign group, as one built before groups were compared
    monkeypatch.undo()
    with pytest.raises(ValueError, match=why):
        check_store(store)
    monkeypatch.setattr(dataset, "check_store", lambda store: None)
    data = PatchDataset(store)
    with pytest.raises(ValueError, match=why):
        data.__getitems__(list(range(len(data))))


def _steps(store, sid):
    return list(zarr.open_group(store / "scenes" / sid, mode="r").attrs["steps"])


@pytest.mark.parametrize("change", ["target withdrawn", "earlier step withdrawn", "earlier acquisition landed",
                                    "earlier step changed", "touched only", "other region landed"])
def test_the_up_to_date_check_names_the_groups_patches_would_set_aside_or_cut_again(rtt_paths, tmp_path, change):
    """``patches.out_of_date`` (what training, experiments and int8 export check) judges a store
    against its folder as ``seaice patches`` does: after each change to the folder it names the
    groups the next extraction sets aside or cuts again, and no other; none after that extraction."""
    from tests.scene_edits import twin_of

    scenes = copy_scenes(rtt_paths, tmp_path / "scenes")
    store = tmp_path / "s.zarr"
    first = patches.extract_store(scenes, store, CFG, progress=False)
    ids = sorted(first["written"])
    target = next(sid for sid in ids if len(_steps(store, sid)) > 1)  # a group with an earlier step
    earlier = _steps(store, target)[-2]
    path_of = {p.name[:19]: scenes / p.name for p in rtt_paths}
    aside = tmp_path / "aside"
    aside.mkdir()
    if change == "target withdrawn":
        path_of[target].rename(aside / path_of[target].name)
    elif change == "earlier step withdrawn":
        path_of[earlier].rename(aside / path_of[earlier].name)
    elif change == "earlier acquisition landed":
        twin_of(path_of[target], scenes)  # a second before the target, same region
    elif change == "earlier step changed":
        edit_variable(path_of[earlier], "nersc_sar_primary", lambda values: values.__imul__(0.5))
    elif change == "touched only":
        os.utime(path_of[earlier], ns=(1, 1))  # same bytes: nothing to cut again
    else:  # a second before the target, but of another region: joins no sequence of the target's
        region = {sid: zarr.open_group(store / "scenes" / sid, mode="r").attrs["region"] for sid in ids}
        with netCDF4.Dataset(twin_of(path_of[target], scenes), "r+") as nc:
            nc.original_id = nc.original_id.replace(region[target], next(r for r in region.values()
                                                                         if r != region[target]))
    stale = patches.out_of_date(store, scenes, ids)
    result = patches.extract_store(scenes, store, CFG, progress=False)
    assert sorted(stale) == sorted(set(result["again"]) | set(result["removed"]))
    assert bool(stale) == (change not in ("touched only", "other region landed"))
    if change == "earlier acquisition landed":
        assert stale[target].startswith("an earlier acquisition joined their sequence (")
        assert result["again"][target] == "an earlier acquisition joined their sequence"
    assert patches.out_of_date(store, scenes, check_store(store)) == {}


def test_a_store_that_got_no_scene_is_removed_and_require_cut_names_each_failure(tmp_path, synthetic_dir):
    """RT19-R7: notebooks 03 and 04 went on past a store of nothing (a later, unrelated error) and
    left it; a store this call made is removed, and the notebooks' check names the bad scene.
    RT20-R10: in a folder that was there (empty, or holding its writer's lock), only what it wrote."""
    from seaice_lib.atomic import LOCK_NAME

    scenes = tmp_path / "bad"
    scenes.mkdir()
    (scenes / "20181113T190544_dmi_prep.nc").write_text("garbage")
    held = tmp_path / "held.zarr"  # as notebook 03's hold_output leaves it: its lock only
    held.mkdir()
    (held / LOCK_NAME).write_text("{}")
    empty = tmp_path / "empty.zarr"  # the user's
    empty.mkdir()
    for store, left in ((tmp_path / "new.zarr", None), (held, [LOCK_NAME]), (empty, [])):
        result = patches.extract_store(scenes, store, patches.PatchConfig(patch=16, downsample=2), progress=False)
        assert (sorted(p.name for p in store.iterdir()) if store.exists() else None) == left
        assert result["written"] == result["skipped"] == []
    with pytest.raises(ValueError, match=r"no scene of \S+bad could be cut into patches \(no store made\): "
                                         r"\S+20181113T190544_dmi_prep.nc: not a readable netCDF file"):
        patches.require_cut(result, scenes)
    mixed = tmp_path / "mixed"  # RT20-R3: one bad scene among good ones passed for the folder's store
    shutil.copytree(scenes, mixed)
    good = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    shutil.copy(good, mixed / good.name)
    result = patches.extract_store(mixed, tmp_path / "mixed.zarr", patches.PatchConfig(patch=16, downsample=2),
                                   progress=False)
    assert result["written"] == [good.name[:19]]
    with pytest.raises(ValueError, match=r"^1 scenes of \S+mixed could not be cut into patches \(the store keeps the 1 "
                                         r"others; .*\): \S+20181113T190544_dmi_prep.nc: not a readable netCDF file \("):
        patches.require_cut(result, mixed)
    mine = tmp_path / "mine"  # a folder holding a file of its own is never removed
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        patches.extract_store(scenes, mine, patches.PatchConfig(patch=16, downsample=2), progress=False)
    assert (mine / "notes.txt").read_text() == "mine"
