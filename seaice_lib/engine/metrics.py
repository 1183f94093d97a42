"""The official AutoICE metric, exact and streaming.

Per chart, the labelled pixels (``true != 255``) of everything evaluated are pooled; SIC is scored
with R² on class indices (sklearn ``r2_score``), SOD and FLOE with support-weighted F1 (sklearn
``f1_score(average='weighted')``, zero division -> 0). Scores are in percent rounded to 3 decimals
with ``np.round``, and combined = (2·SIC + 2·SOD + 1·FLOE) / 5 is taken of the *rounded* chart
scores and rounded again, in the challenge toolbox's order of operations.

Everything is computed from one (n_classes, n_classes) int64 confusion matrix per chart (rows =
true class, columns = predicted class), so :class:`AutoIceAccumulator` takes scene after scene or
batch after batch (numpy, or torch on any device), merges across workers or DDP ranks, and gives
exactly the numbers of the pooled computation in memory independent of the data size. A matrix
may carry one more column: labelled pixels given no class (255, where the inputs were not usable),
each counted wrong as the official scorer counts a 255 in a submission: a miss of its true class
for F1, the value 255 for R².
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from .. import schema

if TYPE_CHECKING:
    import torch

Labels: TypeAlias = "np.ndarray | torch.Tensor"

CHART_WEIGHTS: dict[str, int] = {"SIC": 2, "SOD": 2, "FLOE": 1}
# numpy input is counted in slices of this many pixels, bounding the int64 temporaries
_CHUNK = 1 << 22


def _n_classes(chart: str) -> int:
    if chart not in schema.N_CLASSES:
        raise ValueError(f"unknown chart {chart!r}; expected one of {schema.CHARTS}")
    return schema.N_CLASSES[chart]


def _is_tensor(a: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def _bin_index(t: Any, p: Any, n: int, where: Callable) -> Any:
    """Flat bin per pixel of int64 (m,) true/pred: ``t*(n+1) + p`` for a valid labelled pixel
    (``p`` = n: no class, 255), else ``n*(n+1)`` (no label), ``+ 1`` (true class out of range),
    ``+ 2`` (bad prediction)."""
    m = n * (n + 1)
    labelled = t != schema.CHART_FILL
    bad_true = labelled & ((t < 0) | (t >= n))
    no_class = p == schema.CHART_FILL
    bad_pred = labelled & ~bad_true & ~no_class & ((p < 0) | (p >= n))
    idx = where(labelled, t * (n + 1) + where(no_class, n, p), m)
    idx = where(bad_true, m + 1, idx)
    return where(bad_pred, m + 2, idx)


def _check_shapes(true_shape: tuple, pred_shape: tuple, chart: str) -> None:
    if true_shape != pred_shape:
        raise ValueError(f"{chart}: true {true_shape} and pred {pred_shape} differ in shape")


def _numpy_counts(true: np.ndarray, pred: np.ndarray, n: int, chart: str) -> np.ndarray:
    _check_shapes(true.shape, pred.shape, chart)
    for what, a in (("true", true), ("pred", pred)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{chart}: {what} must hold integer classes, got {a.dtype}")
    t, p = true.reshape(-1), pred.reshape(-1)
    counts = np.zeros(n * (n + 1) + 3, np.int64)
    for start in range(0, t.size, _CHUNK):
        idx = _bin_index(t[start:start + _CHUNK].astype(np.int64),
                         p[start:start + _CHUNK].astype(np.int64), n, np.where)
        counts += np.bincount(idx, minlength=n * (n + 1) + 3)
    return counts


def _torch_counts(true: Any, pred: Any, n: int, chart: str) -> np.ndarray:
    import torch

    device = next(a.device for a in (pred, true) if isinstance(a, torch.Tensor))
    t, p = torch.as_tensor(true, device=device), torch.as_tensor(pred, device=device)
    _check_shapes(tuple(t.shape), tuple(p.shape), chart)
    for what, a in (("true", t), ("pred", p)):
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise TypeError(f"{chart}: {what} must hold integer classes, got {a.dtype}")
    idx = _bin_index(t.reshape(-1).long(), p.reshape(-1).long(), n, torch.where)
    return torch.bincount(idx, minlength=n * (n + 1) + 3).cpu().numpy().astype(np.int64)


def confusion_matrix(true: Labels, pred: Labels, chart: str, no_class: bool = False) -> np.ndarray:
    """(n_classes, n_classes) int64 counts of one chart, rows = true class, columns = predicted.

    ``true`` and ``pred``: integer classes of one shape, numpy arrays or torch tensors (counted with
    ``torch.bincount`` on the tensor's device). Pixels with ``true == 255`` are dropped; a class
    outside ``0..n_classes-1`` on a labelled pixel, in either, is a ``ValueError``, but with
    ``no_class`` a predicted 255 (no class), counted in an extra last column: (n, n + 1).
    """
    n = _n_classes(chart)
    if _is_tensor(true) or _is_tensor(pred):
        counts = _torch_counts(true, pred, n, chart)
    else:
        counts = _numpy_counts(np.asarray(true), np.asarray(pred), n, chart)
    m = n * (n + 1)
    if counts[m + 1]:
        raise ValueError(f"{chart}: {counts[m + 1]} true classes outside 0..{n - 1} or 255")
    cm = counts[:m].reshape(n, n + 1)
    if bad := int(counts[m + 2] + (0 if no_class else cm[:, n].sum())):
        raise ValueError(f"{chart}: {bad} predicted classes outside 0..{n - 1} on labelled pixels")
    return cm if no_class else cm[:, :n]


def _predicted_values(cm: np.ndarray) -> np.ndarray:
    """The predicted value of each column of an (n, n) or (n, n + 1) matrix: the class, 255 for no class."""
    n = cm.shape[0]
    if cm.ndim != 2 or cm.shape[1] not in (n, n + 1):
        raise ValueError(f"a confusion matrix is (n, n) or (n, n + 1), not {cm.shape}")
    return np.append(np.arange(n, dtype=np.int64), [schema.CHART_FILL] * (cm.shape[1] - n))


def r2_from_confusion(cm: np.ndarray) -> float:
    """R² of predicted on true class index (sklearn ``r2_score``) from an (n, n) confusion matrix
    (or (n, n + 1): no class counts as the value 255).

    Σy, Σy², Σŷ², Σyŷ are exact integers, so the only rounding is the final division. Like sklearn:
    NaN for fewer than two pixels; 1 for a perfect prediction; 0 for an imperfect one of a constant
    truth.
    """
    cm = np.asarray(cm, np.int64)
    k, kp = np.arange(cm.shape[0], dtype=np.int64), _predicted_values(cm)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("no labelled pixels to score")
    if n < 2:
        return math.nan
    rows, cols = cm.sum(axis=1), cm.sum(axis=0)
    sum_y, sum_yy = int(rows @ k), int(rows @ k**2)
    sum_pp, sum_yp = int(cols @ kp**2), int(k @ cm @ kp)
    ss_res = sum_yy - 2 * sum_yp + sum_pp  # Σ(y - ŷ)²
    n_ss_tot = n * sum_yy - sum_y**2  # n · Σ(y - ȳ)²
    if ss_res == 0:
        return 1.0
    if n_ss_tot == 0:
        return 0.0
    return (n_ss_tot - n * ss_res) / n_ss_tot


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per class of an (n, n) confusion matrix: ``precision``, ``recall``, ``f1`` (float64 (n,),
    0 where undefined, as sklearn with ``zero_division=0``) and ``support`` (int64 (n,)); of an
    (n, n + 1) one, the no-class pixels are misses of their true class."""
    cm = np.asarray(cm, np.int64)
    n = cm.shape[0]
    _predicted_values(cm)  # the shape checked
    tp = np.diag(cm[:, :n]).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm[:, :n].sum(axis=0)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return {"precision": ratio(tp, predicted.astype(np.float64)),
            "recall": ratio(tp, support.astype(np.float64)),
            "f1": ratio(2 * tp, (support + predicted).astype(np.float64)),
            "support": support}


def weighted_f1_from_confusion(cm: np.ndarray) -> float:
    """Support-weighted F1 (as sklearn ``f1_score(average='weighted')``) from a confusion matrix."""
    scores = per_class_metrics(cm)
    total = scores["support"].sum()
    if total == 0:
        raise ValueError("no labelled pixels to score")
    return float((scores["f1"] * scores["support"]).sum() / total)


CHART_METRIC: dict[str, Callable[[np.ndarray], float]] = {
    "SIC": r2_from_confusion, "SOD": weighted_f1_from_confusion, "FLOE": weighted_f1_from_confusion,
}


def chart_score(chart: str, cm: np.ndarray) -> float:
    """Unrounded score of one chart (1 = perfect): R² for SIC, weighted F1 for SOD and FLOE."""
    if np.asarray(cm).sum() == 0:
        raise ValueError(f"{chart}: no labelled pixels to score")
    return CHART_METRIC[chart](cm)


def combined_score(scores: Mapping[str, float]) -> float:
    """Unrounded (2·SIC + 2·SOD + 1·FLOE) / 5 of chart scores, summed in the toolbox's order."""
    total = 0.0
    for chart in schema.CHARTS:
        total += scores[chart] * CHART_WEIGHTS[chart]
    return total / sum(CHART_WEIGHTS.values())


def scores_from_confusion(matrices: Mapping[str, np.ndarray], rounded: bool = True
                          ) -> dict[str, float]:
    """Chart scores in percent and, when all three charts are given, ``combined``.

    ``rounded``: the official numbers, each chart rounded to 3 decimals and combined taken of the
    rounded chart scores, then rounded; otherwise nothing is rounded.
    """
    out = {}
    for chart, cm in matrices.items():
        value = 100 * chart_score(chart, cm)
        out[chart] = float(np.round(value, 3)) if rounded else value
    if all(chart in out for chart in schema.CHARTS):
        value = combined_score(out)
        out["combined"] = float(np.round(value, 3)) if rounded else value
    return out


class AutoIceAccumulator:
    """Streaming AutoICE metric: one int64 confusion matrix per chart (and its no-class column), nothing else.

    >>> acc = AutoIceAccumulator()
    >>> for true, pred in batches:   # dicts chart -> integer classes, (h, w) or (b, h, w)
    ...     acc.update(true, pred)
    >>> acc.all_reduce().scores()    # {"SIC": ..., "SOD": ..., "FLOE": ..., "combined": ...}
    """

    def __init__(self, charts: Sequence[str] = schema.CHARTS) -> None:
        self.charts = tuple(charts)
        self._matrices = {c: np.zeros((_n_classes(c), _n_classes(c) + 1), np.int64) for c in self.charts}

    def reset(self) -> None:
        for cm in self._matrices.values():
            cm.fill(0)

    def update(self, true: Mapping[str, Labels], pred: Mapping[str, Labels],
               no_class: bool = False) -> AutoIceAccumulator:
        """Add one scene or batch; ``true``/``pred`` map each of ``charts`` to class arrays of one
        shape (other keys are ignored); with ``no_class``, a predicted 255 on a labelled pixel is no
        class, counted wrong (:func:`confusion_matrix`). Nothing is added if any chart is refused."""
        counts = {}
        for chart in self.charts:
            for what, d in (("true", true), ("pred", pred)):
                if chart not in d:
                    raise KeyError(f"{chart} missing from {what}")
            counts[chart] = confusion_matrix(true[chart], pred[chart], chart, no_class)
        for chart, cm in counts.items():
            self._matrices[chart][:, :cm.shape[1]] += cm
        return self

    def merge(self, other: AutoIceAccumulator) -> AutoIceAccumulator:
        """Add another accumulator's counts (same charts), e.g. from another worker."""
        if other.charts != self.charts:
            raise ValueError(f"cannot merge charts {other.charts} into {self.charts}")
        for chart in self.charts:
            self._matrices[chart] += other._matrices[chart]
        return self

    __iadd__ = merge

    def all_reduce(self, group: Any = None) -> AutoIceAccumulator:
        """Sum the counts over the ranks of ``group`` (default: world) in place, when
        ``torch.distributed`` is initialised; every rank must call it, with the same charts."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = (torch.device("cuda", torch.cuda.current_device())
                  if dist.get_backend(group) == "nccl" else torch.device("cpu"))
        flat = torch.from_numpy(np.concatenate([cm.ravel() for cm in self._matrices.values()]))
        flat = flat.to(device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        summed = flat.cpu().numpy()
        start = 0
        for chart, cm in self._matrices.items():
            cm[...] = summed[start:start + cm.size].reshape(cm.shape)
            start += cm.size
        return self

    def confusion_matrix(self, chart: str) -> np.ndarray:
        """(n_classes, n_classes) int64 counts so far (a copy), rows = true, columns = predicted."""
        return self._matrices[chart][:, :-1].copy()

    def no_class(self, chart: str) -> np.ndarray:
        """(n_classes,) int64: labelled pixels given no class so far, per true class."""
        return self._matrices[chart][:, -1].copy()

    def per_class(self, chart: str) -> dict[str, np.ndarray]:
        """Precision, recall, F1, support per class of one chart (see :func:`per_class_metrics`)."""
        return per_class_metrics(self._matrices[chart])

    def scores(self, rounded: bool = True) -> dict[str, float]:
        """Scores in percent of everything added (see :func:`scores_from_confusion`)."""
        return scores_from_confusion(self._matrices, rounded)


def autoice_scores(true: Mapping[str, Labels | Sequence[Labels]],
                   pred: Mapping[str, Labels | Sequence[Labels]],
                   charts: Sequence[str] | None = None) -> dict[str, float]:
    """Official AutoICE scores of predictions, pooled over everything passed.

    ``true``/``pred`` map chart -> integer classes (any shape, numpy or torch) or a list of such
    arrays (one per scene; pooled), 255 in ``true`` meaning no label. ``charts`` defaults to those
    of SIC, SOD, FLOE in ``true``. Returns each chart's score in percent rounded to 3 decimals and,
    when all three are scored, ``combined`` of the rounded chart scores, rounded (as the toolbox).
    """
    charts = tuple(c for c in schema.CHARTS if c in true) if charts is None else tuple(charts)
    if not charts:
        raise ValueError(f"nothing to score: true has none of the charts {schema.CHARTS}")
    matrices = {}
    for chart in charts:
        for what, d in (("true", true), ("pred", pred)):
            if chart not in d:
                raise KeyError(f"{chart} missing from {what}")
        t, p = true[chart], pred[chart]
        t_list, p_list = isinstance(t, (list, tuple)), isinstance(p, (list, tuple))
        if t_list != p_list or (t_list and len(t) != len(p)):
            raise ValueError(f"{chart}: true and pred must both be arrays or lists of equal length")
        pairs: Iterable[tuple[Any, Any]] = zip(t, p) if t_list else [(t, p)]
        cm = np.zeros((_n_classes(chart),) * 2, np.int64)
        for ti, pi in pairs:
            cm += confusion_matrix(ti, pi, chart)
        matrices[chart] = cm
    return scores_from_confusion(matrices)
