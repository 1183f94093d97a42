"""Ablation at inference: what the official score loses on whole scenes when the model is denied
the earlier acquisitions, AMSR2, ERA5, or the right dates (docs/explain.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn

from .. import schema
from ..data.patches import PatchConfig
from ..engine.whole_scenes import ScenePaths, evaluate_scenes
from ..models import reads_history
from ..sample_format import MODALITIES

log = logging.getLogger(__name__)
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
    per sample that moves the target's date, the last, whenever there are two steps or more): the
    images stay in place."""
    step_mask = batch["step_mask"].bool()
    gen = torch.Generator().manual_seed(seed)
    out = {k: batch[k].clone() for k in ("day_of_year", "days_before") if k in batch}
    for i, n in enumerate(step_mask.sum(1).tolist()):
        if n < 2:
            continue
        order = torch.randperm(n, generator=gen)
        while order[-1] == n - 1:
            order = torch.randperm(n, generator=gen)
        real = step_mask[i].nonzero().flatten()
        for key, values in out.items():
            values[i, real] = batch[key][i, real[order]]
    return {**batch, **out}


def _steps(batch: dict) -> torch.Tensor:
    """(B,) the real acquisitions of each sample."""
    sar = batch["sar"]
    return batch.get("step_mask", torch.ones(sar.shape[:2], dtype=torch.bool, device=sar.device)).bool().sum(1)


def _present(modality: str) -> Callable[[dict], torch.Tensor]:
    def present(batch: dict) -> torch.Tensor:
        if modality not in batch:
            return torch.zeros(batch["sar"].shape[0], dtype=torch.bool)
        return batch.get(f"{modality}_mask", torch.ones(batch[modality].shape[0], dtype=torch.bool)).bool().cpu()
    return present


class Ablation(NamedTuple):
    """A transform of the model's batches, which of a batch's samples it alters ((B,) bool: a
    sample without an earlier acquisition loses none, one without AMSR2 keeps its absence), and
    why it may alter none of a set of tiles."""

    transform: Transform
    alters: Callable[[dict], torch.Tensor]
    unaltered: str = ""


ABLATIONS: dict[str, Ablation] = {
    "none": Ablation(lambda batch: batch, lambda batch: torch.zeros(batch["sar"].shape[0], dtype=torch.bool)),
    "no_history": Ablation(target_only, lambda batch: (_steps(batch) > 1).cpu(),
                           "no tile has an earlier acquisition in its window"),
    "no_amsr2": Ablation(without("amsr2"), _present("amsr2"), "no tile has AMSR2"),
    "no_era5": Ablation(without("era5"), _present("era5"), "no tile has ERA5"),
    "shuffled_dates": Ablation(shuffled_dates, lambda batch: (_steps(batch) > 1).cpu() & (
        "day_of_year" in batch or "days_before" in batch),
        "no tile has an earlier acquisition whose date could trade places"),
}


class Ablated(nn.Module):
    """``model`` fed every batch through ``ablation``'s transform (keeps the model's
    ``downsample``), counting the tiles it was given (``tiles``) and those the transform altered
    (``altered``)."""

    def __init__(self, model: nn.Module, ablation: Ablation):
        super().__init__()
        self.model, self.ablation = model, ablation
        self.downsample = getattr(model, "downsample", None)
        self.modalities = getattr(model, "modalities", MODALITIES)  # given only those, as the model charts
        self.reads_history = reads_history(model)  # and the target alone where it reads no earlier acquisition
        self.tiles = self.altered = 0

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        self.tiles += int(batch["sar"].shape[0])
        self.altered += int(self.ablation.alters(batch).sum())
        return self.model(self.ablation.transform(batch))


def ablation_table(model: nn.Module, scenes: ScenePaths, scenes_dir: str | Path,
                   settings: PatchConfig | str | Path, ablations: Sequence[str] = tuple(ABLATIONS),
                   batch_size: int = 8, device: torch.device | str = "cpu",
                   progress: bool = False) -> pd.DataFrame:
    """Official scores on whole labelled ``scenes`` at 80 m under each ablation, long format:
    columns ablation, chart, class ("all" for the chart's official score), score (%), change
    (points against "none"). Per-class rows are F1 (%) of SOD and FLOE classes with support. The
    removal of a modality the model does not read (``model.modalities``), for a single-date model
    (``model.reads_history`` false: given its target alone) the removal of the earlier
    acquisitions (``no_history``) and ``shuffled_dates``, and for one that reads no dates
    (``model.reads_dates`` false: the U-Net) ``shuffled_dates`` are left out: they change nothing. So is, with
    a warning, an ablation that altered none of the scenes' tiles (``no_history`` where no tile has
    an earlier acquisition): nothing was measured. ``tiles_altered``: how many of the tiles it
    altered."""
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablations {unknown}; choose from {tuple(ABLATIONS)}")
    read = getattr(model, "modalities", MODALITIES)
    unread = {f"no_{m}" for m in set(MODALITIES) - set(read)} | \
        ({"no_history", "shuffled_dates"} if not reads_history(model) else set()) | \
        ({"shuffled_dates"} if not getattr(model, "reads_dates", True) else set())
    names = ["none"] + [a for a in ablations if a != "none" and a not in unread]
    rows = []
    for name in names:
        ablated = Ablated(model, ABLATIONS[name])
        ev = evaluate_scenes(ablated, scenes, scenes_dir, settings, batch_size=batch_size, device=device,
                             progress=progress)
        if name != "none" and not ablated.altered:
            log.warning("ablation %s left out: it altered none of the %d tiles it was run on (%s), so it measured "
                        "nothing", name, ablated.tiles, ablated.ablation.unaltered)
            continue
        scores = ev.scores()
        rows += [(name, chart, "all", scores[chart], ablated.altered) for chart in (*schema.CHARTS, "combined")]
        for chart, f1 in ev.per_class_f1().items():
            if chart != "SIC":
                rows += [(name, chart, cls, 100 * value, ablated.altered) for cls, value in f1.items()]
    table = pd.DataFrame(rows, columns=["ablation", "chart", "class", "score", "tiles_altered"])
    base = table[table.ablation == "none"].set_index(["chart", "class"])["score"]
    table["change"] = [s - base.get((c, k), float("nan")) for c, k, s in
                       zip(table["chart"], table["class"], table["score"])]
    return table


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The chart-level rows of :func:`ablation_table` as ablation x chart of the change (points),
    with the tiles each ablation altered (``tiles_altered``)."""
    top = table[table["class"] == "all"]
    changes = top.pivot(index="ablation", columns="chart", values="change")
    return changes.join(top.groupby("ablation").tiles_altered.first()).loc[table.ablation.unique()]
