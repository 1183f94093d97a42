"""The training configuration: :class:`TrainConfig`, read from YAML with every entry's type and
value checked (one line naming the entry), and which entries a resume must match (each field's
``resume`` mark, :data:`RESUME_FIELDS`). The trainer: :mod:`.training`."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from .. import schema, yamldoc
from ..arguments import UsageError, once_each
from ..atomic import write_text
from ..models import SIC_MODES, model_names, model_sizes
from ..sample_format import MODALITIES
from ..stages import NOTEBOOK_MODEL, NOTEBOOK_RUN_FOLDER
from ..walk import one_line
from .losses import LossConfig

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "inverse_sqrt")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` gives on ``device``, None for fp32: bf16 on CUDA and on CPUs with
    bf16 instructions (AVX512-BF16 or AMX, as oneDNN reports them); fp16 on CUDA only."""
    dtype = AMP_DTYPES[amp]
    if device.type == "cuda" or dtype is None:
        return dtype
    return dtype if device.type == "cpu" and dtype is torch.bfloat16 and cpu_has_bf16() else None


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a mapping"}


STORE_FILLED = ("downsample", "img_size", "sar_channels", "sic_mode")  # model_kwargs training fills from the store


class ConfigError(UsageError):
    """A config entry training finds unusable only once it reads the store (a ``scenes_dir`` that is
    no folder, ``model_kwargs`` the model refuses, an ``out_dir`` that is no run folder): ``seaice
    train`` reports it as a usage error."""


def setting(default=dataclasses.MISSING, *, resume: bool, factory=dataclasses.MISSING):
    """A :class:`TrainConfig` field; ``resume``: whether it shapes the trajectory, so that a
    checkpoint resumes only a run that agrees on it (:data:`RESUME_FIELDS`; every field says)."""
    return field(default=default, default_factory=factory, metadata={"resume": resume})


