"""An experiment file (``experiments/*.yaml``): what runs on which folds and seeds, read and checked.

Every path in the file is relative to the file's folder. Entries (docs/experiments.md has the
whole story and an example):

- ``name``; ``scenes`` (the ``*_prep.nc`` folder), ``store`` (the patch store built from it),
  ``results`` (where each job's result JSON goes: small, meant to be committed);
- ``folds``: ``held_out`` (a list of region lists) or the rule (``k``, ``by``: region or
  service), ``require`` (SOD classes every held-out part must hold), ``inner`` ("richest",
  "median" or one region per fold), ``use`` (which folds run; default all): :func:`seaice_lib.data.splits.region_folds`;
- ``seeds``; ``training`` (``TrainConfig`` entries every run shares); ``curve`` (``first`` step,
  doubling up to each run's ``steps``; the stopping rule's ``min_gain``, ``patience`` and ``max_dip``);
- ``runs``: name -> ``model``, ``model_kwargs``, ``inputs`` (words for tables), ``steps`` (the
  budget cap), ``floor`` (the floor of the same inputs), ``training`` (entries for this run only);
- ``floors``: ``sets`` (feature set -> inputs), ``settings`` (``PixelFloor`` arguments);
- ``compare``: paired differences, each ``[question, a, b]`` (a - b per fold x seed).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import yamldoc
from ..atomic import not_there
from ..data.patches import check_up_to_date, config_from_store
from ..data.splits import Fold, region_folds
from ..data.store import check_store, store_class_totals, store_groups_sha256
from ..engine.config import STORE_FILLED, TrainConfig, read_number, typed_entries
from ..engine.floors import FEATURE_SETS, PixelFloor
from ..jsondoc import check_shape, content_sha256, edited, read_json, sha256_of
from ..models import create_model, modalities_read, model_names, reads_history

FLOORS = "floors"  # the floors job's name where runs are named (``--only floors``)
FINISHED = ("completed", "converged")  # the status of a training run that has a result
SECONDS = ("train_s", "train_cpu_s")  # wall and CPU seconds in each learning-curve point
TOP_KEYS = {"name", "scenes", "store", "results", "folds", "seeds", "training", "curve", "runs", "floors",
            "compare"}
RUN_KEYS = {"model", "model_kwargs", "inputs", "steps", "floor", "training"}
FOLD_KEYS = {"held_out", "k", "by", "require", "inner", "use"}
CURVE_KEYS = {"first", "min_gain", "patience", "max_dip"}
FLOOR_SETTINGS = set(inspect.signature(PixelFloor).parameters) - {"feature_set", "seed"}  # the job sets those
HOW_FAST = ("progress", "device", "num_workers", "eval_batch_size")  # training entries out of the key
# training entries that cannot change a result (the SLURM memory, how often to checkpoint), in the key at
# their code defaults (None: left out): the keys of results made while they counted stay the same
RESULT_FREE = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in ("job_mem", "checkpoint_every")}
# set per job from the experiment, never in `training`
JOB_FIELDS = {"store", "out_dir", "model", "model_kwargs", "steps", "seed", "train_scenes", "val_scenes",
              "inner_scenes", "curve_steps", "converge_min_gain", "converge_patience",
              "converge_max_dip", "scenes_dir"}
# in a results folder: the results written before results recorded their content hash, with it (:meth:`Experiment.unhashed`)
UNHASHED = "unhashed_results.json"
RESULT_RECORDS = ("content_sha256", "store_content")  # what every job result written since records
PROBE_RECORDS = ("content_sha256",)  # and every history probe


@dataclass(frozen=True)
class Run:
    name: str
    model: str
    model_kwargs: dict
    inputs: str
    steps: int
    floor: str | None
    training: dict


@dataclass(frozen=True)
class Job:
    """One execution: a training run, or the floors, on one fold with one seed."""

    kind: str  # "train" | "floors"
    run: str  # the run's name; "floors" for the floors
    fold: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.run}_fold{self.fold}_seed{self.seed}"


@dataclass
class Experiment:
    path: Path
    name: str
    scenes: Path
    store: Path
    results: Path
    folds_spec: dict
    seeds: list[int]
    training: dict
    curve: dict
    runs: dict[str, Run]
    floor_sets: dict[str, str]
    floor_settings: dict
    compare: list[tuple[str, str, str]]
    _folds: list[Fold] | None = field(default=None, repr=False)
    _store_facts: dict | None = field(default=None, repr=False)
    _store_identities: tuple[str, str] | None = field(default=None, repr=False)
    _unhashed: dict[str, str] | None = field(default=None, repr=False)

    def _check_scenes(self) -> None:
        """The scenes folder is there and holds scenes: the results count as scores of its scenes,
        and the store is checked against them."""
        if not self.scenes.is_dir():
            raise ValueError(f"{self.path}: scenes {self.scenes}: {not_there(self.scenes, folder=True)} of scenes")
        if not any(self.scenes.glob("*_prep.nc")):
            raise ValueError(f"{self.path}: scenes {self.scenes}: no *_prep.nc scenes there")

    # ---- folds and jobs
    def folds(self) -> list[Fold]:
        """The folds that run (``folds.use``), computed once from the store."""
        if self._folds is None:
            self._check_scenes()
            if not self.store.is_dir():
                raise ValueError(f"{self.path}: store {self.store}: no such patch store (build it with "
                                 f"`seaice patches --scenes {self.scenes} --out {self.store}`)")
            spec = self.folds_spec
            every = region_folds(self.store, spec.get("held_out"), spec.get("k", 5), spec.get("by", "region"),
                                 spec.get("require", []), spec.get("inner", "richest"))
            use = spec.get("use", list(range(len(every))))
            if not (isinstance(use, list) and use and len(set(use)) == len(use)):
                raise ValueError(f"{self.path}: folds.use must be a non-empty list of distinct folds, not {use!r}")
            if bad := [u for u in use if not 0 <= u < len(every)]:
                raise ValueError(f"{self.path}: folds.use {bad}: the rule gives folds 0..{len(every) - 1}")
            self._folds = [every[u] for u in use]
        return self._folds

    def fold(self, index: int) -> Fold:
        for fold in self.folds():
            if fold.index == index:
                return fold
        raise ValueError(f"{self.path}: no fold {index} (the experiment runs folds "
                         f"{[f.index for f in self.folds()]})")

    def jobs(self, runs: list[str] | None = None, folds: list[int] | None = None,
             seeds: list[int] | None = None) -> list[Job]:
        """Every job (or those of some runs, folds, seeds), the floors first, then run by run in the
        file's order. ``runs`` names training runs and ``floors`` for the floors job."""
        chosen = [FLOORS, *self.runs] if runs is None else runs
        if unknown := sorted(set(chosen) - {FLOORS, *self.runs}):
            raise ValueError(f"{self.path}: no run {unknown} (it has {[FLOORS, *self.runs]})")
        indices = [f.index for f in self.folds()]
        if folds is not None and (unknown_folds := sorted(set(folds) - set(indices))):
            raise ValueError(f"{self.path}: no fold {unknown_folds} (it runs folds {indices})")
        if seeds is not None and (unknown_seeds := sorted(set(seeds) - set(self.seeds))):
            raise ValueError(f"{self.path}: no seed {unknown_seeds} (its seeds are {self.seeds})")
        cells = [(f, seed) for f in indices if folds is None or f in folds
                 for seed in self.seeds if seeds is None or seed in seeds]
        floors = [Job(FLOORS, FLOORS, f, s) for f, s in cells] if self.floor_sets and FLOORS in chosen else []
        return floors + [Job("train", run, f, s) for run in self.runs if run in chosen for f, s in cells]

    def curve_steps(self, run: str, steps: int | None = None) -> list[int]:
        """``curve.first`` doubling up to the run's ``steps`` (or ``steps``), which always closes the curve."""
        return doubling(self.curve["first"], steps or self.runs[run].steps)

    def train_config(self, job: Job, out_dir: str | Path) -> TrainConfig:
        """The training config of a training job (ValueError naming the file for a bad entry)."""
        run, fold = self.runs[job.run], self.fold(job.fold)
        doc = {**self.training, **run.training,
               "store": str(self.store), "scenes_dir": str(self.scenes), "out_dir": str(out_dir),
               "model": run.model, "model_kwargs": dict(run.model_kwargs), "steps": run.steps,
               "seed": job.seed, "train_scenes": fold.train, "val_scenes": fold.val,
               "inner_scenes": fold.inner_scenes, "curve_steps": self.curve_steps(job.run),
               **{f"converge_{k}": v for k, v in self.stopping_rule().items()}}
        return TrainConfig.from_dict(doc, f"{self.path} (run {job.run})")

    def stopping_rule(self) -> dict:
        """The stopping rule's settings (:func:`seaice_lib.engine.curves.convergence`): ``min_gain``
        (None: no rule), ``patience``, and ``max_dip`` where the file gives it."""
        rule = {"min_gain": self.curve.get("min_gain"), "patience": self.curve.get("patience", 2)}
        return rule | ({"max_dip": self.curve["max_dip"]} if self.curve.get("max_dip") is not None else {})

    def definition(self, job: Job, steps: int | None = None, rule: dict | None = None) -> dict:
        """What the experiment states about a job, with the store's settings and the
        fold's scenes: a result is reused only when this matches. Numbers are in it as the config
        reads them (training entries through ``TrainConfig``'s types, the file's other numbers as
        :func:`load` reads them), so ``0`` and ``0.0`` give one key. Code defaults are not in it, so
        results accumulate across versions (each records its own in ``provenance``); training entries
        of how fast it runs (:data:`HOW_FAST`) are left out and those that cannot change a result
        (:data:`RESULT_FREE`) held at their defaults, so changing them keeps its results. ``steps``,
        ``rule``: the definition the job would have with that budget and stopping rule."""
        doc = {"kind": job.kind, "seed": job.seed, "fold": self.fold(job.fold)._asdict(), **self.store_facts()}
        if job.kind == "floors":
            return doc | {"floors": dict(self.floor_sets), "settings": dict(self.floor_settings)}
        run = self.runs[job.run]
        training = {k: v for k, v in typed_entries({**self.training, **run.training}).items()  # values, not spellings
                    if k not in HOW_FAST and k not in RESULT_FREE}  # how fast, not what
        training |= {k: v for k, v in RESULT_FREE.items() if v is not None}  # whatever the file says
        steps = steps or run.steps
        return doc | {"train": training, "model": run.model, "model_kwargs": run.model_kwargs, "steps": steps,
                      "curve": {"steps": self.curve_steps(job.run, steps), **(rule or self.stopping_rule())}}

    def store_facts(self) -> dict:
        """The store's settings and class totals (the data itself, in brief), read once."""
        if self._store_facts is None:
            self._store_facts = {
                "store_settings": json.loads(json.dumps(dataclasses.asdict(config_from_store(self.store)), default=str)),
                "store_classes": store_class_totals(self.store)}
        return self._store_facts

    def store_groups(self) -> str:
        """A hash of what every scene group of the store holds (input files and arrays:
        :func:`seaice_lib.data.store.store_groups_sha256`). A result records it as ``store_content``,
        and one made from groups that hold other data is not reused. Results from before it was
        recorded are taken as they are, as are those that record the earlier ``store_groups`` (a hash
        over the groups' write times, which no store cut on another machine reproduces). The store must
        be what ``seaice patches`` would keep (:func:`~seaice_lib.data.patches.check_up_to_date`), but
        for groups that record no content or attrs hash (cut before groups did): their hash is by
        when they were written, so results made on them stay theirs (named in a warning; ``seaice
        train`` refuses them, so a job to run needs the store cut again, which gives it a new hash;
        results on the earlier one still count where the groups were cut again into the same patches:
        :meth:`store_identities`)."""
        return self.store_identities()[0]

    def store_identities(self) -> tuple[str, str]:
        """The ``store_content`` a result may record and count: the store's identity now
        (:meth:`store_groups`) and its former one, before ``seaice patches`` cut its groups that
        recorded no content hash again into the same patches (``former`` of
        :func:`seaice_lib.data.store.store_groups_sha256`; the same where none was)."""
        if self._store_identities is None:
            self._check_scenes()
            scene_ids = check_store(self.store)
            check_up_to_date(self.store, self.scenes, scene_ids, unhashed_ok=True)  # the scores are of the scenes
            self._store_identities = (store_groups_sha256(self.store, scene_ids),
                                      store_groups_sha256(self.store, scene_ids, former=True))
        return self._store_identities

    def key(self, job: Job, steps: int | None = None, rule: dict | None = None) -> str:
        return sha256_of(self.definition(job, steps, rule))[:16]

    def weights_key(self, job: Job) -> str:
        """The hash of what decides a training job's weights at each curve step: its definition
        without the stopping rule, which only decides where the run ends."""
        doc = self.definition(job)
        doc["curve"] = {"steps": doc["curve"]["steps"]}
        return sha256_of(doc)[:16]

    def result_path(self, job: Job) -> Path:
        return self.results / "jobs" / f"{job.name}.json"

    def probe_path(self, job: Job) -> Path:
        """Where the history probe of a training job is written (:mod:`.probes`)."""
        return self.results / "probes" / f"history_{job.name}.json"

    def read_result(self, job: Job) -> dict:
        """``job``'s result as written, a null score read as NaN (JSON has no NaN: Python writes an F1 of a
        class the scenes lack as ``NaN``, which tools that rewrite the file, such as jq, write as null);
        ValueError naming the file where it is not a JSON mapping."""
        doc = read_json(self.result_path(job))
        points = doc["curve"] if isinstance(doc.get("curve"), list) else []
        fits = doc["floors"].values() if isinstance(doc.get("floors"), dict) else []
        for scores in (*points, *(fit.get(part) for fit in fits if isinstance(fit, dict) for part in ("val", "inner"))):
            if isinstance(scores, dict):
                scores.update({k: math.nan for k, v in scores.items() if v is None and k not in (*SECONDS, "step")})
        return doc

    def finished(self, job: Job) -> bool:
        """Whether ``job``'s result is there, was made from the same definition and holds what the
        report reads (:meth:`result_problem`)."""
        return self.result_problem(job) is None

    def result_problem(self, job: Job) -> str | None:
        """Why ``job``'s result does not count, or None when it does: ``"missing"``, ``"stale"`` (made
        from another definition or store groups) or ``"damaged: WHY"`` (not JSON, another job's,
        without the numbers the report reads, or not as written: :meth:`content_problem`); each
        runs again."""
        from .report import METRICS  # the report imports this module

        path = self.result_path(job)
        if not path.is_file():
            return "missing"
        scores = {m: float for m in METRICS}
        shape: dict[str, object]
        if job.kind == "floors":
            shape = {"floors": {f"floor_{s}": {"val": scores, "inner": scores, "fit_cpu_s": float}
                                for s in self.floor_sets}}
        else:
            point = {"step": int, "train_cpu_s": float, **{f"{part}_{m}": float for part in ("val", "inner")
                                                           for m in METRICS}}
            shape = {"curve": [point], "steps_run": int}
        current = self.store_groups()  # a store out of date with its scenes is an error, not a damaged result
        self.unhashed()  # likewise a damaged list of unhashed results
        try:
            doc = self.read_result(job)
            if doc.get("key") != self.key(job) or doc.get("store_content", current) not in self.store_identities():
                return "stale"
            if problem := self.content_problem(path, doc, RESULT_RECORDS):
                return f"damaged: {path}: {problem}"
            check_shape(doc, shape, str(path))
        except ValueError as err:
            return f"damaged: {err}"
        if doc.get("job") != json.loads(json.dumps({"name": job.name, **job.__dict__})):
            return f"damaged: {path}: its job is {doc.get('job')!r}, not {job.name}"
        if job.kind == "train" and not doc["curve"]:
            return f"damaged: {path}: an empty curve"
        if problem := self._number_problem(job, doc):
            return f"damaged: {path}: {problem}"
        return None

    def unhashed(self) -> dict[str, str]:
        """The results written before results recorded their content hash, as the results folder's
        :data:`UNHASHED` lists them (path in the folder -> :func:`content_sha256`; {} without the
        file), read once; ValueError naming the file where it is not such a list."""
        if self._unhashed is None:
            path = self.results / UNHASHED
            listed = read_json(path, {"results": {"*": str}})["results"] if path.is_file() else {}
            if bad := [name for name, digest in listed.items() if not re.fullmatch(r"[0-9a-f]{64}", digest)]:
                raise ValueError(f"{path}: results {bad[:3]}: not a SHA-256 (64 hex digits)")
            self._unhashed = listed
        return self._unhashed

    def content_problem(self, path: Path, doc: Mapping, recorded: tuple[str, ...]) -> str | None:
        """Why ``doc``, the result or history probe in ``path``, is not as it was written, or None: edited
        since (its content is not the one its ``content_sha256`` was taken of), or without an entry of
        ``recorded`` (:data:`RESULT_RECORDS`, :data:`PROBE_RECORDS`) and not listed with its content in
        :data:`UNHASHED` (one written before they were recorded; one listed but edited since)."""
        if not (lacking := [k for k in recorded if k not in doc]):
            return "edited since it was written (its content_sha256 is not that of its content)" if edited(doc) else None
        listed = self.unhashed().get(path.relative_to(self.results).as_posix())
        if listed is None:
            return (f"it records no {' or '.join(lacking)}, and {self.results / UNHASHED} does not list it among the "
                    "results written before they were recorded")
        if listed != content_sha256(doc):
            return f"edited since it was written (its content is not the one {self.results / UNHASHED} lists)"
        return None

    def _number_problem(self, job: Job, doc: dict) -> str | None:
        """What makes a result's entries impossible for a job to have written, or None: a score
        infinite or over 100 %, (CPU) seconds negative or not finite; for a training job also a status
        other than finished, curve steps other than the run's curve steps up to ``steps_run``. (Its
        ``floor`` is a record only: the report compares a run with the floor the file names now.)"""
        from .report import METRICS  # the report imports this module

        if job.kind == "floors":
            scores = {f"{name} {part} {m}": fit[part][m] for name, fit in doc["floors"].items()
                      for part in ("val", "inner") for m in METRICS}
            seconds = {f"{name} fit_cpu_s": fit["fit_cpu_s"] for name, fit in doc["floors"].items()}
        else:
            if doc.get("status") not in FINISHED:
                return f"status {doc.get('status')!r}, not a finished run ({' or '.join(FINISHED)})"
            steps, last = [point["step"] for point in doc["curve"]], doc["steps_run"]
            expected = [s for s in self.curve_steps(job.run) if s <= last]
            if last not in expected:
                return f"steps_run {last} is not one of the run's curve steps {self.curve_steps(job.run)}"
            if steps != expected:
                return f"curve steps {steps}, not the run's curve steps up to steps_run {last}: {expected}"
            scores = {f"step {point['step']} {part}_{m}": point[f"{part}_{m}"] for point in doc["curve"]
                      for part in ("val", "inner") for m in METRICS}
            seconds = {f"step {point['step']} {k}": point[k] for point in doc["curve"] for k in SECONDS if k in point}
        for name, value in scores.items():  # NaN is a score: an F1 of a class the scenes lack
            if math.isinf(value) or value > 100:
                return f"{name} is {value}, not a score (at most 100 %)"
        for name, value in seconds.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                return f"{name} is {value!r}, not a number of seconds (finite, at least 0)"
        return None


