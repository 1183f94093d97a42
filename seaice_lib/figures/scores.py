"""Scores as figures and tables: per-class F1, class support, confusion matrices (from each run's
``evaluation.json``) and the model comparison with its paired differences (an experiment's
aggregate, :func:`seaice_lib.experiments.report.aggregate`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from ..engine.evaluation import Evaluation
from . import style

HATCHES = ("", "//", "..", "xx", "\\\\", "--", "++", "oo")  # runs told apart where bars take chart colours
TRAIN_HATCH = "//"  # the real training set's bars in fig_class_support
HATCH_COLOUR = "0.5"  # grey hatching shows on the dark and the light chart colours alike


@style.paper()
def per_class_f1_figure(evaluations: Mapping[str, Evaluation], out_dir: Path,
                        sets: Mapping[str, str] | None = None) -> list[Path]:
    """Grouped bars of F1 per class of SOD and FLOE, one bar per run: the chart colours (schema.CLASSES),
    each run told apart by its hatching; classes absent from the scenes have no bar. ``sets``: each
    run's validation-set label where the runs were validated on several sets (as ``table_runs``
    labels them): the legend says ``run (A)`` and the title to compare bars within one set only."""
    plt = style.pyplot()
    charts = ("SOD", "FLOE")
    fig, axes = plt.subplots(1, len(charts), figsize=(7.2, 2.8))
    width = 0.8 / max(1, len(evaluations))
    for ax, chart in zip(axes, charts):
        classes = schema.CLASSES[chart]
        x = np.arange(classes.n_classes)
        for i, (run, ev) in enumerate(evaluations.items()):
            per = ev.per_class(chart)
            f1 = np.where(per["support"] > 0, 100 * per["f1"], np.nan)
            ax.bar(x + (i - (len(evaluations) - 1) / 2) * width, f1, width, color=classes.colours,
                   edgecolor=HATCH_COLOUR, linewidth=0.4, hatch=HATCHES[i % len(HATCHES)], label=run)
        ax.set_xticks(x, classes.names, rotation=35, ha="right")
        ax.set_ylabel("F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(chart)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor=HATCH_COLOUR, hatch=HATCHES[i % len(HATCHES)])
               for i in range(len(evaluations))]
    axes[-1].legend(handles, [f"{run} ({sets[run]})" if sets else run for run in evaluations], frameon=False)
    if sets:
        fig.suptitle(f"validation scene sets {', '.join(sorted(set(sets.values())))} (in brackets): "
                     "compare bars within one set only", fontsize=7)
    return style.save(fig, out_dir, "fig_per_class_f1")


@style.paper()
def class_support_figure(evaluations: Mapping[str, Evaluation], out_dir: Path,
                         sets: Mapping[str, str] | None = None) -> list[Path]:
    """The class imbalance of the scored scenes: share of labelled pixels per class and chart (log
    scale; absent classes have no bar) beside the real training set's shares
    (``schema.CLASSES[...].train_share``). ``sets`` as for :func:`per_class_f1_figure`: one bar per
    set (its first run's evaluation; each told apart by its hatching), labelled ``scored scenes A``."""
    plt = style.pyplot()
    scored: dict[str, Evaluation] = {}
    for run, evaluation in evaluations.items():
        scored.setdefault(f"scored scenes {sets[run]}" if sets else "scored scenes", evaluation)
    width = 0.8 / (len(scored) + 1)  # a slot per set and one for the training set
    hatches = [hatch for hatch in HATCHES if hatch != TRAIN_HATCH]
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.6))
    for ax, chart in zip(axes, schema.CHARTS):
        classes = schema.CLASSES[chart]
        x = np.arange(classes.n_classes)
        for i, (label, evaluation) in enumerate(scored.items()):
            support = evaluation.per_class(chart)["support"].astype(float)
            share = 100 * support / max(1.0, support.sum())
            ax.bar(x + (i - len(scored) / 2) * width, np.where(share > 0, share, np.nan), width,
                   color=classes.colours, edgecolor="black", linewidth=0.4, hatch=hatches[i % len(hatches)],
                   label=label)
        if classes.train_share:
            ax.bar(x + len(scored) / 2 * width, classes.train_share, width, color="0.85", edgecolor="black",
                   linewidth=0.4, hatch=TRAIN_HATCH, label="real training set")
        ax.set_yscale("log")
        ax.set_xticks(x, classes.names, rotation=45, ha="right", fontsize=6)
        ax.set_title(chart)
    axes[0].set_ylabel("% of labelled pixels")
    axes[0].legend(frameon=False)
    return style.save(fig, out_dir, "fig_class_support")


