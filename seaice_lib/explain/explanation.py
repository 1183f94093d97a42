"""Every explanation of one tile of a scene, as per-pixel maps (notebooks/06_explain.ipynb)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import schema
from ..atomic import atomic_path, write_text
from ..data.dataset import keep_modalities
from ..data.patches import PatchConfig
from ..data.scene import Scene
from ..data.sequences import SceneSequence
from ..data.store import changed_files
from ..data.tiles import left_out_lines
from ..engine.evaluation import INPUT_FILE
from ..engine.run import Run
from ..engine.whole_scenes import ScenePaths, SceneTiles, as_config, input_records, scene_sequence
from ..jsondoc import content_sha256, edited, read_json
from ..models.tsvit import TSViT
from ..models.unet import UNet
from ..provenance import file_sha256, provenance
from ..sample_format import MODALITIES, OPTIONAL_MODALITIES
from ..stages import FIGURES_RECORD
from . import attention, attribution, sanity

log = logging.getLogger(__name__)

PER_STEP = ("ig_map", "attention", "rollout", "relevance")  # explanation maps with one (P, P) map per acquisition


class SceneTile(NamedTuple):
    """One tile of a whole scene, as :func:`scene_tile` cuts it."""

    batch: dict  # the tile's one-sample batch (:meth:`SceneTiles.batch`)
    origin: tuple[int, int]  # its store-grid origin
    inputs: tuple[Path, ...]  # the scene files its sequence read (:func:`files_read`)
    settings: PatchConfig  # the patch settings it was cut with
    # "FILE: problem" of each earlier acquisition of the scene's time window that could not be read:
    # the tile is cut without it (:func:`save_explanation` records them)
    left_out: tuple[str, ...] = ()


def scene_tile(target: str | Path, scenes: ScenePaths, settings: PatchConfig | str | Path,
               tile: int, modalities: Sequence[str] = MODALITIES, history: bool = True) -> SceneTile:
    """The tile ``tile`` (index in reading order) of a whole scene, of the ``modalities`` the
    explained model reads (``model.modalities``; the others are not read, as in charting), with its
    earlier acquisitions where the model reads them (``history``: ``model.reads_history``; a
    single-date model's tile is the target alone); an earlier acquisition of its time window that
    could not be read is left out of the sequence, named in one warning and in the tile's ``left_out``."""
    cfg = as_config(settings)
    sequence = scene_sequence(target, scenes, cfg, history)
    tiles = SceneTiles(sequence, cfg, absent=[m for m in OPTIONAL_MODALITIES if m not in modalities])
    if not 0 <= tile < len(tiles):
        raise ValueError(f"tile must be in 0..{len(tiles) - 1} for {Path(target).name}, not {tile}")
    left_out = tuple(left_out_lines(sequence.left_out))
    if left_out:
        log.warning("%s: explained without earlier acquisitions that could not be read: %s",
                    Path(target).name, "; ".join(left_out))
    origin = tiles.origins[tile]
    return SceneTile(tiles.batch([origin]), origin, tuple(_sequence_files(sequence)), cfg, left_out)


def _sequence_files(sequence: SceneSequence) -> list[Path]:
    """The files a sequence was read from: the earlier acquisitions left out unread that are
    there (a repair changes what is made), then its steps, oldest first, the target last."""
    return [*(Path(err.path) for err in sequence.left_out if Path(err.path).is_file()), *(s.path for s in sequence.steps)]


def files_read(targets: Iterable[str | Path], scenes: ScenePaths, settings: PatchConfig | str | Path,
               history: bool = True) -> list[Path]:
    """Every scene file the sequences of ``targets`` read (as :attr:`SceneTile.inputs`; the targets
    alone without ``history``: ``model.reads_history``), each once: what the ablations of an
    explain folder are made from (:func:`save_explanation`'s ``also_read``)."""
    cfg = as_config(settings)
    return list(dict.fromkeys(p for target in targets
                              for p in _sequence_files(scene_sequence(target, scenes, cfg, history))))


def richest_tile(targets: Sequence[str | Path], scenes: ScenePaths, settings: PatchConfig | str | Path,
                 modalities: Sequence[str] = MODALITIES, history: bool = True) -> tuple[Path, int]:
    """The default tile to explain: among ``targets`` (in order), the (target, tile index) whose tile
    the most acquisitions cover (steps with SAR on any of its pixels). Ties go to the most SAR
    pixels over all steps, then to the first target and the first tile in reading order. Only what
    the explained model reads is read (``modalities``, ``history``, as :func:`scene_tile` reads
    them). An earlier acquisition that could not be read is left out of the choice;
    :func:`scene_tile` names the chosen scene's."""
    cfg = as_config(settings)
    best, best_key = None, None
    for target in targets:
        tiles = SceneTiles(scene_sequence(target, scenes, cfg, history), cfg,
                           absent=[m for m in OPTIONAL_MODALITIES if m not in modalities])
        start = 0
        for chunk in tiles.chunks(64):
            covered = tiles.arrays(chunk)["sar_mask"]  # (B, T, P, P)
            keys = zip(covered.any(axis=(2, 3)).sum(axis=1), covered.sum(axis=(1, 2, 3)))
            for i, key in enumerate(keys):
                if best_key is None or key > best_key:
                    best, best_key = (Path(target), start + i), key
            start += len(chunk)
    if best is None:
        raise ValueError("no target scene to choose a tile from")
    return best


def given(model: nn.Module, batch: dict) -> dict:
    """``batch`` as charting gives it to ``model``: without the modalities it does not read
    (``model.modalities``, :func:`~seaice_lib.data.dataset.keep_modalities`), so that no explanation
    credits an input the model never had."""
    return keep_modalities(batch, getattr(model, "modalities", MODALITIES))


def explain_tile(model: nn.Module, batch: dict, chart: str, index: int, ig_steps: int = 32
                 ) -> dict[str, Any]:
    """Maps over the tile's P x P pixels explaining class ``index`` of ``chart`` where the model
    predicts it (everywhere when it predicts it nowhere).

    Keys: ``predicted`` (P, P) bool; ``ig_per_input`` {input: float}; ``ig_per_step`` (T,);
    ``ig_map`` (T, P, P) |attribution| of each acquisition's SAR. TSViT adds ``attention``,
    ``rollout`` and ``relevance`` (T, P, P), and for v3 with tokens ``modality_share``
    {local|global|total: {modality: (P, P)}}; the U-Net adds ``gradcam`` (P, P).
    """
    batch = given(model, batch)
    model.eval()
    with torch.no_grad():
        out = model(batch)[chart]
    predicted = (out.argmax(1) == index) if out.shape[1] > 1 else torch.ones_like(out[:, 0], dtype=torch.bool)
    where = predicted if predicted.any() else torch.ones_like(predicted)
    ig = attribution.integrated_gradients(model, batch, chart, index, where=where, steps=ig_steps)
    result: dict[str, Any] = {"predicted": predicted[0].numpy(),
                              "ig_per_input": {n: float(v[0]) for n, v in ig.per_input.items()},
                              "ig_per_step": ig.per_step[0].numpy(),
                              "ig_map": ig.maps["sar"][0].abs().sum(1).numpy() if "sar" in ig.maps else None}
    if hasattr(model, "temporal_encoder"):
        vit = cast(TSViT, model)
        k = attention.class_token(vit, chart, index)
        _, record = attention.attention_maps(vit, batch)
        n_classes = vit.n_tokens
        per_step = {"attention": attention.temporal_attention(record, n_classes)[0, :, k].T,
                    "rollout": attention.temporal_rollout(record, n_classes)[0, :, k].T}
        t = per_step["attention"].shape[0]
        per_step["rollout"] = per_step["rollout"][:t]
        per_step["relevance"] = attention.relevance(vit, batch, chart, index, where=where)["sar"][0]
        for name, values in per_step.items():  # (T, N) -> (T, P, P)
            result[name] = attention.per_pixel(values, vit).numpy()
        if vit.fusion == "tokens":
            shares = attention.modality_share(record, n_classes)
            result["modality_share"] = {kind: {m: attention.per_pixel(v[0, k], vit).numpy()
                                               for m, v in mods.items()} for kind, mods in shares.items()}
    elif hasattr(model, "features_from_inputs"):
        result["gradcam"] = attribution.unet_gradcam(cast(UNet, model), batch, chart, index, where=where)[0]
    return result


def randomisation_check(model: nn.Module, batch: dict, chart: str, index: int, ig_steps: int = 8
                        ) -> list[tuple[str, float]]:
    """Cascading randomisation (:func:`~seaice_lib.explain.sanity.cascading_randomisation`) of the
    tile's integrated gradients: ``[(layer group, rank correlation with the trained model's)]``."""
    batch = given(model, batch)

    def explain(net: nn.Module) -> torch.Tensor:
        return attribution.integrated_gradients(net, batch, chart, index, steps=ig_steps).maps["sar"]
    return sanity.cascading_randomisation(model, explain)


def label_randomised_model(run_dir: str | Path, trained: nn.Module, tiles: Mapping | None) -> nn.Module:
    """The model of ``run_dir``, a run trained with ``shuffle_labels: true`` (the label-randomisation
    control); ValueError naming the run when it was not, when its model is not ``trained``'s
    architecture (other type or weight shapes), when it reads other modalities
    (``model.modalities``: its explanations would be of other inputs), or when its tiles were cut
    with other settings than ``tiles`` (the explained run's spec ``tiles``; None where its weights
    record none): a control trained on other data explains other tiles."""
    run = Run(run_dir)
    if not run.required_config().shuffle_labels:
        raise ValueError(f"{run.folder}: not trained with shuffle_labels: true (see its config.yaml)")
    shuffled = run.load_model()
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in (trained, shuffled)]
    if type(shuffled) is not type(trained) or shapes[0] != shapes[1]:
        raise ValueError(f"{run.folder}: its {type(shuffled).__name__} is not the explained model's architecture "
                         f"({type(trained).__name__}, same weight shapes)")
    theirs, ours = (tuple(getattr(m, "modalities", MODALITIES)) for m in (shuffled, trained))
    if theirs != ours:
        raise ValueError(f"{run.folder}: its model reads {' + '.join(theirs)}, the explained model "
                         f"{' + '.join(ours)}: train the control on the explained run's modalities")
    control_tiles = run.spec.get("tiles")
    if tiles is not None and control_tiles is not None and dict(control_tiles) != dict(tiles):
        differ = ", ".join(f"{k} {control_tiles.get(k)!r} (the explained run's: {tiles.get(k)!r})"
                           for k in dict.fromkeys([*tiles, *control_tiles]) if control_tiles.get(k) != tiles.get(k))
        raise ValueError(f"{run.folder}: trained on tiles cut with other settings: {differ}; train the control on "
                         "the explained run's store")
    return shuffled


