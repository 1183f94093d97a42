"""Training loop: multi-task loss, AdamW/SGD with warmup and a schedule, AMP, DDP, exact resume,
learning curves on whole scenes.

:func:`train` runs one :class:`TrainConfig` into a run directory::

    out_dir/config.yaml           the configuration of the latest invocation
    out_dir/provenance.json       what made the folder: each invocation (software, commit, command, host,
                                  the step it started from) and the SHA-256 of the final model.pt
    out_dir/checkpoints/last.pt   model, optimizer, scheduler, scaler, step, epoch stats, each rank's RNG states
    out_dir/metrics.csv           one row per epoch end (and one at a time-budget stop)
    out_dir/model.pt              final weights and how to rebuild the model (:func:`~seaice_lib.engine.run.load_model`)
    out_dir/evaluation.json       final :class:`~seaice_lib.engine.evaluation.Evaluation`: the official
                                  score on the whole validation scenes at 80 m
    out_dir/curve.csv             with ``curve_steps``: the official score on the whole validation and
                                  inner-validation scenes at those steps, with training CPU seconds
    out_dir/curve/                each curve step's weights (``step_000125.pt``) and evaluations
    out_dir/tb/                   TensorBoard scalars, when ``torch.utils.tensorboard`` imports

Two validation scores, for two purposes. The ``val_*`` columns of each epoch's row in
``metrics.csv`` are a cheap *patch proxy* (:func:`~seaice_lib.engine.evaluation.evaluate_patch_proxy` on the
store's patches: one sample pixel per block, edge patches counted twice, patches under the store's
labelled share never seen); they follow learning, they are not the metric. ``evaluation.json`` is
the official metric: :func:`~seaice_lib.engine.whole_scenes.evaluate_scenes` on every labelled pixel of
the whole validation scenes at 80 m (sharded by scene under DDP), read from ``scenes_dir`` (default:
the folder the store was extracted from); its ``info["patch_proxy"]`` keeps the final patch scores.
The summary's ``scores`` are the whole-scene ones.

Learning curves (``curve_steps``, log-spaced in an experiment): at each listed step the official
metric on the whole ``val_scenes`` (in an experiment: the held-out fold) and ``inner_scenes`` (a
training region held aside), with the CPU seconds training has taken so far (``time.process_time``
of the training steps only, summed over ranks; evaluations excluded). With ``converge_min_gain``
the run stops once ``converge_patience`` curve points in a row have not raised the best inner score
by that many points (none of them more than ``converge_max_dip`` under it);
``summary["converged_step"]`` is the budget :func:`~.curves.convergence` picks. The rule reads the
inner scenes only, never the validation ones. A run continues under another rule, and under a larger
``steps`` when its schedule does not depend on the run's length (:func:`~.checkpoints.extends`): the same run as one that
had that budget from the start (docs/experiments.md, "Learning curves and the stopping rule").

Lengths are optimizer steps; an epoch is ``steps_per_epoch`` steps. Why resume is exact, how
preemption (SIGTERM/SIGUSR1 -> checkpoint -> exit 124) and DDP work: docs/models.md ("Training").
CLI: ``seaice train --config configs/demo.yaml [--set key=value ...]``, also under
``torchrun --nproc_per_node=N -m seaice_lib train ...``. A bad config (unknown key, wrong type, value
out of range) or a missing store ends in one line and exit status 2 before any data is read.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .. import logs, schema
from ..arguments import Parser
from ..atomic import FolderBusy, atomic_path, folder_lock
from ..data.dataset import PatchDataset, collate
from ..data.patches import check_up_to_date, store_scenes_dir
from ..data.samplers import DistributedClassBalancedSampler
from ..data.splits import split_scenes, store_regions
from ..data.store import store_groups_sha256, store_lacking
from ..models import create_model
from ..provenance import file_sha256, provenance
from ..sample_format import MODALITIES
from ..stages import RUN, is_run_folder, other_stage
from ..stopping import STOPPED_EXIT_CODE, StopFlag
from ..walk import one_line
from . import checkpoints
from .checkpoints import CHECKPOINT_FORMAT, check_resumable, check_same_data
from .config import STORE_FILLED, ConfigError, TrainConfig, amp_dtype, job_resources, parse_overrides
from .curves import CURVE_COLUMNS, convergence, curve_scores
from .distributed import Distributed, environment_int, init_distributed, rng_states, seed_everything, set_rng_states
from .evaluation import Evaluation, EvaluationEdited, evaluate_patch_proxy, ignore_stop_signals, to_device
from .losses import MultiTaskLoss, store_class_weights
from .run import build_model, model_spec, record_provenance
from .whole_scenes import evaluate_scenes, scene_files

log = logging.getLogger(__name__)
METRICS_COLUMNS = (["epoch", "step", "lr", "train_loss"] + [f"loss_{c}" for c in schema.CHARTS]
                   + ["samples_per_s", "elapsed_s"] + [f"val_{c}" for c in schema.CHARTS] + ["val_combined"])


class NonFiniteLoss(ValueError):
    """Training stopped: the loss of a step was NaN or infinite (the message names the step and scenes)."""


def shuffled_labels(labels: Mapping[str, torch.Tensor], seed: int, rank: int, step: int
                    ) -> dict[str, torch.Tensor]:
    """Label maps ``{chart: (B, P, P)}`` permuted across the batch: the label-randomisation control
    of Adebayo et al. (NeurIPS 2018), never for real training (``TrainConfig.shuffle_labels``).

    One permutation for every chart (a sample's charts move together onto another sample's inputs),
    drawn from (``seed``, ``rank``, ``step``) alone: the same each time a step runs, so resume stays
    exact. With B >= 2 no batch keeps its labels in place (an identity draw is rolled by one).
    """
    b = next(iter(labels.values())).shape[0]
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, rank, step)).generate_state(1)[0]))
    order = torch.randperm(b, generator=generator)
    if b > 1 and torch.equal(order, torch.arange(b)):
        order = order.roll(1)
    return {chart: values[order.to(values.device)] for chart, values in labels.items()}


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float,
              schedule: str = "cosine") -> float:
    """LR multiplier for optimizer step ``step`` (0-based).

    Linear warmup ``(step + 1) / warmup_steps`` (the first step already moves), then ``"cosine"``
    from 1 at ``warmup_steps`` down to ``min_lr_ratio`` at ``total_steps``, ``"constant"`` 1, or
    ``"inverse_sqrt"`` ``sqrt(warmup_steps / step)``, at least ``min_lr_ratio``. The last two do
    not depend on the run's length, so a learning curve's early points are those of a shorter run.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return max(min_lr_ratio, math.sqrt(max(1, warmup_steps) / max(1, step)))
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) with weight decay on parameters of >= 2 dims only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
        lr_factor, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, min_lr_ratio=cfg.min_lr_ratio,
        schedule=cfg.schedule))


