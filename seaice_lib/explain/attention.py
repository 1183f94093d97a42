"""TSViT attention read back: per date, per location, per modality (docs/explain.md).

All functions take the :class:`~seaice_lib.models.tsvit.AttentionRecord` of one forward pass under
:func:`~seaice_lib.models.tsvit.record_attention`. Token layout: the temporal encoder's sequence
at each of the N locations is ``[K class tokens ; T steps ; one token per fused 2 km modality]``;
the spatial encoder's sequence per class token is the N locations, with the M context tokens of v3
as extra keys (they are never queries and never change from layer to layer).
"""

from __future__ import annotations

from typing import cast

import torch

from ..models.tsvit import AttentionRecord, TSViT, record_attention
from ..sample_format import GRID_CHANNELS


def class_token(model: TSViT, chart: str, index: int) -> int:
    """Position among the K class tokens of ``chart``'s class ``index`` (SIC regression: index 0)."""
    if chart not in model.classes:
        raise ValueError(f"the model has no chart {chart!r}; it has {tuple(model.classes)}")
    if not 0 <= index < model.classes[chart]:
        raise ValueError(f"{chart} class index {index} outside 0..{model.classes[chart] - 1}")
    start = 0
    for name in model.charts:
        if name == chart:
            return start + index
        start += model.classes[name]
    raise AssertionError("unreachable")


def fused_modalities(model: TSViT, batch: dict) -> list[str]:
    """The 2 km modalities whose cell token joins the temporal sequences, in token order."""
    if model.fusion != "tokens":
        return []
    return [name for name in GRID_CHANNELS if name in batch]


def _head_mean(weights: torch.Tensor) -> torch.Tensor:
    return weights.mean(dim=-3)  # (..., H, L, L_k) -> (..., L, L_k)


def _square(weights: torch.Tensor) -> torch.Tensor:
    """(..., L, L + M) attention over extra key-only tokens -> (..., L + M, L + M): the key-only
    tokens keep themselves (identity rows), as they pass through the encoder unchanged."""
    q, k = weights.shape[-2:]
    if q == k:
        return weights
    out = torch.zeros(weights.shape[:-2] + (k, k), dtype=weights.dtype, device=weights.device)
    out[..., :q, :] = weights
    out[..., q:, q:] = torch.eye(k - q, dtype=weights.dtype, device=weights.device)
    return out