@dataclass
class TrainConfig:
    """One training run. Lengths are in optimizer steps; ``batch_size`` is per rank."""

    store: str = setting(resume=False)  # a copy elsewhere resumes (staged to node-local disk): the data
    # itself is checked on resume, by the split's scene ids and patch counts (checkpoints.check_same_data)
    out_dir: str = setting(resume=False)
    model: str = setting("unet", resume=True)  # registry name (seaice_lib.models.create_model)
    model_size: str = setting("small", resume=True)  # "tiny" | "small" | "base"
    model_kwargs: dict = setting(factory=dict, resume=True)  # downsample, sar_channels, sic_mode filled from the store/config
    sic_mode: str = setting("classification", resume=True)  # or "regression" (SIC as one real-valued channel, MSE)
    loss: LossConfig = setting(factory=LossConfig, resume=True)  # a LossConfig or a dict of its fields
    optimizer: str = setting("adamw", resume=True)  # "adamw" | "sgd" (with Nesterov momentum)
    lr: float = setting(1e-3, resume=True)  # peak learning rate
    schedule: str = setting("cosine", resume=True)  # after warmup: "cosine" to lr * min_lr_ratio at `steps`,
    # "constant", "inverse_sqrt"
    min_lr_ratio: float = setting(0.01, resume=True)  # cosine ends at lr * min_lr_ratio; inverse_sqrt never goes below it
    weight_decay: float = setting(0.01, resume=True)  # on weights of >= 2 dims only (not biases, not norms)
    momentum: float = setting(0.9, resume=True)  # SGD only
    warmup_steps: int = setting(100, resume=True)
    steps: int = setting(1000, resume=True)  # run length
    steps_per_epoch: int = setting(100, resume=True)  # evaluation and a CSV row after each epoch
    batch_size: int = setting(16, resume=True)  # per rank
    num_workers: int = setting(0, resume=False)  # DataLoader workers per trainer process
    job_mem: str | None = setting(None, resume=False)  # sbatch --mem of a SLURM training job ("64G"); None: the
    # cluster's default (slurm/sbatch.sh reads it with --job-resources)
    grad_clip: float | None = setting(1.0, resume=True)  # max global gradient norm; None or 0: no clipping
    amp: str = setting("none", resume=True)  # "none" | "bf16" | "fp16" (see amp_dtype; else fp32, with a warning)
    compile: bool = setting(False, resume=False)  # torch.compile the model in place (same state dict, float rounding only)
    seed: int = setting(0, resume=True)
    checkpoint_every: int = setting(500, resume=False)  # steps; 0: only when stopping
    balance_chart: str = setting("SOD", resume=True)  # ClassBalancedSampler chart
    balance_power: float = setting(0.5, resume=True)  # 0: uniform draws
    augment: bool = setting(True, resume=True)  # dihedral flips/rotations
    shuffle_labels: bool = setting(False, resume=True)  # a sanity-check control, never for real training (shuffled_labels)
    modalities: list[str] = setting(factory=lambda: list(MODALITIES), resume=True)
    val_fraction: float = setting(0.2, resume=True)
    split_by: str = setting("region", resume=True)  # "region" | "scene"
    split_seed: int = setting(0, resume=True)
    train_scenes: list[str] | None = setting(None, resume=True)  # explicit split (both or neither)
    val_scenes: list[str] | None = setting(None, resume=True)
    evaluate: bool = setting(True, resume=True)  # score the validation scenes each epoch (patches) and at the end (whole scenes)
    scenes_dir: str | None = setting(None, resume=False)  # the *_prep.nc scenes of the final evaluation (default: the store's)
    device: str = setting("auto", resume=False)  # "auto" | "cpu" | "cuda"
    eval_batch_size: int = setting(32, resume=False)
    progress: bool = setting(True, resume=False)
    time_budget_s: float | None = setting(None, resume=False)  # stop (checkpointed) after this many training seconds
    curve_steps: list[int] = setting(factory=list, resume=True)  # whole-scene scores at these steps (curve.csv)
    inner_scenes: list[str] | None = setting(None, resume=True)  # inner validation: curve scores, stopping rule
    # (never trained on)
    # The stopping rule (curves.convergence) decides only where a run ends, not its steps: a run
    # resumed under another rule is the same run, continued or ended by the new one.
    converge_min_gain: float | None = setting(None, resume=False)  # stop when the best inner combined
    # score stops rising by this (points) ...
    converge_patience: int = setting(2, resume=False)  # ... over this many curve points in a row ...
    converge_max_dip: float | None = setting(None, resume=False)  # ... none of them this far under the best

    def __post_init__(self):
        """Check every entry's type (:func:`_typed`) and value: a bad config fails here, naming
        the entry, before any store is opened or model built."""
        entries = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in _typed(TrainConfig, entries).items():
            setattr(self, name, value)
        if isinstance(self.loss, Mapping):
            self.loss = _build(LossConfig, self.loss, "loss")
        sizes = model_sizes(self.model) if self.model in model_names() else ()
        checks = {"model": (self.model, model_names()), "model_size": (self.model_size, sizes),
                  "optimizer": (self.optimizer, OPTIMIZERS), "amp": (self.amp, tuple(AMP_DTYPES)),
                  "schedule": (self.schedule, SCHEDULES),
                  "device": (self.device, ("auto", "cpu", "cuda")), "split_by": (self.split_by, ("region", "scene")),
                  "sic_mode": (self.sic_mode, SIC_MODES), "balance_chart": (self.balance_chart, schema.CHARTS)}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown:
            raise ValueError(f"modalities must be among {MODALITIES}, not {unknown}")
        if twice := sorted({m for m in self.modalities if self.modalities.count(m) > 1}):
            raise ValueError(f"modalities {list(self.modalities)}: {twice} named twice")
        if "sar" not in self.modalities:
            raise ValueError(f"modalities {list(self.modalities)}: every model reads sar; name it too")
        ranges = {  # name: (holds, the rule)
            "store": (self.store != "", "a path"), "out_dir": (self.out_dir != "", "a path"),
            "lr": (0 < self.lr <= 10, "in (0, 10]"),  # larger steps diverge at once (1e39 overflows float32)
            "min_lr_ratio": (0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"), "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "grad_clip": (self.grad_clip is None or self.grad_clip >= 0, ">= 0 or null"),
            "balance_power": (self.balance_power >= 0, ">= 0"),
            "val_fraction": (0 <= self.val_fraction < 1, "in [0, 1)"),
            "time_budget_s": (self.time_budget_s is None or self.time_budget_s > 0, "> 0 or null"),
            **{name: (getattr(self, name) is None or getattr(self, name) >= 0, ">= 0 or null")
               for name in ("converge_min_gain", "converge_max_dip")},
            **{name: (getattr(self, name) >= 1, ">= 1")
               for name in ("steps", "steps_per_epoch", "batch_size", "eval_batch_size", "converge_patience")},
            **{name: (getattr(self, name) >= 0, ">= 0")
               for name in ("warmup_steps", "checkpoint_every", "num_workers")},
            **{name: (0 <= getattr(self, name) < 2**32, "in [0, 2**32)") for name in ("seed", "split_seed")},
            "job_mem": (self.job_mem is None or re.fullmatch(r"[1-9][0-9]*[KMGT]?", self.job_mem) is not None,
                        "a SLURM memory size such as 64G, or null")}
        for name, (holds, rule) in ranges.items():
            if not holds:
                raise ValueError(f"{name} must be {rule}, not {getattr(self, name)!r}")
        if (self.train_scenes is None) != (self.val_scenes is None):
            raise ValueError("give both train_scenes and val_scenes, or neither")
        if self.train_scenes is not None:
            if shared := sorted(set(self.train_scenes) & set(self.val_scenes or [])):
                raise ValueError(f"train_scenes and val_scenes share {shared}: a validation scene is never trained on")
            for name in ("train_scenes", "val_scenes"):
                ids = getattr(self, name) or []
                if len(set(ids)) != len(ids):
                    raise ValueError(f"{name} names {sorted({s for s in ids if ids.count(s) > 1})} more than once")
        self._check_curve()

    def _check_curve(self) -> None:
        steps = self.curve_steps
        if any(s < 1 or s > self.steps for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"curve_steps must be increasing steps in 1..steps ({self.steps}), not {steps}")
        if self.inner_scenes is not None:
            if self.train_scenes is None:
                raise ValueError("inner_scenes needs an explicit split: give train_scenes and val_scenes too")
            for name in ("train_scenes", "val_scenes"):
                if shared := sorted(set(self.inner_scenes) & set(getattr(self, name))):
                    raise ValueError(f"inner_scenes and {name} share {shared}: the inner validation is "
                                     "never trained on and never one of the validation scenes")
        if steps and not (self.evaluate or self.inner_scenes):
            raise ValueError("curve_steps scores scenes: set evaluate: true or give inner_scenes")
        if self.converge_min_gain is not None and not (self.inner_scenes and len(steps) >= 2):
            raise ValueError("converge_min_gain reads the inner validation: give inner_scenes and at "
                             "least two curve_steps")

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready values (the loss as a nested dict)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self, path: str | Path) -> Path:
        """Write the config as YAML (temp name, then rename)."""
        return write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, doc: Mapping, source: str = "config") -> TrainConfig:
        return _build(cls, doc, source)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """A config from a YAML file; ``overrides`` replace its entries, a mapping merged into the
        file's mapping at every level (``loss.task_weights.SIC`` changes that weight alone)."""
        try:
            doc = yamldoc.loads(Path(path).read_text()) or {}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read the training config: {one_line(err)}") from err
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a training config must be a mapping, not {type(doc).__name__}")
        # an override inside a nested entry the file leaves out changes that entry's defaults
        defaults = json.loads(json.dumps(dataclasses.asdict(cls(store="-", out_dir="-"))))
        base = {k: defaults[k] for k, v in overrides.items() if isinstance(v, Mapping) and isinstance(defaults.get(k), dict)}
        source = f"{path} (overridden: {', '.join(_flat(overrides))})" if overrides else str(path)
        return cls.from_dict(_merged(_merged(base, doc), overrides), source)


