"""Learning curves: the scores a curve step records (:func:`curve_scores`, the columns of
``curve.csv``) and the stopping rule on the inner-validation scores (:func:`convergence`).
Why the rule reads the inner scores only: docs/experiments.md ("Learning curves and the stopping rule")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def convergence(rows: Sequence[Mapping], min_gain: float, patience: int,
                max_dip: float | None = None) -> tuple[int | None, bool]:
    """(budget step, converged) over learning-curve ``rows`` in step order.

    Converged: the last ``patience`` rows have not raised the best inner score before them by
    ``min_gain`` points or more and, with ``max_dip``, none of them lies more than ``max_dip``
    points under that best (a deep dip is training that has not settled, not a plateau). The run
    ends at the first row where this holds; rows after it (a run continued under another rule) are
    not read. The budget: the last step up to there whose inner score is within ``min_gain`` of the
    best, as the rule cannot tell smaller differences from noise (the earliest step of a plateau
    would be an arbitrary pick). Only the inner scores are read; the validation (held-out) scores
    never choose a budget.
    """
    scores = [(float(r["inner_combined"]), int(r["step"])) for r in rows]
    if not scores:
        return None, False

    def budget(upto: int) -> int:
        best = max(score for score, _ in scores[:upto])
        return max(step for score, step in scores[:upto] if score > best - min_gain)

    best, since = scores[0][0], 0  # since: rows since the best score last rose by min_gain
    for end, (score, _) in enumerate(scores[1:], start=2):
        since = 0 if score >= best + min_gain else since + 1
        best = max(best, score)
        if since >= patience and (max_dip is None or all(s >= best - max_dip for s, _ in scores[end - patience:end])):
            return budget(end), True
    return budget(len(scores)), False
