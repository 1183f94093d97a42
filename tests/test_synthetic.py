"""The synthetic generator: the acceptance command, determinism, and its physical signals."""

import re

import netCDF4
import numpy as np
import pytest
import xarray as xr

from seaice_lib import schema, synthetic
from seaice_lib.atomic import LOCK_NAME
from seaice_lib.data.prepare import prepare_scene
from seaice_lib.data.scene import Scene, find_scenes
from seaice_lib.synthetic import world
from seaice_lib.synthetic.generator import truth_path


def test_acceptance_command_with_raw_files(tmp_path):
    out = tmp_path / "scenes"
    assert synthetic.main(["--out", str(out), "--regions", "2", "--scenes-per-region", "3",
                           "--size", "600", "700", "--seed", "1", "--raw", "--quiet"]) == 0
    rtt = find_scenes(out)
    raw = sorted((out / "raw").glob("*.nc"))
    assert len(rtt) == 6 and len(raw) == 6
    for path in rtt:
        with Scene(path) as scene:  # validates against the schema
            assert scene.shape == (600, 700)
            for name, spec in schema.RTT_SCHEMA.variables.items():
                assert (scene.ds[name].dims, scene.ds[name].dtype) == (spec.dims, np.dtype(spec.dtype))
    for path in raw:  # preparing the raw files reproduces the RTT labels exactly
        prepared = prepare_scene(path, tmp_path / "prepared")
        with Scene(prepared) as ours, Scene(out / prepared.name) as ref:
            for chart in schema.CHARTS:
                assert np.array_equal(ours.charts()[chart], ref.charts()[chart]), (path, chart)


def test_same_seed_same_scenes_other_seed_other_scenes(tmp_path):
    kw = dict(regions=1, scenes_per_region=2, size=(80, 90), progress=False)
    a = synthetic.generate(tmp_path / "a", seed=5, **kw)
    b = synthetic.generate(tmp_path / "b", seed=5, **kw)
    c = synthetic.generate(tmp_path / "c", seed=6, **kw)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        xa, xb = xr.open_dataset(pa), xr.open_dataset(pb)
        assert xa.equals(xb)
    assert [p.name for p in a] != [p.name for p in c]


def test_a_folder_holding_a_set_of_another_seed_or_options_is_refused_not_mixed(tmp_path, capsys):
    """Another seed gives other scene names, so nothing collides by name: the folder's own set
    decides. Writing with another seed, or other options, into it is refused by name with what
    differs, and nothing is added; the same options again keep the set as it is."""
    out = tmp_path / "set"
    first = synthetic.generate(out, regions=1, scenes_per_region=2, size=(80, 90), seed=5, progress=False)
    before = sorted(p.name for p in out.rglob("*"))
    for kw, differ in ((dict(seed=6), "seed 5, not 6"), (dict(seed=5, scenes_per_region=3), "scenes_per_region 2, not 3")):
        kw = dict(regions=1, size=(80, 90), progress=False) | {"scenes_per_region": 2} | kw
        with pytest.raises(ValueError, match=re.escape(f"{out}: already holds synthetic scenes written with "
                                                       f"other options ({differ}")):
            synthetic.generate(out, **kw)
        assert sorted(p.name for p in out.rglob("*")) == before
    with pytest.raises(SystemExit) as stop:
        synthetic.main(["--out", str(out), "--regions", "1", "--scenes-per-region", "2", "--size", "80", "90",
                        "--seed", "6", "--quiet"])
    assert stop.value.code == 2 and f"{out}: already holds synthetic scenes" in capsys.readouterr().err
    assert synthetic.generate(out, regions=1, scenes_per_region=2, size=(80, 90), seed=5, progress=False) == first
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with Scene(first[0], validate=False) as scene:
        ds = scene.ds.load()
    del ds.attrs["synthetic_options"]
    ds.to_netcdf(foreign / "20180101T000000_dmi_prep.nc")
    with pytest.raises(ValueError, match=re.escape(f"{foreign}: holds 20180101T000000_dmi_prep.nc, which records "
                                                   "no synthetic options")):
        synthetic.generate(foreign, regions=1, scenes_per_region=2, size=(80, 90), seed=5, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["20180101T000000_dmi_prep.nc"]


def test_a_folder_holding_scenes_of_more_regions_is_refused_not_kept(tmp_path, capsys):
    """``--regions 1`` on a folder of the ``--regions 2`` set (raw files too) names the other region's
    files and exits 2, never reporting the folder as its set; a folder of fewer regions is extended
    to exactly the set written afresh elsewhere."""
    kw = dict(scenes_per_region=2, size=(80, 90), seed=5, raw=True, progress=False)
    wide = synthetic.generate(tmp_path / "wide", regions=2, **kw)
    narrow = synthetic.generate(tmp_path / "narrow", regions=1, **kw)
    out = tmp_path / "wide"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    others = sorted({p.name for p in wide} - {p.name for p in narrow})
    others += sorted({p.name for p in (out / "raw").iterdir()} - {p.name for p in (tmp_path / "narrow" / "raw").iterdir()})
    with pytest.raises(ValueError, match=re.escape(f"{out}: also holds 4 files of regions this call does not write "
                                                   f"(written with a larger --regions than 1): {', '.join(others)}")):
        synthetic.generate(out, regions=1, **kw)
    with pytest.raises(SystemExit) as stop:
        synthetic.main(["--out", str(out), "--regions", "1", "--scenes-per-region", "2", "--size", "80", "90",
                        "--seed", "5", "--raw", "--quiet"])
    assert stop.value.code == 2 and others[0] in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != LOCK_NAME} == before
    assert synthetic.generate(out, regions=2, **kw) == wide  # its own set: kept
    extended = synthetic.generate(tmp_path / "narrow", regions=2, **kw)
    assert [p.name for p in extended] == [p.name for p in wide]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(extended, wide))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="regions"):
        synthetic.generate(tmp_path, regions=99)
    with pytest.raises(ValueError, match="at least"):
        synthetic.generate(tmp_path, size=(20, 400))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("physics")
    paths = synthetic.generate(out, regions=4, scenes_per_region=2, size=(300, 300), seed=11,
                               truth=True, progress=False)
    return [Scene(p) for p in paths]


