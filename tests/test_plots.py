"""Plots for training and evaluation: what they show, not how they look."""

import holoviews.plotting.bokeh  # noqa: F401  (options need a loaded backend)
import numpy as np
import pandas as pd

from seaice_lib import plots, schema


def _title(element) -> str:
    return element.opts.get().kwargs["title"]


def test_confusion_heatmap_is_row_normalised_with_counts():
    cm = np.zeros((6, 6), np.int64)
    cm[0, 0], cm[0, 1], cm[4, 4] = 30, 10, 5  # true open water: 75 % right; class 5 never seen
    heat = plots.confusion_heatmap(cm, "SOD")
    table = heat.dframe().set_index(["true", "predicted"])
    names = schema.CLASSES["SOD"].names
    assert table.loc[(names[0], names[0]), "% of true class"] == 75.0
    assert table.loc[(names[0], names[1]), "% of true class"] == 25.0
    assert table.loc[(names[0], names[1]), "pixels"] == 10
    assert table.loc[(names[4], names[4]), "% of true class"] == 100.0
    assert table.loc[(names[5], names[5]), "% of true class"] == 0.0  # no support: zeros, no NaN
    assert len(table) == 36


def test_confusion_matrices_keep_each_chart_on_its_own_axes():
    layout = plots.confusion_matrices({c: np.eye(n, dtype=np.int64) for c, n in schema.N_CLASSES.items()})
    assert layout.opts.get().kwargs["shared_axes"] is False  # shared, every axis lists all 24 classes
    assert len(layout) == len(schema.CHARTS)  # the loop below checks every chart
    for heat, chart in zip(layout, schema.CHARTS):
        assert set(heat.dimension_values("true")) == set(schema.CLASSES[chart].names)


def test_training_curves_have_loss_and_score_panels():
    metrics = pd.DataFrame({"epoch": [1, 2], "step": [10, 20], "train_loss": [2.0, 1.5],
                            "loss_SOD": [0.7, 0.5], "val_combined": [10.0, 20.0]})
    layout = plots.training_curves(metrics, "unet")
    assert len(layout) == 2
    without_validation = plots.training_curves(metrics.drop(columns="val_combined"))
    assert len(without_validation) == 1


def test_prediction_comparison_puts_truth_above_prediction():
    true = {c: np.full((8, 10), 1, np.uint8) for c in schema.CHARTS}
    pred = {c: np.full((8, 10), 2, np.uint8) for c in schema.CHARTS}
    layout = plots.prediction_comparison(true, pred, step=2)
    panels = list(layout)
    assert len(panels) == 6
    assert [_title(p) for p in panels] == [f"{c} chart" for c in schema.CHARTS] + \
        [f"{c} predicted" for c in schema.CHARTS]
    assert np.nanmax(panels[3].dimension_values(2)) == 2 and np.nanmax(panels[0].dimension_values(2)) == 1
    assert panels[0].dimension_values(2).size == 4 * 5  # down-sampled by 2
