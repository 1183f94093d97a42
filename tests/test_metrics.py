import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support, r2_score

from seaice_lib import schema
from seaice_lib.engine import metrics
from seaice_lib.engine.metrics import (
    AutoIceAccumulator,
    autoice_scores,
    chart_score,
    combined_score,
    confusion_matrix,
    per_class_metrics,
    r2_from_confusion,
    scores_from_confusion,
)

WEIGHTS = {"SIC": 2, "SOD": 2, "FLOE": 1}


def _chart_case(rng: np.random.Generator, n_classes: int, size: int, kind: str):
    """(true, pred) uint8 (size,) with class imbalance, absent classes and no-label pixels."""
    present = rng.choice(n_classes, size=rng.integers(1, n_classes + 1), replace=False)
    shares = rng.dirichlet(np.full(len(present), rng.uniform(0.1, 3)))
    true = present[rng.choice(len(present), size, p=shares)]
    if kind == "perfect":
        pred = true.copy()
    elif kind == "constant":
        pred = np.full(size, rng.integers(n_classes))
    elif kind == "other_classes":  # predicts only classes absent from the truth, where possible
        absent = np.setdiff1d(np.arange(n_classes), present)
        pred = rng.choice(absent if len(absent) else present, size)
    else:
        skill = rng.uniform(0, 1)
        noise = rng.integers(0, rng.integers(1, n_classes + 1), size)
        pred = np.where(rng.random(size) < skill, true, noise)
    true = np.where(rng.random(size) < rng.choice([0, rng.uniform(0, 0.9)]), 255, true)
    true[rng.integers(size)] = present[0]  # at least one labelled pixel
    return true.astype(np.uint8), pred.astype(np.uint8)


def _random_case(rng: np.random.Generator, size: int | None = None):
    size = size or int(np.exp(rng.uniform(0, np.log(5000))))
    true, pred = {}, {}
    for chart in schema.CHARTS:
        kind = rng.choice(["skill", "skill", "perfect", "constant", "other_classes"])
        true[chart], pred[chart] = _chart_case(rng, schema.N_CLASSES[chart], size, kind)
    return true, pred


def _sklearn_scores(true, pred):
    """Unrounded chart scores with sklearn, on the labelled pixels."""
    out = {}
    for chart in schema.CHARTS:
        keep = true[chart] != 255
        t, p = true[chart][keep], pred[chart][keep]
        out[chart] = r2_score(t, p) if chart == "SIC" else f1_score(t, p, average="weighted")
    return out


def _toolbox_round(unrounded):
    """The challenge toolbox: np.round(score * 100, 3), weighted mean of those, np.round again."""
    scores = {c: np.round(v * 100, 3) for c, v in unrounded.items()}
    total = 0
    for chart in schema.CHARTS:
        total += scores[chart] * WEIGHTS[chart]
    return {**scores, "combined": np.round(total / 5, 3)}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_equal_to_sklearn_and_the_toolbox_on_many_random_cases():
    rng = np.random.default_rng(0)
    differs_from_unrounded_combined = 0
    for case in range(200):
        true, pred = _random_case(rng, size=1 if case < 3 else None)
        reference = _sklearn_scores(true, pred)
        ours = autoice_scores(true, pred)
        for chart in schema.CHARTS:
            cm = confusion_matrix(true[chart], pred[chart], chart)
            exact = chart_score(chart, cm)
            assert _same(exact, reference[chart]) or exact == pytest.approx(reference[chart],
                                                                            abs=1e-9), (case, chart)
            if chart != "SIC":
                keep = true[chart] != 255
                p, r, f, s = precision_recall_fscore_support(
                    true[chart][keep], pred[chart][keep], labels=range(schema.N_CLASSES[chart]),
                    zero_division=0)
                mine = per_class_metrics(cm)
                np.testing.assert_allclose(mine["precision"], p, atol=1e-12)
                np.testing.assert_allclose(mine["recall"], r, atol=1e-12)
                np.testing.assert_allclose(mine["f1"], f, atol=1e-12)
                np.testing.assert_array_equal(mine["support"], s)
        toolbox = _toolbox_round(reference)
        assert set(ours) == set(toolbox)
        assert all(_same(ours[k], float(toolbox[k])) for k in ours), (case, ours, toolbox)
        unrounded = scores_from_confusion(
            {c: confusion_matrix(true[c], pred[c], c) for c in schema.CHARTS}, rounded=False)
        differs_from_unrounded_combined += np.round(unrounded["combined"], 3) != ours["combined"]
    # the order of rounding matters often enough for the test above to tell the two apart
    assert differs_from_unrounded_combined > 10


