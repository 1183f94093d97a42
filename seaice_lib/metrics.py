"""The official AutoICE metric, exact and streaming.

Per chart, the labelled pixels (true != 255) of everything evaluated are pooled: SIC is scored with
R² on class indices, SOD and FLOE with F1 weighted by class support. Scores are in percent rounded
to 3 decimals; combined = (2·SIC + 2·SOD + 1·FLOE) / 5 of the rounded chart scores, rounded again,
as the challenge toolbox computes it.

Everything is computed from one confusion matrix per chart, so :class:`AutoIceMetric` can take
scene after scene (or batch after batch, on any torch device, across DDP ranks) in bounded memory
and still give exactly the numbers of the pooled computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from . import schema

CHART_WEIGHTS = {"SIC": 2, "SOD": 2, "FLOE": 1}
CHART_METRIC = {"SIC": "r2", "SOD": "f1_weighted", "FLOE": "f1_weighted"}


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def confusion_matrix(true, pred, n_classes: int, chart: str = "") -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = true class, columns = predicted class.

    Pixels with ``true == 255`` are dropped. numpy arrays or torch tensors (counted on their own
    device) of any matching shape. A true or predicted class outside ``0..n_classes-1`` on a
    labelled pixel is an error.
    """
    name = f"{chart}: " if chart else ""
    if tuple(true.shape) != tuple(pred.shape):
        raise ValueError(f"{name}true {tuple(true.shape)} and pred {tuple(pred.shape)} differ in shape")
    if _is_torch(true) or _is_torch(pred):
        import torch

        t = torch.as_tensor(true).reshape(-1).long()
        p = torch.as_tensor(pred, device=t.device).reshape(-1).long()
        bincount, to_numpy = torch.bincount, lambda x: x.cpu().numpy()
    else:
        t = np.asarray(true).reshape(-1).astype(np.int64)
        p = np.asarray(pred).reshape(-1).astype(np.int64)
        bincount, to_numpy = np.bincount, np.asarray
    keep = t != schema.CHART_FILL
    t, p = t[keep], p[keep]
    if bool(((t < 0) | (t >= n_classes)).any()):
        raise ValueError(f"{name}true classes must be 0..{n_classes - 1} or 255")
    if bool(((p < 0) | (p >= n_classes)).any()):
        raise ValueError(f"{name}predicted classes must be 0..{n_classes - 1} on labelled pixels")
    counts = to_numpy(bincount(t * n_classes + p, minlength=n_classes**2))
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def r2_from_confusion(cm: np.ndarray) -> float:
    """R² of predicted vs true class index (as sklearn's ``r2_score``), from a confusion matrix."""
    k = np.arange(cm.shape[0], dtype=np.float64)
    n = cm.sum()
    if n == 0:
        raise ValueError("no labelled pixels to score")
    rows = cm.sum(axis=1).astype(np.float64)
    ss_tot = rows @ k**2 - (rows @ k) ** 2 / n
    ss_res = float((cm * (k[:, None] - k[None, :]) ** 2).sum())
    if ss_tot <= 0:  # constant truth: sklearn gives 1 for a perfect prediction, else 0
        return 1.0 if ss_res == 0 else 0.0
    return float(1.0 - ss_res / ss_tot)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 (0 where undefined) and support per class, from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def f1_weighted_from_confusion(cm: np.ndarray) -> float:
    """Support-weighted F1 (as sklearn's ``f1_score(average='weighted')``), from a confusion matrix."""
    scores = per_class_scores(cm)
    total = scores["support"].sum()
    if total == 0:
        raise ValueError("no labelled pixels to score")
    return float((scores["f1"] * scores["support"]).sum() / total)