class MetricsLog:
    """``metrics.csv`` (or ``curve.csv``): rewritten whole (temp name, rename) on every row, so it
    is never half-written."""

    def __init__(self, path: Path, columns: list[str] = METRICS_COLUMNS):
        self.path, self.columns = path, columns
        self.rows: list[dict] = []
        if path.exists():
            with path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))

    def truncate(self, step: int) -> None:
        """Drop rows written after ``step`` (they belong to a trajectory the checkpoint does not hold)."""
        kept = [r for r in self.rows if int(r["step"]) <= step]
        if len(kept) != len(self.rows) or not self.path.exists():
            self.rows = kept
            self._write()

    def append(self, row: Mapping) -> None:
        self.rows.append({k: row.get(k, "") for k in self.columns})
        self._write()

    def _write(self) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


class Trainer:
    """One invocation of a run: builds everything from the config, resumes, loops, writes files."""

    def __init__(self, cfg: TrainConfig, dist: Distributed, on_step: Callable[[int, nn.Module], None] | None):
        self.cfg, self.dist, self.on_step = cfg, dist, on_step
        self.main = dist.rank == 0
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / "checkpoints" / "last.pt"
        self.amp_dtype = amp_dtype(cfg.amp, dist.device)
        if cfg.amp != "none" and self.amp_dtype is None:
            warnings.warn(f"amp={cfg.amp!r} needs CUDA (bf16 also a CPU with bf16 instructions); training in fp32 "
                          f"on {dist.device}", stacklevel=3)
        self._data()
        self.spec = model_spec(cfg, self.train_set.settings, cfg.store)
        seed_everything(cfg.seed)  # the same on every rank: a single process's initial weights
        try:
            model = build_model(self.spec)
        except TypeError as err:  # an argument the model does not take, or a value of the wrong kind
            raise ConfigError(f"model_kwargs {cfg.model_kwargs}: {cfg.model} ({cfg.model_size}) refuses them: "
                             f"{one_line(err)}") from None
        except ValueError as err:  # a value it cannot take: one given (a usage error), else the store's patch size
            try:
                create_model(cfg.model, cfg.model_size, **{k: v for k, v in cfg.model_kwargs.items()
                                                           if k not in STORE_FILLED})
            except (TypeError, ValueError):
                raise ConfigError(f"model_kwargs {cfg.model_kwargs}: {cfg.model} ({cfg.model_size}) refuses them: "
                                  f"{one_line(err)}") from None
            raise ValueError(f"{cfg.model} ({cfg.model_size}) on store {cfg.store} (patch "
                             f"{self.train_set.settings['patch']}): {one_line(err)}") from None
        self.model = model.to(dist.device)
        if cfg.compile:
            self.model.compile()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.ddp = DistributedDataParallel(self.model, device_ids=[dist.device.index]
                                           if dist.device.type == "cuda" else None) if dist.world > 1 else None
        seed_everything(cfg.seed, dist.rank)  # training draws (dropout masks): one stream per rank
        weights = None if cfg.loss.class_weighting == "none" else \
            store_class_weights(cfg.store, cfg.loss.class_weighting, cfg.loss.max_class_weight)
        self.loss_fn = MultiTaskLoss(cfg.loss, weights, cfg.sic_mode).to(dist.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.train_seconds, self.train_cpu_seconds = 0, 0.0, 0.0
        self.curve_rows: list[dict] = []  # curve.csv's rows, on every rank (the stopping rule reads them)
        self.curve: MetricsLog | None = None  # curve.csv, written by rank 0
        # running loss sums of the epoch, kept on the device: no host sync per step
        self.epoch_sums = torch.zeros(1 + len(schema.CHARTS), dtype=torch.float64, device=dist.device)
        self.epoch_seconds = 0.0
        self.last_eval: tuple[int, Evaluation] | None = None
        self.last_scene_eval: tuple[int, Evaluation] | None = None  # the validation scenes at a curve step
        self.saved_step: int | None = None

    def _data(self) -> None:
        cfg = self.cfg
        if cfg.train_scenes is not None:
            train_ids, val_ids = cfg.train_scenes, cfg.val_scenes or []  # both or neither (TrainConfig)
        else:
            train_ids, val_ids = split_scenes(cfg.store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
        if not train_ids:
            raise ValueError(f"{cfg.store}: no training scenes after the split")
        named = [("train_scenes", train_ids), ("val_scenes", val_ids)] if cfg.train_scenes is not None else []
        try:
            held = store_regions(cfg.store)  # the scenes of its index (one it cannot read is named below)
        except (ValueError, KeyError, OSError):
            held, named = {}, []
        for name, ids in [*named, ("inner_scenes", cfg.inner_scenes or [] if held else [])]:
            if unknown := [s for s in ids if s not in held]:  # a typo, not a store to cut again
                raise ConfigError(f"{name}: {', '.join(unknown)} not among the scenes of store {cfg.store} "
                                  f"({len(held)}: {logs.first_few(sorted(held), 5)})")
        self.train_ids, self.val_ids = list(train_ids), list(val_ids)
        if lacking := store_lacking(cfg.store):
            log.warning("%s was indexed without %d scenes of its folder that have no group (%s): training "
                        "on the scenes it holds", cfg.store, len(lacking), logs.first_few(lacking, 10))
        scenes_dir = Path(cfg.scenes_dir) if cfg.scenes_dir else store_scenes_dir(cfg.store)
        self.inner_ids = list(cfg.inner_scenes or [])
        scored = self.train_ids + self.val_ids + self.inner_ids  # the inner scenes' scores decide where it stops
        # the groups `seaice patches` would keep: as cut, by this release, from the folder's files and sequences
        # where the folder is here (one version of each scene); their arrays read once per run
        check_up_to_date(cfg.store, scenes_dir if scenes_dir is not None and scenes_dir.is_dir() else None,
                         scored, read_arrays=True)
        self.groups_sha256 = store_groups_sha256(cfg.store, scored)
        # a checkpoint taken before unhashed groups were cut again into the same patches resumes
        self.former_groups_sha256 = store_groups_sha256(cfg.store, scored, former=True)
        self.train_set = PatchDataset(cfg.store, train_ids, augment=cfg.augment, seed=cfg.seed,
                                      modalities=cfg.modalities, compact=True)  # widened by to_device
        self.val_set = PatchDataset(cfg.store, val_ids, modalities=cfg.modalities, compact=True) \
            if cfg.evaluate and val_ids else None
        self.scenes_dir = self._scenes_folder() if self.val_set is not None or self.inner_ids else None
        self.val_paths = self._scene_paths(self.val_ids) if self.val_set is not None else []
        self.inner_paths = self._scene_paths(self.inner_ids)
        if len(self.train_set) == 0:
            raise ValueError(f"{cfg.store}: the training scenes hold no patches")
        if cfg.batch_size > len(self.train_set):  # every batch would repeat patches (and may not fit in memory)
            raise ConfigError(f"batch_size {cfg.batch_size}: more than the {len(self.train_set)} training patches of "
                              f"store {cfg.store}; give at most {len(self.train_set)}")
        self.sampler = DistributedClassBalancedSampler(
            self.train_set, cfg.balance_chart, cfg.balance_power,
            num_samples=cfg.steps_per_epoch * cfg.batch_size * self.dist.world, seed=cfg.seed,
            num_replicas=self.dist.world, rank=self.dist.rank)

    def _scenes_folder(self) -> Path:
        """The folder of the scenes the whole-scene evaluations read."""
        cfg = self.cfg
        folder = Path(cfg.scenes_dir) if cfg.scenes_dir else store_scenes_dir(cfg.store)
        if folder is None:
            raise ValueError(f"scenes_dir is not set and the store {cfg.store} records no scenes folder "
                             "(built before stores recorded it): set scenes_dir to the folder of *_prep.nc "
                             "scenes the store was built from, or evaluate: false")
        source = "scenes_dir" if cfg.scenes_dir else f"scenes_dir (recorded by the store {cfg.store})"
        if not folder.is_dir():  # the config's own entry mistyped, or the store's folder moved since
            raise (ConfigError if cfg.scenes_dir else ValueError)(
                f"{source} {folder}: no such folder; set scenes_dir to the folder of *_prep.nc scenes the store "
                "was built from, or evaluate: false")
        return folder

    def _scenes_dir(self) -> Path:
        """``scenes_dir``, set whenever there are scenes to evaluate."""
        assert self.scenes_dir is not None
        return self.scenes_dir

    def _scene_paths(self, ids: list[str]) -> list[Path]:
        try:
            return scene_files(ids, self._scenes_dir()) if ids else []
        except ValueError as err:
            raise ValueError(f"scenes_dir: {err}") from None

    # ---- checkpoints
    def save_checkpoint(self) -> None:
        """Write ``checkpoints/last.pt`` (rank 0) for the current step; every rank waits for it."""
        self.saved_step = self.step
        ranks = self.rank_states()
        if self.main:
            self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            checkpoints.save({"format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "world_size": self.dist.world,
                   "spec": self.spec, "step": self.step, "train_seconds": self.train_seconds,
                   "train_cpu_seconds": self.train_cpu_seconds,
                   "epoch_seconds": self.epoch_seconds, "ranks": ranks, "data": self.data_record(),
                   "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()},
                  self.ckpt_path)
        self.dist.barrier()

    def data_record(self) -> dict:
        """What the run trains, validates and stops on: the split's scene ids and the inner ones, the
        training patches and a hash of how their scene groups were cut
        (:func:`~seaice_lib.data.store.store_groups_sha256`): a resume on a store that since grew or
        was cut again would silently train on other data, or keep the curve's scores of scenes
        changed since."""
        return {"train_scenes": self.train_ids, "val_scenes": self.val_ids, "inner_scenes": self.inner_ids,
                "train_patches": len(self.train_set), "groups_sha256": self.groups_sha256}

    def rank_states(self) -> list[dict]:
        """What each rank holds of its own, in rank order: ``rng`` (its RNG states: ranks draw their
        own dropout masks) and ``epoch_sums`` (its loss sums of the epoch so far). A collective
        under DDP: every rank calls it."""
        states = {"rng": rng_states(self.dist.device), "epoch_sums": self.epoch_sums.cpu()}
        if self.dist.world == 1:
            return [states]
        gathered: list = [None] * self.dist.world
        torch.distributed.all_gather_object(gathered, states)  # NCCL and gloo alike
        return gathered

    def resume(self) -> bool:
        """Load ``checkpoints/last.pt`` when there is one; True if it did."""
        if not self.ckpt_path.exists():
            return False
        ckpt = checkpoints.read(self.ckpt_path)
        check_resumable(self.cfg, ckpt, self.ckpt_path, self.dist.world)
        ours, former = self.data_record(), self.former_groups_sha256
        if isinstance(ckpt.get("data"), dict) and "inner_scenes" not in ckpt["data"]:  # hashed before inner scenes were
            split = self.train_ids + self.val_ids
            ours["groups_sha256"] = store_groups_sha256(self.cfg.store, split)
            former = store_groups_sha256(self.cfg.store, split, former=True)
        check_same_data(ckpt.get("data"), ours, self.ckpt_path, self.cfg.store, former)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.train_seconds = ckpt["step"], ckpt["train_seconds"]
        self.train_cpu_seconds = ckpt.get("train_cpu_seconds", 0.0)  # absent before learning curves
        self.epoch_seconds = ckpt["epoch_seconds"]
        own = ckpt["ranks"][self.dist.rank]
        self.epoch_sums = own["epoch_sums"].to(self.dist.device, copy=True)
        set_rng_states(own["rng"], self.dist.device)
        return True

    # ---- data
    def epoch_loader(self, epoch: int, skip_batches: int) -> DataLoader:
        """The epoch's batches for this rank, minus the first ``skip_batches`` (skipped as indices).

        Its workers ignore the stop signals: the trainer checkpoints and ends them itself."""
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        indices = list(self.sampler)[skip_batches * self.cfg.batch_size:]
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=indices, collate_fn=collate,
                          num_workers=self.cfg.num_workers, drop_last=True, generator=generator,
                          worker_init_fn=ignore_stop_signals, pin_memory=self.dist.device.type == "cuda")

    # ---- one optimizer step
    def train_step(self, batch: dict) -> None:
        cfg, model = self.cfg, self.ddp or self.model
        model.train()
        self.check_labels(batch)
        batch = to_device(batch, self.dist.device)
        with torch.autocast(self.dist.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = model(batch)
        labels = shuffled_labels(batch["labels"], cfg.seed, self.dist.rank, self.step) \
            if cfg.shuffle_labels else batch["labels"]
        loss, parts = self.loss_fn(outputs, labels)
        self.check_finite(loss, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.epoch_sums += torch.stack([loss.detach(), *parts.values()]).double()
        self.step += 1

    def check_labels(self, batch: Mapping) -> None:
        """Refuse a batch whose labels hold a class outside the chart's classes and 255, naming the
        store, the chart and the batch's scenes (a store edited or damaged since it was cut): the
        loss would stop with an index error naming nothing (on CUDA, a device-side assert)."""
        for chart, labels in batch["labels"].items():
            bad = (labels != schema.CHART_FILL) & ((labels < 0) | (labels >= schema.N_CLASSES[chart]))
            if bad.any():
                ids = self.train_set.scene_ids
                scenes = sorted({ids[int(i)] for i in batch["scene"]}) if "scene" in batch else ["(not recorded)"]
                raise ValueError(f"{self.cfg.store}: {chart} labels hold classes {sorted(labels[bad].unique().tolist())[:5]} "
                                 f"outside 0..{schema.N_CLASSES[chart] - 1} and {schema.CHART_FILL} in a batch of the scenes "
                                 f"{', '.join(scenes)}: delete their groups under scenes/ and run `seaice patches` again")

    def check_finite(self, loss: torch.Tensor, batch: Mapping) -> None:
        """Stop at the first non-finite loss, on every rank, naming the step and the batch's scenes
        (a NaN loss would otherwise train NaN weights to the end)."""
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        if self.dist.world > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not int(finite.item()):
            ids = self.train_set.scene_ids
            scenes = sorted({ids[int(i)] for i in batch["scene"]}) if "scene" in batch else ["(not recorded)"]
            raise NonFiniteLoss(f"{self.out}: the loss is not finite at step {self.step + 1} "
                                     f"(value {loss.item()} on this rank); the batch's scenes: {', '.join(scenes)}. "
                                     "Check those scenes' inputs (seaice patches reports values it masked) and "
                                     "the learning rate")

    def should_stop(self, flag: StopFlag) -> str | None:
        """``"preempted"``, ``"time_budget"`` or None, agreed by every rank."""
        code = 2 if flag.signal is not None else \
            1 if self.cfg.time_budget_s is not None and self.train_seconds >= self.cfg.time_budget_s else 0
        if self.dist.world > 1:
            t = torch.tensor([code], device=self.dist.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            code = int(t.item())
        return {0: None, 1: "time_budget", 2: "preempted"}[code]

    def validate(self) -> Evaluation | None:
        """The validation scores at this step (computed once per step)."""
        if self.val_set is None:
            return None
        if self.last_eval is None or self.last_eval[0] != self.step:
            self._share_buffers()
            ev = evaluate_patch_proxy(self.model, self.val_set, self.cfg.eval_batch_size, self.dist.device,
                          self.cfg.num_workers)
            self.last_eval = (self.step, ev)
        return self.last_eval[1]

    def _share_buffers(self) -> None:
        """BN running stats: every rank scores with rank 0's, as saved."""
        if self.dist.world > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, 0)

    def _summed_over_ranks(self, value: float) -> float:
        if self.dist.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.dist.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    # ---- learning curve
    def record_curve(self, log: MetricsLog | None) -> None:
        """Score the whole validation and inner scenes now; a ``curve.csv`` row, and the step's
        weights and evaluations under ``curve/``."""
        if self.dist.device.type == "cuda":
            torch.cuda.synchronize()
        row = {"step": self.step, "train_s": round(self.train_seconds, 3),
               "train_cpu_s": round(self._summed_over_ranks(self.train_cpu_seconds), 3)}
        self._share_buffers()
        folder = self.out / "curve"
        for prefix, paths in (("val", self.val_paths), ("inner", self.inner_paths)):
            if not paths:
                continue
            ev = evaluate_scenes(self.model, paths, self._scenes_dir(), self.cfg.store, self.cfg.eval_batch_size,
                                 self.dist.device,
                                 info={"model": self.cfg.model, "run": self.out.name, "steps": self.step,
                                       "set": prefix, "scenes_of": f"{prefix}_scenes"})
            row |= {f"{prefix}_{k}": v for k, v in curve_scores(ev).items()}
            if prefix == "val":
                self.last_scene_eval = (self.step, ev)
            if self.main:
                ev.to_json(folder / f"step_{self.step:06d}_{prefix}.json")
        if self.main:
            checkpoints.save({"spec": self.spec, "model": self.model.state_dict(), "step": self.step},
                  folder / f"step_{self.step:06d}.pt")
            assert log is not None  # the main rank's
            log.append(row)
        self.curve_rows.append(row)

    def converged(self) -> bool:
        """The stopping rule on the inner scores so far (:func:`~.curves.convergence`)."""
        if self.cfg.converge_min_gain is None:
            return False
        return convergence(self.curve_rows, self.cfg.converge_min_gain, self.cfg.converge_patience,
                           self.cfg.converge_max_dip)[1]

    def end_epoch(self, log: MetricsLog | None, tb) -> dict:
        """Score the validation scenes and write the CSV (and TensorBoard) row of the epoch so far."""
        steps_done = self.step - (self.step - 1) // self.cfg.steps_per_epoch * self.cfg.steps_per_epoch
        sums = self.epoch_sums.clone()
        if self.dist.world > 1:
            torch.distributed.all_reduce(sums)
            sums /= self.dist.world
        means = (sums / steps_done).tolist()
        ev = self.validate()
        row = {"epoch": (self.step - 1) // self.cfg.steps_per_epoch, "step": self.step, "lr": self.lr,
               "train_loss": means[0], **{f"loss_{c}": v for c, v in zip(schema.CHARTS, means[1:])},
               "samples_per_s": steps_done * self.cfg.batch_size * self.dist.world / max(self.epoch_seconds, 1e-9),
               "elapsed_s": self.train_seconds}
        if ev is not None:
            row |= {f"val_{k}": v for k, v in ev.scores().items()}
        if log is not None:
            log.append(row)
        if tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step"):
                    tb.add_scalar(key, value, self.step)
            tb.flush()
        self.epoch_sums.zero_()
        self.epoch_seconds = 0.0
        return row

    def evaluate_scenes(self, info: dict) -> Evaluation:
        """The official score on the whole validation scenes at 80 m, sharded over the ranks (call
        after :meth:`validate`, which gives every rank rank 0's batch-norm statistics). Every score
        of a run is computed in fp32, whatever ``amp`` trains in: the score of the charts `predict` makes."""
        return evaluate_scenes(self.model, self.val_paths, self._scenes_dir(), self.cfg.store,
                               self.cfg.eval_batch_size, self.dist.device,
                               progress=self.cfg.progress and self.main, info=info)

    def finish(self, status: str) -> dict:
        """Write ``model.pt`` and ``evaluation.json`` (not after a preemption); the summary.

        ``evaluation.json`` is the whole-scene score, with the patch proxy in ``info``."""
        summary = {"status": status, "steps": self.step, "train_seconds": round(self.train_seconds, 3),
                   "train_cpu_seconds": round(self.train_cpu_seconds, 3),
                   "out_dir": str(self.out), "checkpoint": str(self.ckpt_path), "n_params": self.n_params,
                   "scores": None, "model_path": None, "evaluation_path": None,
                   "val_scenes": self.val_ids}
        if status == "preempted":
            return summary
        proxy = self.validate()
        info = {"model": self.cfg.model, "modalities": list(getattr(self.model, "modalities", MODALITIES)),
                "run": self.out.name, "steps": self.step, "train_seconds": round(self.train_seconds, 3),
                "n_params": self.n_params, "val_scenes": self.val_ids}
        if proxy is None:
            ev = None
        elif self.last_scene_eval is not None and self.last_scene_eval[0] == self.step:  # scored at a curve step
            ev = self.last_scene_eval[1]
            ev.info = {**ev.info, **info, "patch_proxy": proxy.scores()}
        else:
            ev = self.evaluate_scenes({**info, "patch_proxy": proxy.scores()})
        if self.curve_rows:
            summary["curve_path"] = str(self.out / "curve.csv")
            if self.cfg.converge_min_gain is not None:
                summary["converged_step"] = convergence(self.curve_rows, self.cfg.converge_min_gain,
                                                        self.cfg.converge_patience, self.cfg.converge_max_dip)[0]
        if self.main:
            summary["model_path"] = str(checkpoints.save({"spec": self.spec, "model": self.model.state_dict(),
                                                          "step": self.step, "data": self.data_record()},
                                                         self.out / "model.pt"))
            digest = file_sha256(self.out / "model.pt")
            record_provenance(self.out, model={"file": "model.pt", "sha256": digest, "step": self.step,
                                               "status": status})
            if ev is not None:
                ev.info = {**ev.info, "weights_sha256": digest}  # figures read it only beside these weights
                summary["evaluation_path"] = str(ev.to_json(self.out / "evaluation.json"))
        if ev is not None:
            summary["scores"] = ev.scores()
        return summary

    def run(self) -> dict:
        """Train (or resume) to the end; rank 0 holds ``out_dir`` as its only writer meanwhile."""
        with contextlib.ExitStack() as held:
            busy: Exception | None = None
            if self.main:
                try:
                    held.enter_context(folder_lock(self.out, "training"))
                except FolderBusy as err:
                    busy = err
                else:
                    if why := self.not_a_run_folder():
                        busy = ConfigError(why)
            if self.dist.world > 1:  # every rank stops when rank 0 could not hold the folder
                flag = torch.tensor([busy is not None], dtype=torch.int32, device=self.dist.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                if flag.item() and busy is None:
                    busy = FolderBusy(f"{self.out}: rank 0 could not hold the folder (another process writes it, "
                                      "or it is no run folder: rank 0 says which)")
            if busy is not None:
                raise busy
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.resume():  # refuses a checkpoint of other settings before config.yaml is touched
            self.saved_step = self.step
        elif self.main:
            self.drop_earlier_model()
        if self.main:
            cfg.to_yaml(self.out / "config.yaml")
        self.dist.barrier()
        if self.main:
            record_provenance(self.out, invocation={**provenance(), "from_step": self.step,
                                                    "world_size": self.dist.world, "device": str(self.dist.device)})
        log = MetricsLog(self.out / "metrics.csv") if self.main else None
        if log is not None:
            log.truncate(self.step)
        curve = MetricsLog(self.out / "curve.csv", CURVE_COLUMNS) if self.cfg.curve_steps else None
        if curve is not None:  # every rank reads the rows the checkpoint covers; rank 0 drops the rest
            self.curve_rows = [{k: float(v) if v != "" else math.nan for k, v in r.items()}
                               for r in curve.rows if int(r["step"]) <= self.step]
            if self.main:
                curve.truncate(self.step)
        self.curve = curve if self.main else None
        tb = _tensorboard(self.out / "tb") if self.main else None
        bar = logs.progress_bar(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.main))
        status = "converged" if self.converged() else None  # a converged run asked again ends at once
        try:
            with StopFlag() as flag:  # a signal while finishing is ignored: the run completes
                while self.step < cfg.steps and status is None:
                    status = self.run_epoch(flag, log, tb, bar)
                bar.close()
                if self.saved_step != self.step:
                    self.save_checkpoint()
                return self.finish(status or "completed")
        finally:
            bar.close()
            if tb is not None:
                tb.close()

    def earlier_outputs(self) -> list[Path]:
        """What an earlier training left in ``out_dir`` that one starting from step 0 removes
        (:meth:`drop_earlier_model`): ``export/`` only where it holds an export (``export.json``)."""
        earlier = [p for p in (self.out / "model.pt", self.out / "evaluation.json", self.out / "curve.csv",
                               self.out / "curve", self.out / "tb") if p.exists() or p.is_symlink()]
        if (self.out / "export" / "export.json").is_file() or (self.out / "export").is_symlink():
            earlier.append(self.out / "export")
        return earlier + [p for p in sorted(self.out.glob("*.json")) if p not in earlier and _is_evaluation(p)]

    def not_a_run_folder(self) -> str:
        """Why ``out_dir`` may not be trained into: it holds files of the names a training writes
        (:meth:`earlier_outputs`) but is no training's folder (:func:`~seaice_lib.stages.is_run_folder`), so
        they are someone else's; "" where it may."""
        if other := other_stage(self.out, own=(RUN,)):
            return f"out_dir {self.out}: {other}, not a run folder: give a new or empty folder"
        if is_run_folder(self.out) or not (theirs := self.earlier_outputs()):
            return ""
        return (f"out_dir {self.out}: holds {', '.join(p.name for p in theirs)} but is no run folder (no "
                "checkpoints/last.pt, and no config.yaml or provenance.json of seaice train): give a new or empty folder")

    def drop_earlier_model(self) -> None:
        """A training that starts from step 0 removes the final outputs of an earlier training in
        ``out_dir`` (its ``model.pt``, ``evaluation.json``, ``export/``, its learning curve ``curve.csv``
        and ``curve/`` with the weights and evaluations of its curve steps, its TensorBoard log ``tb/``
        (else TensorBoard draws both trainings as one), and the other evaluations
        of its weights there, such as ``seaice evaluate``'s ``evaluation_scenes.json``): until this one
        ends, the folder reads as an unfinished run, never as the earlier model under this config. A
        symbolic link among them goes as a link, what it points to stays. Only in a run folder
        (:meth:`not_a_run_folder`, asked first)."""
        earlier = self.earlier_outputs()
        for path in earlier:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if earlier:
            log.warning("%s: training starts from step 0; removed the earlier training's %s",
                                       self.out, ", ".join(p.name for p in earlier))

    def run_epoch(self, flag: StopFlag, log: MetricsLog | None, tb, bar) -> str | None:
        """Steps until the epoch ends, the run ends or a stop is agreed; the stop status or None."""
        cfg = self.cfg
        epoch, done = divmod(self.step, cfg.steps_per_epoch)
        mark, cpu_mark = time.perf_counter(), time.process_time()
        for batch in self.epoch_loader(epoch, done):
            self.train_step(batch)
            now = time.perf_counter()
            self.train_seconds += now - mark
            self.epoch_seconds += now - mark
            self.train_cpu_seconds += time.process_time() - cpu_mark
            bar.update(1)
            if self.on_step is not None:
                self.on_step(self.step, self.model)
            epoch_end = self.step % cfg.steps_per_epoch == 0 or self.step == cfg.steps
            status = self.should_stop(flag)
            if self.step in cfg.curve_steps:
                self.record_curve(self.curve)
                if status is None and self.converged():
                    status = "converged"
            if epoch_end or status in ("time_budget", "converged"):
                row = self.end_epoch(log, tb)
                bar.set_postfix(loss=f"{row['train_loss']:.4f}")
            if status is not None or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self.save_checkpoint()
            if status is not None:
                return status
            if epoch_end:
                return None
            mark, cpu_mark = time.perf_counter(), time.process_time()
        return None


def train(cfg: TrainConfig, on_step: Callable[[int, nn.Module], None] | None = None) -> dict:
    """Run (or resume) ``cfg``; a summary dict.

    Summary keys: ``status`` (``"completed"``, ``"preempted"`` or ``"time_budget"``), ``steps``,
    ``train_seconds``, ``scores`` (final official scores on the whole validation scenes at 80 m,
    None without validation or after a preemption), ``n_params``, ``out_dir``, ``checkpoint``,
    ``model_path``, ``evaluation_path``, ``val_scenes`` (the validation scene ids).
    ``on_step(step, model)`` is called on every rank after each optimizer step (tests, monitoring).
    Joins a torchrun process group when the environment describes one.
    """
    dist = init_distributed(cfg.device)
    try:
        summary = Trainer(cfg, dist, on_step).run()
        dist.barrier()  # every rank done before the group goes (gloo can abort at exit otherwise)
        return summary
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Train a sea-ice model (resumes from out_dir's checkpoint).", epilog=logs.EPILOG)
    parser.add_argument("--config", type=Path, required=True, help="YAML training config (configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry (YAML value; loss.kind=focal for nested ones)")
    parser.add_argument("--job-resources", type=int, metavar="TRAINERS",
                        help="print the sbatch options (CPUs, memory) of a SLURM task running TRAINERS trainers "
                             "of this config, and exit (slurm/sbatch.sh uses it)")
    parser.add_argument("--show", metavar="KEY", help="print the config's value of KEY (after --set), and exit")
    args = parser.parse_args(argv)
    try:  # every config problem is a usage error, found before any data is read
        cfg = TrainConfig.from_yaml(args.config, **parse_overrides(args.overrides))
        if args.job_resources is not None:
            print(" ".join(job_resources(cfg, args.job_resources)))
            return 0
    except ValueError as err:
        parser.error(str(err))
    if args.show is not None:
        if args.show not in {f.name for f in dataclasses.fields(TrainConfig)}:
            parser.error(f"--show {args.show}: not a config entry")
        print(getattr(cfg, args.show))
        return 0
    if not Path(cfg.store).is_dir():
        parser.error(f"store {cfg.store}: no such patch store (build it with `seaice patches`)")
    summary = train(cfg)  # a ConfigError found once the store is read: a usage error (seaice_lib.cli)
    if environment_int("RANK", 0) == 0:
        print(json.dumps(summary, indent=1), flush=True)
    return STOPPED_EXIT_CODE if summary["status"] == "preempted" else 0  # converged: 0 too


def _is_evaluation(path: Path) -> bool:
    """Whether ``path`` holds an evaluation (:meth:`Evaluation.from_json` reads it, or finds it edited)."""
    try:
        Evaluation.from_json(path)
    except EvaluationEdited:
        return True
    except (ValueError, OSError):
        return False
    return True
