import hashlib
import json
import os
import socket
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.metrics import f1_score, r2_score
from torch import nn

from seaice_lib import schema
from seaice_lib.charts import cf, inference, submission
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.patches import PatchConfig, config_from_store
from seaice_lib.data.scene import Scene, SceneError
from seaice_lib.engine import whole_scenes
from seaice_lib.engine.evaluation import Evaluation
from seaice_lib.models import create_model
from tests.charting_inputs import STORE_CFG, Constant, cells_covering, chartless_copy, one_hot_logits, write_reference


class PositionOracle(nn.Module):
    """Outputs functions of each pixel's store-grid position (from the tile's origin) and SAR mask:
    SIC (regression) = row % 11, SOD = (row + col) % 6, FLOE = 6 where the target step has data."""

    def __init__(self, downsample: int):
        super().__init__()
        self.downsample = downsample

    def forward(self, batch):
        sar = batch["sar"]
        b, p = sar.shape[0], sar.shape[-1]
        steps = torch.arange(p)
        rows = batch["origin"][:, 0, None] // self.downsample + steps  # (B, P)
        cols = batch["origin"][:, 1, None] // self.downsample + steps
        last = batch["step_mask"].sum(dim=1) - 1
        valid = batch["sar_mask"][torch.arange(b), last]  # (B, P, P)
        sic = (rows % 11).float()[:, None, :, None].expand(b, 1, p, p) + 0.3
        return {"SIC": sic, "SOD": one_hot_logits((rows[:, :, None] + cols[:, None, :]) % 6, "SOD"),
                "FLOE": one_hot_logits(torch.where(valid, 6, 0), "FLOE")}


class LabelOracle(nn.Module):
    """One-hot logits of the batch's own labels (255 -> class 0)."""

    def forward(self, batch):
        return {c: one_hot_logits(torch.where(v == 255, 0, v), c) for c, v in batch["labels"].items()}


class Refuses(nn.Module):
    """Stands in for the single-date tiny U-Net these tests chart with: it reads no history, so the
    chart files it would make record the same inputs."""

    reads_history = False

    def forward(self, batch):
        raise AssertionError("a finished scene was predicted again")


def _with_sequence(store) -> str:
    data = PatchDataset(store)
    return next(s for s in data.scene_ids if len(data.sequence[s].days_before) > 1)


def test_config_from_store(patch_store, tmp_path):
    assert config_from_store(patch_store).attrs() == STORE_CFG.attrs()
    with pytest.raises(ValueError, match="not a patch store"):
        config_from_store(tmp_path)


