import numpy as np
import pytest

from seaice_lib import schema
from seaice_lib.data import prepare
from seaice_lib.grid import block_reduce
from seaice_lib.data.scene import Scene


def test_block_reduce_mean_propagates_nan_and_drops_ragged_edge():
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    a[0, 0] = np.nan
    out = block_reduce(a, 2, "mean")
    assert out.shape == (2, 3)
    assert np.isnan(out[0, 0])
    assert out[1, 2] == pytest.approx((16 + 17 + 22 + 23) / 4)


def test_block_reduce_max_lets_no_label_win():
    labels = np.array([[0, 3, 1, 1], [2, 255, 1, 0]], np.uint8)
    assert block_reduce(labels, 2, "max").tolist() == [[255, 1]]
    assert block_reduce(labels, 1, "max") is labels
    with pytest.raises(ValueError):
        block_reduce(labels, 2, "median")


def test_prepare_cli_reproduces_the_rtt_files(synthetic_dir, raw_paths, tmp_path):
    out = tmp_path / "prepared"
    assert prepare.main(["--raw", str(synthetic_dir / "raw"), "--out", str(out)]) == 0
    for raw_path in raw_paths:
        name = schema.rtt_name_from_raw(raw_path.name)
        with Scene(out / name) as ours, Scene(synthetic_dir / name) as ref:
            for chart in schema.CHARTS:
                np.testing.assert_array_equal(ours.charts()[chart], ref.charts()[chart])
            for var in schema.SAR_GRID_VARIABLES:
                np.testing.assert_array_equal(ours.read(var), ref.read(var))
            assert ours.ds.attrs["original_id"] == raw_path.name
            assert ours.ds.attrs["scene_id"] == name[:19]
    mtime = (out / name).stat().st_mtime_ns
    assert prepare.main(["--raw", str(synthetic_dir / "raw"), "--out", str(out)]) == 0
    assert (out / name).stat().st_mtime_ns == mtime  # a rerun keeps finished scenes


def test_prepare_other_spacings(raw_paths, tmp_path):
    with Scene(raw_paths[0]) as raw:
        native = prepare.rtt_from_raw(raw, factor=1)
        assert native.attrs["pixel_spacing"] == 40
        assert native.sizes["sar_lines"] == raw.shape[0]
        coarse = prepare.rtt_from_raw(raw, factor=5)  # 200 m: 10 pixels per 2 km cell
        assert coarse.attrs["pixel_spacing"] == 200
        assert coarse.sizes["sar_lines"] == raw.shape[0] // 5
        with pytest.raises(ValueError, match="factor 3"):
            prepare.rtt_from_raw(raw, factor=3)  # 120 m does not divide 2 km
    path = tmp_path / "native_prep.nc"
    prepare.write_scene(native, path)
    with Scene(path) as scene:
        assert scene.cell == 50
        assert scene.grid2km_shape == (raw.shape[0] // 50, raw.shape[1] // 50)


def test_charts_have_no_label_where_sar_has_no_data(rtt_paths):
    for path in rtt_paths:
        with Scene(path) as scene:
            invalid = ~scene.sar_valid()
            for labels in scene.charts().values():
                assert np.all(labels[invalid] == schema.CHART_FILL)


def test_write_scene_keeps_the_old_file_on_failure(raw_paths, tmp_path, monkeypatch):
    with Scene(raw_paths[0]) as raw:
        ds = prepare.rtt_from_raw(raw)
    target = tmp_path / "scene_prep.nc"
    target.write_bytes(b"previous version")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(ds), "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare.write_scene(ds, target)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["scene_prep.nc"]


def test_bad_raw_files_are_reported_and_skipped(synthetic_dir, raw_paths, tmp_path, capsys):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / raw_paths[0].name).write_bytes(raw_paths[0].read_bytes())
    bad = raw_dir / (raw_paths[1].name[:-3] + "x.nc")
    bad.write_bytes(b"\x89HDF broken")
    assert prepare.main(["--raw", str(raw_dir), "--out", str(tmp_path / "out")]) == 1
    assert str(bad) in capsys.readouterr().out
    assert (tmp_path / "out" / schema.rtt_name_from_raw(raw_paths[0].name)).exists()