# notebooks/04_train's settings where neither its parameters nor a config give them (:func:`notebook_config`)
NOTEBOOK_SETTINGS = {"store": "../runs/notebooks/patches.zarr", "out_dir": NOTEBOOK_RUN_FOLDER,
                     "model": NOTEBOOK_MODEL, "model_size": "tiny", "steps": 30, "steps_per_epoch": 10, "batch_size": 8,
                     "lr": 1e-3, "optimizer": "adamw", "sic_mode": "regression", "balance_power": 0.5, "seed": 0,
                     "loss": {"kind": "ce", "class_weighting": "inverse_sqrt"}}


def notebook_config(config: str | Path, **parameters) -> TrainConfig:
    """notebooks/04_train's config: the parameters given (None and "" are not given; ``loss`` and
    ``class_weighting`` are the loss's ``kind`` and ``class_weighting``) over the YAML file ``config``,
    or without one ("") over :data:`NOTEBOOK_SETTINGS` (its ``out_dir`` named after the model): a
    parameter left out never replaces the file's entry."""
    given = {name: value for name, value in parameters.items() if value is not None and value != ""}
    loss = {key: given.pop(name) for name, key in (("loss", "kind"), ("class_weighting", "class_weighting"))
            if name in given}
    if loss:
        given["loss"] = loss
    if config:
        return TrainConfig.from_yaml(config, **given)
    settings = _merged(NOTEBOOK_SETTINGS, given)
    settings["out_dir"] = str(settings["out_dir"]).replace("{model}", str(settings["model"]))
    return TrainConfig.from_dict(settings, "notebooks/04_train")


# settings that shape the trajectory: a checkpoint resumes only a run that agrees on all of them
RESUME_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resume"))


def _merged(base: Mapping, changes: Mapping) -> dict:
    """``base`` with ``changes``: a mapping in both merges key by key, at every level; else the change wins."""
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def _flat(changes: Mapping, prefix: str = "") -> list[str]:
    """``{"loss": {"kind": "focal"}}`` -> ``["loss.kind='focal'"]``, for messages."""
    return [item for key, value in changes.items()
            for item in (_flat(value, f"{prefix}{key}.") if isinstance(value, Mapping) else [f"{prefix}{key}={value!r}"])]