def label_randomisation_command(run_dir: str | Path, scenes_dir: str | Path) -> str:
    """The ``seaice train`` command line that trains ``run_dir``'s configuration again with
    ``shuffle_labels: true`` into ``<run_dir>_labels_shuffled`` (for :func:`label_randomised_model`),
    with absolute paths so that it runs from any folder (the store as the run's config names it,
    read from the current folder)."""
    run = Run(Path(run_dir).resolve())
    store = run.store.resolve()
    return shlex.join(["seaice", "train", "--config", str(run.config_file), "--set", "shuffle_labels=true",
                       "--set", f"store={store}", "--set", f"scenes_dir={Path(scenes_dir).resolve()}",
                       "--set", f"out_dir={run.folder.parent / (run.folder.name + '_labels_shuffled')}"])


def label_randomisation_check(result: Mapping, shuffled: nn.Module, batch: dict, chart: str, index: int,
                              ig_steps: int = 32) -> list[tuple[str, float]]:
    """Label randomisation (Adebayo et al. 2018): :func:`explain_tile`'s ``result`` for the trained
    model against the same explanations of the tile by ``shuffled``, the same architecture trained
    on labels permuted across each batch (:func:`label_randomised_model`): ``[(explanation, rank
    correlation, :func:`~seaice_lib.explain.sanity.similarity`)]``. Modality shares are compared
    per kind, map by map, keeping the largest correlation
    (:func:`~seaice_lib.explain.sanity.per_map_similarity`; pooled, their ranks mostly say which
    modality gets more, which the architecture fixes: docs/explain.md). A faithful explanation
    differs (low correlation)."""
    other = explain_tile(shuffled, batch, chart, index, ig_steps)
    pairs = [(name, result[name], other[name]) for name in (*PER_STEP, "gradcam")
             if result.get(name) is not None and other.get(name) is not None]
    for kind, shares in result.get("modality_share", {}).items():
        pairs.append((f"{kind} modality share", np.stack(list(shares.values())),
                      np.stack([other["modality_share"][kind][m] for m in shares])))
    return [(name, (sanity.per_map_similarity if "modality share" in name else sanity.similarity)(a, b))
            for name, a, b in pairs]


