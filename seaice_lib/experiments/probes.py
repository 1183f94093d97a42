"""What a trained network takes from the earlier acquisitions: its official score on whole scenes
(held-out, inner and training scenes of its fold) when the history it is given is altered.

The probes change the SAR of the steps before each tile's target, nothing else (dates, AMSR2 and
ERA5 stay): ``as given``; ``none`` (every earlier step masked out, as where no acquisition
covers); ``target repeated`` (each earlier step replaced by the target, values and mask);
``reversed`` (the earlier steps in the opposite order, the oldest next to the target); ``noise``
(the earlier steps' covered pixels replaced by Gaussian noise of the batch's mean and standard
deviation per channel). A model that uses its history loses score under ``none`` and ``noise``;
one that is hurt by it gains under ``target repeated``. A single-date model scores the same under
every probe, which the tests use as a check. The weights probed are those of the job's budget step
(``curve/step_NNNNNN.pt``), as the report scores them. Why: docs/experiments.md, "Probing the history".
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_text
from ..engine.run import Run
from ..engine.whole_scenes import evaluate_scenes, scene_files
from ..jsondoc import content_sha256
from ..models import reads_history
from ..provenance import file_sha256, provenance
from ..sample_format import MODALITIES
from . import JOB_FILE, folder_key
from .report import budget_of, read_probe
from .spec import PROBE_RECORDS, Experiment, Job

HISTORY_PROBES = ("as given", "none", "target repeated", "reversed", "noise")


def alter_history(batch: dict, probe: str, generator: torch.Generator | None = None) -> dict:
    """``batch`` with the SAR of the steps before each sample's target changed by ``probe``
    (:data:`HISTORY_PROBES`); ``sar`` (B, T, C, P, P) and ``sar_mask`` (B, T, P, P), the target at
    the last step ``step_mask`` marks (the last step without one)."""
    if probe not in HISTORY_PROBES:
        raise ValueError(f"probe must be one of {HISTORY_PROBES}, not {probe!r}")
    sar, mask = batch["sar"], batch["sar_mask"]
    b, t = sar.shape[:2]
    last = (batch["step_mask"].sum(dim=1) - 1 if "step_mask" in batch
            else torch.full((b,), t - 1, device=sar.device)).long()
    steps = torch.arange(t, device=sar.device)
    earlier = steps[None] < last[:, None]  # (B, T)
    rows = torch.arange(b, device=sar.device)
    if probe == "as given":
        return batch
    if probe == "none":
        new_sar = torch.where(earlier[:, :, None, None, None], torch.zeros_like(sar), sar)
        new_mask = torch.where(earlier[:, :, None, None], torch.zeros_like(mask), mask)
    elif probe == "target repeated":
        new_sar = torch.where(earlier[:, :, None, None, None], sar[rows, last][:, None], sar)
        new_mask = torch.where(earlier[:, :, None, None], mask[rows, last][:, None], mask)
    elif probe == "reversed":
        order = torch.where(earlier, last[:, None] - 1 - steps[None], steps[None])  # (B, T)
        new_sar, new_mask = sar[rows[:, None], order], mask[rows[:, None], order]
    else:  # noise
        covered = (mask.bool() & earlier[:, :, None, None])[:, :, None].expand_as(sar)  # (B, T, C, P, P)
        values = sar.float().movedim(2, 0)[covered.movedim(2, 0)].reshape(sar.shape[2], -1)  # (C, n)
        if values.shape[1] < 2:
            return batch
        noise = torch.randn(sar.shape, generator=generator, device=sar.device)
        noise = noise * values.std(dim=1)[:, None, None] + values.mean(dim=1)[:, None, None]
        new_sar, new_mask = torch.where(covered, noise.to(sar.dtype), sar), mask
    return {**batch, "sar": new_sar, "sar_mask": new_mask}


class AlteredHistory(nn.Module):
    """``model`` given every batch through :func:`alter_history` (noise drawn from ``seed``)."""

    def __init__(self, model: nn.Module, probe: str, seed: int = 0):
        super().__init__()
        self.model, self.probe = model, probe
        self.downsample = getattr(model, "downsample", None)  # what tiling checks
        self.modalities = getattr(model, "modalities", MODALITIES)  # what it is given
        self.reads_history = reads_history(model)  # and the target alone where it reads no earlier acquisition
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, batch: dict) -> dict:
        return self.model(alter_history(batch, self.probe, self.generator))


def budget_weights(exp: Experiment, job: Job, folder: Path) -> tuple[int, Path]:
    """(budget step, weights file) of a finished training job run in ``folder``; ValueError naming the
    file where they are not the weights the job's result records (its ``weights_sha256``)."""
    result = exp.read_result(job)
    step, _ = budget_of(exp, result["curve"])
    if step is None:
        raise ValueError(f"{folder}: its learning curve is empty, it has no budget step; run the job again")
    weights = Run(folder).curve_weights(step)
    if not weights.is_file():
        raise ValueError(f"{folder}: no weights of its budget step {step} ({weights.name}); run the job again")
    recorded = result.get("weights_sha256")
    if recorded is not None and file_sha256(weights) != recorded.get(str(step)):
        raise ValueError(f"{weights}: not the weights {exp.result_path(job)} records for step {step} (the folder "
                         "was trained again since, or the result was written from another folder); run the job again")
    return step, weights


