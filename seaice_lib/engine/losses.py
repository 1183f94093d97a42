"""Training losses per chart and their weighted sum (the multi-task loss).

Targets are ``{chart: (B, P, P) int64}`` class indices with 255 = no label; outputs follow
:mod:`seaice_lib.models.outputs`: ``(B, K, P, P)`` logits, or ``(B, 1, P, P)`` for SIC as
regression (the concentration class 0..10 as a real number).

Every chart loss is a mean over the chart's *labelled* pixels of the batch: the sum of per-pixel
losses (times the target class's weight, when weighted) divided by the number of labelled pixels.
With class weights this differs from ``F.cross_entropy(weight=...)``, which divides by the sum of
the weights; ours keeps the loss scale comparable from batch to batch. A batch without any
labelled pixel of a chart gives 0 for it, still connected to the graph (so DDP sees a gradient,
zero, for every parameter).

Class weights (:func:`class_weights`) come from the store's class totals and are normalised so
that their mean under the class distribution is 1: the weighted loss of a batch drawn from that
distribution keeps the unweighted scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import schema
from ..data.dataset import open_store_group
from ..data.store import node_attrs
from ..models.outputs import SIC_MODES

LOSS_KINDS = ("ce", "focal")
WEIGHTING_SCHEMES = ("none", "inverse", "inverse_sqrt")
# MMSeaIce (the AutoICE winner): SIC : SOD : FLOE = 1 : 3 : 3
DEFAULT_TASK_WEIGHTS = {"SIC": 1.0, "SOD": 3.0, "FLOE": 3.0}


def class_weights(class_totals: Sequence[float] | np.ndarray, scheme: str = "inverse_sqrt",
                  max_weight: float = 10.0) -> torch.Tensor:
    """Per-class loss weights (K,) float32 from labelled-pixel counts per class (K,).

    With shares ``p_k = n_k / sum(n)``: ``"inverse"`` weighs ``c / p_k``, ``"inverse_sqrt"``
    ``c / sqrt(p_k)``, ``"none"`` 1. The constant ``c`` makes ``sum_k p_k w_k = 1`` (mean weight
    1 under the class distribution); weights are then capped at ``max_weight``, which can bring
    that mean below 1. A class with zero count (absent from the statistics, so the rarest) gets
    ``max_weight``; with ``"none"`` every class weighs 1.
    """
    if scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"class weighting must be one of {WEIGHTING_SCHEMES}, not {scheme!r}")
    if max_weight <= 0:
        raise ValueError(f"max_weight must be positive, not {max_weight}")
    counts = np.asarray(class_totals, np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"class totals must be non-negative counts with a positive sum, not {counts}")
    if scheme == "none":
        return torch.ones(len(counts), dtype=torch.float32)
    seen = counts > 0
    share = counts[seen] / counts.sum()
    raw = 1 / share if scheme == "inverse" else 1 / np.sqrt(share)
    weights = np.full(len(counts), max_weight)
    weights[seen] = np.minimum(raw / (share * raw).sum(), max_weight)
    return torch.tensor(weights, dtype=torch.float32)


def store_class_weights(store: str | Path, scheme: str = "inverse_sqrt",
                        max_weight: float = 10.0) -> dict[str, torch.Tensor]:
    """:func:`class_weights` of every chart from a consolidated store's ``index`` attr ``class_totals``."""
    try:
        index = open_store_group(store, "index")
        totals = node_attrs(index)["class_totals"]
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"{store}: no index with class_totals (run patches.consolidate): {err!r}") from err
    out = {}
    for chart in schema.CHARTS:
        if chart not in totals or len(totals[chart]) != schema.N_CLASSES[chart]:
            raise ValueError(f"{store}: class_totals[{chart!r}] must hold {schema.N_CLASSES[chart]} counts")
        out[chart] = class_weights(totals[chart], scheme, max_weight)
    return out


