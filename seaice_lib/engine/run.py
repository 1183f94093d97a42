"""A training run's folder as its readers see it: the model in its weights (``model.pt``, else
``checkpoints/last.pt``), the spec stored with them, the tile settings the model was trained with,
and ``provenance.json``. Charts, edge, explain, figures and experiments load runs from here, never
from the trainer (:mod:`.training`, which writes the folder; its layout is listed there)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_text
from ..data.patches import PatchConfig, config_from_store
from ..models import create_model
from ..sample_format import MODALITIES
from ..walk import one_line
from . import checkpoints
from .config import TrainConfig

PROVENANCE_FILE = "provenance.json"  # in a run folder: who trained it and the final weights' hash


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
    (the config's); every registered model takes them. A value given in ``model_kwargs`` must agree.
    ``tiles`` records the store's :meth:`PatchConfig.tile_settings`, which charting then uses, and
    ``modalities`` the inputs it is trained on (a U-Net with ``grid2km`` needs AMSR2 and ERA5).
    """
    kwargs = dict(cfg.model_kwargs)
    filled = {"downsample": int(store_attrs["downsample"]), "img_size": int(store_attrs["patch"]),
              "sar_channels": len(store_attrs["sar_variables"]), "sic_mode": cfg.sic_mode}
    for key, value in filled.items():
        if key in kwargs and kwargs[key] != value:
            source = "the config's sic_mode" if key == "sic_mode" else f"store {store}"
            raise ValueError(f"model_kwargs[{key!r}] = {kwargs[key]!r} disagrees with {source} ({value!r})")
        kwargs[key] = value
    needed = {"sar"} | ({"amsr2", "era5"} if cfg.model == "unet" and kwargs.get("grid2km", True) else set())
    if lacking := sorted(needed - set(cfg.modalities)):
        raise ValueError(f"modalities {list(cfg.modalities)}: {cfg.model} needs {lacking} too"
                         + (" (or model_kwargs grid2km: false)" if "sar" not in lacking else ""))
    tiles = config_from_store(store).tile_settings()
    return {"name": cfg.model, "size": cfg.model_size, "kwargs": kwargs, "tiles": tiles,
            "modalities": [m for m in MODALITIES if m in cfg.modalities]}


def build_model(spec: Mapping) -> nn.Module:
    """The model of a spec (:func:`model_spec`), knowing the modalities it was trained on
    (``model.modalities``, all of them for specs from before they were recorded): whole-scene
    tiles give it only those (:func:`~seaice_lib.engine.evaluation.predict_batches`)."""
    model = create_model(spec["name"], spec["size"], **spec["kwargs"])
    model.modalities = tuple(spec.get("modalities", MODALITIES))
    return model


def run_patch_config(run_dir: str | Path, store: str | Path | None = None) -> PatchConfig:
    """The patch settings a run's tiles are cut with: those its weights record (the spec's
    ``tiles``), which ``store`` (or the store its ``config.yaml`` names) must share; weights from
    before they were recorded take the store's. A disagreement, or no settings to be found, is a
    ValueError naming the run and the store (and ``--store``)."""
    run_dir = Path(run_dir)
    recorded = model_spec_of(run_dir).get("tiles") if _has_weights(run_dir) else None
    if store is None:
        config = run_dir / "config.yaml"
        if recorded is not None and not config.is_file():
            return PatchConfig(**{**recorded, "sar_variables": tuple(recorded["sar_variables"])})
        if not config.is_file():
            raise ValueError(f"{run_dir}: no config.yaml (is it a run folder of `seaice train`?)")
        try:
            store = Path(TrainConfig.from_yaml(config).store)
        except ValueError as err:
            raise ValueError(f"{err} (or name the store with --store)") from None
        if not store.exists():
            if recorded is not None:
                return PatchConfig(**{**recorded, "sar_variables": tuple(recorded["sar_variables"])})
            raise ValueError(f"{run_dir}: its store {store} is not there from {Path.cwd()} "
                             "(name the store with --store)")
    cfg = config_from_store(store)
    if recorded is not None and (ours := cfg.tile_settings()) != recorded:
        differ = ", ".join(f"{k} {ours[k]!r} (trained on {recorded[k]!r})" for k in recorded if ours.get(k) != recorded[k])
        raise ValueError(f"store {store} cuts tiles with other settings than run {run_dir} was trained on: {differ}; "
                         "name a store built with the run's settings (--store)")
    return cfg


def _has_weights(run_dir: Path) -> bool:
    return (run_dir / "model.pt").exists() or (run_dir / "checkpoints" / "last.pt").exists()


def weights_file(path: str | Path) -> Path:
    """The file a run's model is loaded from: ``path`` itself, or in a run folder ``model.pt``, else
    ``checkpoints/last.pt``; FileNotFoundError when it is not there."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").exists() else path / "checkpoints" / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model.pt or checkpoints/last.pt")
    return path


def model_spec_of(path: str | Path) -> dict:
    """The model spec (registry name, size, kwargs) the weights of :func:`weights_file` hold."""
    path = weights_file(path)
    spec = checkpoints.read(path).get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError(f"{path}: holds no model spec (not a model.pt or checkpoint of `seaice train`)")
    return dict(spec)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a run directory, a ``model.pt`` or a checkpoint (:func:`weights_file`), in eval mode."""
    path = weights_file(path)
    doc = checkpoints.read(path)
    if not isinstance(doc.get("spec"), Mapping) or not isinstance(doc.get("model"), Mapping):
        raise ValueError(f"{path}: holds no model spec and weights (not a model.pt or checkpoint of `seaice train`)")
    spec = doc["spec"]
    try:
        model = build_model(spec)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot build its model from the spec {dict(spec)}: {one_line(err)}") from err
    mismatch = _weights_mismatch(model.state_dict(), doc["model"])
    if mismatch:
        raise ValueError(f"{path}: the weights do not fit its model {spec['name']} ({spec['size']}): {mismatch}")
    model.load_state_dict(doc["model"])
    return model.to(device).eval()


def _weights_mismatch(expected: Mapping[str, torch.Tensor], weights: Mapping) -> str:
    """What keeps ``weights`` from loading as the state dict ``expected`` ("" when nothing)."""
    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {tuple(getattr(weights[k], 'shape', ()))} (model {tuple(v.shape)})"
              for k, v in expected.items() if k in weights
              and tuple(getattr(weights[k], "shape", ())) != tuple(v.shape)]
    return "; ".join(f"{what}: {few(items)}" for what, items in
                     (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)) if items)
