"""Per-pixel floors: features on the store grid, the cell rule, the history step, fitting and scoring."""

import numpy as np
import pytest
import xarray as xr
from sklearn.metrics import f1_score, r2_score

from seaice_lib import schema
from seaice_lib.data.patches import PatchConfig
from seaice_lib.data.scene import Scene
from seaice_lib.data.sequences import co_register
from seaice_lib.engine import floors

D = 4  # store spacing of most tests: 110 x 135 pixels -> 27 x 33 store pixels, the last past the 2 km grid
CFG = PatchConfig(downsample=D, max_steps=3, window_days=30, min_overlap=0.1)


@pytest.fixture(scope="module")
def sequences(rtt_paths):
    return floors.target_sequences(rtt_paths, rtt_paths, CFG)


@pytest.fixture(scope="module")
def features(sequences):
    return [floors.scene_features(seq, D) for seq in sequences]


def test_feature_sets_names_and_shapes(sequences, features):
    sets = floors.FEATURE_SETS
    assert list(sets) == ["sar", "sar_history", "sar_amsr2_era5", "amsr2", "era5", "all"]
    hh, hv, ia = "nersc_sar_primary", "nersc_sar_secondary", "sar_incidenceangle"
    assert sets["sar"] == (hh, hv, ia, f"{hh}_mean3x3", f"{hh}_std3x3", f"{hv}_mean3x3",
                           f"{hv}_std3x3")
    assert sets["sar_history"] == sets["sar"] + (f"previous_{hh}", f"previous_{hv}",
                                                 "previous_covered")
    assert sets["amsr2"] == schema.AMSR2_CHANNELS and len(sets["amsr2"]) == 14
    assert sets["era5"] == schema.ERA5_VARIABLES and len(sets["era5"]) == 6
    assert sets["sar_amsr2_era5"] == sets["sar"] + sets["amsr2"] + sets["era5"]
    assert sets["all"] == sets["sar_history"] + sets["amsr2"] + sets["era5"]
    h, w = 110 // D, 135 // D
    for seq, sf in zip(sequences, features):
        assert sf.scene_id == seq.target.scene_id and sf.shape == (110, 135)
        assert sf.features.shape == (30, h, w) and sf.features.dtype == np.float32
        assert sf.valid.shape == (h, w) and sf.valid.dtype == bool
        assert sf.labels.shape == (3, h, w) and sf.labels.dtype == np.uint8
        for name, names in sets.items():
            sub = sf.select(name)
            assert sub.names == names and sub.features.shape == (len(names), h, w)
            assert np.array_equal(floors.scene_features(seq, D, feature_set=name).features,
                                  sub.features, equal_nan=True)
        with Scene(seq.target.path) as scene:
            sar_valid, charts = scene.sar_valid(), scene.charts()
            sar = np.stack([scene.read(v) for v in (hh, hv, ia)])
        # the target on the store grid, written out: a D x D block is valid when at least half its pixels
        # have SAR data, its value the mean of those; its labels are its centre pixel (D // 2, D // 2),
        # 255 where the block is not valid
        in_block = sar_valid[:h * D, :w * D].reshape(h, D, w, D)
        count = in_block.sum(axis=(1, 3))
        ok = count * 2 >= D * D
        assert np.array_equal(sf.valid, ok) and ok.any()
        centre = np.stack([charts[c][D // 2::D, D // 2::D][:h, :w] for c in schema.CHARTS])
        assert np.array_equal(sf.labels, np.where(ok, centre, 255))
        for k in range(3):  # target HH, HV, incidence: block means of the valid pixels, NaN without SAR
            blocks = sar[k, :h * D, :w * D].reshape(h, D, w, D)
            total = np.where(in_block, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
            np.testing.assert_allclose(sf.features[k][ok], (total / np.maximum(count, 1))[ok],
                                       rtol=1e-5, atol=1e-6)
            assert np.isnan(sf.features[k][~ok]).all()
    assert any((~sf.valid).any() for sf in features), "no scene with missing SAR to check"


def test_texture_is_mean_and_std_of_valid_neighbours(sequences, features):
    seq, sf = sequences[0], features[0]
    co = co_register(seq, D)
    values, valid = co.sar[-1], co.sar_mask[-1]
    h, w = valid.shape
    invalid = np.argwhere(~valid)
    pixels = [(0, 0), (h - 1, w - 1), (0, w - 1), (13, 17), (5, 0)] + [tuple(p) for p in invalid[:3]]
    for channel, name in ((0, "nersc_sar_primary"), (1, "nersc_sar_secondary")):
        mean = sf.features[sf.names.index(f"{name}_mean3x3")]
        std = sf.features[sf.names.index(f"{name}_std3x3")]
        for i, j in pixels:
            window = [values[channel, a, b] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                      if 0 <= a < h and 0 <= b < w and valid[a, b]]
            assert window, "a window without valid pixels: pick other pixels"
            assert mean[i, j] == pytest.approx(np.mean(window), abs=1e-5)
            assert std[i, j] == pytest.approx(np.std(window), abs=1e-4)


@pytest.mark.parametrize("d", [3, 4])
def test_grid2km_features_are_the_cell_under_the_sample_pixel(sequences, d):
    seq = sequences[-1]
    sf = floors.scene_features(seq, d)
    h, w = sf.features.shape[1:]
    with Scene(seq.target.path) as scene:
        n_rows, n_cols = scene.grid2km_shape
        stored = {v: scene.ds[v].values for v in schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES}
        upsampled, _ = scene.read_grid2km(schema.AMSR2_CHANNELS, upsample=True)
    # corners, and pixels whose sample pixel is just past a cell border while their corner is not
    pixels = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (6, 12), (12, 6), (8, 16), (16, 8)]
    # the last sample pixel lies past the 2 km grid's end: the rule clips it to the last cell
    assert ((w - 1) * d + d // 2) // 25 >= n_cols
    cells = set()
    for i, j in pixels:
        line, sample = i * d + d // 2, j * d + d // 2  # the sample pixel at 80 m
        a, b = min(line // 25, n_rows - 1), min(sample // 25, n_cols - 1)
        cells.add((a, b))
        for name, values in stored.items():
            assert sf.features[sf.names.index(name), i, j] == values[a, b], (name, i, j)
        for k, name in enumerate(schema.AMSR2_CHANNELS):
            assert sf.features[sf.names.index(name), i, j] == upsampled[k, line, sample]
    assert len(cells) >= 4


def test_history_is_the_previous_co_registered_step(sequences, features):
    names = features[0].names
    hh, hv, flag = (names.index(n) for n in floors.HISTORY_FEATURES)
    checked = 0
    for seq, sf in zip(sequences, features):
        if len(seq) == 1:
            assert (sf.features[flag] == 0).all()
            assert np.isnan(sf.features[[hh, hv]]).all()
            continue
        co = co_register(seq, D)
        covered = co.sar_mask[-2]
        assert np.array_equal(sf.features[flag], covered.astype(np.float32))
        assert np.array_equal(sf.features[hh][covered], co.sar[-2, 0][covered])
        assert np.array_equal(sf.features[hv][covered], co.sar[-2, 1][covered])
        assert np.isnan(sf.features[[hh, hv]][:, ~covered]).all()
        checked += covered.any() and (~covered).any()
    assert checked, "no sequence whose previous step covers the target partly"


def _by_region(sequences, features):
    regions = sorted({s.target.region for s in sequences})
    assert len(regions) == 2
    train = [f for s, f in zip(sequences, features) if s.target.region == regions[0]]
    test = [f for s, f in zip(sequences, features) if s.target.region == regions[1]]
    return train, test


def test_fit_predict_round_trip_is_deterministic(sequences, features):
    train, test = _by_region(sequences, features)
    kwargs = dict(max_pixels=1200, max_iter=30, seed=5, threads=1)
    first = floors.PixelFloor("all", **kwargs).fit(train)
    second = floors.PixelFloor("all", **kwargs).fit(train)
    assert first.n_train["SIC"] <= 1200
    for sf in test:
        a, b = first.predict(sf), second.predict(sf.select("all").features)
        assert set(a) == set(schema.CHARTS)
        for chart in schema.CHARTS:
            assert a[chart].shape == sf.valid.shape and a[chart].dtype == np.uint8
            assert a[chart].max() < schema.N_CLASSES[chart]
            assert np.array_equal(a[chart], b[chart])
    ev = floors.evaluate_floor(first, test)
    assert ev.info["scope"] == "full scenes at 80 m" and ev.info["feature_set"] == "all"
    assert ev.info["scenes"] == [sf.scene_id for sf in test]
    assert set(ev.scores()) == {"SIC", "SOD", "FLOE", "combined"}
    # every labelled 80 m pixel counted once, those of store pixels without SAR data too (scored on
    # every scene of the set, so that such pixels are there whatever the generator draws)
    ev = floors.evaluate_floor(first, features)
    for chart in schema.CHARTS:
        labelled = no_sar = 0
        for sf in features:
            with Scene(sf.path) as scene:
                truth = scene.charts()[chart]
            labelled += int((truth != 255).sum())
            h, w = sf.valid.shape  # store pixels with SAR data, at 80 m (ragged edge left out)
            store_valid = np.ones(truth.shape, bool)
            store_valid[:h * D, :w * D] = sf.valid.repeat(D, axis=0).repeat(D, axis=1)
            no_sar += int(((truth != 255) & ~store_valid).sum())
        assert ev.confusion[chart].sum() == labelled
        assert no_sar > 0, f"{chart}: every labelled pixel has SAR data: nothing to check"


def _rule_data(rng, n):
    """Six ERA5-named features; SIC, SOD and FLOE each a step function of one of them, ~10 % unlabelled."""
    x = rng.uniform(0, 1, (n, 6)).astype(np.float32)
    labels = np.stack([np.minimum(x[:, 0] * 11, 10), np.minimum(x[:, 2] * 6, 5),
                       np.minimum(x[:, 4] * 7, 6)], axis=1).astype(np.uint8)
    labels[rng.uniform(size=labels.shape) < 0.1] = 255
    return x, labels


def test_floor_learns_a_rule_one_feature_carries_and_nothing_from_shuffled_labels():
    rng = np.random.default_rng(0)
    x, labels = _rule_data(rng, 4000)
    x_test, truth = _rule_data(rng, 2000)
    floor = floors.PixelFloor("era5", max_iter=60, seed=0, threads=1).fit_pixels(x, labels)
    pred = floor.predict(x_test.T.reshape(6, 40, 50))
    scores = {}
    for k, chart in enumerate(schema.CHARTS):
        t, p = truth[:, k], pred[chart].ravel()
        keep = t != 255
        scores[chart] = (r2_score(t[keep], p[keep]) if chart == "SIC"
                         else f1_score(t[keep], p[keep], average="weighted"))
    assert scores["SIC"] > 0.97 and scores["SOD"] > 0.97 and scores["FLOE"] > 0.97, scores

    shuffled = labels[rng.permutation(len(labels))]
    floor = floors.PixelFloor("era5", max_iter=60, seed=0, threads=1).fit_pixels(x, shuffled)
    pred = floor.predict_pixels(x_test)
    keep = truth[:, 1] != 255
    chance = f1_score(truth[keep, 1], pred["SOD"][keep], average="weighted")
    assert chance < 0.3, chance  # 6 even classes: chance is about 1/6
    keep = truth[:, 0] != 255
    assert r2_score(truth[keep, 0], pred["SIC"][keep]) < 0.1


def test_a_floor_gives_no_class_where_an_input_is_not_finite_as_a_network_does(sequences, features, rtt_paths,
                                                                               tmp_path):
    """An inf HH block inside the target's swath: the floor's pixels there get no class and count
    wrong, named by variable, where a model of its features would otherwise chart NaN features."""
    from tests.scene_edits import copy_scenes, edit_variable

    train, test = _by_region(sequences, features)
    floor = floors.PixelFloor("sar", max_pixels=1200, max_iter=20, seed=5, threads=1).fit(train)
    target = test[0].path
    folder = copy_scenes(rtt_paths, tmp_path / "scenes")
    copy = folder / target.name
    block = (slice(20, 40), slice(30, 60))
    with xr.open_dataset(copy, engine="netcdf4", mask_and_scale=False) as ds:
        assert (ds["nersc_sar_primary"].values[block] != schema.SAR_FILL).all()  # inside the swath
        true = {c: ds[c].values for c in schema.CHARTS}
    edit_variable(copy, "nersc_sar_primary", lambda v: v.__setitem__(block, np.inf))
    seq = floors.target_sequences([copy], sorted(folder.glob("*_prep.nc")), CFG)[0]
    sf = floors.scene_features(seq, D)
    ev = floors.evaluate_floor(floor, [sf])
    labelled = {c: int((true[c][block] != 255).sum()) for c in schema.CHARTS}
    assert min(labelled.values()) > 0
    assert ev.info["unusable_inputs"] == {copy.name[:19]: {"labelled_pixels": labelled,
                                                           "values": {"nersc_sar_primary": 20 * 30}}}
    for chart in schema.CHARTS:
        t = true[chart][block]
        np.testing.assert_array_equal(ev.no_class[chart], np.bincount(t[t != 255], minlength=schema.N_CLASSES[chart]))