def _build(cls, doc: Mapping, source: str):
    """``cls(**doc)``; unknown or missing keys and bad values raise one ValueError naming ``source``
    and the entry."""
    fields = dataclasses.fields(cls)
    unknown = sorted(set(doc) - {f.name for f in fields})
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; known: {sorted(f.name for f in fields)}")
    missing = [f.name for f in fields if f.name not in doc and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{source}: missing keys {missing}")
    try:
        return cls(**_typed(cls, doc))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


def typed_entries(values: Mapping) -> dict:
    """TrainConfig entries ``values`` as the config reads them (:func:`_typed`), the entries of a ``loss``
    mapping as :class:`LossConfig` reads them: a value however it is spelled (``0`` or ``0.0`` for a
    number, ``6`` or ``6.0`` for a whole number). ValueError naming the entry, as the config gives."""
    typed = _typed(TrainConfig, values)
    if isinstance(typed.get("loss"), Mapping):
        typed["loss"] = _typed(LossConfig, typed["loss"])
    return typed


Number = typing.TypeVar("Number", int, float)


def read_number(value, kind: type[Number]) -> Number | None:
    """``value`` as the config reads a number of ``kind`` (:func:`_typed`: ``6.0`` as the whole number 6,
    ``0`` as 0.0, ``"3e-4"`` as 3e-4), or None where it is not one (a bool, text, not finite, ``6.5`` for int)."""
    return _convert(value, kind)


def _typed(cls, values: Mapping) -> dict:
    """``values`` (field name -> value) of the dataclass ``cls`` as its annotations want them.

    Integers pass as floats; numbers in strings (YAML 1.1 reads ``3e-4`` as one) and integral floats
    as integers are converted; ``X | None`` takes None; a dataclass-typed field takes an instance or a
    mapping (built by its class). Anything else raises ValueError naming the field and the value.
    """
    hints = typing.get_type_hints(cls)
    return {name: _typed_value(name, value, hints[name]) for name, value in values.items()}


def _typed_value(name: str, value, hint):
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if value is None:
            return None
        (hint,) = (a for a in args if a is not type(None))
        args = typing.get_args(hint)
    kind = typing.get_origin(hint) or hint
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, (kind, Mapping)):
            return value
        converted, wanted = None, "a mapping"
    else:
        converted, wanted = _convert(value, kind), _KINDS[kind]
    if converted is None:
        raise ValueError(f"{name} must be {wanted}{' or null' if optional else ''}, not {value!r}")
    if kind is list and args:
        return [_typed_value(f"{name}[{i}]", v, args[0]) for i, v in enumerate(converted)]
    if kind is dict and args:
        return {k: _typed_value(f"{name}[{k!r}]", v, args[1]) for k, v in converted.items()}
    return converted


def _convert(value, kind: type):
    """``value`` as ``kind`` (see :func:`_typed`), or None when it is not one."""
    if kind is bool or isinstance(value, bool):
        return value if kind is bool and isinstance(value, bool) else None
    if kind in (int, float):
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            return None
        if not isinstance(number, (int, float)) or not math.isfinite(number):
            return None
        if kind is float:
            return float(number)
        return int(number) if float(number).is_integer() else None
    if kind is list:
        return list(value) if isinstance(value, (list, tuple)) else None
    if kind is dict:
        return dict(value) if isinstance(value, Mapping) else None
    return value if isinstance(value, kind) else None


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr=3e-4", "loss.kind=focal"]`` -> ``{"lr": 3e-4, "loss": {"kind": "focal"}}`` (values as YAML);
    ValueError naming a key given twice."""
    keyed = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, not {pair!r}")
        keyed.append((key, value))
    out: dict = {}
    for key, value in once_each("--set", keyed).items():
        pair = f"{key}={value}"
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {pair}: {part} is set to a value, not a mapping, by another --set")
        if leaf in node:  # loss={kind: dice} and loss.kind=focal
            raise ValueError(f"--set {pair}: {key} is set by another --set too: give it once")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {pair}: not a YAML value: {one_line(err)}") from None
    return out


def job_resources(cfg: TrainConfig, trainers: int) -> list[str]:
    """The sbatch options of a SLURM task running ``trainers`` trainer processes of ``cfg``: a CPU for
    each trainer and each of its DataLoader workers (``--cpus-per-task``), and ``--mem`` when the
    config gives ``job_mem``."""
    if trainers < 1:
        raise ValueError(f"trainers per task must be >= 1, not {trainers}")
    return [f"--cpus-per-task={trainers * (cfg.num_workers + 1)}"] + ([f"--mem={cfg.job_mem}"] if cfg.job_mem else [])
