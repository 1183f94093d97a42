"""Ablation at inference: what the official score loses on whole scenes when the model is denied
the earlier acquisitions, AMSR2, ERA5, or the right dates (docs/explain.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .. import schema
from ..data.patches import PatchConfig
from ..engine.whole_scenes import ScenePaths, evaluate_scenes
from ..sample_format import MODALITIES

Transform = Callable[[dict], dict]


def target_only(batch: dict) -> dict:
    """Each sample reduced to its target acquisition (a sequence of one)."""
    sar = batch["sar"]
    b, t = sar.shape[:2]
    step_mask = batch.get("step_mask", torch.ones(b, t, dtype=torch.bool, device=sar.device)).bool()
    rows, last = torch.arange(b, device=sar.device), step_mask.sum(1) - 1
    out = dict(batch)
    for key in ("sar", "sar_mask", "day_of_year", "days_before"):
        if key in batch:
            out[key] = batch[key][rows, last][:, None]
    out["step_mask"] = torch.ones(b, 1, dtype=torch.bool, device=sar.device)
    return out


def without(modality: str) -> Transform:
    """The batch with ``modality`` set to its standardised mean (zeros) and flagged missing."""
    def drop(batch: dict) -> dict:
        if modality not in batch:
            return batch
        data = batch[modality]
        return {**batch, modality: torch.zeros_like(data),
                f"{modality}_mask": torch.zeros(data.shape[0], dtype=torch.bool, device=data.device)}
    drop.__name__ = f"without_{modality}"
    return drop


def shuffled_dates(batch: dict, seed: int = 0) -> dict:
    """Each sample's acquisition dates permuted among its real steps (a fixed random permutation
    per sample, never the identity when there are two steps or more): the images stay in place."""
    step_mask = batch["step_mask"].bool()
    gen = torch.Generator().manual_seed(seed)
    out = {k: batch[k].clone() for k in ("day_of_year", "days_before") if k in batch}
    for i, n in enumerate(step_mask.sum(1).tolist()):
        if n < 2:
            continue
        order = torch.randperm(n, generator=gen)
        while torch.equal(order, torch.arange(n)):
            order = torch.randperm(n, generator=gen)
        real = step_mask[i].nonzero().flatten()
        for key, values in out.items():
            values[i, real] = batch[key][i, real[order]]
    return {**batch, **out}


ABLATIONS: dict[str, Transform] = {
    "none": lambda batch: batch,
    "no_history": target_only,
    "no_amsr2": without("amsr2"),
    "no_era5": without("era5"),
    "shuffled_dates": shuffled_dates,
}


class Ablated(nn.Module):
    """``model`` fed every batch through ``transform`` (keeps the model's ``downsample``)."""

    def __init__(self, model: nn.Module, transform: Transform):
        super().__init__()
        self.model, self.transform = model, transform
        self.downsample = getattr(model, "downsample", None)
        self.modalities = getattr(model, "modalities", MODALITIES)  # given only those, as the model charts

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.model(self.transform(batch))


def ablation_table(model: nn.Module, scenes: ScenePaths, scenes_dir: str | Path,
                   settings: PatchConfig | str | Path, ablations: Sequence[str] = tuple(ABLATIONS),
                   batch_size: int = 8, device: torch.device | str = "cpu",
                   progress: bool = False) -> pd.DataFrame:
    """Official scores on whole labelled ``scenes`` at 80 m under each ablation, long format:
    columns ablation, chart, class ("all" for the chart's official score), score (%), change
    (points against "none"). Per-class rows are F1 (%) of SOD and FLOE classes with support. The
    removal of a modality the model does not read (``model.modalities``), for a single-date model
    (``model.reads_history`` false) that of the earlier acquisitions (``no_history``), and for one
    that reads no dates (``model.reads_dates`` false: the U-Net) ``shuffled_dates`` are left out:
    they change nothing (v1 keeps ``shuffled_dates``: it moves the target's own date)."""
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablations {unknown}; choose from {tuple(ABLATIONS)}")
    read = getattr(model, "modalities", MODALITIES)
    unread = {f"no_{m}" for m in set(MODALITIES) - set(read)} | \
        ({"no_history"} if not getattr(model, "reads_history", True) else set()) | \
        ({"shuffled_dates"} if not getattr(model, "reads_dates", True) else set())
    names = ["none"] + [a for a in ablations if a != "none" and a not in unread]
    rows = []
    for name in names:
        ev = evaluate_scenes(Ablated(model, ABLATIONS[name]), scenes, scenes_dir, settings,
                             batch_size=batch_size, device=device, progress=progress)
        scores = ev.scores()
        rows += [(name, chart, "all", scores[chart]) for chart in (*schema.CHARTS, "combined")]
        for chart, f1 in ev.per_class_f1().items():
            if chart != "SIC":
                rows += [(name, chart, cls, 100 * value) for cls, value in f1.items()]
    table = pd.DataFrame(rows, columns=["ablation", "chart", "class", "score"])
    base = table[table.ablation == "none"].set_index(["chart", "class"])["score"]
    table["change"] = [s - base.get((c, k), float("nan")) for c, k, s in
                       zip(table["chart"], table["class"], table["score"])]
    return table


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The chart-level rows of :func:`ablation_table` as ablation x chart of the change (points)."""
    top = table[table["class"] == "all"]
    return top.pivot(index="ablation", columns="chart", values="change").loc[table.ablation.unique()]