def step_shares(maps: Mapping[str, np.ndarray], step_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Which dates mattered: each per-acquisition explanation (:data:`PER_STEP`) as the share (%) of
    its absolute total over the tile's pixels per real acquisition (oldest first), {name: (T_real,)}."""
    n = int(np.sum(step_mask))
    shares = {}
    for name in PER_STEP:
        if maps.get(name) is not None:
            per_step = np.abs(np.asarray(maps[name], np.float64)[:n]).sum(axis=(1, 2))
            shares[name] = 100 * per_step / max(per_step.sum(), 1e-12)
    return shares


def date_table(result: Mapping, batch: Mapping, target: str | Path) -> pd.DataFrame:
    """:func:`step_shares` of the one-tile ``batch``'s explanations, one row per real acquisition
    (oldest first) with its date (the ``target`` scene's time minus ``days_before``, UTC to the
    minute) and its days before the target; one column of shares (%) per explanation."""
    step_mask = batch["step_mask"][0].numpy()
    days = batch["days_before"][0].numpy()[:int(step_mask.sum())]
    with Scene(target) as scene:
        time = scene.time
    dates = [f"{time - dt.timedelta(days=float(d)):%Y-%m-%d %H:%M}" for d in days]
    table = pd.DataFrame({"date": dates, "days before": np.round(days.astype(np.float64), 2)})
    for name, shares in step_shares(result, step_mask).items():
        table[f"{name} (%)"] = shares
    return table


EXPLANATION_MAPS = "explanation.npz"  # the maps of one explained tile (save_explanation)
EXPLANATION_INFO = "explanation.json"  # its numbers and what was explained
MAPS_SHA256 = "maps_sha256"  # the key of explanation.json that holds the SHA-256 of its explanation.npz
# the tables beside the maps, bound to them by explanation.json (the figures read the first two: figures/explained.py)
TABLES = ("ablation.csv", "sanity.csv", "sanity_labels.csv")
TABLES_SHA256 = "tables_sha256"  # the key of explanation.json that holds each table's SHA-256 (null: not written)
LEFT_OUT = "left_out_history_inputs"  # the key of explanation.json naming the earlier acquisitions left out unread
# what the figures read, and what binds the explanation to the weights and scene files it was made from
# (null or missing: written before explanations recorded them, refused by load_explanation)
INFO_SHAPE = {"run": str, "scene": str, "tile": int, "chart": str, "class": str, "run_dir": (str, None),
              "weights_sha256": (str, None), "input_files": ([INPUT_FILE], None), "trained_on": (bool, None),
              TABLES_SHA256: ({"*": (str, None)}, None), "content_sha256": (str, None), "modalities": ([str], None),
              "label_randomised_run": (str, None), "label_randomised_weights_sha256": (str, None)}
TILE_MAPS = ("sar", "sar_mask", "step_mask", "days_before")  # the tile's own arrays, beside the maps


# every file an explain folder holds (notebooks/06_explain.ipynb): removed when a new explanation starts
EXPLAIN_OUTPUTS = (EXPLANATION_INFO, EXPLANATION_MAPS, "integrated_gradients.csv", "dates.csv", "dates.html",
                   "explanations.html", "ablation.csv", "ablation.md", "sanity.csv", "sanity_labels.csv")


EXPLAIN_FOLDER = ".explain_folder"  # written by start_folder: the folder holds an explanation's outputs


def start_folder(out_dir: str | Path) -> Path:
    """``out_dir`` made ready for a new explanation: created, and every output of an earlier one
    (:data:`EXPLAIN_OUTPUTS`) removed, so that a run that stops part-way never leaves another
    run's results beside its own. Files of those names are removed only from an explanation's folder
    (one that holds ``explanation.json``, or that an earlier call marked, :data:`EXPLAIN_FOLDER`);
    in any other folder they are someone else's: a ValueError names them and nothing is removed; so
    does a folder of figures (``seaice figures``' OUT_DIR)."""
    out_dir = Path(out_dir)
    if (out_dir / FIGURES_RECORD).exists():
        raise ValueError(f"out_dir {out_dir}: a folder of figures (seaice figures, {FIGURES_RECORD}), whose files "
                         "would lie beside the explanation's: give a new or empty folder")
    ours = (out_dir / EXPLANATION_INFO).is_file() or (out_dir / EXPLAIN_FOLDER).is_file()
    if not ours and (theirs := [name for name in EXPLAIN_OUTPUTS if (out_dir / name).exists()]):
        raise ValueError(f"out_dir {out_dir}: holds {', '.join(theirs)} but no explanation of seaice: give a new "
                         "or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / EXPLAIN_FOLDER).write_text("the outputs of an explanation (notebooks/06_explain.ipynb)\n")
    for name in EXPLAIN_OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    return out_dir


def chosen_class(model: nn.Module, chart: str, class_name: str) -> tuple[int, str]:
    """(class index, label) to explain: a class of ``chart`` by its name (``schema.CLASSES``), or
    for SIC predicted as one regression channel "" (the value itself); ValueError naming the
    parameter otherwise."""
    if chart not in schema.CHARTS:
        raise ValueError(f"chart must be one of {schema.CHARTS}, not {chart!r}")
    names = schema.CLASSES[chart].names
    if chart == "SIC" and getattr(model, "sic_mode", "classification") == "regression":
        if class_name:
            raise ValueError(f"class_name {class_name!r}: this model predicts SIC as one value; give \"\"")
        return 0, "value"
    if class_name not in names:
        raise ValueError(f"class_name must be a class of {chart}: one of {list(names)}, not {class_name!r}")
    return names.index(class_name), class_name


def trained_on(run: Run, scene: str) -> bool | None:
    """Whether ``run`` trained on the scene ``scene`` (its id), by the training scenes recorded with
    its weights or in its config (:attr:`Run.recorded_train_scenes`, as ``seaice evaluate`` reads
    them; None where it records none), with a warning when it did: an explanation of it shows how
    the model fits its training data, not how it charts unseen scenes."""
    recorded = run.recorded_train_scenes
    if recorded is None:
        return None
    if trained := scene in recorded:
        log.warning("%s: a scene run %s trained on: its explanation shows how the model fits its training data, "
                    "not how it charts unseen scenes (explanation.json records trained_on: true)", scene,
                    run.folder.name)
    return trained


def save_explanation(result: Mapping, tile: SceneTile, out_dir: str | Path, run: Run, info: Mapping,
                     also_read: Sequence[Path] = (), control: str | Path | None = None) -> list[Path]:
    """Write :func:`explain_tile`'s ``result`` for ``tile`` by ``run``'s model (its :attr:`Run.weights`)
    to ``out_dir``, after every other output of the folder: the tables of :data:`TABLES` there are
    bound to it.

    ``explanation.npz``: float32 maps keyed as in ``result`` (modality shares as
    ``share_<kind>_<modality>``), the tile's ``sar`` (T, C, P, P, standardised), ``sar_mask``
    (T, P, P), ``step_mask`` (T,) and ``days_before`` (T,). ``explanation.json``, written last:
    ``info`` (model, scene, tile, chart, class, ``trained_on`` (:func:`trained_on`)...) with
    ``ig_per_input``, ``ig_per_step``, the SHA-256 of the npz (``maps_sha256``), which binds the
    two, that of each table of :data:`TABLES` in ``out_dir`` (``tables_sha256``; null for one not
    there), the SHA-256 of its own content (``content_sha256``), and ``left_out_history_inputs``
    (``"FILE: problem"`` each: :attr:`SceneTile.left_out`) when the tile was cut without earlier
    acquisitions that could not be read; and what made it: the run (``run``, its folder's name;
    ``run_dir``, absolute), the weights (``weights``, ``weights_sha256``), the tile's patch
    ``settings``, the modalities the model was given (``modalities``: those it reads,
    :attr:`Run.modalities`), the scene files read (``input_files``: the tile's and ``also_read``, the
    ablations', as evaluations record theirs), the label-randomisation ``control`` run
    (``label_randomised_run``, absolute, and its ``label_randomised_weights_sha256``; null without
    one) and ``made_by`` (:func:`~seaice_lib.provenance.provenance`).
    Read back with :func:`load_explanation`; :func:`check_current` says whether it is still the
    explanation of the run's model and scenes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch, weights = tile.batch, run.weights
    maps: dict[str, Any] = {name: np.asarray(result[name], np.float32) for name in
            ("predicted", "ig_map", "attention", "rollout", "relevance", "gradcam") if result.get(name) is not None}
    for kind, shares in result.get("modality_share", {}).items():
        maps |= {f"share_{kind}_{m}": np.asarray(v, np.float32) for m, v in shares.items()}
    maps |= {name: batch[name][0].numpy().astype(np.float32) for name in TILE_MAPS}
    with atomic_path(out_dir / EXPLANATION_MAPS) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **maps)
    read = dict.fromkeys(Path(p).absolute() for p in (*tile.inputs, *also_read))
    numbers = {**info, "run": run.folder.name, "run_dir": str(run.folder.resolve()), "weights": str(weights.resolve()),
               "weights_sha256": file_sha256(weights), "modalities": list(run.modalities), "settings": asdict(tile.settings),
               "input_files": input_records(read), "made_by": provenance(),
               "label_randomised_run": str(Path(control).resolve()) if control else None,
               "label_randomised_weights_sha256": file_sha256(Run(control).weights) if control else None,
               "ig_per_input": result["ig_per_input"], "ig_per_step": [float(v) for v in result["ig_per_step"]],
               MAPS_SHA256: file_sha256(out_dir / EXPLANATION_MAPS),
               TABLES_SHA256: {name: file_sha256(out_dir / name) if (out_dir / name).is_file() else None
                               for name in TABLES},
               **({LEFT_OUT: list(tile.left_out)} if tile.left_out else {})}
    numbers["content_sha256"] = content_sha256(numbers)
    return [out_dir / EXPLANATION_MAPS, write_text(out_dir / EXPLANATION_INFO, json.dumps(numbers, indent=1))]


def load_explanation(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(info, maps) written by :func:`save_explanation`; a missing file, or one without what the
    figures read (:data:`INFO_SHAPE`, :data:`TILE_MAPS`), is an error naming it, and a pair that
    :func:`save_explanation` did not write together (the npz's SHA-256 is not the json's
    ``maps_sha256``), or a json that records no weights and scene files, or no hashes of its content
    and tables, one naming the folder. A json edited since it was written (its ``content_sha256``),
    and a table of :data:`TABLES` that is not the one it records (edited, missing, or there where
    it records none), are errors naming the file."""
    folder = Path(folder)
    for name in (EXPLANATION_INFO, EXPLANATION_MAPS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing (written by notebooks/06_explain.ipynb)")
    info = read_json(folder / EXPLANATION_INFO, INFO_SHAPE)
    if not isinstance(recorded := info.get(MAPS_SHA256), str):
        raise ValueError(f"{folder}: {EXPLANATION_INFO} records no SHA-256 of {EXPLANATION_MAPS} ({MAPS_SHA256}; "
                         "written before explanations recorded it): run the explanation again")
    if any(info.get(key) is None for key in ("run_dir", "weights_sha256", "input_files")):
        raise ValueError(f"{folder}: {EXPLANATION_INFO} records no run_dir, weights_sha256 and input_files (written "
                         "before explanations recorded their weights and scene files): run the explanation again")
    if info.get("modalities") is None:  # it may credit (and ablate) inputs its model does not read
        raise ValueError(f"{folder}: {EXPLANATION_INFO} records no modalities (written before explanations gave the "
                         "model only the modalities it reads): run the explanation again")
    again = "run notebooks/06_explain.ipynb again"
    if info.get("content_sha256") is None or info.get(TABLES_SHA256) is None:
        raise ValueError(f"{folder}: {EXPLANATION_INFO} records no content_sha256 and {TABLES_SHA256} (written before "
                         f"explanations recorded them): it and its tables cannot be told from ones edited since; {again}")
    if edited(info):
        raise ValueError(f"{folder / EXPLANATION_INFO}: edited since it was written (its content_sha256 is not that "
                         f"of its content): {again}")
    for name in TABLES:
        table, bound = folder / name, info[TABLES_SHA256].get(name)
        if bound is None and table.exists():
            raise ValueError(f"{table}: not written with the explanation ({EXPLANATION_INFO} records none): {again}")
        if bound is not None and not table.is_file():
            raise ValueError(f"{table}: missing ({EXPLANATION_INFO} records it): {again}")
        if bound is not None and file_sha256(table) != bound:
            raise ValueError(f"{table}: not the table {EXPLANATION_INFO} records (edited or copied in since; it "
                             f"records sha256 {bound[:12]}): {again}")
    if recorded != file_sha256(folder / EXPLANATION_MAPS):
        raise ValueError(f"{folder}: {EXPLANATION_MAPS} is not the maps {EXPLANATION_INFO} describes (half-written "
                         "or swapped): run the explanation again")
    try:
        with np.load(folder / EXPLANATION_MAPS) as npz:
            maps = dict(npz)
    except (ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{folder / EXPLANATION_MAPS}: not the maps of an explanation ({err})") from None
    if missing := [name for name in TILE_MAPS if name not in maps]:
        raise ValueError(f"{folder / EXPLANATION_MAPS}: no {', '.join(missing)}")
    return info, maps


def check_current(folder: str | Path, info: Mapping, run_folder: str | Path | None = None) -> None:
    """A ValueError naming ``folder``'s ``explanation.json`` (``info``, :func:`load_explanation`)
    unless it explains the ``model.pt`` of ``run_folder`` (default: the run folder it records) as
    that is now, from the scene files it records as they are now
    (:func:`~seaice_lib.data.store.changed_files`): after the run is trained again, or a scene is
    delivered again, its figures would pass for the run's."""
    where = Path(folder) / EXPLANATION_INFO
    again = "run notebooks/06_explain.ipynb again"
    run, explained = Run(run_folder or info["run_dir"]), info["weights_sha256"]
    if not (run.has_weights and run.final_weights):
        raise ValueError(f"{where}: explains the weights {explained[:12]} of run {info['run']}, and {run.folder} "
                         f"holds no final model.pt now (the run moved, or trains again); {again}")
    model = run.weights
    if (digest := file_sha256(model)) != explained:
        raise ValueError(f"{where}: explains the weights {explained[:12]}, not the run's model.pt now ({model}: "
                         f"{digest[:12]}; trained again since?); {again}")
    control, bound = info.get("label_randomised_run"), info.get("label_randomised_weights_sha256")
    if control and bound:  # the verdict of sanity_labels.csv is of those weights
        try:
            now = file_sha256(Run(control).weights)
        except (ValueError, OSError):  # the run or its weights gone
            now = None
        if now != bound:
            raise ValueError(f"{where}: checked against the label-randomised weights {bound[:12]} of {control}, "
                             f"which are not there now (trained again since?); {again}")
    if changed := changed_files(info["input_files"]):
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ValueError(f"{where}: explains {changed[0]}{more}: not the scene files now; {again}")
