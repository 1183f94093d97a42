import numpy as np
import pytest

from seaice_lib import schema
from seaice_lib.scene import Scene
from seaice_lib.sequences import SceneInfo, build_sequences, co_register, overlap, resample_onto


@pytest.fixture(scope="module")
def infos(rtt_paths):
    return [SceneInfo.read(p) for p in rtt_paths]


def test_sequences_hold_earlier_scenes_of_the_region(infos):
    seqs = build_sequences(infos, window_days=30, min_overlap=0.1, max_steps=4)
    assert len(seqs) == len(infos)
    for seq in seqs:
        times = [s.time for s in seq.steps]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert {s.region for s in seq.steps} == {seq.target.region}
        assert seq.days_before[-1] == 0 and np.all(np.diff(seq.days_before) < 0)
        assert np.all((seq.day_of_year >= 1) & (seq.day_of_year <= 366))
    lengths = sorted(len(s) for s in seqs)
    assert lengths == [1, 1, 2, 2, 3, 3]  # two regions of three acquisitions each


def test_window_overlap_and_length_limits(infos):
    assert all(len(s) == 1 for s in build_sequences(infos, max_steps=1))
    assert all(len(s) == 1 for s in build_sequences(infos, window_days=30, min_overlap=1.01))
    assert all(len(s) == 1 for s in build_sequences(infos, window_days=0.01))
    two = build_sequences(infos, window_days=30, min_overlap=0.1, max_steps=2)
    longest = max(build_sequences(infos, window_days=30, min_overlap=0.1), key=len)
    assert max(len(s) for s in two) == 2
    pick = next(s for s in two if s.target.scene_id == longest.target.scene_id)
    assert pick.steps[0].scene_id == longest.steps[-2].scene_id  # the most recent earlier scene
    with pytest.raises(ValueError):
        build_sequences(infos, max_steps=0)


def test_overlap_of_a_scene_with_itself_is_complete(infos):
    assert overlap(infos[0], infos[0]) == 1.0
    other_region = next(s for s in infos if s.region != infos[0].region)
    assert overlap(infos[0], other_region) == 0.0


def test_co_registration_puts_the_coast_on_the_same_target_pixels(infos):
    """Land and distance-to-land zones are fixed on the earth: co-registered, every step must show
    the same zone at the same target pixel (up to zone borders); a 2-pixel error would not."""
    seq = max(build_sequences(infos, window_days=30, min_overlap=0.1), key=len)
    assert len(seq) == 3
    data, masks = co_register(seq, variables=("distance_map",))
    mean, std = schema.NORM_STATS["distance_map"]
    zone = np.round(data[:, 0] * std + mean)
    with Scene(seq.target.path) as target:
        assert np.array_equal(masks[-1], target.sar_valid())
        np.testing.assert_array_equal(data[-1, 0][masks[-1]], target.read("distance_map")[masks[-1]])
    for t in range(len(seq) - 1):
        both = masks[t] & masks[-1]
        assert both.mean() > 0.1
        assert len(np.unique(zone[-1][both])) >= 3  # distance to the coast varies in view
        same = (zone[t][both] == zone[-1][both]).mean()
        shifted = (np.roll(zone[t], 2, axis=1)[both] == zone[-1][both]).mean()
        assert same > 0.95 and shifted < same - 0.05, (same, shifted)


def test_uncovered_pixels_are_masked_and_zero(infos):
    a = infos[0]
    with Scene(a.path) as scene:
        lines = np.array([[-50.0, 5.0], [5.0, a.shape[0] + 40.0]])
        samples = np.array([[5.0, 5.0], [5.0, 5.0]])
        values, mask = resample_onto(scene, lines, samples, method="bilinear")
    assert mask.tolist() == [[False, mask[0, 1]], [mask[1, 0], False]]
    assert np.all(values[:, ~mask] == 0)
    with pytest.raises(ValueError):
        resample_onto(scene, lines, samples, method="cubic")
