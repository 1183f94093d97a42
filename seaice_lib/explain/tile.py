"""Every explanation of one tile of a scene, as per-pixel maps (notebooks/06_explain.ipynb)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, write_text
from ..data.patches import PatchConfig
from ..engine.scenes import ScenePaths, SceneTiles, as_config, scene_sequence
from . import attention, attribution, sanity


def scene_tile(target: str | Path, scenes: ScenePaths, settings: PatchConfig | str | Path,
               tile: int) -> tuple[dict, tuple[int, int]]:
    """The batch of one tile (index ``tile`` in reading order) of a whole scene, and its store-grid origin."""
    cfg = as_config(settings)
    tiles = SceneTiles(scene_sequence(target, scenes, cfg), cfg)
    if not 0 <= tile < len(tiles):
        raise ValueError(f"tile must be in 0..{len(tiles) - 1} for {Path(target).name}, not {tile}")
    origin = tiles.origins[tile]
    return tiles.batch([origin]), origin


def explain_tile(model: nn.Module, batch: dict, chart: str, index: int, ig_steps: int = 32
                 ) -> dict[str, np.ndarray | dict]:
    """Maps over the tile's P x P pixels explaining class ``index`` of ``chart`` where the model
    predicts it (everywhere when it predicts it nowhere).

    Keys: ``predicted`` (P, P) bool; ``ig_per_input`` {input: float}; ``ig_per_step`` (T,);
    ``ig_map`` (T, P, P) |attribution| of each acquisition's SAR. TSViT adds ``attention``,
    ``rollout`` and ``relevance`` (T, P, P), and for v3 with tokens ``modality_share``
    {local|global|total: {modality: (P, P)}}; the U-Net adds ``gradcam`` (P, P).
    """
    model.eval()
    with torch.no_grad():
        out = model(batch)[chart]
    predicted = (out.argmax(1) == index) if out.shape[1] > 1 else torch.ones_like(out[:, 0], dtype=torch.bool)
    where = predicted if predicted.any() else torch.ones_like(predicted)
    ig = attribution.integrated_gradients(model, batch, chart, index, where=where, steps=ig_steps)
    result = {"predicted": predicted[0].numpy(),
              "ig_per_input": {n: float(v[0]) for n, v in ig.per_input.items()},
              "ig_per_step": ig.per_step[0].numpy(),
              "ig_map": ig.maps["sar"][0].abs().sum(1).numpy() if "sar" in ig.maps else None}
    if hasattr(model, "temporal_encoder"):
        k = attention.class_token(model, chart, index)
        _, record = attention.attention_maps(model, batch)
        n_classes = model.n_tokens
        per_step = {"attention": attention.temporal_attention(record, n_classes)[0, :, k].T,
                    "rollout": attention.temporal_rollout(record, n_classes)[0, :, k].T}
        t = per_step["attention"].shape[0]
        per_step["rollout"] = per_step["rollout"][:t]
        per_step["relevance"] = attention.relevance(model, batch, chart, index, where=where)["sar"][0]
        for name, values in per_step.items():  # (T, N) -> (T, P, P)
            result[name] = attention.per_pixel(values, model).numpy()
        if model.fusion == "tokens":
            shares = attention.modality_share(record, n_classes)
            result["modality_share"] = {kind: {m: attention.per_pixel(v[0, k], model).numpy()
                                               for m, v in mods.items()} for kind, mods in shares.items()}
    elif hasattr(model, "features_from_inputs"):
        result["gradcam"] = attribution.unet_gradcam(model, batch, chart, index, where=where)[0]
    return result


def randomisation_check(model: nn.Module, batch: dict, chart: str, index: int, ig_steps: int = 8
                        ) -> list[tuple[str, float]]:
    """Cascading randomisation (:func:`~seaice_lib.explain.sanity.cascading_randomisation`) of the
    tile's integrated gradients: ``[(layer group, rank correlation with the trained model's)]``."""
    def explain(net: nn.Module) -> torch.Tensor:
        return attribution.integrated_gradients(net, batch, chart, index, steps=ig_steps).maps["sar"]
    return sanity.cascading_randomisation(model, explain)


EXPLANATION_MAPS = "explanation.npz"  # the maps of one explained tile (save_explanation)
EXPLANATION_INFO = "explanation.json"  # its numbers and what was explained


def save_explanation(result: Mapping, batch: Mapping, out_dir: str | Path, info: Mapping) -> list[Path]:
    """Write :func:`explain_tile`'s ``result`` for the one-tile ``batch`` to ``out_dir``.

    ``explanation.npz``: float32 maps keyed as in ``result`` (modality shares as
    ``share_<kind>_<modality>``), the tile's ``sar`` (T, C, P, P, standardised), ``sar_mask``
    (T, P, P), ``step_mask`` (T,) and ``days_before`` (T,). ``explanation.json``: ``info`` (run,
    scene, tile, chart, class...) with ``ig_per_input`` and ``ig_per_step``. Read back with
    :func:`load_explanation`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = {name: np.asarray(result[name], np.float32) for name in
            ("predicted", "ig_map", "attention", "rollout", "relevance", "gradcam") if result.get(name) is not None}
    for kind, shares in result.get("modality_share", {}).items():
        maps |= {f"share_{kind}_{m}": np.asarray(v, np.float32) for m, v in shares.items()}
    maps |= {name: batch[name][0].numpy().astype(np.float32)
             for name in ("sar", "sar_mask", "step_mask", "days_before")}
    with atomic_path(out_dir / EXPLANATION_MAPS) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **maps)
    numbers = {**info, "ig_per_input": result["ig_per_input"],
               "ig_per_step": [float(v) for v in result["ig_per_step"]]}
    return [out_dir / EXPLANATION_MAPS, write_text(out_dir / EXPLANATION_INFO, json.dumps(numbers, indent=1))]


def load_explanation(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(info, maps) written by :func:`save_explanation`; a missing file is an error naming it."""
    folder = Path(folder)
    for name in (EXPLANATION_INFO, EXPLANATION_MAPS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing (written by notebooks/06_explain.ipynb)")
    with np.load(folder / EXPLANATION_MAPS) as maps:
        return json.loads((folder / EXPLANATION_INFO).read_text()), dict(maps)
