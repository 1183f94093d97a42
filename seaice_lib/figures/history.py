"""What a network is given as history: a target scene's co-registered earlier acquisitions beside
the target (HH, at the store's spacing, as patches are cut), each with its days before the target,
its coverage of the target, the co-registration self-check (Cohen's kappa of the distance-to-land
zones, :func:`seaice_lib.data.sequences.zone_agreement`) and the correlation of its HH with the
target's where both see the scene (ice drifts between acquisitions; land and fast ice do not).
Why: docs/experiments.md, "Probing the history"."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.patches import PatchConfig, config_from_store, store_grid
from ..data.scene import find_scenes
from ..data.sequences import zone_agreement
from ..data.tiles import ScenePaths, left_out_lines, scene_sequence
from ..experiments import Experiment
from . import style

log = logging.getLogger(__name__)


def history_checks(target: Path, scenes: ScenePaths, cfg: PatchConfig) -> list[dict]:
    """Per step of ``target``'s sequence, oldest first: ``scene``, ``days_before``, ``coverage``
    (share of the target's pixels it covers), ``zone_kappa`` (None for the target, or without
    distance maps) and ``hh_correlation`` with the target where both have data. An earlier
    acquisition of its window that could not be read has no row: one warning names it."""
    _, rows, left_out = _history(target, scenes, cfg)
    _warn_left_out(target, left_out)
    return rows


def _warn_left_out(target: Path, left_out: list[str]) -> None:
    """One warning naming the earlier acquisitions of ``target`` left out unread (``"FILE: problem"``)."""
    if left_out:
        log.warning("%s: history checked without earlier acquisitions that could not be read: %s",
                    Path(target).name, "; ".join(left_out))


def _history(target: Path, scenes: ScenePaths, cfg: PatchConfig) -> tuple[np.ndarray, list[dict], list[str]]:
    """(HH of each step, (T, h, w), NaN where the step does not cover; :func:`history_checks`; the
    earlier acquisitions left out unread, :func:`~seaice_lib.data.tiles.left_out_lines`)."""
    seq = scene_sequence(target, scenes, cfg)
    grid = store_grid(seq, cfg)
    h, w = grid.shape
    covered = grid.sar_mask[:, :h, :w]
    hh = np.where(covered, grid.sar[:, 0, :h, :w], np.nan)
    rows = []
    for k, (step, days) in enumerate(zip(seq.steps, seq.days_before)):
        both = covered[k] & covered[-1]
        r = float(np.corrcoef(hh[k][both], hh[-1][both])[0, 1]) if both.sum() > 2 else None
        rows.append({"scene": step.scene_id, "days_before": round(float(days), 2),
                     "coverage": round(float(covered[k].mean()), 3),
                     "zone_kappa": None if k == len(seq.steps) - 1 or (kappa := zone_agreement(seq.target, step)) is None
                     else round(kappa, 3),
                     "hh_correlation": None if r is None or not np.isfinite(r) else round(r, 3)})
    return hh, rows, left_out_lines(seq.left_out)


def history_figure(target: Path, scenes: ScenePaths, cfg: PatchConfig, out_dir: Path,
                   name: str = "fig_history") -> list[Path]:
    """HH of each step of ``target``'s sequence as co-registered for its patches (grey where the
    step does not cover), oldest left, the target right; titled with :func:`history_checks`. Earlier
    acquisitions that could not be read are named in one warning and under the panels."""
    hh, checks, left_out = _history(target, scenes, cfg)
    _warn_left_out(target, left_out)
    return _draw_history(hh, checks, left_out, out_dir, name)


@style.paper()
def _draw_history(hh: np.ndarray, checks: list[dict], left_out: list[str], out_dir: Path, name: str) -> list[Path]:
    """:func:`history_figure` of what :func:`_history` gave."""
    plt = style.pyplot()
    lo, hi = np.nanpercentile(hh, [2, 98]) if np.isfinite(hh).any() else (0.0, 1.0)
    n = len(checks)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.8, 2.9), squeeze=False)
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad(style.NO_LABEL_COLOUR)
    for k, (ax, check) in enumerate(zip(axes[0], checks)):
        image = ax.imshow(hh[k], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_aspect("equal")  # the data's aspect: square pixels
        ax.set_xticks([])
        ax.set_yticks([])
        if k == n - 1:
            ax.set_title(f"target {check['scene']}", fontsize=7)
        else:
            kappa = "–" if check["zone_kappa"] is None else f"{check['zone_kappa']:.2f}"
            corr = "–" if check["hh_correlation"] is None else f"{check['hh_correlation']:.2f}"
            ax.set_title(f"{check['days_before']:.1f} d before, covers {100 * check['coverage']:.0f} %\n"
                         f"land zones κ {kappa}, HH r {corr}", fontsize=7)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="HH (standard-scaled)")
    if left_out:  # the figure says what it lacks
        fig.text(0.01, 0.01, f"left out, could not be read: {'; '.join(left_out)}", fontsize=6)
    return style.save(fig, out_dir, name)


def experiment_history(exp: Experiment, out_dir: Path) -> list[Path]:
    """For an experiment's scenes: the table of :func:`history_checks` for every earlier step of
    every target (``table_history_NAME``), and :func:`history_figure` of the held-out scene of the
    first fold with the longest history (``fig_history_NAME``). Every scene file is a target too: one
    that cannot be read fails the drawing, naming it (no table leaves it out unsaid)."""
    cfg = config_from_store(exp.store)
    rows: list[dict] = []
    longest: tuple[int, tuple[np.ndarray, list[dict], list[str]] | None] = (0, None)  # steps, _history's
    held_out = set(exp.folds()[0].val)
    for path in find_scenes(exp.scenes):
        hh, checks, left_out = _history(path, exp.scenes, cfg)
        rows += [{"target": path.name[:19], **c} for c in checks[:-1]]
        if path.name[:19] in held_out and len(checks) > longest[0]:
            longest = (len(checks), (hh, checks, left_out))
    written = style.table(pd.DataFrame(rows), out_dir, f"table_history_{exp.name}",
                          "Earlier acquisitions of each target scene as co-registered for its patches: days "
                          "before, coverage of the target, land-zone agreement (Cohen's kappa) and HH "
                          "correlation with the target.", float_format="%.2f")
    if longest[1] is not None:
        hh, checks, left_out = longest[1]
        written += _draw_history(hh, checks, left_out, out_dir, f"fig_history_{exp.name}")
    return written