def test_a_tile_at_a_patch_origin_is_the_stored_patch(patch_store, synthetic_dir):
    cfg = config_from_store(patch_store)
    data = PatchDataset(patch_store)
    sid = _with_sequence(patch_store)
    tiles = whole_scenes.SceneTiles(whole_scenes.scene_sequence(synthetic_dir / f"{sid}_prep.nc",
                                                       synthetic_dir, cfg), cfg)
    assert len(tiles.sequence) > 1
    kept = np.flatnonzero(data.scene_of == data.scene_ids.index(sid))
    assert len(kept) >= 2
    for i in kept:
        stored = data[int(i)]
        r, c = (stored["origin"] // cfg.downsample).tolist()
        tile = tiles.sample(r, c)
        assert set(tile) == set(stored) - {"scene"}
        for key in ("sar", "sar_mask", "amsr2", "era5", "grid2km_offset", "origin", "days_before",
                    "day_of_year"):
            assert tile[key].dtype == stored[key].dtype, key
            assert torch.equal(tile[key], stored[key]), key
        for chart in schema.CHARTS:
            assert torch.equal(tile["labels"][chart], stored["labels"][chart])


@pytest.mark.parametrize("patch, downsample, overlap", [(16, 2, 0.25), (64, 2, 0.5), (24, 3, 0.0)])
def test_tiles_cover_the_grid_and_weights_normalise(synthetic_dir, patch, downsample, overlap):
    cfg = PatchConfig(patch=patch, downsample=downsample, max_steps=3, window_days=30, min_overlap=0.1)
    target = sorted(synthetic_dir.glob("*_prep.nc"))[-1]
    tiles = whole_scenes.SceneTiles(whole_scenes.scene_sequence(target, synthetic_dir, cfg), cfg, overlap)
    h, w = tiles.shape
    assert (h, w) == (110 // downsample, 135 // downsample)
    cover = np.zeros(tiles.padded_shape, int)
    for r, c in tiles.origins:
        cover[r:r + patch, c:c + patch] += 1
    assert cover[:h, :w].min() >= 1 and cover.shape == (max(h, patch), max(w, patch))
    # a constant model gives its classes wherever there is SAR, whatever the tiling
    model = Constant(sod=3, floe=5, sic=4.4)
    got = whole_scenes.predict_scene(model, target, synthetic_dir, cfg, batch_size=3, overlap=overlap,
                               keep_blended=True)
    with Scene(target) as scene:
        valid = scene.sar_valid()
    for chart, k in (("SIC", 4), ("SOD", 3), ("FLOE", 5)):
        assert got.charts[chart].shape == (110, 135) and got.charts[chart].dtype == np.uint8
        np.testing.assert_array_equal(got.charts[chart], np.where(valid, k, 255))
    withheld = cells_covering(~valid, downsample, (h, w))  # no outputs kept where a pixel has no class
    assert withheld.any() and not withheld.all()
    assert np.isnan(got.blended["SIC"][:, withheld]).all() and np.isnan(got.blended["SOD"][:, withheld]).all()
    np.testing.assert_allclose(got.blended["SIC"][:, ~withheld], 4.4, rtol=1e-6)
    expected = torch.softmax(one_hot_logits(torch.tensor([[[3]]]), "SOD", 2.0)[0, :, 0, 0], 0).numpy()
    np.testing.assert_allclose(got.blended["SOD"][:, ~withheld],
                               np.broadcast_to(expected[:, None], (6, int((~withheld).sum()))), rtol=1e-5)
    assert got.n_tiles == len(tiles.origins)


@pytest.mark.parametrize("downsample, overlap", [(2, 0.3), (3, 0.5)])
def test_untiling_and_80m_upsampling_rebuild_a_position_map(synthetic_dir, downsample, overlap):
    cfg = PatchConfig(patch=16, downsample=downsample, max_steps=3, window_days=30, min_overlap=0.1)
    target = sorted(synthetic_dir.glob("*_prep.nc"))[2]
    got = whole_scenes.predict_scene(PositionOracle(downsample), target, synthetic_dir, cfg,
                               batch_size=5, overlap=overlap)
    with Scene(target) as scene:
        valid = scene.sar_valid()
    big_h, big_w = valid.shape
    h, w = big_h // downsample, big_w // downsample
    # the store pixel under each 80 m pixel
    row = np.minimum(np.arange(big_h) // downsample, h - 1)[:, None]
    col = np.minimum(np.arange(big_w) // downsample, w - 1)[None, :]
    blocks = valid[:h * downsample, :w * downsample].reshape(h, downsample, w, downsample)
    block_ok = blocks.sum(axis=(1, 3)) * 2 >= downsample * downsample
    expected = {"SIC": np.broadcast_to(row % 11, valid.shape), "SOD": (row + col) % 6,
                "FLOE": np.where(block_ok[row, col], 6, 0)}
    for chart, values in expected.items():
        np.testing.assert_array_equal(got.charts[chart], np.where(valid, values, 255), err_msg=chart)


def test_scenes_without_charts_predict_write_and_package(synthetic_dir, tmp_path):
    cfg = STORE_CFG
    folder, original = chartless_copy(synthetic_dir, tmp_path, 4)
    test_scene = folder / original.name
    torch.manual_seed(0)
    model = create_model("unet", size="tiny", downsample=2)
    tiles = whole_scenes.SceneTiles(whole_scenes.scene_sequence(test_scene, folder, cfg), cfg)
    assert len(tiles.sequence) > 1
    assert all((tiles.sample(r, c)["labels"]["SOD"] == 255).all() for r, c in tiles.origins[:3])
    got = whole_scenes.predict_scene(model, test_scene, folder, cfg)
    same = whole_scenes.predict_scene(model, original, synthetic_dir, cfg)  # labels are no input
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(got.charts[chart], same.charts[chart])
        values = got.charts[chart]
        assert values.shape == (110, 135) and values.dtype == np.uint8
        assert set(np.unique(values)) <= set(range(schema.N_CLASSES[chart])) | {255}

    other = sorted(synthetic_dir.glob("*_prep.nc"))[1]
    out = tmp_path / "charts"
    files = inference.predict_scenes(model, [test_scene, folder / other.name], folder, cfg, out)
    assert [f.name for f in files] == [f"{p.name[:19]}_charts.nc" for p in (original, other)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)  # no temp files
    sid, charts = cf.read_charts(files[0])
    assert sid == original.name[:19]
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(charts[chart], got.charts[chart])
    with netCDF4.Dataset(files[0]) as nc:
        for chart in schema.CHARTS:
            var = nc[chart]
            assert var.dimensions == schema.SAR_DIMS and var.dtype == np.uint8
            assert var.getncattr("_FillValue") == 255 and var.getncattr("coordinates") == "time lat lon"
        assert nc.getncattr("input_files").split(", ")[-1] == original.name  # the target last
        assert "SOD_probability" not in nc.variables  # only on request

    # a rerun skips finished scenes: the model is never called
    stamps = [f.stat().st_mtime_ns for f in files]
    assert inference.predict_scenes(Refuses(), [test_scene, folder / other.name], folder, cfg,
                                    out) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps

    package = cf.write_upload_package(files, tmp_path / "upload_package.nc")
    back = submission.read_upload_package(package)
    assert set(back) == {original.name[:19], other.name[:19]}
    with netCDF4.Dataset(package) as nc:
        assert set(nc.variables) == {f"{s}_{c}" for s in back for c in schema.CHARTS}
    for sid, charts in back.items():
        for chart, values in charts.items():
            assert values.shape == (110, 135) and values.dtype == np.uint8
    np.testing.assert_array_equal(back[original.name[:19]]["SOD"], got.charts["SOD"])


def test_bad_input_is_refused_clearly(synthetic_dir, tmp_path):
    target = sorted(synthetic_dir.glob("*_prep.nc"))[0]
    with pytest.raises(ValueError, match="overlap must be in"):
        whole_scenes.predict_scene(Constant(0, 0, 0.0), target, synthetic_dir, STORE_CFG, overlap=1.0)
    with pytest.raises(ValueError, match="downsample 10, the settings have 2"):
        whole_scenes.predict_scene(create_model("unet", size="tiny"), target, synthetic_dir, STORE_CFG)
    with pytest.raises(ValueError, match="not a folder of scenes"):
        whole_scenes.predict_scene(Constant(0, 0, 0.0), target, tmp_path / "nowhere", STORE_CFG)
    (tmp_path / "x.nc").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.nc: not a readable netCDF"):
        cf.read_charts(tmp_path / "x.nc")
    with pytest.raises(ValueError, match="_prep.nc: not a chart file"):
        cf.read_charts(target)


def test_evaluate_scenes_scores_80m_predictions_against_the_charts(patch_store, synthetic_dir):
    paths = sorted(synthetic_dir.glob("*_prep.nc"))[3:5]
    ev = whole_scenes.evaluate_scenes(LabelOracle(), paths, synthetic_dir, patch_store, overlap=0.5,
                                info={"model": "oracle"})
    true, pred = {c: [] for c in schema.CHARTS}, {c: [] for c in schema.CHARTS}
    d = STORE_CFG.downsample
    for path in paths:
        with Scene(path) as scene:
            charts, valid = scene.charts(), scene.sar_valid()
        big_h, big_w = valid.shape
        h, w = big_h // d, big_w // d
        # what LabelOracle predicts, written out: each store pixel's label is the chart at its block's
        # centre pixel (d // 2, d // 2) where at least half the block has SAR data, else 255, which the
        # oracle predicts as class 0; each 80 m pixel takes its store pixel (the ragged edge the last)
        block_ok = valid[:h * d, :w * d].reshape(h, d, w, d).sum(axis=(1, 3)) * 2 >= d * d
        row = np.minimum(np.arange(big_h) // d, h - 1)[:, None]
        col = np.minimum(np.arange(big_w) // d, w - 1)[None, :]
        for chart, values in charts.items():
            store = values[d // 2::d, d // 2::d][:h, :w]
            store = np.where(block_ok & (store != 255), store, 0)
            true[chart].append(values)
            pred[chart].append(store[row, col])
    expected = {}  # the official metric by sklearn on every labelled pixel of both scenes
    for chart in schema.CHARTS:
        t = np.concatenate([v.ravel() for v in true[chart]])
        p = np.concatenate([v.ravel() for v in pred[chart]])[t != 255]
        t = t[t != 255]
        expected[chart] = 100 * (r2_score(t, p) if chart == "SIC" else f1_score(t, p, average="weighted"))
        assert ev.confusion[chart].sum() == t.size
    expected["combined"] = (2 * expected["SIC"] + 2 * expected["SOD"] + expected["FLOE"]) / 5
    for name, value in ev.scores(rounded=False).items():
        assert value == pytest.approx(expected[name], abs=1e-9), name
    # labels sampled every 2 pixels and spread back: right except along chart boundaries
    assert min(ev.scores().values()) > 90
    assert ev.info["model"] == "oracle" and ev.info["scenes"] == [p.name[:19] for p in paths]


def test_reference_files_score_a_scene_without_charts_as_its_labelled_original(
        patch_store, synthetic_dir, tmp_path):
    folder, original = chartless_copy(synthetic_dir, tmp_path, 4)
    sid = original.name[:19]
    with Scene(original) as scene:
        charts = scene.charts()
    ref = write_reference(charts, tmp_path / f"{sid}_prep_reference.nc")
    torch.manual_seed(0)
    model = create_model("unet", size="tiny", downsample=2)
    got = whole_scenes.evaluate_scenes(model, [folder / original.name], folder, patch_store,
                                 references={sid: ref})
    expected = whole_scenes.evaluate_scenes(model, [original], synthetic_dir, patch_store)
    read, read_before = got.info.pop("input_files"), expected.info.pop("input_files")
    assert (got.info.pop("labels"), expected.info.pop("labels")) == ("reference files", "scene charts")
    assert got.scores() == expected.scores() and got.info == expected.info
    # the files each read, as they are: the scene's sequence (the same files), then the reference file
    assert [Path(e["file"]).name for e in read] == [Path(e["file"]).name for e in read_before] + [ref.name]
    assert read[-2]["file"] == str(folder / original.name) and read[-1]["file"] == str(ref)
    for entry in read + read_before:
        path = Path(entry["file"])
        assert entry == {"file": entry["file"], "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert got.n_patches == expected.n_patches
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(got.confusion[chart], expected.confusion[chart])
    # float charts of whole classes (255 = no label) read as the same classes
    floats = write_reference(charts, tmp_path / "float_reference.nc", np.float32)
    for chart, values in whole_scenes.read_reference(floats, (110, 135)).items():
        np.testing.assert_array_equal(values, charts[chart])
    # without a reference the chartless scene is refused; bad references are refused, by name,
    # before the model runs
    with pytest.raises(SceneError, match="has no ice charts"):
        whole_scenes.evaluate_scenes(Refuses(), [folder / original.name], folder, patch_store)
    with pytest.raises(ValueError, match="no reference file for the scene"):
        whole_scenes.evaluate_scenes(Refuses(), [folder / original.name], folder, patch_store, references={})
    no_floe = write_reference({c: v for c, v in charts.items() if c != "FLOE"}, tmp_path / "a.nc")
    with pytest.raises(SceneError, match="a.nc: FLOE: missing"):
        whole_scenes.evaluate_scenes(Refuses(), [folder / original.name], folder, patch_store,
                               references={sid: no_floe})
    cropped = write_reference({c: v[:, :-1] for c, v in charts.items()}, tmp_path / "b.nc")
    with pytest.raises(SceneError, match=r"b.nc: SIC: shape \(110, 134\), the scene's is \(110, 135\)"):
        whole_scenes.read_reference(cropped, (110, 135))
    wrong = write_reference({**charts, "SOD": np.full((110, 135), 7)}, tmp_path / "c.nc")
    with pytest.raises(SceneError, match=r"c.nc: SOD: classes \[7\]"):
        whole_scenes.read_reference(wrong, (110, 135))
    square = {c: v[:110, :110] for c, v in charts.items()}  # a square scene's reference, transposed
    xr.Dataset({c: xr.DataArray(v.T, dims=schema.SAR_DIMS[::-1]) for c, v in square.items()}).to_netcdf(tmp_path / "t.nc")
    with pytest.raises(SceneError, match=r"t.nc: SIC: dims \('sar_samples', 'sar_lines'\): transposed"):
        whole_scenes.read_reference(tmp_path / "t.nc", (110, 110))
    np.testing.assert_array_equal(whole_scenes.read_reference(write_reference(square, tmp_path / "s.nc"), (110, 110))["SOD"],
                                  square["SOD"])
    blank = write_reference({c: np.full((110, 135), 255) for c in charts}, tmp_path / "d.nc")
    with pytest.raises(SceneError, match=r"d.nc: SIC: holds no label \(every pixel 255\)"):
        whole_scenes.read_reference(blank, (110, 135))
    other = tmp_path / "e.nc"  # another scene's reference under this scene's name: refused by what it records
    xr.Dataset({c: xr.DataArray(v, dims=schema.SAR_DIMS) for c, v in charts.items()},
               attrs={"scene_id": "20180101T000000_dmi"}).to_netcdf(other)
    with pytest.raises(SceneError, match=rf"e.nc: scene_id: holds the reference of scene '20180101T000000_dmi', not of {sid}"):
        whole_scenes.evaluate_scenes(Refuses(), [folder / original.name], folder, patch_store, references={sid: other})
    assert set(whole_scenes.read_reference(other, (110, 135))) == set(schema.CHARTS)  # no scene to compare with


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, state: str, paths: list, scenes_dir: str, store: str,
                out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        predicted, predict = [], whole_scenes.predict_scene

        def recording(model, target, *args, **kwargs):  # which scenes this rank predicts
            predicted.append(Path(target).name[:19])
            return predict(model, target, *args, **kwargs)

        whole_scenes.predict_scene = recording
        model = create_model("unet", size="tiny", downsample=2)
        model.load_state_dict(torch.load(state))
        whole_scenes.evaluate_scenes(model, paths, scenes_dir, store, batch_size=4).to_json(
            f"{out}/rank{rank}.json")
        Path(f"{out}/predicted{rank}.json").write_text(json.dumps(predicted))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_score_disjoint_scene_shards_and_agree_with_one_process(patch_store, synthetic_dir,
                                                                           tmp_path):
    torch.manual_seed(0)
    model = create_model("unet", size="tiny", downsample=2)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    paths = sorted(synthetic_dir.glob("*_prep.nc"))[1:4]  # three scenes: shards of 2 and 1
    single = whole_scenes.evaluate_scenes(model, paths, synthetic_dir, patch_store, batch_size=4)
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(_free_port(), str(tmp_path / "state.pt"), [str(p) for p in paths],
                           str(synthetic_dir), str(patch_store), str(tmp_path)),
        nprocs=2, start_method="spawn")
    shards = [json.loads((tmp_path / f"predicted{r}.json").read_text()) for r in range(2)]
    ids = [p.name[:19] for p in paths]
    assert shards == [ids[0::2], ids[1::2]]  # disjoint, every scene once
    for rank in range(2):
        got = Evaluation.from_json(tmp_path / f"rank{rank}.json")
        assert got.n_patches == single.n_patches and got.info == json.loads(json.dumps(single.info))
        assert got.info["scenes"] == ids and got.info["scope"] == "full scenes at 80 m"
        for chart in schema.CHARTS:  # summed over both shards: each pixel counted once
            np.testing.assert_array_equal(got.confusion[chart], single.confusion[chart])


@pytest.mark.parametrize("name", ["tsvit_v2", "tsvit_v3"])  # a missing model fails, never drops out
def test_transformers_chart_a_whole_scene(synthetic_dir, name):
    torch.manual_seed(0)
    model = create_model(name, size="tiny", downsample=2)
    target = sorted(synthetic_dir.glob("*_prep.nc"))[5]
    got = whole_scenes.predict_scene(model, target, synthetic_dir, STORE_CFG, batch_size=16)
    with Scene(target) as scene:
        valid = scene.sar_valid()
    for chart, values in got.charts.items():
        assert values.shape == (110, 135)
        assert (values[~valid] == 255).all() and (values[valid] < schema.N_CLASSES[chart]).all()
