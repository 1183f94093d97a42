"""Learning curves: the scores a curve step records (:func:`curve_scores`, the columns of
``curve.csv``) and the stopping rule on the inner-validation scores (:func:`convergence`).
Why the rule reads the inner scores only: docs/experiments.md ("Learning curves and the stopping rule")."""

from __future__ import annotations

from collections.abc import Mapping

from .. import schema
from .evaluation import Evaluation

CURVE_SETS = ("val", "inner")  # curve.csv column prefixes: validation (held-out) and inner validation
CURVE_SCORES = ("combined", "SIC", "SOD", "FLOE", "f1_new", "f1_young")
CURVE_COLUMNS = (["step", "train_s", "train_cpu_s"]
                 + [f"{prefix}_{score}" for prefix in CURVE_SETS for score in CURVE_SCORES])


def curve_scores(ev: Evaluation) -> dict[str, float]:
    """The learning curve's scores of one evaluation (:data:`CURVE_SCORES`): official scores and
    the F1 (%) of new and young ice (NaN where the scenes hold none)."""
    sod = ev.per_class("SOD")
    f1 = {name: 100 * float(sod["f1"][k]) if sod["support"][k] else float("nan")
          for name, k in (("f1_new", schema.SOD_NEW), ("f1_young", schema.SOD_YOUNG))}
    return {**ev.scores(), **{k: round(v, 2) for k, v in f1.items()}}


def convergence(rows: list[Mapping], min_gain: float, patience: int) -> tuple[int | None, bool]:
    """(budget step, converged) over learning-curve ``rows`` in step order.

    Converged: the last ``patience`` rows have not raised the best inner score before them by
    ``min_gain`` points or more. The budget: the last step whose inner score is within
    ``min_gain`` of the best, as the rule cannot tell smaller differences from noise (the earliest
    step of a plateau would be an arbitrary pick). Only the inner scores are read; the validation
    (held-out) scores never choose a budget.
    """
    scores = [(float(r["inner_combined"]), int(r["step"])) for r in rows]
    if not scores:
        return None, False
    best = scores[0][0]
    since = 0  # rows since the best score last rose by min_gain
    for score, _ in scores[1:]:
        since = 0 if score >= best + min_gain else since + 1
        best = max(best, score)
    budget = max(step for score, step in scores if score > best - min_gain)
    return budget, since >= patience
