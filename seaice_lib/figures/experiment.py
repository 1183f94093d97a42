"""An experiment's figures (:func:`seaice_lib.experiments.report.aggregate` as ``doc``): the
learning curves and the comparison with its paired differences, and its tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ..atomic import write_text
from ..experiments import report
from . import scores, style

DASHES = ((0, (4, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 4)), (0, (8, 3)), (0, (3, 1, 1, 1, 1, 1)))


@style.paper()
def learning_curve_figure(doc: Mapping, out_dir: Path, name: str = "fig_learning_curves",
                          metric: str = "combined") -> list[Path]:
    """Held-out ``metric`` against training steps (top row) and training CPU seconds (bottom row),
    one column per fold, log axes; each network's seeds as thin lines of its colour with its budget
    (the inner-validation rule's step) as a dot, the floor of each network's inputs as a grey
    dashed line (one dash pattern per floor) at its mean over seeds."""
    plt = style.pyplot()
    from matplotlib import ticker

    networks = [r for r in doc["results"] if r["kind"] == "network"]
    floors = [r for r in doc["results"] if r["kind"] == "floor"]
    folds = sorted({r["fold"] for r in doc["results"]})
    if not networks:
        raise ValueError(f"experiment {doc['experiment']}: no finished training job to draw")
    runs = list(dict.fromkeys(r["run"] for r in networks))
    # the floors of the runs drawn (each run's own inputs), one dash pattern each
    used_floors = sorted({f"floor_{r['floor']}" for r in networks if r.get("floor")} & {r["run"] for r in floors})
    colour = style.colours(runs + sorted({r["run"] for r in floors}))
    fig, axes = plt.subplots(2, len(folds), figsize=(3.6 * len(folds) + 1.6, 5.0), squeeze=False, sharey=True)
    for col, fold in enumerate(folds):
        for row, (x, label) in enumerate((("step", "training steps"), ("train_cpu_s", "training CPU seconds"))):
            ax = axes[row][col]
            for r in (r for r in networks if r["fold"] == fold):
                xs = [p[x] for p in r["curve"]]
                ys = [p[f"val_{metric}"] for p in r["curve"]]
                ax.plot(xs, ys, "-", color=colour[r["run"]], lw=1, alpha=0.8,
                        label=r["run"] if r["seed"] == min(q["seed"] for q in networks if q["run"] == r["run"]
                                                           and q["fold"] == fold) else None)
                at = next(p for p in r["curve"] if p["step"] == r["steps"])
                ax.plot(at[x], at[f"val_{metric}"], "o", color=colour[r["run"]], ms=3.5)
            for k, floor in enumerate(used_floors):
                values = [r["scores"][metric] for r in floors if r["run"] == floor and r["fold"] == fold]
                if values:
                    mean = sum(values) / len(values)
                    ax.axhline(mean, color=style.FLOOR_COLOUR, lw=0.9, ls=DASHES[k % len(DASHES)],
                               label=f"floor: {floor.removeprefix('floor_')}" if col == 0 and row == 0 else None)
            ax.set_xscale("log")
            if x == "step":  # the curve's own steps as ticks
                ax.set_xticks(sorted({p["step"] for r in networks for p in r["curve"]}))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.tick_params(axis="x", labelrotation=45 if x == "step" else 0)
            ax.set_xlabel(label)
            if col == 0:
                ax.set_ylabel(f"{metric} (%), held-out scenes")
            if row == 0:
                held: list[str] = next((f["held_out"] for f in doc["folds"] if f["fold"] == fold), [])
                ax.set_title(f"fold {fold}: {' + '.join(held)} held out")
    lows = [p[f"val_{metric}"] for r in networks for p in r["curve"] if math.isfinite(p[f"val_{metric}"])]
    floor_lows = [r["scores"][metric] for r in floors]
    axes[0][0].set_ylim(max(min(lows + floor_lows) - 5, -50), 100)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=6, frameon=False)
    return style.save(fig, out_dir, name)


def experiment_figures(doc: Mapping, out_dir: Path, name: str) -> list[Path]:
    """Every figure and table of one experiment, named ``<kind>_<name>``; the report as markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = learning_curve_figure(doc, out_dir, f"fig_learning_curves_{name}")
    if doc["summary"]["differences"]:
        written += scores.comparison_figure(doc, out_dir, f"fig_comparison_{name}")
    written += scores.comparison_tables(doc, out_dir, name)
    written.append(write_text(style.output_path(out_dir, f"report_{name}", "md"), report.markdown(doc)))
    return written