def test_hand_worked_example():
    # SIC truth [0, 5, 10, 10], prediction [0, 5, 10, 0]: Σ(y - ŷ)² = 100; mean 6.25,
    # Σ(y - ȳ)² = 39.0625 + 1.5625 + 2 * 14.0625 = 68.75 -> R² = 1 - 100 / 68.75 = -0.454545...
    # SOD labelled truth [0, 0, 1], prediction [0, 1, 1] (the 255 pixel and its 3 are dropped):
    # class 0 P 1, R 1/2, F1 2/3, support 2; class 1 P 1/2, R 1, F1 2/3, support 1 -> weighted 2/3.
    # FLOE perfect on its two labelled pixels.
    true = {"SIC": np.array([0, 5, 10, 10]), "SOD": np.array([0, 0, 1, 255]),
            "FLOE": np.array([2, 3, 255, 255])}
    pred = {"SIC": np.array([0, 5, 10, 0]), "SOD": np.array([0, 1, 1, 3]),
            "FLOE": np.array([2, 3, 0, 0])}
    scores = autoice_scores(true, pred)
    # combined = (2 * -45.455 + 2 * 66.667 + 100) / 5 = 142.424 / 5 = 28.4848
    assert scores == {"SIC": -45.455, "SOD": 66.667, "FLOE": 100.0, "combined": 28.485}
    acc = AutoIceAccumulator().update(true, pred)
    sod = acc.per_class("SOD")
    np.testing.assert_allclose(sod["precision"], [1, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(sod["recall"], [0.5, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(sod["f1"], [2 / 3, 2 / 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(sod["support"], [2, 1, 0, 0, 0, 0])
    expected_cm = np.zeros((6, 6), np.int64)
    expected_cm[0, 0], expected_cm[0, 1], expected_cm[1, 1] = 1, 1, 1
    np.testing.assert_array_equal(acc.confusion_matrix("SOD"), expected_cm)
    unrounded = acc.scores(rounded=False)
    assert unrounded["SIC"] == pytest.approx(-500 / 11, rel=1e-15)
    assert unrounded["combined"] == pytest.approx((2 * unrounded["SIC"] + 2 * 200 / 3 + 100) / 5)


def test_combined_formula():
    assert combined_score({"SIC": 90.0, "SOD": 80.0, "FLOE": 70.0}) == pytest.approx(82.0)
    assert combined_score({"SIC": 0.0, "SOD": 0.0, "FLOE": 100.0}) == pytest.approx(20.0)
    assert combined_score({"SIC": 100.0, "SOD": 0.0, "FLOE": 0.0}) == pytest.approx(40.0)
    perfect = {c: np.arange(n).repeat(3) for c, n in schema.N_CLASSES.items()}
    assert autoice_scores(perfect, perfect) == {"SIC": 100.0, "SOD": 100.0, "FLOE": 100.0,
                                                "combined": 100.0}


def test_partial_charts_and_constant_truth():
    true = {"SOD": np.array([0, 255, 255, 4])}
    assert autoice_scores(true, {"SOD": np.array([0, 1, 5, 4])}) == {"SOD": 100.0}
    assert autoice_scores({**true, "SIC": np.array([3, 3])},
                          {**true, "SIC": np.array([3, 3])}, charts=["SIC"]) == {"SIC": 100.0}
    # constant truth: sklearn gives R² 1 for a perfect prediction and 0 otherwise; NaN for one pixel
    assert r2_from_confusion(confusion_matrix(np.full(4, 3), np.full(4, 3), "SIC")) == 1.0
    assert r2_from_confusion(confusion_matrix(np.full(4, 3), np.array([3, 3, 3, 4]), "SIC")) == 0.0
    assert math.isnan(autoice_scores({"SIC": np.array([3])}, {"SIC": np.array([2])})["SIC"])


def test_streaming_over_chunks_equals_pooled(monkeypatch):
    rng = np.random.default_rng(1)
    scenes = [_random_case(rng, 700) for _ in range(6)]
    pooled_true = {c: np.concatenate([t[c] for t, _ in scenes]) for c in schema.CHARTS}
    pooled_pred = {c: np.concatenate([p[c] for _, p in scenes]) for c in schema.CHARTS}
    expected = autoice_scores(pooled_true, pooled_pred)

    acc, left, right = AutoIceAccumulator(), AutoIceAccumulator(), AutoIceAccumulator()
    cuts = np.sort(rng.choice(np.arange(1, 4200), 25, replace=False))
    for i, (start, stop) in enumerate(zip([0, *cuts], [*cuts, 4200])):
        chunk = ({c: v[start:stop] for c, v in pooled_true.items()},
                 {c: v[start:stop] for c, v in pooled_pred.items()})
        acc.update(*chunk)
        (left if i % 2 else right).update(*chunk)
    left += right
    assert acc.scores() == expected == left.merge(AutoIceAccumulator()).scores()
    assert acc.scores(rounded=False) == left.scores(rounded=False)
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(
            acc.confusion_matrix(chart),
            confusion_matrix(pooled_true[chart], pooled_pred[chart], chart))

    as_lists = autoice_scores({c: [t[c].reshape(20, 35) for t, _ in scenes] for c in schema.CHARTS},
                              {c: [p[c].reshape(20, 35) for _, p in scenes] for c in schema.CHARTS})
    assert as_lists == expected
    monkeypatch.setattr(metrics, "_CHUNK", 7)  # many numpy slices per array
    assert autoice_scores(pooled_true, pooled_pred) == expected

    acc.reset()
    assert all(acc.confusion_matrix(c).sum() == 0 for c in schema.CHARTS)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_input_equals_numpy_input(device):
    rng = np.random.default_rng(2)
    true, pred = _random_case(rng, 2000)
    expected = autoice_scores(true, pred)
    as_tensor = {c: torch.from_numpy(v.astype(np.int64)).reshape(2, 20, 50).to(device)
                 for c, v in pred.items()}
    true_uint8 = {c: torch.from_numpy(v).reshape(2, 20, 50).to(device) for c, v in true.items()}
    assert AutoIceAccumulator().update(true_uint8, as_tensor).scores() == expected
    # numpy truth with tensor predictions, and lists of tensors
    mixed = {c: v.reshape(2, 20, 50) for c, v in true.items()}
    assert autoice_scores(mixed, as_tensor) == expected
    assert autoice_scores({c: list(v) for c, v in true_uint8.items()},
                          {c: list(v) for c, v in as_tensor.items()}) == expected


def _all_reduce_worker(rank: int, init_file: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    true = {"SOD": np.array([rank, 1, 255]), "FLOE": np.array([2, 2, 2])}
    pred = {"SOD": np.array([0, 1, 1]), "FLOE": np.array([2, 2, rank])}
    acc = AutoIceAccumulator(["SOD", "FLOE"]).update(true, pred).all_reduce()
    queue.put((rank, acc.confusion_matrix("SOD"), acc.confusion_matrix("FLOE")))
    dist.destroy_process_group()


def test_all_reduce_sums_over_ranks_and_is_a_no_op_alone(tmp_path):
    acc = AutoIceAccumulator(["SOD"]).update({"SOD": np.array([0, 1])}, {"SOD": np.array([0, 0])})
    np.testing.assert_array_equal(acc.all_reduce().confusion_matrix("SOD"),
                                  acc.confusion_matrix("SOD"))

    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    torch.multiprocessing.start_processes(_all_reduce_worker, args=(str(tmp_path / "init"), queue),
                                          nprocs=2, start_method="spawn")
    results = sorted(queue.get() for _ in range(2))
    sod, floe = np.zeros((6, 6), np.int64), np.zeros((7, 7), np.int64)
    sod[0, 0], sod[1, 1], sod[1, 0] = 1, 2, 1  # rank 0: (0,0), (1,1); rank 1: (1,0), (1,1)
    floe[2, 2], floe[2, 0], floe[2, 1] = 4, 1, 1
    for _, got_sod, got_floe in results:
        np.testing.assert_array_equal(got_sod, sod)
        np.testing.assert_array_equal(got_floe, floe)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="SIC: true \\(3,\\) and pred \\(4,\\) differ in shape"):
        autoice_scores({"SIC": np.zeros(3, int)}, {"SIC": np.zeros(4, int)})
    with pytest.raises(ValueError, match="SOD: 2 predicted classes outside 0..5 on labelled"):
        autoice_scores({"SOD": np.array([0, 0, 255, 0])}, {"SOD": np.array([0, 6, 255, -1])})
    with pytest.raises(ValueError, match="SOD: 1 predicted classes outside"):
        autoice_scores({"SOD": torch.zeros(3, dtype=torch.uint8)}, {"SOD": torch.tensor([0, 0, 9])})
    with pytest.raises(ValueError, match="FLOE: 1 true classes outside 0..6 or 255"):
        autoice_scores({"FLOE": np.array([0, 9])}, {"FLOE": np.array([0, 1])})
    with pytest.raises(TypeError, match="SIC: pred must hold integer classes, got float64"):
        autoice_scores({"SIC": np.zeros(2, int)}, {"SIC": np.zeros(2)})
    with pytest.raises(TypeError, match="SOD: pred must hold integer classes, got torch.float32"):
        autoice_scores({"SOD": np.zeros(2, int)}, {"SOD": torch.zeros(2)})
    with pytest.raises(ValueError, match="SOD: no labelled pixels"):
        autoice_scores({"SOD": np.full(3, 255)}, {"SOD": np.zeros(3, int)})
    with pytest.raises(KeyError, match="FLOE missing from true"):
        AutoIceAccumulator().update({"SIC": np.zeros(2, int), "SOD": np.zeros(2, int)},
                                    {"SIC": np.zeros(2, int), "SOD": np.zeros(2, int)})
    with pytest.raises(KeyError, match="SOD missing from pred"):
        autoice_scores({"SOD": np.zeros(2, int)}, {"SIC": np.zeros(2, int)})
    with pytest.raises(ValueError, match="lists of equal length"):
        autoice_scores({"SOD": [np.zeros(2, int)] * 2}, {"SOD": [np.zeros(2, int)]})
    with pytest.raises(ValueError, match="nothing to score"):
        autoice_scores({"sic": np.zeros(2, int)}, {"sic": np.zeros(2, int)})
    with pytest.raises(ValueError, match="unknown chart 'ICE'"):
        AutoIceAccumulator(["SIC", "ICE"])
    with pytest.raises(ValueError, match="cannot merge"):
        AutoIceAccumulator(["SIC"]).merge(AutoIceAccumulator())


def test_a_refused_update_adds_nothing():
    acc = AutoIceAccumulator()
    good = {c: np.zeros(3, np.uint8) for c in schema.CHARTS}
    acc.update(good, good)
    with pytest.raises(ValueError, match="FLOE"):
        acc.update(good, {**good, "FLOE": np.array([0, 0, 7])})
    assert [acc.confusion_matrix(c).sum() for c in schema.CHARTS] == [3, 3, 3]