def scores_from_confusion(matrices: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Chart scores (percent, 3 decimals) and, when all three charts are there, the combined score."""
    out = {}
    for chart, cm in matrices.items():
        value = r2_from_confusion(cm) if CHART_METRIC[chart] == "r2" else f1_weighted_from_confusion(cm)
        out[chart] = round(100 * value, 3)
    if all(c in out for c in schema.CHARTS):
        total = sum(CHART_WEIGHTS[c] * out[c] for c in schema.CHARTS)
        out["combined"] = round(total / sum(CHART_WEIGHTS.values()), 3)
    return out


class AutoIceMetric:
    """Streaming AutoICE metric: one confusion matrix per chart, updated scene by scene.

    >>> metric = AutoIceMetric()
    >>> for true, pred in scenes:          # dicts chart -> (h, w) class arrays or tensors
    ...     metric.update(true, pred)
    >>> metric.scores()                    # {"SIC": ..., "SOD": ..., "FLOE": ..., "combined": ...}
    """

    def __init__(self, charts: Sequence[str] = schema.CHARTS):
        unknown = set(charts) - set(schema.CHARTS)
        if unknown:
            raise ValueError(f"unknown charts {sorted(unknown)}; expected some of {schema.CHARTS}")
        self.charts = tuple(charts)
        self.reset()

    def reset(self) -> None:
        self.matrices = {c: np.zeros((schema.N_CLASSES[c],) * 2, np.int64) for c in self.charts}

    def update(self, true: Mapping, pred: Mapping) -> "AutoIceMetric":
        """Add one scene or batch: ``true``/``pred`` map each chart to class arrays of one shape."""
        for chart in self.charts:
            if chart not in true or chart not in pred:
                raise KeyError(f"{chart} missing from {'true' if chart not in true else 'pred'}")
            self.matrices[chart] += confusion_matrix(true[chart], pred[chart],
                                                     schema.N_CLASSES[chart], chart)
        return self

    def merge(self, other: "AutoIceMetric") -> "AutoIceMetric":
        """Add another accumulator's counts (e.g. from another worker)."""
        if other.charts != self.charts:
            raise ValueError(f"cannot merge charts {other.charts} into {self.charts}")
        for chart in self.charts:
            self.matrices[chart] += other.matrices[chart]
        return self

    __iadd__ = merge

    def all_reduce(self) -> "AutoIceMetric":
        """Sum the counts over all ranks of an initialised ``torch.distributed`` group (in place)."""
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            backend = dist.get_backend()
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
                else torch.device("cpu")
            for chart in self.charts:
                t = torch.from_numpy(self.matrices[chart]).to(device)
                dist.all_reduce(t)
                self.matrices[chart] = t.cpu().numpy()
        return self

    def confusion(self, chart: str) -> np.ndarray:
        return self.matrices[chart].copy()

    def per_class(self, chart: str) -> dict[str, np.ndarray]:
        """Precision, recall, F1 and support per class of one chart."""
        return per_class_scores(self.matrices[chart])

    def scores(self) -> dict[str, float]:
        return scores_from_confusion(self.matrices)


def autoice_scores(true: Mapping, pred: Mapping, charts: Sequence[str] | None = None
                   ) -> dict[str, float]:
    """AutoICE scores of predictions, pooled over everything passed.

    ``true`` and ``pred`` map chart -> integer array (any shape; numpy or torch) or a list of arrays
    (one per scene), 255 in ``true`` meaning no label. Returns ``SIC``, ``SOD``, ``FLOE`` and
    ``combined`` in percent with 3 decimals (only the charts given, and ``combined`` when all three
    are).
    """
    charts = tuple(charts or [c for c in schema.CHARTS if c in true])
    metric = AutoIceMetric(charts)
    for chart in charts:
        t, p = true[chart], pred[chart]
        pairs: Iterable = zip(t, p) if isinstance(t, (list, tuple)) else [(t, p)]
        if isinstance(t, (list, tuple)) and len(t) != len(p):
            raise ValueError(f"{chart}: {len(t)} true arrays but {len(p)} predictions")
        for ti, pi in pairs:
            metric.matrices[chart] += confusion_matrix(ti, pi, schema.N_CLASSES[chart], chart)
    return metric.scores()
