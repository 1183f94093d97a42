import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, r2_score

from seaice_lib import schema
from seaice_lib.metrics import (AutoIceMetric, autoice_scores, confusion_matrix,
                                f1_weighted_from_confusion, r2_from_confusion)


def _random_case(rng, n_pixels):
    """True/pred charts with imbalance, missing classes, no-label pixels, and a skill level."""
    true, pred = {}, {}
    skill = rng.uniform(0, 1)
    for chart, n in schema.N_CLASSES.items():
        present = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
        p = rng.dirichlet(np.full(len(present), rng.uniform(0.2, 3)))
        t = present[rng.choice(len(present), n_pixels, p=p)]
        guess = np.where(rng.random(n_pixels) < skill, t,
                         rng.integers(0, rng.integers(1, n + 1), n_pixels))
        t = np.where(rng.random(n_pixels) < rng.uniform(0, 0.5), 255, t)
        true[chart], pred[chart] = t.astype(np.uint8), guess.astype(np.uint8)
    return true, pred


def _sklearn(true, pred):
    out = {}
    for chart in schema.CHARTS:
        keep = true[chart] != 255
        t, p = true[chart][keep], pred[chart][keep]
        if chart == "SIC":
            out[chart] = r2_score(t, p)
        else:
            out[chart] = f1_score(t, p, average="weighted", zero_division=0)
    return out


def test_equal_to_sklearn_on_many_random_cases():
    rng = np.random.default_rng(0)
    for case in range(200):
        true, pred = _random_case(rng, int(rng.integers(5, 3000)))
        if any((true[c] != 255).sum() < 2 for c in schema.CHARTS):
            continue
        ref = _sklearn(true, pred)
        ours = autoice_scores(true, pred)
        for chart in schema.CHARTS:
            cm = confusion_matrix(true[chart], pred[chart], schema.N_CLASSES[chart])
            exact = r2_from_confusion(cm) if chart == "SIC" else f1_weighted_from_confusion(cm)
            assert exact == pytest.approx(ref[chart], abs=1e-9), (case, chart)
            assert ours[chart] == round(100 * ref[chart], 3), (case, chart)


def test_perfect_constant_and_hand_worked_cases():
    perfect = {c: np.arange(n, dtype=np.uint8).repeat(3) for c, n in schema.N_CLASSES.items()}
    assert autoice_scores(perfect, perfect) == {"SIC": 100.0, "SOD": 100.0, "FLOE": 100.0,
                                                "combined": 100.0}
    # SIC truth [0, 5, 10, 10], prediction [0, 5, 10, 0]: ss_res = 100,
    # mean 6.25, ss_tot = 39.0625 + 1.5625 + 14.0625 * 2 = 68.75 -> R² = 1 - 100 / 68.75 = -0.4545...
    # SOD truth [0, 0, 1, 255], pred [0, 1, 1, 3]: class 0 F1 = 2/3 (support 2), class 1 F1 = 2/3 (1)
    # -> weighted 2/3. FLOE perfect.
    true = {"SIC": np.array([0, 5, 10, 10]), "SOD": np.array([0, 0, 1, 255]),
            "FLOE": np.array([2, 3, 255, 255])}
    pred = {"SIC": np.array([0, 5, 10, 0]), "SOD": np.array([0, 1, 1, 3]),
            "FLOE": np.array([2, 3, 0, 0])}
    scores = autoice_scores(true, pred)
    assert scores["SIC"] == round(100 * (1 - 100 / 68.75), 3) == -45.455
    assert scores["SOD"] == 66.667 and scores["FLOE"] == 100.0
    assert scores["combined"] == round((2 * -45.455 + 2 * 66.667 + 100.0) / 5, 3)
    # constant truth: sklearn gives R² 1 for a perfect prediction and 0 otherwise
    assert r2_from_confusion(confusion_matrix(np.full(4, 3), np.full(4, 3), 11)) == 1.0
    assert r2_from_confusion(confusion_matrix(np.full(4, 3), np.array([3, 3, 3, 4]), 11)) == 0.0


def test_streaming_equals_pooled_and_merges():
    rng = np.random.default_rng(1)
    scenes = [_random_case(rng, 500) for _ in range(7)]
    pooled = {c: np.concatenate([t[c] for t, _ in scenes]) for c in schema.CHARTS}
    pooled_pred = {c: np.concatenate([p[c] for _, p in scenes]) for c in schema.CHARTS}
    metric, left, right = AutoIceMetric(), AutoIceMetric(), AutoIceMetric()
    for i, (t, p) in enumerate(scenes):
        metric.update(t, p)
        (left if i % 2 else right).update(t, p)
    left += right
    expected = autoice_scores(pooled, pooled_pred)
    assert metric.scores() == expected == left.scores()
    lists = autoice_scores({c: [t[c] for t, _ in scenes] for c in schema.CHARTS},
                           {c: [p[c] for _, p in scenes] for c in schema.CHARTS})
    assert lists == expected
    per_class = metric.per_class("SOD")
    assert per_class["support"].sum() == (pooled["SOD"] != 255).sum()
    assert metric.confusion("FLOE").shape == (7, 7)
    metric.reset()
    assert metric.confusion("SIC").sum() == 0


def test_torch_input_equals_numpy_input():
    rng = np.random.default_rng(2)
    true, pred = _random_case(rng, 2000)
    tt = {c: torch.from_numpy(v.astype(np.int64)).reshape(40, 50) for c, v in true.items()}
    tp = {c: torch.from_numpy(v.astype(np.int64)).reshape(40, 50) for c, v in pred.items()}
    assert AutoIceMetric().update(tt, tp).scores() == autoice_scores(true, pred)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="differ in shape"):
        autoice_scores({"SIC": np.zeros(3)}, {"SIC": np.zeros(4)})
    with pytest.raises(ValueError, match="SOD: predicted classes must be 0..5"):
        autoice_scores({"SOD": np.zeros(3, int)}, {"SOD": np.array([0, 1, 6])})
    with pytest.raises(ValueError, match="FLOE: true classes"):
        autoice_scores({"FLOE": np.array([0, 9])}, {"FLOE": np.array([0, 1])})
    with pytest.raises(ValueError, match="no labelled pixels"):
        autoice_scores({"SOD": np.full(3, 255)}, {"SOD": np.zeros(3, int)})
    with pytest.raises(KeyError, match="FLOE"):
        AutoIceMetric().update({"SIC": np.zeros(2), "SOD": np.zeros(2)},
                               {"SIC": np.zeros(2), "SOD": np.zeros(2)})
    with pytest.raises(ValueError, match="unknown charts"):
        AutoIceMetric(["SIC", "ICE"])


def test_predictions_under_no_label_are_ignored():
    true = {"SOD": np.array([0, 255, 255])}
    assert autoice_scores(true, {"SOD": np.array([0, 1, 5])}) == {"SOD": 100.0}
    assert "combined" not in autoice_scores(true, {"SOD": np.array([0, 1, 5])})
