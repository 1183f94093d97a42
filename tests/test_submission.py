import netCDF4
import numpy as np
import pytest
import xarray as xr

from seaice_lib.charts import submission

DMI, CIS = "20180124T194759_dmi", "20190430T101830_cis"


def _predictions(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    return {
        f"/data/test/{DMI}_prep.nc": {"SIC": rng.integers(0, 11, (30, 40)).astype(np.uint8),
                                      "SOD": rng.integers(0, 6, (30, 40)).astype(np.uint8),
                                      "FLOE": rng.integers(0, 7, (30, 40)).astype(np.uint8)},
        CIS: {"SIC": np.full((20, 25), 10, np.int64),
              "SOD": np.ones((20, 25), np.int32),
              "FLOE": rng.integers(0, 7, (20, 25))},
    }


def test_round_trip_names_dims_dtype_and_compression(tmp_path):
    preds = _predictions(np.random.default_rng(0))
    path = submission.write_upload_package(preds, tmp_path / "upload_package.nc",
                                           shapes={CIS: (20, 25)})
    assert path == tmp_path / "upload_package.nc"
    assert [p.name for p in tmp_path.iterdir()] == ["upload_package.nc"]

    back = submission.read_upload_package(path)
    assert set(back) == {DMI, CIS}
    for scene, charts in preds.items():
        key = submission.scene_id(scene)
        assert set(back[key]) == {"SIC", "SOD", "FLOE"}
        for chart, values in charts.items():
            assert back[key][chart].dtype == np.uint8
            np.testing.assert_array_equal(back[key][chart], values)

    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        assert set(nc.variables) == {f"{s}_{c}" for s in (DMI, CIS) for c in ("SIC", "SOD", "FLOE")}
        for name, var in nc.variables.items():
            assert var.dtype == np.uint8
            assert var.dimensions == (f"{name}_dim0", f"{name}_dim1")
            assert var.shape == ((30, 40) if name.startswith(DMI) else (20, 25))
            filters = var.filters()
            assert filters["zlib"] and filters["complevel"] == 1
            assert "_FillValue" not in var.ncattrs()


def test_fill_values_only_when_allowed(tmp_path):
    preds = _predictions(np.random.default_rng(1))
    preds[CIS]["FLOE"][0, :3] = 255
    with pytest.raises(ValueError, match=f"{CIS} FLOE: 3 values outside 0..6, e.g. 255"):
        submission.write_upload_package(preds, tmp_path / "upload_package.nc")
    path = submission.write_upload_package(preds, tmp_path / "upload_package.nc", allow_fill=True)
    assert (submission.read_upload_package(path)[CIS]["FLOE"] == 255).sum() == 3


def _without(preds, scene, chart):
    del preds[scene][chart]


@pytest.mark.parametrize("change, message", [
    (lambda p: _without(p, CIS, "SOD"), f"{CIS}: charts must be"),
    (lambda p: p[CIS].update(ICE=np.zeros((20, 25), np.uint8)), f"{CIS}: charts must be"),
    (lambda p: p[CIS].update(SIC=np.full((20, 25), 11)), f"{CIS} SIC: 500 values outside 0..10"),
    (lambda p: p[CIS].update(SOD=np.full((20, 25), -1)), f"{CIS} SOD: 500 values outside 0..5"),
    (lambda p: p[CIS].update(SOD=np.zeros((20, 25))), f"{CIS} SOD: .*integer dtype.*float64"),
    (lambda p: p[CIS].update(SOD=np.zeros((20, 25), bool)), f"{CIS} SOD: .*integer dtype"),
    (lambda p: p[CIS].update(FLOE=np.zeros((1, 20, 25), int)), f"{CIS} FLOE: expected a 2-D"),
    (lambda p: p[CIS].update(FLOE=np.zeros((20, 26), int)),
     rf"{CIS} FLOE: shape \(20, 26\), expected \(20, 25\)"),
    (lambda p: p[CIS].update({c: np.zeros((21, 25), int) for c in p[CIS]}),
     rf"{CIS} SIC: shape \(21, 25\), expected \(20, 25\)"),
    (lambda p: p.update(scene_7=p[CIS]), "'scene_7' is not a scene name"),
    (lambda p: p.update({f"{CIS}_prep.nc": p[CIS]}), "are the same scene"),
    (lambda p: p.clear(), "no scenes"),
])
def test_bad_predictions_are_refused_and_nothing_is_written(tmp_path, change, message):
    preds = _predictions(np.random.default_rng(2))
    change(preds)
    target = tmp_path / "upload_package.nc"
    target.write_bytes(b"earlier submission")
    with pytest.raises(ValueError, match=message):
        submission.write_upload_package(preds, target, shapes={CIS: (20, 25)})
    assert target.read_bytes() == b"earlier submission"
    assert [p.name for p in tmp_path.iterdir()] == ["upload_package.nc"]


def test_a_failed_write_leaves_no_file_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    def crash(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    preds = _predictions(np.random.default_rng(3))
    with pytest.raises(OSError, match="disk full"):
        submission.write_upload_package(preds, tmp_path / "new" / "upload_package.nc")
    assert list((tmp_path / "new").iterdir()) == []

    target = tmp_path / "upload_package.nc"
    target.write_bytes(b"earlier submission")
    with pytest.raises(OSError, match="disk full"):
        submission.write_upload_package(preds, target)
    assert target.read_bytes() == b"earlier submission"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["upload_package.nc"]


def test_reading_a_file_that_is_not_a_package_is_refused(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"SIC": (("y", "x"), np.zeros((2, 2), np.uint8))}).to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="'SIC' is not a '{scene}_{chart}' variable"):
        submission.read_upload_package(path)


def test_names():
    assert submission.scene_id(f"/x/{DMI}_prep.nc") == DMI
    assert submission.variable_name(f"{CIS}_prep_reference.nc", "FLOE") == f"{CIS}_FLOE"
    with pytest.raises(ValueError, match="not a scene name"):
        submission.scene_id("20180124T194759_xyz_prep.nc")