def probe_history(exp: Experiment, job: Job, folder: Path, probes: tuple[str, ...] = HISTORY_PROBES,
                  batch_size: int = 32) -> dict:
    """The official scores of ``job``'s budget weights on its fold's held-out, inner and training
    scenes under each probe (JSON-ready), written to ``exp.probe_path(job)``; a probe file of the
    same weights (:meth:`Experiment.weights_key`, the file's hash), probes and store groups (the
    store's identity, :meth:`Experiment.store_groups`: the scenes it scores as they are now) is read
    instead of computed again. ``folder`` must hold the job under its current definition (``job.json``)."""
    if not exp.finished(job):
        raise ValueError(f"{job.name}: no current result; run the experiment first")
    if (held := folder_key(folder)) != exp.key(job):
        raise ValueError(f"{folder}: " + (f"its {JOB_FILE} holds key {held}" if held else f"no {JOB_FILE}")
                         + f", not {job.name}'s key {exp.key(job)}: its weights are not the job's")
    step, weights = budget_weights(exp, job, folder)
    digest, path, store = file_sha256(weights), exp.probe_path(job), exp.store_groups()
    try:
        kept = read_probe(path)
        if ((kept["weights_key"], kept.get("weights_sha256"), list(kept["scores"]), kept.get("store_content"))
                == (exp.weights_key(job), digest, list(probes), store)
                and not exp.content_problem(path, kept, PROBE_RECORDS)):
            return kept  # one edited since it was written, or of scenes changed since, is computed again
    except (OSError, ValueError):
        pass  # none, or damaged: computed again
    run = Run(folder, weights)
    model = run.load_model()
    cfg = run.patch_config(exp.store)
    fold = exp.fold(job.fold)
    parts = {"val": fold.val, "inner": fold.inner_scenes, "train": fold.train}
    scores = {}
    for probe in probes:
        probed = AlteredHistory(model, probe, seed=job.seed)
        scores[probe] = {part: evaluate_scenes(probed, scene_files(ids, exp.scenes), exp.scenes, cfg,
                                               batch_size).scores()
                         for part, ids in parts.items() if ids}
    doc = {"job": job.name, "run": job.run, "fold": job.fold, "seed": job.seed, "step": step,
           "weights_sha256": digest, "weights_key": exp.weights_key(job), "store_content": store, "scores": scores,
           "provenance": provenance()}
    doc["content_sha256"] = content_sha256(doc)
    write_text(path, json.dumps(doc, indent=1))
    return doc

