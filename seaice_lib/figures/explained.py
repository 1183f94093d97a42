"""What a model looked at, from the outputs of ``notebooks/06_explain.ipynb`` (an explain folder):
the tile's explanation maps, ``ablation.csv`` and ``sanity.csv``, as ``explanation.json`` binds
them (``explain.explanation.load_explanation``).

Figures, each named after the run: which acquisitions mattered (shares per date of attention,
rollout, relevance and integrated gradients), the maps per acquisition over the tile's HH, the v3
modality shares, the ablations at inference and the weight-randomisation check.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..explain.explanation import PER_STEP, check_current, load_explanation, step_shares
from . import style

LABELS = {"HH": "HH (standardised)", "ig_map": "|integrated gradients|", "attention": "attention (last layer)",
          "rollout": "attention rollout", "relevance": "relevance (Chefer)", "gradcam": "Grad-CAM"}
SANITY_THRESHOLD = 0.5  # rank correlation under which an explanation counts as changed by random weights
# each table of an explain folder -> the columns the figures read
COLUMNS = {"ablation.csv": ("ablation", "chart", "class", "change"), "sanity.csv": ("randomised up to", "rank correlation")}
TRAINED_ON = "a scene the run trained on"  # the titles' mark of an explanation of one (explanation.json's trained_on)


def _date_labels(days_before: np.ndarray, step_mask: np.ndarray) -> list[str]:
    return ["target" if d == 0 else f"−{d:.1f} d" for d, real in zip(days_before, step_mask) if real]


def _title(info: dict) -> str:
    trained = f" ({TRAINED_ON})" if info.get("trained_on") else ""
    return f"{info['run']}: {info['scene']}{trained}, tile {info['tile']}\n{info['chart']} {info['class']}"


@style.paper()
def dates_figure(info: dict, maps: dict, out_dir: Path) -> list[Path]:
    """``fig_explain_dates_<run>``: each method's share of its total over the tile per acquisition
    (oldest first): which dates mattered."""
    plt = style.pyplot()
    labels = _date_labels(maps["days_before"], maps["step_mask"])
    shares = step_shares(maps, maps["step_mask"])
    fig, ax = plt.subplots(figsize=(5.0, 2.4))
    width = 0.8 / len(shares)
    x = np.arange(len(labels))
    for i, (method, share) in enumerate(shares.items()):
        ax.bar(x + (i - (len(shares) - 1) / 2) * width, share, width, label=LABELS[method])
    ax.set_xticks(x, labels)
    ax.set_ylabel("share of the tile's total (%)")
    ax.set_xlabel("acquisition (days before the target)")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never on them
    ax.set_title(_title(info), fontsize=6)
    return style.save(fig, out_dir, f"fig_explain_dates_{info['run']}")


@style.paper()
def maps_figure(info: dict, maps: dict, out_dir: Path) -> list[Path]:
    """``fig_explain_maps_<run>``: one row per acquisition (oldest first), HH (grey where no SAR)
    then each method's map, one colour scale per method (viridis); a U-Net's Grad-CAM on the
    target's row."""
    plt = style.pyplot()
    labels = _date_labels(maps["days_before"], maps["step_mask"])
    n = len(labels)
    methods = [m for m in PER_STEP if m in maps] + (["gradcam"] if "gradcam" in maps else [])
    hh = np.where(maps["sar_mask"][:n], maps["sar"][:n, 0], np.nan)
    columns = {"HH": hh} | {m: maps[m][None] if m == "gradcam" else maps[m][:n] for m in methods}
    fig, axes = plt.subplots(n, len(columns), squeeze=False,
                             figsize=(max(3.5, 1.3 * len(columns)), 1.3 * n + 0.9))
    for c, (name, values) in enumerate(columns.items()):
        lo, hi = (np.nanpercentile(values, [2, 98]) if name == "HH" else (0.0, float(np.nanmax(values)) or 1.0))
        for t in range(n):
            ax = axes[t, c]
            style.blank_axes(ax)
            row = t - (n - 1) if name == "gradcam" else t  # Grad-CAM explains the target only
            if row < 0:
                ax.set_axis_off()
                continue
            image = ax.imshow(values[row], cmap="gray" if name == "HH" else style.MAP_CMAP, vmin=lo, vmax=hi)
            if c == 0:
                ax.set_ylabel(labels[t])
        axes[0, c].set_title(LABELS.get(name, name), fontsize=6)
        fig.colorbar(image, ax=axes[:, c].tolist(), location="bottom", shrink=0.9)
    fig.suptitle(_title(info), fontsize=6)
    return style.save(fig, out_dir, f"fig_explain_maps_{info['run']}")