@style.paper()
def confusion_figure(run: str, evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Row-normalised SOD and FLOE confusion matrices of one run (% of each true class)."""
    plt = style.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4))
    for ax, chart in zip(axes, ("SOD", "FLOE")):
        cm = evaluation.confusion[chart].astype(float)
        total = cm.sum(1, keepdims=True)
        rows = np.divide(cm, total, out=np.zeros_like(cm), where=total > 0)
        image = ax.imshow(100 * rows, cmap=style.MATRIX_CMAP, vmin=0, vmax=100)
        names = schema.CLASSES[chart].names
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{run}: {chart} (% of true class)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="% of true class")
    return style.save(fig, out_dir, f"fig_confusion_{run}")


@style.paper()
def comparison_figure(doc: Mapping, out_dir: Path, name: str = "fig_model_comparison",
                      metric: str = "combined") -> list[Path]:
    """The model comparison (an experiment's aggregate as ``doc``): left each run's ``metric`` per fold x seed
    (dots) and mean (bar), networks in colour and floors in grey; right the paired differences with
    their mean and sd."""
    plt = style.pyplot()
    runs = doc["summary"]["runs"]
    differences = doc["summary"]["differences"]
    values: dict[str, list[float]] = {}
    for row in doc["results"]:
        values.setdefault(row["run"], []).append(row["scores"][metric])
    order = list(runs)
    colour = style.colours(order)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 0.25 * max(len(order), len(differences)) + 1.4),
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    for y, run in enumerate(order):
        left.barh(y, runs[run][metric]["mean"], color=colour[run], alpha=0.4, height=0.7)
        left.plot(values[run], [y] * len(values[run]), "o", color=colour[run], ms=3)
    left.set_yticks(range(len(order)), order)
    left.invert_yaxis()
    left.set_xlabel(f"{metric} score (%), held-out scenes at 80 m")
    left.set_title("Runs\nfolds x seeds (dots), mean (bar)")
    for y, d in enumerate(differences):
        stats = d[metric]
        right.plot(stats["values"], [y] * len(stats["values"]), "o", color=style.OKABE_ITO[1], ms=3)
        right.errorbar(stats["mean"], y, xerr=stats["std"], fmt="s", color="black", ms=3.5, capsize=2)
    right.axvline(0, color="0.4", lw=0.8)
    right.set_yticks(range(len(differences)),
                     [f"{d['question']}\n({d['a']} − {d['b']})" for d in differences], fontsize=6)
    right.invert_yaxis()
    right.set_xlabel(f"difference in {metric} score (points)")
    right.set_title("Paired differences\nfolds x seeds (dots), mean ± sd")  # two lines: never clipped
    return style.save(fig, out_dir, name)


def comparison_tables(doc: Mapping, out_dir: Path, suffix: str = "") -> list[Path]:
    """``table_model_comparison`` (mean scores per run) and ``table_paired_differences`` (names
    ending ``_suffix`` when given)."""
    end = f"_{suffix}" if suffix else ""
    rows = [{"run": run, **{m: s[m]["mean"] for m in ("combined", "SIC", "SOD", "FLOE")},
             "sd": s["combined"]["std"], "n": s["combined"]["n"]} for run, s in doc["summary"]["runs"].items()]
    diffs = [{"question": d["question"], "difference": f"{d['a']} - {d['b']}",
              "mean": d["combined"]["mean"], "sd": d["combined"]["std"],
              "a > b": f"{d['combined']['positive']}/{d['combined']['n']}"}
             for d in doc["summary"]["differences"]]
    # with their columns where no row can be formed yet (no job finished): a table that says so, never an empty file
    return (style.table(pd.DataFrame(rows, columns=["run", "combined", "SIC", "SOD", "FLOE", "sd", "n"]), out_dir,
                        f"table_model_comparison{end}", "Mean over region folds x seeds; sd of the combined score.")
            + style.table(pd.DataFrame(diffs, columns=["question", "difference", "mean", "sd", "a > b"]), out_dir,
                          f"table_paired_differences{end}",
                          "Paired differences of the combined score over region folds x seeds."))
