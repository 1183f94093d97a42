"""Sanity checks for explanations (Adebayo et al., NeurIPS 2018): an explanation that survives the
randomisation of the model's weights, or of the labels it was trained on, explains nothing about
what the model learned (docs/explain.md)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

if TYPE_CHECKING:
    from ..models import TSViT, UNet

Explanation = Callable[[nn.Module], torch.Tensor]  # a model -> its explanation of fixed inputs


def layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's parameters in groups from the output back to the input: TSViT heads, spatial
    blocks (last first), temporal blocks, then the tokenizers; U-Net heads, decoder blocks, bridge,
    encoder blocks, stem."""
    groups: list[tuple[str, nn.Module | list]] = []
    if hasattr(model, "temporal_encoder"):
        vit = cast("TSViT", model)  # or another model with its parts
        groups.append(("head", vit.head))
        groups += [(f"spatial_block_{i}", b) for i, b in reversed(list(enumerate(vit.spatial_encoder.blocks)))]
        groups += [(f"temporal_block_{i}", b) for i, b in reversed(list(enumerate(vit.temporal_encoder.blocks)))]
        seen = {id(p) for _, m in groups if isinstance(m, nn.Module) for p in m.parameters()}
        groups.append(("embeddings", [p for p in model.parameters() if id(p) not in seen]))
    elif hasattr(model, "features_from_inputs"):
        unet = cast("UNet", model)  # or another model with its parts
        groups.append(("heads", unet.heads))
        groups += [(f"up_{i}", b) for i, b in reversed(list(enumerate(unet.up)))]
        groups.append(("bridge", unet.bridge))
        groups += [(f"down_{i}", b) for i, b in reversed(list(enumerate(unet.down)))]
        groups.append(("stem", unet.stem))
    else:
        raise ValueError(f"no layer order known for {type(model).__name__}")
    return [(name, list(m.parameters()) if isinstance(m, nn.Module) else m) for name, m in groups]


@torch.no_grad()
def randomise(params: list[nn.Parameter], generator: torch.Generator) -> None:
    """Redraw each parameter from a normal distribution with its own mean and spread (std 0.02
    where it has none, such as fresh zero biases)."""
    for p in params:
        spread = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.02
        centre = float(p.mean()) if p.dim() < 2 else 0.0
        p.copy_(torch.randn(p.shape, generator=generator) * spread + centre)


def similarity(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two explanations' absolute values (Adebayo et al.'s measure)."""
    a = np.abs(np.asarray(a, np.float64)).ravel()
    b = np.abs(np.asarray(b, np.float64)).ravel()
    if a.shape != b.shape:
        raise ValueError(f"explanations of different sizes: {a.size} and {b.size}")
    rho = spearmanr(a, b).statistic
    return 0.0 if np.isnan(rho) else float(rho)


def per_map_similarity(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """The largest :func:`similarity` of corresponding maps along the leading axis of two (M, ...)
    explanations (the explanation survives if any of its maps does): for an explanation made of
    maps on different scales (modality shares), whose pooled ranks mostly say which map is larger."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"explanations of different shapes: {a.shape} and {b.shape}")
    return max(similarity(x, y) for x, y in zip(a, b))


def cascading_randomisation(model: nn.Module, explain: Explanation, seed: int = 0,
                            measure: Callable[[torch.Tensor, torch.Tensor], float] = similarity
                            ) -> list[tuple[str, float]]:
    """Randomise the layer groups of a copy of ``model`` one after another, from the output back
    (:func:`layer_groups`), explaining after each: ``[(group, ``measure`` of the explanation against
    the trained model's)]``. A faithful explanation drifts away as the layers go."""
    reference = explain(model)
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for name, params in layer_groups(model):
        randomise(params, generator)
        out.append((name, measure(reference, explain(model))))
    return out
