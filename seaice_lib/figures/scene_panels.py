"""The scene panel: HH and HV of one scene, its ice charts and each run's charts of it at 80 m.

Each run charts the whole scene the way ``seaice predict`` does
(:func:`seaice_lib.engine.whole_scenes.predict_scene`); the panel keeps the SAR grid's orientation
(lines down, samples across) and aspect ratio, shrunk for display by a whole factor.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from .. import schema
from ..data.scene import Scene
from ..data.tiles import SceneCharts
from ..engine.run import Run
from ..engine.whole_scenes import predict_scene
from ..plots import shrink
from . import style

DISPLAY_PIXELS = 600  # the longer side of each map after shrinking
TRAINED_ON = "trained on it"  # the title mark of a run's panel of a scene it trained on


def predicted_charts(runs: Mapping[str, Run], scene: Path, scenes_dir: Path,
                     store: Path | None = None) -> dict[str, SceneCharts]:
    """run -> the charts of ``scene`` at 80 m made with its model (``.charts``: chart -> (H, W)
    uint8 classes; with what could not be charted: masked inputs, non-finite outputs)."""
    return {name: predict_scene(run.load_model(), scene, scenes_dir, run.patch_config(store))
            for name, run in runs.items()}


def uncharted(predicted: SceneCharts) -> str:
    """What of a scene's charts is no data for a reason other than the swath (the masked inputs,
    the model's non-finite outputs, earlier acquisitions that could not be read), in a few words; ""
    where nothing is."""
    said = []
    if predicted.masked_inputs:
        said.append(f"{predicted.n_masked_pixels} pixels of inputs masked as not finite or out of range ("
                    + "; ".join(f"{file}: {values}" for file, values in predicted.masked_values().items()) + ")")
    if predicted.non_finite:
        said.append("non-finite model outputs (" + ", ".join(f"{c} {n}" for c, n in predicted.non_finite.items()) + ")")
    if predicted.left_out_history:
        said.append(f"{len(predicted.left_out_history)} earlier acquisitions that could not be read left out")
    return "; ".join(said)


def _chart_map(ax, labels: np.ndarray, chart: str, step: int) -> None:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    classes = schema.CLASSES[chart]
    shown = np.ma.masked_equal(shrink(labels, step, categorical=True), schema.CHART_FILL)
    ax.imshow(shown, cmap=ListedColormap(classes.colours),
              norm=BoundaryNorm(np.arange(-0.5, classes.n_classes), classes.n_classes))
    style.blank_axes(ax)


@style.paper()
def scene_panel(scene: Path, predictions: Mapping[str, Mapping[str, np.ndarray]], out_dir: Path,
                trained: Collection[str] = ()) -> list[Path]:
    """``fig_scene_<scene id>``: :func:`panel_figure` of ``scene`` and the runs' ``predictions``,
    the runs that trained on the scene (``trained``) marked in their panels' titles."""
    with Scene(scene) as s:
        scene_id, region = s.scene_id, s.region
        sar = {"HH (dB)": s.read("nersc_sar_primary", units="physical"),
               "HV (dB)": s.read("nersc_sar_secondary", units="physical")}
        truth = s.charts()
    fig = panel_figure(sar, truth, {f"{run}\n({TRAINED_ON})" if run in trained else run: charts
                                    for run, charts in predictions.items()}, f"{scene_id} ({region})")
    return style.save(fig, out_dir, f"fig_scene_{scene_id}")


def panel_figure(sar: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray],
                 predictions: Mapping[str, Mapping[str, np.ndarray]], title: str):
    """Top row the SAR images (2-98 % stretch); then one row per chart with the ice chart and each
    run's prediction in the chart colours (schema.CLASSES), legend at the right; grey where there is
    no label or no SAR. Every map as stored (lines down) at its aspect ratio, shrunk by a whole factor."""
    from matplotlib.patches import Patch

    plt = style.pyplot()
    h, w = truth["SOD"].shape
    step = max(1, math.ceil(max(h, w) / DISPLAY_PIXELS))
    columns = ["ice chart", *predictions]
    n_cols = max(len(sar), len(columns))
    size = 7.2 / (n_cols + 0.6)
    fig, axes = plt.subplots(1 + len(schema.CHARTS), n_cols, squeeze=False,
                             figsize=(7.2, size * (h / w) * (1 + len(schema.CHARTS)) + 0.5))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, values) in zip(axes[0], sar.items()):
        ax.set_axis_on()
        lo, hi = np.nanpercentile(values, [2, 98])
        ax.imshow(shrink(values, step), cmap="gray", vmin=lo, vmax=hi)
        style.blank_axes(ax)
        ax.set_title(name)
    for row, chart in enumerate(schema.CHARTS, start=1):
        maps = [truth[chart], *(p[chart] for p in predictions.values())]
        for col, (name, labels) in enumerate(zip(columns, maps)):
            ax = axes[row, col]
            ax.set_axis_on()
            _chart_map(ax, labels, chart, step)
            if row == 1:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(chart)
        classes = schema.CLASSES[chart]
        axes[row, len(columns) - 1].legend(
            handles=[Patch(facecolor=c, edgecolor="0.6", linewidth=0.3, label=n)  # 100 % SIC is white
                     for c, n in zip(classes.colours, classes.names)],
            loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=5, frameon=False)
    fig.suptitle(f"{title}, shown at {80 * step} m")
    return fig
