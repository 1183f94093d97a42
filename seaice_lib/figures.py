"""``seaice figures RUNS_DIR OUT_DIR``: paper figures and tables from run folders and benchmark JSON.

Every figure as PDF (vector) and PNG (300 dpi), every table as LaTeX (booktabs) and CSV, under
fixed names; nothing is recomputed from data, only read from ``evaluation.json`` of each run folder
and the benchmarks' ``compare.json``. Work in progress (issue 13): scene panels, attention figures
and throughput are still to come (docs/explain.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots, schema
from .atomic import write_text
from .engine.evaluation import Evaluation, compare_runs

FORMATS = ("pdf", "png")


def _pyplot():
    """matplotlib.pyplot on the Agg backend (headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """``fig`` as ``name.pdf`` and ``name.png`` (300 dpi)."""
    return [plots.save_figure(fig, out_dir / f"{name}.{fmt}", close=fmt == FORMATS[-1]) for fmt in FORMATS]


def _table(table: pd.DataFrame, out_dir: Path, name: str, caption: str) -> list[Path]:
    tex = table.to_latex(index=False, float_format="%.1f", caption=caption, label=f"tab:{name}")
    return [write_text(out_dir / f"{name}.tex", tex),
            write_text(out_dir / f"{name}.csv", table.to_csv(index=False))]


def per_class_f1_figure(evaluations: dict[str, Evaluation], out_dir: Path) -> list[Path]:
    """Grouped bars of F1 per class of SOD and FLOE, one bar per run, in the official chart colours
    (bars) with each run told apart by hatching."""
    plt = _pyplot()
    charts = ("SOD", "FLOE")
    fig, axes = plt.subplots(1, len(charts), figsize=(5 * len(charts), 3.2))
    hatches = ["", "//", "..", "xx", "\\\\", "--", "++", "oo"]
    width = 0.8 / max(1, len(evaluations))
    for ax, chart in zip(axes, charts):
        classes = schema.CLASSES[chart]
        x = np.arange(classes.n_classes)
        for i, (run, ev) in enumerate(evaluations.items()):
            per = ev.per_class(chart)
            f1 = np.where(per["support"] > 0, 100 * per["f1"], np.nan)
            ax.bar(x + (i - (len(evaluations) - 1) / 2) * width, f1, width, color=classes.colours,
                   edgecolor="black", linewidth=0.4, hatch=hatches[i % len(hatches)], label=run)
        ax.set_xticks(x, classes.names, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(chart)
    axes[-1].legend(fontsize=6, frameon=False)
    return _save(fig, out_dir, "fig_per_class_f1")


def class_support_figure(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """The class imbalance of the scored scenes: share of labelled pixels per class and chart (log
    scale; absent classes have no bar), beside the real training shares
    (``schema.CLASSES[...].train_share``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, chart in zip(axes, schema.CHARTS):
        classes = schema.CLASSES[chart]
        support = evaluation.per_class(chart)["support"].astype(float)
        share = 100 * support / max(1.0, support.sum())
        x = np.arange(classes.n_classes)
        ax.bar(x - 0.2, np.where(share > 0, share, np.nan), 0.4, color=classes.colours, edgecolor="black",
               linewidth=0.4, label="scored scenes")
        if classes.train_share:
            ax.bar(x + 0.2, classes.train_share, 0.4, color="0.8", edgecolor="black", linewidth=0.4,
                   label="real training set")
        ax.set_yscale("log")
        ax.set_xticks(x, classes.names, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("% of labelled pixels")
        ax.set_title(chart)
    axes[0].legend(fontsize=6, frameon=False)
    return _save(fig, out_dir, "fig_class_support")


def confusion_figure(run: str, evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Row-normalised SOD and FLOE confusion matrices of one run (% of each true class)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, chart in zip(axes, ("SOD", "FLOE")):
        cm = evaluation.confusion[chart].astype(float)
        rows = np.divide(cm, cm.sum(1, keepdims=True), out=np.zeros_like(cm), where=cm.sum(1, keepdims=True) > 0)
        ax.imshow(100 * rows, cmap="cividis", vmin=0, vmax=100)  # colour-blind safe
        names = schema.CLASSES[chart].names
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{chart} (% of true class)", fontsize=9)
    return _save(fig, out_dir, f"fig_confusion_{run}")


def make_figures(runs_dir: str | Path | None, out_dir: str | Path, bench_dir: str | Path | None = None
                 ) -> list[Path]:
    """Every figure and table the inputs allow; the written paths. ``runs_dir``: folders with an
    ``evaluation.json`` each; ``bench_dir``: a folder with ``compare.json``."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    runs = sorted(p.parent for p in Path(runs_dir).glob("*/evaluation.json")) if runs_dir else []
    compare = Path(bench_dir) / "compare.json" if bench_dir else None
    if not runs and not (compare and compare.exists()):
        raise ValueError(f"nothing to draw: no run folder with evaluation.json in {runs_dir} and no "
                         f"compare.json in {bench_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if runs:
        evaluations = {p.name: Evaluation.from_json(p / "evaluation.json") for p in runs}
        written += _table(compare_runs(runs_dir), out_dir, "table_runs",
                          "Official scores (%) on the whole validation scenes at 80 m.")
        written += per_class_f1_figure(evaluations, out_dir)
        written += class_support_figure(next(iter(evaluations.values())), out_dir)
        for run, ev in evaluations.items():
            written += confusion_figure(run, ev, out_dir)
    if compare and compare.exists():
        doc = json.loads(compare.read_text())
        for fmt in FORMATS:
            written.append(plots.comparison_figure(doc, out_dir / f"fig_model_comparison.{fmt}"))
        rows = [{"run": run, **{m: s[m]["mean"] for m in ("combined", "SIC", "SOD", "FLOE")},
                 "sd": s["combined"]["std"]} for run, s in doc["summary"]["runs"].items()]
        written += _table(pd.DataFrame(rows), out_dir, "table_model_comparison",
                          "Mean over region folds x seeds; sd of the combined score.")
        diffs = [{"question": d["question"], "difference": f"{d['a']} - {d['b']}",
                  "mean": d["combined"]["mean"], "sd": d["combined"]["std"],
                  "a > b": f"{d['combined']['positive']}/{d['combined']['n']}"}
                 for d in doc["summary"]["differences"]]
        written += _table(pd.DataFrame(diffs), out_dir, "table_paired_differences",
                          "Paired differences of the combined score over region folds x seeds.")
    return written


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path, help="folder of training runs (each with evaluation.json)")
    parser.add_argument("out_dir", type=Path, help="where the figures and tables go")
    parser.add_argument("--bench", type=Path, default=Path("runs/bench"),
                        help="folder of benchmark JSON (compare.json); default runs/bench")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        parser.error(f"runs_dir {args.runs_dir}: no such folder")
    try:
        written = make_figures(args.runs_dir, args.out_dir, args.bench)
    except ValueError as err:
        parser.error(str(err))
    print(f"{len(written)} files under {args.out_dir}")
    return 0
