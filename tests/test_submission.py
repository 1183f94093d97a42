import netCDF4
import numpy as np
import pytest

from seaice_lib import submission


def _predictions(rng):
    return {
        "20180124T194759_dmi_prep.nc": {"SIC": rng.integers(0, 11, (30, 40)).astype(np.uint8),
                                        "SOD": rng.integers(0, 6, (30, 40)).astype(np.uint8),
                                        "FLOE": np.full((30, 40), 255, np.uint8)},
        "20190430T101830_cis": {"SIC": np.zeros((20, 25), np.int64),
                                "SOD": np.ones((20, 25), np.int32),
                                "FLOE": rng.integers(0, 7, (20, 25))},
    }


def test_upload_package_round_trip_and_format(tmp_path):
    preds = _predictions(np.random.default_rng(0))
    path = submission.write_upload_package(preds, tmp_path / "upload_package.nc",
                                           shapes={"20190430T101830_cis": (20, 25)})
    back = submission.read_upload_package(path)
    assert set(back) == {"20180124T194759_dmi", "20190430T101830_cis"}
    np.testing.assert_array_equal(back["20180124T194759_dmi"]["SIC"],
                                  preds["20180124T194759_dmi_prep.nc"]["SIC"])
    with netCDF4.Dataset(path) as nc:
        var = nc.variables["20190430T101830_cis_FLOE"]
        assert var.dtype == np.uint8
        assert var.dimensions == ("20190430T101830_cis_FLOE_dim0", "20190430T101830_cis_FLOE_dim1")
        assert var.shape == (20, 25)
        filters = var.filters()
        assert filters["zlib"] and filters["complevel"] == 1
        assert len(nc.variables) == 6


@pytest.mark.parametrize("change, message", [
    (lambda p: p["20190430T101830_cis"].pop("SOD"), "missing charts"),
    (lambda p: p["20190430T101830_cis"].update(SIC=np.full((20, 25), 11)), "0..10 or 255"),
    (lambda p: p["20190430T101830_cis"].update(SOD=np.zeros((20, 25), float)), "integers"),
    (lambda p: p["20190430T101830_cis"].update(FLOE=np.zeros((20, 26), int)), "the scene is"),
    (lambda p: p.update({"scene_7": p["20190430T101830_cis"]}), "not a scene name"),
])
def test_bad_predictions_are_refused_and_nothing_is_written(tmp_path, change, message):
    preds = _predictions(np.random.default_rng(1))
    change(preds)
    target = tmp_path / "upload_package.nc"
    target.write_bytes(b"earlier submission")
    with pytest.raises(ValueError, match=message):
        submission.write_upload_package(preds, target, shapes={"20190430T101830_cis": (20, 25)})
    assert target.read_bytes() == b"earlier submission"
    assert [p.name for p in tmp_path.iterdir()] == ["upload_package.nc"]