def inputs_label(model, modalities: Sequence[str]) -> str:
    """The report's ``inputs`` words for ``model`` trained on ``modalities``: "SAR" or "SAR
    sequence" (``model.reads_history``), then " + AMSR2/ERA5", " + AMSR2" or " + ERA5" for the
    2 km modalities it reads (``model.reads``)."""
    taken = modalities_read(model, modalities)
    grid = "/".join(m.upper() for m in ("amsr2", "era5") if m in taken)
    return ("SAR sequence" if reads_history(model) else "SAR") + (f" + {grid}" if grid else "")


def doubling(first: int, last: int) -> list[int]:
    """``first``, ``2 first``, ... below ``last``, then ``last``."""
    points = []
    while first < last:
        points.append(first)
        first *= 2
    return points + [last]


def _need(doc: dict, key: str, kind: type | tuple[type, ...], where: str):
    if key not in doc:
        raise ValueError(f"{where}: '{key}' is missing")
    if not isinstance(doc[key], kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}: '{key}' must be a {names}, not {type(doc[key]).__name__}")
    return doc[key]


def _unknown(doc: dict, allowed: set[str], where: str) -> None:
    if extra := sorted(set(doc) - allowed):
        raise ValueError(f"{where}: unknown entries {extra} (allowed: {sorted(allowed)})")