@style.paper()
def modality_share_figure(info: dict, maps: dict, out_dir: Path) -> list[Path]:
    """``fig_modality_share_<run>`` (v3 with tokens): the share of attention mass on each modality
    per pixel, local (cell tokens), global (context tokens) and total, with the tile means."""
    plt = style.pyplot()
    shares: dict[str, dict] = {}
    for key, values in maps.items():
        if key.startswith("share_"):
            kind, modality = key[len("share_"):].split("_", 1)
            shares.setdefault(kind, {})[modality] = values
    kinds = [k for k in ("local", "global", "total") if k in shares]
    modalities = list(shares[kinds[0]])
    fig, axes = plt.subplots(len(kinds), len(modalities) + 1, squeeze=False,
                             figsize=(1.5 * (len(modalities) + 1) + 1.2, 1.5 * len(kinds) + 0.5),
                             gridspec_kw={"width_ratios": [1] * len(modalities) + [1.4]})
    for r, kind in enumerate(kinds):
        for c, modality in enumerate(modalities):
            ax = axes[r, c]
            image = ax.imshow(shares[kind][modality], cmap=style.MAP_CMAP, vmin=0, vmax=1)
            style.blank_axes(ax)
            if r == 0:
                ax.set_title(modality)
        axes[r, 0].set_ylabel(kind)
        bars = axes[r, -1]
        means = [float(np.mean(shares[kind][m])) for m in modalities]
        bars.barh(range(len(modalities)), means, color=[style.OKABE_ITO[i] for i in range(len(modalities))])
        bars.set_yticks(range(len(modalities)), modalities)
        bars.set_xlim(0, 1)
        bars.invert_yaxis()
        if r == len(kinds) - 1:
            bars.set_xlabel("tile mean share")
    fig.colorbar(image, ax=axes[:, :-1].ravel().tolist(), shrink=0.8, label="share of attention")
    fig.suptitle(_title(info), fontsize=7)
    return style.save(fig, out_dir, f"fig_modality_share_{info['run']}")


@style.paper()
def ablation_outputs(run: str, table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``fig_ablation_<run>`` and ``table_ablation_<run>``: the change of the official scores
    (points) when an input is taken away at inference, per chart and combined."""
    plt = style.pyplot()
    top = table[table["class"] == "all"].pivot(index="ablation", columns="chart", values="change")
    top = top.loc[[a for a in table.ablation.unique() if a != "none"],
                  [c for c in ("combined", "SIC", "SOD", "FLOE") if c in top.columns]]
    fig, ax = plt.subplots(figsize=(3.5, 2.4))
    width = 0.8 / len(top.columns)
    y = np.arange(len(top))
    for i, chart in enumerate(top.columns):
        ax.barh(y + (i - (len(top.columns) - 1) / 2) * width, top[chart], width, label=chart)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(y, top.index)
    ax.invert_yaxis()
    ax.set_xlabel("change of the score (points)")
    ax.legend(frameon=False)
    ax.set_title(f"{run}: ablations at inference")
    written = style.save(fig, out_dir, f"fig_ablation_{run}")
    return written + style.table(top.reset_index(), out_dir, f"table_ablation_{run}",
                                 f"{run}: change of the official scores (points) with an input removed "
                                 "at inference, on validation scenes.")


@style.paper()
def sanity_figure(run: str, table: pd.DataFrame, out_dir: Path, trained_on: bool = False) -> list[Path]:
    """``fig_sanity_<run>``: rank correlation of the explanation with the trained model's as the
    weights are randomised from the head down (Adebayo et al. 2018); under the dashed line the
    explanation depends on the weights. Its title says so when the tile is of a scene the run
    trained on (``trained_on``)."""
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(3.5, 2.2))
    x = np.arange(len(table))
    ax.plot(x, table["rank correlation"], "o-", color=style.OKABE_ITO[0])
    ax.axhline(SANITY_THRESHOLD, color="0.4", ls="--", lw=0.8)
    ax.set_xticks(x, table["randomised up to"], rotation=30, ha="right")
    ax.set_ylim(-0.1, 1.05)
    ax.set_ylabel("rank correlation")
    ax.set_xlabel("weights randomised down to")
    ax.set_title(f"{run}: cascading randomisation" + (f"\n(a tile of {TRAINED_ON})" if trained_on else ""))
    return style.save(fig, out_dir, f"fig_sanity_{run}")


def _table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The CSV ``path`` with ``columns``; ValueError naming the file otherwise."""
    try:
        table = pd.read_csv(path)
    except ValueError as err:
        raise ValueError(f"{path}: not CSV ({err})") from None
    if missing := [c for c in columns if c not in table.columns]:
        raise ValueError(f"{path}: no column {missing}")
    return table


def explanation_figures(folder: Path, out_dir: Path, runs: Mapping[str, Path] | None = None
                        ) -> tuple[dict, list[Path]]:
    """(its ``explanation.json``, the files written): every figure and table an explain folder
    allows; every file read before any is drawn. An explanation that is not of its run's
    ``model.pt`` and scene files now is a ValueError naming it
    (:func:`~seaice_lib.explain.explanation.check_current`): the run's folder in ``runs`` (run name
    -> folder, the runs drawn beside it) where it is there, else the folder it records. One of a
    scene the run trained on (``trained_on``) is drawn with its titles saying so."""
    info, maps = load_explanation(folder)
    check_current(folder, info, (runs or {}).get(info["run"]))
    tables = {Path(name).stem: _table(folder / name, columns) for name, columns in COLUMNS.items()
              if (folder / name).is_file()}
    written = dates_figure(info, maps, out_dir) + maps_figure(info, maps, out_dir)
    if any(k.startswith("share_") for k in maps):
        written += modality_share_figure(info, maps, out_dir)
    if "ablation" in tables:
        written += ablation_outputs(info["run"], tables["ablation"], out_dir)
    if "sanity" in tables:
        written += sanity_figure(info["run"], tables["sanity"], out_dir, bool(info.get("trained_on")))
    return info, written