def rollout(layers: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020) of one encoder: (..., H, L, L_k) weights per
    layer, first layer first -> (..., L_k, L_k): each token's share of every input token, through
    the residual paths (0.5 A + 0.5 I per layer, rows renormalised)."""
    result: torch.Tensor | None = None
    for weights in layers:
        a = _square(_head_mean(weights))
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("no attention layers to roll out (an encoder without blocks)")
    return result


def temporal_attention(record: AttentionRecord, n_classes: int, layer: int = -1) -> torch.Tensor:
    """(B, N, K, T): each location's class tokens' attention over the acquisitions, in ``layer``
    of the temporal encoder, mean over heads (T = the batch's steps; padding gets 0)."""
    weights = _head_mean(record.temporal[layer])  # (B, N, L, L)
    t = weights.shape[-1] - n_classes - _fused_count(record)
    return weights[..., :n_classes, n_classes:n_classes + t]


def _fused_count(record: AttentionRecord) -> int:
    """Fused cell tokens in the temporal sequences: the 2 km modalities among the context."""
    return sum(1 for name in record.context if name in GRID_CHANNELS)


def temporal_rollout(record: AttentionRecord, n_classes: int) -> torch.Tensor:
    """(B, N, K, T + F): rollout of the temporal encoder, each class token's share of each step
    (then of each fused cell token, F of them) at its location. The rest of each row (to 1) is
    the class tokens' own learned start."""
    return rollout(record.temporal)[..., :n_classes, n_classes:]


def _chain(to_tokens: torch.Tensor, per_step: torch.Tensor, record: AttentionRecord) -> dict[str, torch.Tensor]:
    """Shares through both encoders. ``to_tokens`` (..., Q, N + M): each query's share of the N
    locations' class tokens, then of the M context tokens (spatial encoder); ``per_step``
    (..., N, T + F): each location's class token's share of its steps, then of its F fused cell
    tokens (temporal encoder). Returns ``sar`` (..., Q, N, T) and per context modality (..., Q):
    through its cell tokens (local) and its context tokens (global)."""
    n = per_step.shape[-2]
    fused = [name for name in record.context if name in GRID_CHANNELS]
    t = per_step.shape[-1] - len(fused)
    to_locations = to_tokens[..., :n]
    out = {"sar": to_locations[..., None] * per_step[..., None, :, :t]}
    start = n
    for name, count in record.context.items():
        share = to_tokens[..., start:start + count].sum(-1)
        if name in fused:
            share = share + (to_locations * per_step[..., None, :, t + fused.index(name)]).sum(-1)
        out[name] = share
        start += count
    return out


def spatial_rollout(record: AttentionRecord, n_classes: int) -> dict[str, torch.Tensor]:
    """Rollout across the factorised encoders back to the inputs, per output location and class token.

    Returns ``sar`` (B, K, N_out, N_in, T): the share of the SAR token of location ``N_in`` at
    step t in class token k's output at location ``N_out`` (spatial rollout to ``N_in``'s class
    token, times its temporal rollout to the step), and per 2 km modality ``name`` (B, K, N_out):
    its share through the cell tokens (local) and the context tokens (global) together.
    """
    return _spatial_rollout(record, rollout(record.spatial), temporal_rollout(record, n_classes))


def _spatial_rollout(record: AttentionRecord, spatial: torch.Tensor, temporal: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
    n = record.spatial[0].shape[-2]
    return _chain(spatial[..., :n, :], temporal.permute(0, 2, 1, 3), record)


def modality_share(record: AttentionRecord, n_classes: int) -> dict[str, dict[str, torch.Tensor]]:
    """v3's attention mass on SAR, AMSR2 and ERA5 (and optical), per location and class token.

    ``local`` (B, K, N): in the temporal encoder's rollout, each class token's mass on its
    location's SAR steps vs its fused cell tokens; ``global`` (B, K, N): in the spatial encoder's
    rollout, on SAR locations vs each modality's context tokens; ``total`` (B, K, N): through
    both (:func:`spatial_rollout`). Each is normalised to sum to 1 over the modalities.
    """
    fused = [name for name in record.context if name in GRID_CHANNELS]
    temporal_full = temporal_rollout(record, n_classes)  # (B, N, K, T + F)
    spatial = rollout(record.spatial)
    temporal = temporal_full.permute(0, 2, 1, 3)  # (B, K, N, T + F)
    t = temporal.shape[-1] - len(fused)
    local = {"sar": temporal[..., :t].sum(-1)} | {name: temporal[..., t + i] for i, name in enumerate(fused)}
    n = record.spatial[0].shape[-2]
    glob, start = {"sar": spatial[..., :n, :n].sum(-1)}, n
    for name, count in record.context.items():
        glob[name] = spatial[..., :n, start:start + count].sum(-1)
        start += count
    total = _spatial_rollout(record, spatial, temporal_full)
    total["sar"] = total["sar"].sum(dim=(-2, -1))
    return {kind: _normalised(shares) for kind, shares in
            (("local", local), ("global", glob), ("total", total))}


def _normalised(shares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    total = cast(torch.Tensor, sum(shares.values())).clamp_min(1e-12)  # shares has "sar" at least
    return {name: v / total for name, v in shares.items()}


def relevance(model: TSViT, batch: dict, chart: str, index: int,
              where: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Gradient-weighted attention relevance (Chefer, Gur, Wolf; the rule of their generic
    attention-model explainability, ICCV 2021, which replaces the LRP relevances of CVPR 2021 by
    the attention maps): per layer R <- R + E_h[(dA/dy * A)^+] R, R starting as I, for the score
    y = the sum of class ``index`` of ``chart`` over the pixels ``where`` ((B, P, P) bool, default
    all). Temporal and spatial relevances are chained as in :func:`spatial_rollout`.

    Returns ``sar`` (B, T, N): relevance of each location's SAR at each step; per fused 2 km
    modality (B,): its relevance through cell and context tokens; ``score`` (B,): y.
    """
    k = class_token(model, chart, index)
    was_training = model.training
    model.eval()
    try:
        with record_attention(model) as record, torch.enable_grad():
            out = model(batch)[chart][:, index]
            record.retain_grad()
            mask = torch.ones_like(out, dtype=torch.bool) if where is None else where.bool()
            score = (out * mask).flatten(1).sum(1)
            score.sum().backward()
    finally:
        model.train(was_training)
    n_classes = model.n_tokens
    spatial = _relevance([(w[:, k], g[:, k]) for w, g in zip(record.spatial, record.spatial_grads())])
    temporal = _relevance(list(zip(record.temporal, record.temporal_grads())))  # (B, N, L, L)
    n = record.spatial[0].shape[-2]
    p = model.patch_size
    # output locations: those whose patch holds a pixel of ``where``
    located = mask.reshape(mask.shape[0], model.grid, p, model.grid, p).any(-1).any(-2).flatten(1).float()
    rows = (located[:, :, None] * spatial[:, :n]).sum(1)  # (B, N + M): relevance of each input token
    chained = _chain(rows[:, None], temporal[:, :, k, n_classes:], record)
    result = {name: v[:, 0] for name, v in chained.items()}
    result["sar"] = result["sar"].permute(0, 2, 1)  # (B, T, N)
    result["score"] = score
    return {name: v.detach() for name, v in result.items()}


def _relevance(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Chefer's rule over (weights, their gradients) per layer, first layer first."""
    result: torch.Tensor | None = None
    for weights, grad in layers:
        cam = _square(_head_mean((grad * weights.detach()).clamp(min=0)))
        eye = torch.eye(cam.shape[-1], dtype=cam.dtype, device=cam.device)
        result = eye + cam if result is None else result + cam @ result
    if result is None:
        raise ValueError("no attention layers to propagate relevance through (an encoder without blocks)")
    return result


def per_pixel(values: torch.Tensor, model: TSViT) -> torch.Tensor:
    """(..., N) per-location values -> (..., P, P): each location's value over its p x p pixels."""
    g, p = model.grid, model.patch_size
    grid = values.reshape(values.shape[:-1] + (g, g))
    return grid.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)


def attention_maps(model: TSViT, batch: dict) -> tuple[dict[str, torch.Tensor], AttentionRecord]:
    """Outputs and the attention record of one forward pass without gradients."""
    with record_attention(model) as record, torch.no_grad():
        out = model(batch)
    return out, record

