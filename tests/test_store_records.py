"""What a patch store's root and index record of themselves: the root's settings (``settings_sha256``)
and the index's content (``index_sha256``) are checked by every reader; a root cut before it recorded
its settings is checked by ``seaice patches`` against groups cut again before they are recorded."""

import dataclasses
import json
import logging
import shutil

import pytest
import yaml

from seaice_lib.cli import main as cli
from seaice_lib.data import patches
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.store import check_store, store_class_totals, store_groups_sha256

CUT = patches.PatchConfig(patch=16, downsample=2, max_steps=3, window_days=30, min_overlap=0.1)  # patch_store's
SWAPPED_SAR = ["sar_incidenceangle", "nersc_sar_secondary", "nersc_sar_primary"]


def _edit_json(path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc["attributes"])
    path.write_text(json.dumps(doc))


def _groups(store) -> list[str]:
    return sorted(p.name for p in (store / "scenes").iterdir() if not p.name.startswith("."))


def _legacy(store) -> None:
    """``store`` as cut before roots and indexes recorded their hashes."""
    _edit_json(store / "zarr.json", lambda a: a.pop("settings_sha256"))
    _edit_json(store / "index" / "zarr.json", lambda a: a.pop("index_sha256"))


@pytest.fixture
def copy(patch_store, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(patch_store, store)
    return store


@pytest.mark.parametrize("edit, key", [
    (lambda a: a.update(sar_variables=SWAPPED_SAR), "sar_variables"),  # the channel order the arrays were cut in
    (lambda a: a.update(method="nearest", min_overlap=0.9), "method, min_overlap"),
    (lambda a: a.update(min_labelled=0.5), "min_labelled"),
    (lambda a: a.pop("stride"), "stride"),
    (lambda a: a.update(extra=1), "extra"),
])
def test_a_store_whose_root_settings_were_edited_is_refused_by_every_reader(copy, synthetic_dir, capsys, edit, key):
    """Settings edited in the root's zarr.json: the groups were cut with others, so neither reading
    (check_store, the dataset, the settings a model records, the up-to-date judgement of train,
    export and experiments) nor `seaice patches` takes the store ("already there"): each names the
    store's zarr.json and the edited key."""
    _edit_json(copy / "zarr.json", edit)
    named = f"{copy / 'zarr.json'}: its root attributes? {key} changed since the store was cut"
    for read in (check_store, PatchDataset, patches.config_from_store, store_class_totals,
                 lambda s: patches.check_up_to_date(s, synthetic_dir, _groups(s), unhashed_ok=True)):
        with pytest.raises(ValueError, match=named):
            read(copy)
    with pytest.raises(SystemExit) as stop:
        patches.main(["--scenes", str(synthetic_dir), "--out", str(copy), "--quiet"])
    assert stop.value.code == 2 and key in capsys.readouterr().err
    with pytest.raises(ValueError, match=named):
        patches.extract_store(synthetic_dir, copy, CUT, progress=False)


def test_a_legacy_root_is_checked_by_cutting_groups_again_then_recorded(copy, synthetic_dir, capsys, caplog):
    """A store cut before roots recorded settings_sha256: experiments read it with a warning, train
    refuses it naming the command; that command (`seaice patches` with the store's own settings) cuts
    groups again, finds them the same and records the settings, keeping every group and the store's
    identity; an edit after that is refused."""
    _legacy(copy)
    ids = check_store(copy)  # an index without index_sha256 is checked by what it holds
    identity = store_groups_sha256(copy, ids)
    written = {sid: json.loads((copy / "scenes" / sid / "zarr.json").read_text())["attributes"]["written"]
               for sid in ids}
    with pytest.raises(ValueError, match="records no settings_sha256.*`seaice patches --scenes .* --out "):
        patches.check_up_to_date(copy, synthetic_dir, ids)
    with caplog.at_level(logging.WARNING):
        patches.check_up_to_date(copy, synthetic_dir, ids, unhashed_ok=True)
    assert "records no settings_sha256" in caplog.text
    assert patches.main(["--scenes", str(synthetic_dir), "--out", str(copy), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"0 scenes written, {len(ids)} already there" in out
    assert f"settings recorded (settings_sha256), found those its groups were cut with: " \
           f"{patches.SETTINGS_CHECK_GROUPS} groups cut again hold the same patches" in out
    root = json.loads((copy / "zarr.json").read_text())["attributes"]
    assert set(root["settings_sha256"]) == set(root) - {"settings_sha256", "scenes_dir"}
    patches.check_up_to_date(copy, synthetic_dir, ids)
    assert store_groups_sha256(copy, check_store(copy)) == identity  # results recorded on it stay current
    assert {sid: json.loads((copy / "scenes" / sid / "zarr.json").read_text())["attributes"]["written"]
            for sid in ids} == written  # no group cut again in place
    _edit_json(copy / "zarr.json", lambda a: a.update(sar_variables=SWAPPED_SAR))
    with pytest.raises(ValueError, match="sar_variables changed since the store was cut"):
        check_store(copy)


@pytest.mark.parametrize("edit", [lambda a: a.update(sar_variables=SWAPPED_SAR),
                                  lambda a: a.update(method="nearest")])
def test_a_legacy_root_edited_since_its_cut_is_not_recorded(copy, synthetic_dir, capsys, edit):
    """The same command on a legacy store whose channel order or resampling method was edited in the
    root: the groups cut again are not those held (the multi-step ones, where the method shows), so
    nothing is recorded, the store's groups are not called "already there", exit 2 naming the group."""
    _legacy(copy)
    _edit_json(copy / "zarr.json", edit)
    with pytest.raises(SystemExit) as stop:
        patches.main(["--scenes", str(synthetic_dir), "--out", str(copy), "--quiet"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "already there" not in err
    assert "is not what the settings in its zarr.json cut now" in err and "scenes/" in err
    assert "settings_sha256" not in json.loads((copy / "zarr.json").read_text())["attributes"]


def test_an_index_without_written_is_damaged_and_train_says_so_without_a_traceback(copy, tmp_path, capsys):
    """An index that lost ``written`` beside a group replaced since by a genuine cut of fewer patches
    (the same scene files, another min_labelled): refused by check_store naming the remedy, and
    `seaice train` stops with one error line, exit 1, never the dataset's IndexError."""
    sid = _groups(copy)[0]
    other = tmp_path / "other.zarr"
    patches.extract_store(patches.store_scenes_dir(copy), other, dataclasses.replace(CUT, min_labelled=0.9), scene=sid,
        progress=False)
    held = json.loads((copy / "scenes" / sid / "zarr.json").read_text())["attributes"]["n_patches"]
    fewer = json.loads((other / "scenes" / sid / "zarr.json").read_text())["attributes"]["n_patches"]
    assert fewer < held
    shutil.rmtree(copy / "scenes" / sid)
    shutil.copytree(other / "scenes" / sid, copy / "scenes" / sid)
    _edit_json(copy / "index" / "zarr.json", lambda a: a.pop("written"))
    with pytest.raises(ValueError, match="its index records no written .*: damaged; index the store again with "
                                         "`seaice patches .* --consolidate-only`"):
        check_store(copy)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"store": str(copy), "out_dir": str(tmp_path / "run"), "model": "unet",
                                      "model_size": "tiny", "steps": 2, "batch_size": 4, "device": "cpu",
                                      "progress": False}))
    assert cli(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "records no written" in err
    assert patches.main(["--scenes", str(patches.store_scenes_dir(copy)), "--out", str(copy), "--consolidate-only",
                         "--quiet"]) == 0  # the remedy named
    assert check_store(copy) == _groups(copy)


@pytest.mark.parametrize("hashed", [True, False])
def test_an_index_that_disagrees_with_its_groups_is_refused_naming_the_group(copy, tmp_path, hashed):
    """Index rows of a group it no longer holds (its ``written`` edited to the new group's), or
    ``class_totals`` other than its rows' histograms: refused by index_sha256, and, for an index
    written before it recorded one, by what check_store counts itself."""
    sid = _groups(copy)[0]
    other = tmp_path / "other.zarr"
    patches.extract_store(patches.store_scenes_dir(copy), other, dataclasses.replace(CUT, min_labelled=0.9), scene=sid,
        progress=False)
    held = json.loads((copy / "scenes" / sid / "zarr.json").read_text())["attributes"]["n_patches"]
    replaced = tmp_path / "replaced.zarr"
    shutil.copytree(copy, replaced)
    shutil.rmtree(replaced / "scenes" / sid)
    shutil.copytree(other / "scenes" / sid, replaced / "scenes" / sid)
    new_written = json.loads((other / "scenes" / sid / "zarr.json").read_text())["attributes"]["written"]
    _edit_json(replaced / "index" / "zarr.json", lambda a: a["written"].update({sid: new_written}))
    weighted = copy
    _edit_json(weighted / "index" / "zarr.json", lambda a: a["class_totals"].update(SOD=[1, 1, 1, 1, 1, 100000]))
    if not hashed:
        for store in (replaced, weighted):
            _edit_json(store / "index" / "zarr.json", lambda a: a.pop("index_sha256"))
    changed = "its index changed since it was written .not the index_sha256 it recorded."
    remedy = "; index the store again with `seaice patches .* --consolidate-only`"
    fewer = json.loads((other / "scenes" / sid / "zarr.json").read_text())["attributes"]["n_patches"]
    with pytest.raises(ValueError, match=(changed if hashed else
                                          f"its index lists {held} patches of scene group scenes/{sid}, "
                                          f"which holds {fewer}") + remedy):
        PatchDataset(replaced)
    with pytest.raises(ValueError, match=(changed if hashed else
                                          "its class_totals are not the sums of its patches' histograms") + remedy):
        store_class_totals(weighted)
