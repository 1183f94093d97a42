"""What every model outputs, and how outputs become charts.

A model maps a batch dict to ``{chart: (B, K, P, P)}``: K = the chart's class count (logits), or
K = 1 for SIC as regression (the concentration class 0..10 as a real number).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import schema

SIC_MODES = ("classification", "regression")


def output_channels(chart: str, sic_mode: str = "classification") -> int:
    """Channels a model outputs for ``chart``: its class count, or 1 for SIC as regression."""
    if sic_mode not in SIC_MODES:
        raise ValueError(f"sic_mode must be one of {SIC_MODES}, not {sic_mode!r}")
    return 1 if chart == "SIC" and sic_mode == "regression" else schema.N_CLASSES[chart]


def to_classes(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Class maps ``{chart: (B, P, P) int64}`` from model outputs.

    Logits (K > 1 channels) take the arg-max; a single channel (SIC regression) is rounded and
    clamped to the chart's classes.
    """
    classes = {}
    for chart, out in outputs.items():
        if out.shape[1] == 1:
            top = schema.N_CLASSES[chart] - 1
            classes[chart] = out[:, 0].round().clamp(0, top).long()
        else:
            classes[chart] = out.argmax(dim=1)
    return classes