def load(path: str | Path) -> Experiment:
    """The experiment of a YAML file; ValueError naming the file and the entry for any mistake."""
    path = Path(path).resolve()
    try:
        doc = yamldoc.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the experiment: {str(err).splitlines()[0]}") from None
    where = str(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: an experiment file is a mapping")
    _unknown(doc, TOP_KEYS, where)
    base = path.parent
    paths = {k: (base / _need(doc, k, str, where)).resolve() for k in ("scenes", "store", "results")}
    folds = _need(doc, "folds", dict, where)
    _unknown(folds, FOLD_KEYS, f"{where}: folds")
    if "held_out" in folds and "k" in folds:
        raise ValueError(f"{where}: folds: give held_out or the rule's k, not both")
    held = folds.get("held_out")
    if held is not None and not (isinstance(held, list) and held and all(
            isinstance(part, list) and part and all(isinstance(g, str) for g in part) for part in held)):
        raise ValueError(f"{where}: folds: held_out must be a list of region lists, e.g. [[A, B], [C]], not {held!r}")
    if held is not None and len({g for part in held for g in part}) != sum(len(part) for part in held):
        raise ValueError(f"{where}: folds: held_out names a region in two folds (or twice in one)")
    given_seeds = _need(doc, "seeds", list, where)
    seeds = [s for s in (read_number(s, int) for s in given_seeds) if s is not None and 0 <= s < 2**32]
    if not seeds or len(seeds) != len(given_seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: seeds must be a non-empty list of distinct integers in [0, 2**32), not {given_seeds}")
    training = doc.get("training") or {}
    if set_per_job := sorted(set(training) & JOB_FIELDS):
        raise ValueError(f"{where}: training: {set_per_job} are set per job by the experiment")
    curve = dict(_need(doc, "curve", dict, where))
    _unknown(curve, CURVE_KEYS, f"{where}: curve")
    floors = doc.get("floors") or {}
    points = "a number of points >= 0, or null"
    for key, kind, rule, least in (("first", int, "a step >= 1", 1), ("patience", int, "a whole number of curve "
                                   "points >= 1", 1), ("min_gain", float, points, 0), ("max_dip", float, points, 0)):
        if (key not in curve and key != "first") or (curve.get(key) is None and kind is float):
            continue  # patience's default; no stopping rule, no dip rule
        if (number := read_number(curve.get(key), kind)) is None or number < least:
            raise ValueError(f"{where}: curve.{key} must be {rule}, not {curve.get(key)!r}")
        curve[key] = number  # the value, however it is spelled (6 or 6.0)
    _unknown(floors, {"sets", "settings"}, f"{where}: floors")
    settings = floors.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: floors.settings must be a mapping")
    _unknown(settings, FLOOR_SETTINGS, f"{where}: floors.settings")
    settings = dict(settings)
    for key in ("max_pixels", "max_iter", "max_leaf_nodes"):
        if key in settings:
            if (number := read_number(settings[key], int)) is None or number < (2 if key == "max_leaf_nodes" else 1):
                raise ValueError(f"{where}: floors.settings.{key} must be a whole number >= "
                                 f"{2 if key == 'max_leaf_nodes' else 1}, not {settings[key]!r}")
            settings[key] = number
    if "learning_rate" in settings:
        if (rate := read_number(settings["learning_rate"], float)) is None or rate <= 0:
            raise ValueError(f"{where}: floors.settings.learning_rate must be a number > 0, not {settings['learning_rate']!r}")
        settings["learning_rate"] = rate
    floor_sets = floors.get("sets") or {}
    if bad := sorted(set(floor_sets) - set(FEATURE_SETS)):
        raise ValueError(f"{where}: floors.sets: no feature set {bad} (there are {list(FEATURE_SETS)})")
    runs = {}
    for name, spec in _need(doc, "runs", dict, where).items():
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-]+", name)):
            raise ValueError(f"{where}: runs: {name!r} must be letters, digits, '_' and '-' (it names job folders)")
        if name == FLOORS:
            raise ValueError(f"{where}: runs: {FLOORS!r} names the floors job; call the run otherwise")
        w = f"{where}: runs.{name}"
        if not isinstance(spec, dict):
            raise ValueError(f"{w} must be a mapping")
        _unknown(spec, RUN_KEYS, w)
        if (model := _need(spec, "model", str, w)) not in model_names():
            raise ValueError(f"{w}: model {model!r} is not one of {model_names()}")
        if (steps := read_number(_need(spec, "steps", object, w), int)) is None:
            raise ValueError(f"{w}: 'steps' must be a whole number, not {spec['steps']!r}")
        if curve.get("min_gain") is not None and steps <= curve["first"]:
            raise ValueError(f"{w}: steps {steps} leave one curve point (curve.first is {curve['first']}): the "
                             "stopping rule needs two or more")
        floor = spec.get("floor")
        if floor is not None and floor not in floor_sets:
            raise ValueError(f"{w}: floor {floor!r} is not one of floors.sets {list(floor_sets)}")
        run_training = spec.get("training") or {}
        if set_per_job := sorted(set(run_training) & JOB_FIELDS):
            raise ValueError(f"{w}: training: {set_per_job} are set per job by the experiment")
        runs[name] = Run(name, model, dict(spec.get("model_kwargs") or {}), str(spec.get("inputs") or ""),
                         steps, floor, dict(run_training))
        probe = {**training, **run_training, "store": "-", "out_dir": "-", "model": model,
                 "model_kwargs": runs[name].model_kwargs, "steps": steps, "curve_steps": doubling(curve["first"], steps)}
        checked = TrainConfig.from_dict(probe, f"{where} (run {name})")  # every run's config valid before anything runs
        try:  # and its model built with its model_kwargs (the store fills in the rest at training)
            built = create_model(model, checked.model_size, **{k: v for k, v in runs[name].model_kwargs.items()
                                                               if k not in STORE_FILLED})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{w}: model_kwargs {runs[name].model_kwargs}: {model} refuses them: {err}") from None
        reads = inputs_label(built, checked.modalities)
        if runs[name].inputs and runs[name].inputs != reads:  # the report's column says what the model reads
            raise ValueError(f"{w}: inputs {runs[name].inputs!r}: the model reads {reads!r}; write that, or leave "
                             "inputs out")
        runs[name] = dataclasses.replace(runs[name], inputs=reads)
    names = set(runs) | {f"floor_{s}" for s in floor_sets}
    compare: list[tuple[str, str, str]] = []
    for entry in doc.get("compare") or []:
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(e, str) for e in entry)):
            raise ValueError(f"{where}: compare: each entry is [question, a, b], not {entry!r}")
        if entry[1] == entry[2]:
            raise ValueError(f"{where}: compare {entry[0]!r}: {entry[1]} minus itself is 0 everywhere")
        if entry[0] in {c[0] for c in compare}:
            raise ValueError(f"{where}: compare: the question {entry[0]!r} is asked twice")
        if missing := [e for e in entry[1:] if e not in names]:
            raise ValueError(f"{where}: compare {entry[0]!r}: no run {missing} (runs and floor_<set>s: "
                             f"{sorted(names)})")
        compare.append((entry[0], entry[1], entry[2]))
    name = str(_need(doc, "name", str, where))
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):  # the folder runs/experiments/NAME
        raise ValueError(f"{where}: name {name!r} must be letters, digits, '_' and '-' (it names a folder)")
    return Experiment(path, name, paths["scenes"], paths["store"],
                      paths["results"], folds, seeds, training, curve, runs, dict(floor_sets), settings, compare)