def _cells(values, cell=25):
    h, w = values.shape[0] // cell * cell, values.shape[1] // cell * cell
    return values[:h, :w].reshape(h // cell, cell, w // cell, cell)


def test_label_shares_are_near_the_real_ones(scenes):
    counts = {c: np.zeros(256, np.int64) for c in schema.CHARTS}
    for s in scenes:
        for chart, labels in s.charts().items():
            counts[chart] += np.bincount(labels.ravel(), minlength=256)
    for chart, c in counts.items():
        unlabelled = c[255] / c.sum()
        assert 0.2 < unlabelled < 0.65, (chart, unlabelled)
        water = c[0] / c[:255].sum()
        assert 0.35 < water < 0.85, (chart, water)
    present = {chart: set(np.flatnonzero(c[:schema.N_CLASSES[chart]])) for chart, c in counts.items()}
    assert present["SOD"] == set(range(6))  # every stage, new and young ice included
    assert {0, 5, 10} <= present["SIC"] and len(present["SIC"]) >= 7


def test_open_water_is_dark_in_hv_and_ice_is_not(scenes):
    water, ice = [], []
    for s in scenes:
        hv = s.read("nersc_sar_secondary", units="physical")
        sod = s.charts()["SOD"]
        water.append(hv[sod == 0])
        ice.append(hv[(sod == 4) | (sod == 5)])
    assert np.nanmedian(np.concatenate(ice)) - np.nanmedian(np.concatenate(water)) > 4.0


def test_wind_roughens_open_water_in_hh(scenes):
    hh, wind, inc = [], [], []
    for s in scenes:
        sic = _cells(s.charts()["SIC"])
        water = (sic == 0).all(axis=(1, 3))
        u, _ = s.read_grid2km(["u10m_rotated", "v10m_rotated"], units="physical")
        speed = np.hypot(u[0], u[1])[: water.shape[0], : water.shape[1]]
        cell_hh = np.nanmean(_cells(s.read("nersc_sar_primary", units="physical")), axis=(1, 3))
        cell_inc = np.nanmean(_cells(s.read("sar_incidenceangle", units="physical")), axis=(1, 3))
        ok = water & np.isfinite(cell_hh)
        hh.append(cell_hh[ok]), wind.append(speed[ok]), inc.append(cell_inc[ok])
    hh, wind, inc = map(np.concatenate, (hh, wind, inc))
    assert len(hh) > 50
    design = np.column_stack([np.ones_like(wind), wind, inc - 35])
    (_, per_ms, per_degree), *_ = np.linalg.lstsq(design, hh, rcond=None)
    assert per_ms > 0.5  # dB per m/s of wind
    assert per_degree < -0.2  # water darkens with incidence angle


def test_amsr2_sees_concentration(scenes):
    tb, sic = [], []
    for s in scenes:
        labels = _cells(s.charts()["SIC"]).astype(float).transpose(0, 2, 1, 3)  # (rows, cols, 25, 25)
        labels[labels == 255] = np.nan
        labelled = np.isfinite(labels).mean(axis=(2, 3)) > 0.9
        cell_sic = np.nanmean(labels[labelled], axis=(1, 2))
        t, _ = s.read_grid2km(["btemp_36_5h"], units="physical")
        t = t[0][: labelled.shape[0], : labelled.shape[1]]
        tb.append(t[labelled]), sic.append(cell_sic)
    tb, sic = np.concatenate(tb), np.concatenate(sic)
    # 36.5 GHz: fine footprint (about 8 km) and little atmosphere; coarser channels are blurred
    assert np.corrcoef(tb, sic)[0, 1] > 0.8
    assert 100 < tb.min() and tb.max() < 290


def test_incidence_angle_spans_the_ew_swath(scenes):
    inc = scenes[0].read("sar_incidenceangle", units="physical")
    assert 18.5 < np.nanmin(inc) < 21 and 45 < np.nanmax(inc) < 47.5


def test_new_and_young_ice_share_one_signature(scenes):
    """Pure new and pure young ice (truth files) have the same incidence-corrected HH and HV: their
    medians differ by less than 1 dB, well inside the 2.5 dB patch-to-patch spread of either (one
    scene's few patches can differ by 2 dB by chance, so all scenes are pooled); whatever tells
    them apart is history."""
    values = {(name, k): [] for name in ("nersc_sar_primary", "nersc_sar_secondary")
              for k in (world.NEW, world.YOUNG)}
    for s in scenes:
        t = xr.open_dataset(truth_path(s.path.parent, s.scene_id))
        stage, conc = t["true_stage"].values, t["true_concentration"].values
        inc = s.read("sar_incidenceangle", units="physical") - 35.0
        for name, slope in (("nersc_sar_primary", 0.25), ("nersc_sar_secondary", 0.12)):
            corrected = s.read(name, units="physical") + slope * inc
            for k in (world.NEW, world.YOUNG):
                values[name, k].append(corrected[(stage == k) & (conc > 0.95)])
    for name in ("nersc_sar_primary", "nersc_sar_secondary"):
        new, young = (np.concatenate(values[name, k]) for k in (world.NEW, world.YOUNG))
        assert min(np.isfinite(new).sum(), np.isfinite(young).sum()) > 1000
        assert abs(np.nanmedian(new) - np.nanmedian(young)) < 1.0, name
    # their histories differ: new ice was open water a few days earlier, young ice was ice
    spec = world.REGION_CATALOGUE[0]
    region = world.Region(spec, 60.0, 320.0, 20.0, np.random.default_rng(0))
    region.drift = np.zeros(2)  # compare the same spot of ice on both days
    now, before = region.state(15.0), region.state(15.0 - world.NEW_ICE_DAYS)
    is_new, is_young = now.stage == world.NEW, now.stage == world.YOUNG
    assert is_new.sum() > 100 and is_young.sum() > 100
    assert (before.stage[is_new] == world.WATER).mean() > 0.99
    assert (before.stage[is_young] != world.WATER).mean() > 0.99


def test_acquisitions_of_a_region_overlap_with_different_footprints(scenes):
    a, b = scenes[0], scenes[1]
    assert a.region == b.region and a.time < b.time
    ra, rb = a.tiepoints.footprint_xy(), b.tiepoints.footprint_xy()
    assert not np.allclose(ra, rb)
    centre_gap = np.linalg.norm(ra.mean(axis=0) - rb.mean(axis=0))
    assert centre_gap < 300 * 80  # within one scene width of each other


@pytest.mark.parametrize("truth", [False, True])
def test_a_scene_edited_since_it_was_written_is_refused_not_kept(truth, tmp_path):
    """A rerun keeps the files it wrote only as it wrote them: a scene (or truth file) edited since,
    here relabelled, is refused by name, never kept beside truth files of another world."""
    out = tmp_path / "set"
    kw = dict(regions=1, scenes_per_region=2, size=(80, 90), seed=5, truth=truth, progress=False)
    first = synthetic.generate(out, **kw)
    assert synthetic.generate(out, **kw) == first  # unchanged: kept
    edited = first[1] if not truth else out / "truth" / f"{first[1].name[:19]}_truth.nc"
    with netCDF4.Dataset(edited, "r+") as nc:
        name = "SOD" if not truth else next(iter(nc.variables))
        nc[name][:] = 0
    with pytest.raises(ValueError, match=re.escape(f"{edited}: changed since `seaice synthetic` wrote it")):
        synthetic.generate(out, **kw)
    edited.unlink()  # as the message says: written again
    assert synthetic.generate(out, **kw) == first
    (out / synthetic.generator.MANIFEST).write_text('{"half a record": ')  # damaged: named, nothing kept on it
    with pytest.raises(ValueError, match=re.escape(f"{out / synthetic.generator.MANIFEST}: not a record of written "
                                                   "files (Expecting value")):
        synthetic.generate(out, **kw)
    (out / synthetic.generator.MANIFEST).unlink()  # its record lost: nothing there can be vouched for
    with pytest.raises(ValueError, match=re.escape(f"{first[0]}: already there, but not among the files")):
        synthetic.generate(out, **kw)
