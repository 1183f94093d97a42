"""A training run's folder as its readers see it: :class:`Run`. It holds ``config.yaml`` (the
:class:`~.config.TrainConfig`), the model in its weights (``model.pt``, else
``checkpoints/last.pt``) with the spec stored beside them, the tile settings the model was trained
with, ``evaluation.json`` (its validation scenes), ``export/`` (``seaice export``) and
``provenance.json``. Charts, edge, explain, figures, experiments, the notebooks and the commands
load runs through :class:`Run` alone, never from the trainer (:mod:`.training`, which writes the
folder with :func:`model_spec`, :func:`build_model` and :func:`record_provenance`; its layout is
listed there)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .. import logs
from ..atomic import write_text
from ..data.patches import PatchConfig, config_from_store
from ..jsondoc import edited
from ..models import create_model, modalities_read, reads_history
from ..provenance import file_sha256
from ..sample_format import MODALITIES
from ..stages import PROVENANCE_FILE, WEIGHTS_SUBFOLDERS
from ..walk import one_line
from . import checkpoints
from .config import STORE_FILLED, ConfigError, TrainConfig

if TYPE_CHECKING:
    from .evaluation import Evaluation

NOT_A_RUN = " (is it a run folder of `seaice train`?)"  # said of a folder without config.yaml

log = logging.getLogger(__name__)


def record_provenance(out: Path, invocation: dict | None = None, model: dict | None = None) -> None:
    """Add an ``invocation`` to ``out/provenance.json`` or set its ``model`` (file, SHA-256, step);
    a final model from an earlier invocation is dropped when a new one starts (it is rewritten)."""
    path = out / PROVENANCE_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc = {"invocations": list(doc.get("invocations", [])) if isinstance(doc, dict) else [],
           "model": doc.get("model") if isinstance(doc, dict) else None}
    if invocation is not None:
        doc["invocations"].append(invocation)
        doc["model"] = None
    if model is not None:
        doc["model"] = model
    write_text(path, json.dumps(doc, indent=1))


def model_spec(cfg: TrainConfig, store_attrs: Mapping, store: str | Path) -> dict:
    """Registry name, size and constructor kwargs, completed from the store and the config.

    Filled in: ``downsample``, ``sar_channels`` and ``img_size`` (the store's) and ``sic_mode``
    (the config's); every registered model takes them. A value given in ``model_kwargs`` must agree
    (a :class:`ConfigError` otherwise), and stacked ``steps`` fit the store's ``max_steps``.
    ``tiles`` records the store's :meth:`PatchConfig.tile_settings`, which charting then uses, and
    ``modalities`` the inputs it is trained on (a U-Net with ``grid2km`` needs AMSR2 and ERA5).
    """
    kwargs = dict(cfg.model_kwargs)
    filled = dict(zip(STORE_FILLED, (int(store_attrs["downsample"]), int(store_attrs["patch"]),
                                     len(store_attrs["sar_variables"]), cfg.sic_mode)))
    for key, value in filled.items():
        if key in kwargs and kwargs[key] != value:
            source = "the config's sic_mode" if key == "sic_mode" else f"store {store}"
            raise ConfigError(f"model_kwargs[{key!r}] = {kwargs[key]!r} disagrees with {source} ({value!r})")
        kwargs[key] = value
    if isinstance(steps := kwargs.get("steps"), int) and steps > int(store_attrs["max_steps"]):
        raise ConfigError(f"model_kwargs['steps'] = {steps}: store {store} holds sequences of at most "
                          f"{store_attrs['max_steps']} acquisitions (max_steps), so {steps - int(store_attrs['max_steps'])} "
                          "of its steps would always be padding")
    needed = {"sar"} | ({"amsr2", "era5"} if cfg.model == "unet" and kwargs.get("grid2km", True) else set())
    if lacking := sorted(needed - set(cfg.modalities)):
        raise ConfigError(f"modalities {list(cfg.modalities)}: {cfg.model} needs {lacking} too"
                          + (" (or model_kwargs grid2km: false)" if "sar" not in lacking else ""))
    tiles = config_from_store(store).tile_settings()
    return {"name": cfg.model, "size": cfg.model_size, "kwargs": kwargs, "tiles": tiles,
            "modalities": [m for m in MODALITIES if m in cfg.modalities]}


def build_model(spec: Mapping) -> nn.Module:
    """The model of a spec (:func:`model_spec`), knowing the modalities it reads
    (``model.modalities``): those it was trained on (all of them for specs from before they were
    recorded) that its architecture takes (``model.reads``: a U-Net without ``grid2km``, TSViT v1
    and v2 read SAR only). Whole-scene tiles give it only those, and read no other from a scene
    (:func:`~seaice_lib.engine.evaluation.predict_batches`)."""
    model = create_model(spec["name"], spec["size"], **spec["kwargs"])
    model.modalities = modalities_read(model, spec.get("modalities", MODALITIES))  # type: ignore[assignment]
    return model


class Run:
    """One training run's folder (``seaice train``) and what its readers take from it; the model
    is read from ``weights`` where given (a ``model.pt`` or checkpoint), else from the folder's
    ``model.pt``, else its ``checkpoints/last.pt``. Each file is read when first asked for; one that
    is missing or damaged is a one-line error naming it."""

    def __init__(self, folder: str | Path, weights: str | Path | None = None):
        self.folder = Path(folder)
        self._weights = Path(weights) if weights is not None else None
        if weights is None and not self.folder.is_dir():
            raise ValueError(f"{self.folder}: not a run folder")

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run of ``path``: a run folder, or a weights file (``model.pt``, a checkpoint) whose
        run is the folder it lies in, or the folder above for one in the run's ``checkpoints/`` or
        ``curve/`` (``RUN/checkpoints/last.pt`` is run RUN, with its config.yaml)."""
        path = Path(path)
        if path.is_dir():
            return cls(path)
        folder = path.parent.parent if path.parent.name in WEIGHTS_SUBFOLDERS else path.parent
        return cls(folder, weights=path)

    @classmethod
    def evaluated_in(cls, runs_dir: str | Path) -> list[Run]:
        """The runs in ``runs_dir`` (one folder each) that hold an ``evaluation.json``, by name."""
        return [cls(p.parent) for p in sorted(Path(runs_dir).glob("*/evaluation.json"))]

    @classmethod
    def runs_in(cls, runs_dir: str | Path) -> list[Run]:
        """The run folders in ``runs_dir``, with an ``evaluation.json`` or not (:meth:`evaluated_in`,
        :meth:`unevaluated_in`), by name; ValueError where ``runs_dir`` is no folder."""
        if not Path(runs_dir).is_dir():
            raise ValueError(f"{runs_dir}: no such folder of runs")
        return sorted(cls.evaluated_in(runs_dir) + cls.unevaluated_in(runs_dir), key=lambda run: run.folder.name)

    @classmethod
    def unevaluated_in(cls, runs_dir: str | Path) -> list[Run]:
        """The run folders in ``runs_dir`` (with config.yaml or weights) that hold no
        ``evaluation.json``: their training stopped before its final evaluation, or still runs."""
        runs = [cls(p) for p in sorted(Path(runs_dir).iterdir()) if p.is_dir() and not (p / "evaluation.json").exists()]
        return [run for run in runs if run.config_file is not None or run.has_weights]

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r}" + (f", weights={str(self._weights)!r})" if self._weights else ")")

    # ---- the configuration --------------------------------------------------------------------

    @property
    def config_file(self) -> Path | None:
        """``config.yaml`` (the configuration of the latest invocation); None when there is none."""
        path = self.folder / "config.yaml"
        return path if path.is_file() else None

    @cached_property
    def config(self) -> TrainConfig | None:
        """The :class:`TrainConfig` of ``config.yaml``; None without one, a ValueError naming the
        file when it does not read as one."""
        return TrainConfig.from_yaml(self.config_file) if self.config_file is not None else None

    def required_config(self, why: str = NOT_A_RUN) -> TrainConfig:
        """:attr:`config`, or a ValueError ``"FOLDER: no config.yaml" + why`` without one."""
        if self.config is None:
            raise ValueError(f"{self.folder}: no config.yaml{why}")
        return self.config

    # ---- the model ----------------------------------------------------------------------------

    @property
    def last_checkpoint(self) -> Path:
        """The run's periodic checkpoint (``checkpoints/last.pt``, there or not), which training resumes from."""
        return self.folder / "checkpoints" / "last.pt"

    @property
    def has_weights(self) -> bool:
        """Whether there are weights to load (:attr:`weights` is there)."""
        if self._weights is not None:
            return self._weights.exists()
        return (self.folder / "model.pt").exists() or self.last_checkpoint.exists()

    @property
    def weights(self) -> Path:
        """The file the model is loaded from; FileNotFoundError when it is not there."""
        path = self._weights
        if path is None:
            path = self.folder / "model.pt" if (self.folder / "model.pt").exists() else self.last_checkpoint
        if not path.exists():
            raise FileNotFoundError(f"{path}: no model.pt or checkpoints/last.pt")
        return path

    @property
    def final_weights(self) -> bool:
        """Whether :attr:`weights` is a final ``model.pt`` (the file ``provenance.json`` records)."""
        return self.weights.name == "model.pt"

    @cached_property
    def spec(self) -> dict:
        """The model spec (registry name, size, kwargs, tiles, modalities; :func:`model_spec`) the
        weights hold."""
        path = self.weights
        spec = checkpoints.read(path).get("spec")
        if not isinstance(spec, Mapping):
            raise ValueError(f"{path}: holds no model spec (not a model.pt or checkpoint of `seaice train`)")
        return self._with_modalities(spec)

    def _with_modalities(self, spec: Mapping) -> dict:
        """``spec`` with the modalities the run was trained on: a spec written before specs recorded
        them takes its run's config.yaml's (else all, as :func:`build_model` assumes)."""
        if "modalities" in spec or (config := self.config) is None:
            return dict(spec)
        return {**spec, "modalities": [m for m in MODALITIES if m in config.modalities]}

    @cached_property
    def _reading(self) -> tuple[tuple[str, ...], bool]:
        """(modalities, reads the earlier acquisitions) of the model of :attr:`weights`."""
        try:
            model = build_model(self.spec)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.weights}: cannot build its model from the spec {self.spec}: {one_line(err)}") from err
        return tuple(getattr(model, "modalities", MODALITIES)), reads_history(model)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model of :attr:`weights` reads (:func:`build_model` of its spec)."""
        return self._reading[0]

    @property
    def inputs(self) -> str:
        """What the model of :attr:`weights` reads, for tables: its modalities, SAR as a "sar
        sequence" where it reads the earlier acquisitions (``"sar sequence + amsr2 + era5"``)."""
        modalities, history = self._reading
        return " + ".join(f"{m} sequence" if m == "sar" and history else m for m in modalities)

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model of :attr:`weights`, in eval mode on ``device``; a ValueError naming the file
        when it holds no spec and weights, or weights that do not fit the spec's model. A
        ``model.pt`` that is not the one the run wrote (``provenance.json``) is warned about, naming
        both hashes: what is made with it is the file's weights, not the run's training."""
        path = self.weights
        doc = checkpoints.read(path)
        if not isinstance(doc.get("spec"), Mapping) or not isinstance(doc.get("model"), Mapping):
            raise ValueError(f"{path}: holds no model spec and weights (not a model.pt or checkpoint of `seaice train`)")
        spec = self._with_modalities(doc["spec"])
        try:
            model = build_model(spec)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: cannot build its model from the spec {dict(spec)}: {one_line(err)}") from err
        mismatch = _weights_mismatch(model.state_dict(), doc["model"])
        if mismatch:
            raise ValueError(f"{path}: the weights do not fit its model {spec['name']} ({spec['size']}): {mismatch}")
        model.load_state_dict(doc["model"])
        if self._weights is None and not self.final_weights:  # a run killed or still training
            log.warning("%s: no model.pt, the run has not finished: its last checkpoint (step %s) is used",
                        self.folder, doc.get("step", "?"))
        if self.final_weights:
            self._check_written(path)
        return model.to(device).eval()

    def _check_written(self, path: Path) -> None:
        """Warn when the ``model.pt`` at ``path`` is not the one ``provenance.json`` records (copied
        from another run, or replaced by hand), or when that record is not one to check against."""
        try:
            written = ((self.provenance or {}).get("model") or {}).get("sha256")
        except (ValueError, AttributeError):
            log.warning("%s: not a provenance record of `seaice train`; the weights are not checked against it",
                        self.provenance_file)
            return
        if written and written != (digest := file_sha256(path)):
            log.warning("%s is not the model.pt this run wrote (%s records SHA-256 %s..., the file has %s...): "
                        "what is made with it names the file's weights", path, self.provenance_file, written[:12],
                        digest[:12])

    def curve_weights(self, step: int) -> Path:
        """The weights the learning curve kept at ``step`` (``curve/step_NNNNNN.pt``), there or not."""
        return self.folder / "curve" / f"step_{step:06d}.pt"

    # ---- the store and its patch settings -----------------------------------------------------

    @property
    def store(self) -> Path:
        """The patch store ``config.yaml`` names (as written there, read from the current folder)."""
        return Path(self.required_config().store)

    def patch_config(self, store: str | Path | None = None) -> PatchConfig:
        """The patch settings the run's tiles are cut with: those its weights record (the spec's
        ``tiles``), which ``store`` (or the store its ``config.yaml`` names) must share; weights from
        before they were recorded take the store's. A disagreement, or no settings to be found, is a
        ValueError naming the run and the store (and ``--store``)."""
        recorded = self.spec.get("tiles") if self.has_weights else None
        if store is None:
            if recorded is not None and self.config_file is None:
                return PatchConfig(**{**recorded, "sar_variables": tuple(recorded["sar_variables"])})
            if self.config_file is None:
                raise ValueError(f"{self.folder}: no config.yaml{NOT_A_RUN}")
            try:
                store = self.store
            except ValueError as err:
                raise ValueError(f"{err} (or name the store with --store)") from None
            if not store.exists():
                if recorded is not None:
                    return PatchConfig(**{**recorded, "sar_variables": tuple(recorded["sar_variables"])})
                raise ValueError(f"{self.folder}: its store {store} is not there from {Path.cwd()} "
                                 "(name the store with --store)")
        cfg = config_from_store(store)
        if recorded is not None and (ours := cfg.tile_settings()) != recorded:
            differ = ", ".join(f"{k} {ours[k]!r} (trained on {recorded[k]!r})" for k in recorded if ours.get(k) != recorded[k])
            raise ValueError(f"store {store} cuts tiles with other settings than run {self.folder} was trained on: "
                             f"{differ}; name a store built with the run's settings (--store)")
        return cfg

    # ---- the split, the evaluation, the export, the provenance --------------------------------

    @classmethod
    def of_record(cls, path: str | Path) -> Run | None:
        """The run whose own ``evaluation.json`` (:attr:`evaluation_file`, written by ``seaice train``)
        ``path`` is, as given or with its links resolved: one in a folder holding a ``config.yaml`` or
        weights, there yet or not; None for any other path."""
        for where in (Path(path).absolute(), Path(path).resolve()):
            if where.parent.is_dir() and where == (run := cls(where.parent)).evaluation_file \
                    and (run.config_file is not None or run.has_weights):
                return run
        return None

    @property
    def evaluation_file(self) -> Path:
        """``evaluation.json``, there or not."""
        return self.folder / "evaluation.json"

    @cached_property
    def evaluation(self) -> Evaluation | None:
        """The final :class:`~.evaluation.Evaluation` (``evaluation.json``); None without one, a
        ValueError naming the file when it is not one."""
        from .evaluation import Evaluation

        return Evaluation.from_json(self.evaluation_file) if self.evaluation_file.is_file() else None

    def model_evaluation(self) -> Evaluation:
        """:attr:`evaluation` where it scores the run's ``model.pt`` (its ``info.weights_sha256``) on
        the files it records as they are now (:meth:`Evaluation.changed_inputs`); a ValueError naming
        the file otherwise: an evaluation of other weights (copied from another run), of scenes or
        reference files changed or gone since, one edited since it was written (its
        ``content_sha256``), or one that records no weights, no files or no ``content_sha256`` (written
        before evaluations recorded them)."""
        evaluation, model = self.evaluation, self.folder / "model.pt"
        if evaluation is None:
            raise ValueError(f"{self.folder}: no evaluation.json: its training stopped before the final evaluation, "
                             "or still runs (run its `seaice train` again)")
        if not model.is_file():
            raise ValueError(f"{self.evaluation_file}: the run has no model.pt for it to score")
        recorded = evaluation.info.get("weights_sha256")
        if recorded != (digest := file_sha256(model)):
            said = f"scores weights {str(recorded)[:12]}" if recorded else "records no weights_sha256 (written before "\
                "evaluations recorded their weights)"
            raise ValueError(f"{self.evaluation_file}: {said}, not the run's model.pt ({digest[:12]})")
        again = f"run `seaice train --config {self.folder / 'config.yaml'}` again (it scores a finished run " \
                "again, or says what must be redone first)"
        if not evaluation.content_checked:
            raise ValueError(f"{self.evaluation_file}: records no content_sha256 (written before evaluations recorded "
                             f"it): its scores cannot be told from ones edited since; {again}")
        changed = evaluation.changed_inputs()
        if changed is None:
            raise ValueError(f"{self.evaluation_file}: records no input files (written before evaluations recorded "
                             f"them): its scores cannot be checked against the scenes now; {again}")
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise ValueError(f"{self.evaluation_file}: scored against {changed[0]}{more}: its scores are not those "
                             f"of the files now; {again}")
        return evaluation

    @cached_property
    def val_scenes(self) -> list[str]:
        """The validation scene ids ``evaluation.json`` records (``info.val_scenes``; none when its
        ``info`` names none); a ValueError naming the folder or the file when there is no record or
        the file was edited since it was written."""
        path = self.evaluation_file
        if not path.is_file():
            raise ValueError(f"{self.folder}: no evaluation.json to read validation scenes from")
        try:
            doc = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
        info = doc.get("info") if isinstance(doc, dict) else None
        if not isinstance(info, dict):
            raise ValueError(f"{path}: records no validation scenes")
        if edited(doc):
            raise ValueError(f"{path}: edited since it was written (its content_sha256 is not that of its content): "
                             "its validation scenes are not the ones it recorded")
        return list(info.get("val_scenes") or [])

    @property
    def recorded_train_scenes(self) -> list[str] | None:
        """The training scene ids recorded with the weights (``data``), else in ``config.yaml``
        (``train_scenes``); None where neither records them."""
        record = checkpoints.read(self.weights).get("data")
        if isinstance(record, Mapping):
            return list(record["train_scenes"])
        cfg = self.config
        return list(cfg.train_scenes) if cfg is not None and cfg.train_scenes is not None else None

    def train_scenes(self, store: str | Path) -> list[str] | None:
        """The training scene ids of the run that ``store`` holds; None when it holds none of them or
        the run has no record of its split. The split is the one recorded with the weights
        (``data``), else ``train_scenes`` of its ``config.yaml``, else the split recomputed on the
        store less the validation scenes its ``evaluation.json`` names (a store that grew since
        re-draws a split)."""
        from ..data.splits import split_scenes
        from ..data.store import check_store

        if (recorded := self.recorded_train_scenes) is not None:
            train = recorded
        elif (cfg := self.config) is not None:
            train = cfg.train_scenes if cfg.train_scenes is not None else \
                split_scenes(store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)[0]
            if self.evaluation is not None:
                seen = set(self.evaluation.info.get("val_scenes") or [])
                train = [sid for sid in train if sid not in seen]
        else:
            return None
        held = set(check_store(store))
        return [sid for sid in train if sid in held] or None

    @property
    def export_dir(self) -> Path:
        """Where ``seaice export`` writes the run's ONNX export by default (``export/``)."""
        return self.folder / "export"

    @property
    def provenance_file(self) -> Path:
        """``provenance.json``, there or not."""
        return self.folder / PROVENANCE_FILE

    @cached_property
    def provenance(self) -> dict | None:
        """``provenance.json`` (:func:`record_provenance`): its ``invocations`` (package version,
        commit, command line, ...) and the final ``model``; None without one, a ValueError naming
        the file when it is not a JSON mapping."""
        path = self.provenance_file
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a provenance record of `seaice train`")
        return doc


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a run folder, a ``model.pt`` or a checkpoint, in eval mode: :meth:`Run.load_model`
    of :meth:`Run.open`."""
    return Run.open(path).load_model(device)


def _weights_mismatch(expected: Mapping[str, torch.Tensor], weights: Mapping) -> str:
    """What keeps ``weights`` from loading as the state dict ``expected`` ("" when nothing)."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {tuple(getattr(weights[k], 'shape', ()))} (model {tuple(v.shape)})"
              for k, v in expected.items() if k in weights
              and tuple(getattr(weights[k], "shape", ())) != tuple(v.shape)]
    return "; ".join(f"{what}: {logs.first_few(items)}" for what, items in
                     (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)) if items)