@dataclass
class LossConfig:
    """How the multi-task loss is built (the ``loss`` section of a training config).

    ``kind``: ``"ce"`` (cross-entropy) or ``"focal"`` for the classification charts; SIC as
    regression always uses MSE. ``focal_gamma``: the focusing exponent (0 = cross-entropy).
    ``class_weighting``: a scheme of :func:`class_weights` (weights, or focal's alpha, per class
    of each classification chart), capped at ``max_class_weight``. ``label_smoothing``: for CE
    only. ``task_weights``: multiplies each chart's loss in the sum (not normalised).
    """

    kind: str = "ce"
    focal_gamma: float = 2.0
    class_weighting: str = "none"
    max_class_weight: float = 10.0
    label_smoothing: float = 0.0
    task_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TASK_WEIGHTS))

    def __post_init__(self):
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, not {self.kind!r}")
        if self.class_weighting not in WEIGHTING_SCHEMES:
            raise ValueError(f"class_weighting must be one of {WEIGHTING_SCHEMES}, not {self.class_weighting!r}")
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, not {self.focal_gamma}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.label_smoothing and self.kind != "ce":
            raise ValueError("label_smoothing applies to kind='ce' only")
        unknown = set(self.task_weights) - set(schema.CHARTS)
        if unknown:
            raise ValueError(f"task_weights for unknown charts {sorted(unknown)}; charts are {schema.CHARTS}")
        bad = {c: w for c, w in self.task_weights.items()
               if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf")}
        if bad or (self.task_weights and not any(self.task_weights.values())):
            raise ValueError(f"task_weights must be finite numbers >= 0, not all 0, not {bad or self.task_weights}")


def _labelled_mean(per_pixel: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Sum of ``per_pixel`` over labelled pixels / their count (0, graph kept, when there are none)."""
    total = torch.where(labelled, per_pixel, torch.zeros_like(per_pixel)).sum()
    return total / labelled.sum().clamp(min=1)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of (B, K, P, P) logits against (B, P, P) classes, mean over labelled pixels."""
    per_pixel = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=schema.CHART_FILL,
                                reduction="none", label_smoothing=label_smoothing)
    return _labelled_mean(per_pixel, target != schema.CHART_FILL)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss ``-alpha_y (1 - p_y)^gamma log p_y``, mean over labelled pixels.

    ``alpha`` (K,) weighs each true class (None: 1); ``gamma`` 0 gives :func:`cross_entropy`.
    """
    labelled = target != schema.CHART_FILL
    safe = torch.where(labelled, target, torch.zeros_like(target))
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe[:, None]).squeeze(1)
    per_pixel = -log_p if gamma == 0 else -(1 - log_p.exp()).pow(gamma) * log_p
    if alpha is not None:
        per_pixel = per_pixel * alpha.to(per_pixel.device)[safe]
    return _labelled_mean(per_pixel, labelled)


def regression_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of a (B, 1, P, P) real-valued class against (B, P, P) class indices, over labelled pixels."""
    labelled = target != schema.CHART_FILL
    err = output[:, 0].float() - target.float()
    return _labelled_mean(err * err, labelled)


class MultiTaskLoss(nn.Module):
    """Weighted sum of per-chart losses: ``sum_c task_weight[c] * loss_c``.

    Args:
        config: the loss settings.
        class_weights: ``{chart: (K,) weights}`` for classification charts (e.g. from
            :func:`store_class_weights`); None or a missing chart: unweighted.
        sic_mode: ``"regression"`` expects a 1-channel SIC output and uses MSE.

    ``forward(outputs, labels)`` returns the total (a scalar with graph) and
    ``{chart: detached scalar}`` of the unweighted chart losses, for logging. Only charts present
    in ``outputs`` count; each needs a task weight.
    """

    def __init__(self, config: LossConfig | None = None,
                 class_weights: Mapping[str, torch.Tensor] | None = None,
                 sic_mode: str = "classification"):
        super().__init__()
        if sic_mode not in SIC_MODES:
            raise ValueError(f"sic_mode must be one of {SIC_MODES}, not {sic_mode!r}")
        self.config, self.sic_mode = config or LossConfig(), sic_mode
        for chart, w in (class_weights or {}).items():
            if len(w) != schema.N_CLASSES[chart]:
                raise ValueError(f"{chart} class weights need {schema.N_CLASSES[chart]} values, not {len(w)}")
            self.register_buffer(f"weight_{chart}", torch.as_tensor(w, dtype=torch.float32).clone())

    def class_weight(self, chart: str) -> torch.Tensor | None:
        return getattr(self, f"weight_{chart}", None)

    def chart_loss(self, chart: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted loss of one chart."""
        if chart == "SIC" and self.sic_mode == "regression":
            if output.shape[1] != 1:
                raise ValueError(f"SIC regression expects 1 output channel, not {output.shape[1]}")
            return regression_mse(output, target)
        if output.shape[1] != schema.N_CLASSES[chart]:
            raise ValueError(f"{chart} expects {schema.N_CLASSES[chart]} logits, not {output.shape[1]}"
                             + (" (a SIC regression model needs sic_mode='regression')" if chart == "SIC" else ""))
        if self.config.kind == "focal":
            return focal_loss(output, target, self.config.focal_gamma, self.class_weight(chart))
        return cross_entropy(output, target, self.class_weight(chart), self.config.label_smoothing)

    def forward(self, outputs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, parts = None, {}
        for chart, output in outputs.items():
            if chart not in self.config.task_weights:
                raise ValueError(f"no task weight for chart {chart!r} (task_weights: {self.config.task_weights})")
            loss = self.chart_loss(chart, output, labels[chart])
            parts[chart] = loss.detach()
            term = self.config.task_weights[chart] * loss
            total = term if total is None else total + term
        if total is None:
            raise ValueError("the model returned no chart outputs")
        return total, parts
