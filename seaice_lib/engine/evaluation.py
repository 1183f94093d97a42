"""Scoring a model on the patches of held-out scenes with the official AutoICE metric.

:func:`evaluate_patch_proxy` runs a model over every patch of a :class:`~seaice_lib.data.dataset.PatchDataset`
(no augmentation), turns its outputs into charts (:func:`~seaice_lib.models.to_classes`: arg-max,
or SIC regression rounded and clamped to classes) and streams them into an
:class:`~seaice_lib.engine.metrics.AutoIceAccumulator`. Under DDP each rank scores every
``world_size``-th patch and the confusion matrices are summed, so the numbers equal a
single-process run. An :class:`Evaluation` holds the matrices and writes/reads them as JSON;
:func:`compare_runs` tabulates the evaluations of every run under a folder that score the run's weights.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .. import logs, schema
from ..atomic import write_text
from ..data.dataset import PatchDataset, collate, keep_modalities, widen
from ..data.store import changed_files
from ..jsondoc import COUNT, NON_NEGATIVE, Number, check_shape, content_sha256, edited, read_json
from ..models.outputs import to_classes
from ..provenance import provenance
from ..sample_format import MODALITIES
from ..stopping import TERMINAL_STOP_SIGNALS
from ..walk import Walk
from .metrics import AutoIceAccumulator, per_class_metrics, scores_from_confusion

# what runs_table reads of a run's evaluation info, and the values it may hold (null or missing: not recorded)
RUN_INFO = {"steps": (Number(int), None), "train_seconds": (NON_NEGATIVE, None), "n_params": (COUNT, None),
            "modalities": ([str], None)}
# classes under 5 % of the labelled pixels of the real training set: SOD new, young and thin
# first-year ice; FLOE cake ice, small and medium floes, bergs
RARE_SHARE = 5.0
RARE_CLASSES = {c: tuple(k for k, share in enumerate(schema.CLASSES[c].train_share) if share < RARE_SHARE)
                for c in ("SOD", "FLOE")}

# a file an evaluation's scores were made from (info.input_files), as store groups record theirs
INPUT_FILE = {"file": str, "bytes": int, "mtime_ns": int, "sha256": str}

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run


class EvaluationEdited(ValueError):
    """An evaluation file whose content is not the one its ``content_sha256`` was taken of."""


@dataclass
class Evaluation:
    """Confusion matrices per chart (rows = true class, columns = predicted) and what came with them;
    ``no_class``: per chart, the labelled pixels given no class (their inputs unusable) per true
    class, each counted wrong (:mod:`.metrics`)."""

    confusion: dict[str, np.ndarray]
    n_patches: int = 0
    info: dict = field(default_factory=dict)  # model name, run, split, ... (JSON-serialisable)
    no_class: dict[str, np.ndarray] = field(default_factory=dict)
    content_checked: bool = True  # False: read from a file that records no SHA-256 of its content (:meth:`from_json`)
    model_inputs: str | None = None  # what the scored weights' model reads (Run.inputs), where known (a run's)

    def _scored(self, chart: str) -> np.ndarray:
        """The chart's matrix with its no-class column (zeros where none was given)."""
        cm = self.confusion[chart]
        return np.column_stack([cm, self.no_class.get(chart, np.zeros(len(cm), np.int64))])

    def scores(self, rounded: bool = True) -> dict[str, float]:
        """Official scores in percent: SIC, SOD, FLOE and combined."""
        return scores_from_confusion({c: self._scored(c) for c in self.confusion}, rounded)

    def per_class(self, chart: str) -> dict[str, np.ndarray]:
        """Precision, recall, F1 and support per class of ``chart``."""
        return per_class_metrics(self._scored(chart))

    def per_class_f1(self) -> dict[str, dict[str, float]]:
        """``{chart: {class name: F1}}`` for every class with support."""
        out = {}
        for chart in self.confusion:
            m = self.per_class(chart)
            out[chart] = {name: float(f1) for name, f1, n in
                          zip(schema.CLASSES[chart].names, m["f1"], m["support"]) if n > 0}
        return out

    def rare_f1(self, chart: str) -> float:
        """Mean F1 (%) over the chart's rare classes (:data:`RARE_CLASSES`) present in the truth."""
        m = self.per_class(chart)
        present = [k for k in RARE_CLASSES[chart] if m["support"][k] > 0]
        return float(100 * m["f1"][present].mean()) if present else float("nan")

    def to_json(self, path: str | Path) -> Path:
        """Write scores, per-class metrics and matrices to ``path`` (temp name, then rename), with the
        SHA-256 of that content (``content_sha256``, :func:`~seaice_lib.jsondoc.content_sha256`)."""
        path = Path(path)
        doc = {"scores": self.scores(), "n_patches": self.n_patches, "info": self.info,
               "per_class": {c: {k: v.tolist() for k, v in self.per_class(c).items()}
                             for c in self.confusion},
               "confusion": {c: cm.tolist() for c, cm in self.confusion.items()}, "made_by": provenance()}
        if any(v.any() for v in self.no_class.values()):
            doc["no_class"] = {c: v.tolist() for c, v in self.no_class.items()}
        doc = json.loads(json.dumps(doc))  # hashed as it reads back (keys as strings)
        return write_text(path, json.dumps(doc | {"content_sha256": content_sha256(doc)}, indent=1))

    def changed_inputs(self) -> list[str] | None:
        """The files the scores were made from (``info["input_files"]``, recorded by
        :func:`~.whole_scenes.score_scenes`) that are gone or no longer as recorded: another size, or
        another modification time and SHA-256 (:func:`~seaice_lib.data.store.changed_files`); each
        ``"PATH (sha256 0123456789ab), changed since"`` or ``"..., gone"``. None for an evaluation that
        records none (written before evaluations recorded their files)."""
        recorded = self.info.get("input_files")
        return None if recorded is None else changed_files(recorded)

    @classmethod
    def from_json(cls, path: str | Path) -> Evaluation:
        """The evaluation :meth:`to_json` wrote; ValueError naming ``path`` for anything else,
        :class:`EvaluationEdited` for one edited since it was written (its ``content_sha256``; one
        written before evaluations recorded it is read, :attr:`content_checked` False)."""
        doc = read_json(path, {"n_patches": (int, None), "info": ({"val_scenes": ([str], None),
                                                                   "input_files": ([INPUT_FILE], None)}, None),
                               "content_sha256": (str, None)})
        confusion = doc.get("confusion")
        if not isinstance(confusion, dict) or set(confusion) != set(schema.CHARTS):
            raise ValueError(f"{path}: holds no confusion matrices of {', '.join(schema.CHARTS)} "
                             "(not written by seaice's evaluation)")
        try:
            matrices = {c: np.asarray(confusion[c], np.int64) for c in schema.CHARTS}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: its confusion matrices hold something other than counts") from None
        bad = [c for c, m in matrices.items() if m.shape != (schema.N_CLASSES[c],) * 2 or (m < 0).any()]
        if bad:
            raise ValueError(f"{path}: confusion {', '.join(bad)}: not square matrices of counts of the chart's classes")
        given = doc.get("no_class") or {}
        try:
            no_class = {c: np.asarray(v, np.int64) for c, v in given.items()} if isinstance(given, dict) else None
        except (TypeError, ValueError):
            no_class = None
        if no_class is None or any(c not in matrices or v.shape != (schema.N_CLASSES[c],) or (v < 0).any()
                                   for c, v in no_class.items()):
            raise ValueError(f"{path}: no_class: not counts of labelled pixels per class of the charts")
        if edited(doc):
            raise EvaluationEdited(f"{path}: edited since it was written (its content_sha256 is not that of its "
                                   "content): its scores are not the ones it was scored with; score it again "
                                   "(`seaice train` for a run's evaluation.json, else `seaice evaluate`)")
        return cls(matrices, doc.get("n_patches") or 0, doc.get("info") or {}, no_class, "content_sha256" in doc)


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def to_device(batch: Mapping, device: torch.device | str) -> dict:
    """A batch dict (nested dicts too) with every tensor on ``device``, a compact batch widened
    there to the model's dtypes (:func:`~seaice_lib.data.dataset.widen`)."""
    def move(batch: Mapping) -> dict:
        return {k: move(v) if isinstance(v, Mapping) else
                (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()}
    return widen(move(batch))


def predict_batches(model: nn.Module, batches: Iterable[dict], device: torch.device | str = "cpu",
                    amp_dtype: torch.dtype | None = None, progress: bool = False, total: int | None = None
                    ) -> Iterator[tuple[dict, dict[str, torch.Tensor]]]:
    """(batch on ``device``, float32 outputs ``{chart: (B, K, P, P)}``) for each batch, in eval mode
    under ``torch.inference_mode`` (and autocast to ``amp_dtype``); the model's mode is restored.
    A model that knows its training modalities (``model.modalities``) is given only those."""
    modalities = getattr(model, "modalities", MODALITIES)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        with torch.inference_mode():
            for batch in logs.progress_bar(batches, desc="predict", unit="batch", total=total, disable=not progress,
                              leave=False):
                batch = to_device(keep_modalities(batch, modalities), device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = model(batch)
                yield batch, {c: o.float() for c, o in outputs.items()}
    finally:
        model.train(was_training)


# what a worker must outlive: torchrun and Slurm signal a trainer's whole process group
WORKER_IGNORED_SIGNALS = TERMINAL_STOP_SIGNALS


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker ignores SIGTERM, SIGUSR1 and SIGINT.

    The trainer handles them (checkpoint, then exit) and ends its workers itself; torch's workers
    would die of them (SIGTERM from anyone but their parent), and the trainer raise before its
    checkpoint. A worker whose trainer is gone still exits (torch's watchdog, within seconds).
    """
    for sig in WORKER_IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def check_downsample(model: nn.Module, downsample: int, holder: str = "the settings have") -> None:
    """Raise unless ``model`` places its 2 km cells for ``downsample`` (80 m pixels per patch pixel),
    the spacing of the patches or tiles it is given; ``holder`` names where that comes from."""
    trained = getattr(model, "downsample", None)
    if isinstance(trained, int) and trained != downsample:
        raise ValueError(f"the model places 2 km cells for downsample {trained}, {holder} {downsample}")


def evaluate_patch_proxy(model: nn.Module, dataset: PatchDataset, batch_size: int = 16,
                         device: torch.device | str = "cpu", num_workers: int = 0, progress: bool = False,
                         amp_dtype: torch.dtype | None = None, info: dict | None = None) -> Evaluation:
    """Score ``model`` on every patch of ``dataset`` with the streaming official metric: a proxy
    of the official score, which counts whole scenes at 80 m
    (:func:`~seaice_lib.engine.whole_scenes.evaluate_scenes`).

    When ``torch.distributed`` is initialised, each rank takes every ``world``-th patch and the
    counts are all-reduced: every rank returns the same :class:`Evaluation`. A model built for
    another ``downsample`` than the store's is refused (:func:`check_downsample`).
    """
    if dataset.augment:
        raise ValueError("evaluate on a dataset without augmentation")
    check_downsample(model, dataset.downsample, f"the store {dataset.store} has downsample")
    rank, world = _rank_and_world()
    part = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate, worker_init_fn=ignore_stop_signals)
    acc = AutoIceAccumulator()
    for batch, outputs in predict_batches(model, loader, device, amp_dtype, progress and rank == 0):
        try:
            acc.update(batch["labels"], to_classes(outputs))
        except ValueError as err:  # labels outside the classes: a store edited or damaged since it was cut
            scenes = sorted({dataset.scene_ids[int(i)] for i in batch["scene"]}) if "scene" in batch else []
            raise ValueError(f"{dataset.store}: {err} in a batch of the scenes {', '.join(scenes) or '(not recorded)'}: "
                             "delete their groups under scenes/ and run `seaice patches` again") from None
    acc.all_reduce()
    return Evaluation({c: acc.confusion_matrix(c) for c in schema.CHARTS}, len(dataset), dict(info or {}))


def compare_runs(runs_dir: str | Path, walk: Walk | None = None) -> pd.DataFrame:
    """One row per run folder under ``runs_dir`` whose ``evaluation.json`` scores its ``model.pt``
    (:func:`run_evaluations`: the others named in ``walk`` and left out), best combined score first.

    Columns: run, model, combined, SIC, SOD, FLOE (official %), SOD/FLOE rare-class F1 (%),
    and from the run's info: steps, train_seconds, n_params when recorded.
    """
    from .run import Run  # a run reads its evaluation through this module

    return runs_table(run_evaluations(Run.runs_in(runs_dir), walk))


def run_evaluations(runs: Iterable[Run], walk: Walk | None = None) -> dict[str, Evaluation]:
    """By run folder name, the evaluation of each of ``runs`` that scores the run's ``model.pt`` on
    the files it records as they are now (:meth:`~.run.Run.model_evaluation`), its info holding what
    :func:`runs_table` reads (:data:`RUN_INFO`) and its ``model_inputs`` what the weights' model
    reads (:attr:`~.run.Run.inputs`, whatever an older release recorded); each other run is named in
    ``walk`` and left out (without a ``walk``: its ValueError)."""
    walk = walk or Walk("runs", stop_on_failure=True)
    evaluations = {}
    for run in runs:
        def read(run=run):
            evaluation = run.model_evaluation()
            check_shape(evaluation.info, RUN_INFO, str(run.evaluation_file), "info")
            evaluation.model_inputs = run.inputs
            return evaluation
        if (evaluation := walk.attempt(str(run.folder), read)) is not None:
            evaluations[run.folder.name] = evaluation
    return evaluations


def validation_set(evaluation: Evaluation) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The validation scene ids an evaluation scored (``info.val_scenes``) and the SHA-256 of each of
    their files it read (the scene, its reference file; ``info.input_files``, earlier acquisitions
    left out), as ``(scene id, sha256)``: runs scored on other versions of the same scenes differ."""
    ids = tuple(sorted(evaluation.info.get("val_scenes") or []))
    files = {(schema.scene_key(entry["file"]), entry["sha256"]) for entry in evaluation.info.get("input_files") or []}
    return ids, tuple(sorted(entry for entry in files if entry[0] in ids))


def validation_sets(evaluations: Mapping[str, Evaluation]) -> dict[str, str]:
    """Run -> the label (``"A"``, ``"B"``, ...) of the scene set it was validated on
    (:func:`validation_set`), where the runs were validated on more than one: their scores are not
    comparable across sets. {} where all were validated on one set."""
    sets = {name: validation_set(ev) for name, ev in evaluations.items()}
    if len(set(sets.values())) < 2:
        return {}
    labels = {scenes: chr(ord("A") + i) for i, scenes in enumerate(dict.fromkeys(sets.values()))}
    return {run: labels[scenes] for run, scenes in sets.items()}


def runs_table(evaluations: Mapping[str, Evaluation]) -> pd.DataFrame:
    """:func:`compare_runs`' table of evaluations by run name, with the modalities each model read
    (``inputs``: two runs of one model on other inputs are not two seeds of it); where the runs were
    validated on several scene sets (:func:`validation_sets`), a column ``validation scenes`` says
    which run saw which (``"A (2)"``: set A, 2 scenes): compare scores within one set only."""
    import pandas as pd  # only here: training processes need not load it

    rows = []
    for run, ev in evaluations.items():
        recorded = ev.info.get("modalities")
        rows.append({"run": run, "model": ev.info.get("model", run),
                     "inputs": ev.model_inputs or (" + ".join(recorded) if recorded else "not recorded"),
                     **ev.scores(), "SOD rare F1": round(ev.rare_f1("SOD"), 3),
                     "FLOE rare F1": round(ev.rare_f1("FLOE"), 3),
                     **{k: ev.info[k] for k in ("steps", "train_seconds", "n_params") if k in ev.info}})
    columns = ["run", "model", "inputs", "combined", "SIC", "SOD", "FLOE", "SOD rare F1", "FLOE rare F1"]
    table = pd.DataFrame(rows, columns=columns + [c for c in ("steps", "train_seconds", "n_params")
                                                  if any(c in r for r in rows)])
    if set_of := validation_sets(evaluations):
        table["validation scenes"] = [f"{set_of[run]} ({len(validation_set(evaluations[run])[0])})"
                                      for run in table["run"]]
    return table.sort_values("combined", ascending=False, ignore_index=True)
