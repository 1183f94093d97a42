"""TSViT (Tarasiou, Chavez, Zafeiriou, "ViTs for SITS", CVPR 2023) for sea-ice charts: v1, v2, v3.

Factorised attention over a batch dict (:mod:`seaice_lib.data.dataset`): P x P patches cut into an
n x n grid of p x p tokens; a temporal encoder per location ([class tokens ; steps], padded and
uncovered steps key-masked), then a spatial encoder per class token; each class token predicts its
own patch. One class token per class of all three charts. v1 sees the target step, v2 the SAR
sequence, v3 fuses AMSR2/ERA5 (and optical) as native-resolution tokens (``fusion="tokens"``) or
stacked channels (``fusion="early"``, the ablation). The design and its reasons: docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint as checkpointed

from .. import schema
from ..grid import cell_index, patch_coordinate, upsample_cells
from ..sample_format import GRID_CHANNELS, MODALITIES
from . import register_model
from .outputs import output_channels

DATE_ENCODINGS = ("day_of_year", "days_before")
FUSIONS = (None, "tokens", "early")
HEADS = ("linear", "conv")
DAYS_IN_YEAR = 366


def date_index(batch: dict, encoding: str = "day_of_year", max_days_before: int = 30) -> torch.Tensor:
    """(B, T) int64 rows of the date embedding: 0 on padding steps, else the step's date.

    ``day_of_year``: 1..366 as given. ``days_before``: days rounded to whole days (half to even),
    clamped to 0..``max_days_before``, plus 1 (so 18.4 days -> 19, 18.6 -> 20).
    """
    if encoding == "day_of_year":
        days = batch["day_of_year"].long().clamp(1, DAYS_IN_YEAR)
    elif encoding == "days_before":
        days = batch["days_before"].round().clamp(0, max_days_before).long() + 1
    else:
        raise ValueError(f"date_encoding must be one of {DATE_ENCODINGS}, not {encoding!r}")
    real = batch.get("step_mask", torch.ones_like(days, dtype=torch.bool))
    return torch.where(real, days, 0)


def cell_centres(offset: torch.Tensor, rows: int, cols: int, downsample: int,
                 cell: int = schema.CELL_80M) -> torch.Tensor:
    """Centres of a ``rows`` x ``cols`` block of 2 km cells in patch-pixel units: (B, rows*cols, 2).

    Cell g's centre is 80 m coordinate (g + 0.5) * cell, placed by :func:`~seaice_lib.grid.patch_coordinate`.
    Rows first.
    """
    grid = torch.stack(torch.meshgrid(torch.arange(rows, device=offset.device),
                                      torch.arange(cols, device=offset.device), indexing="ij"), -1)
    centre_80m = (grid.reshape(-1, 2) + 0.5) * cell  # (M, 2)
    return patch_coordinate(centre_80m, offset[:, None, :].float(), downsample)


def patch_centres(n_rows: int, n_cols: int, patch: int, scale: float = 1.0,
                  device: torch.device | None = None) -> torch.Tensor:
    """Centres of an n_rows x n_cols grid of ``patch``-pixel tokens, (n_rows*n_cols, 2), rows first,
    in patch-pixel units: ``scale`` patch pixels per pixel of the tokenised image (optical: P / Ho)."""
    rows = (torch.arange(n_rows, device=device) + 0.5) * patch * scale
    cols = (torch.arange(n_cols, device=device) + 0.5) * patch * scale
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)


def unpatchify(pixels: torch.Tensor, n_cols: int, patch: int) -> torch.Tensor:
    """(B, K, N, p*p) per-token pixels -> (B, K, P, P): token (r, c) fills rows r*p.., cols c*p.."""
    return rearrange(pixels, "b k (h w) (p1 p2) -> b k (h p1) (w p2)", w=n_cols, p1=patch, p2=patch)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention, (S, H, L, e) queries over (S, H, L_k, e) keys and values.

    ``key_mask`` (S, L_k) bool, True = may be attended; every row needs one True key. None: every
    key may be, and SDPA may take its unmasked kernels (on CUDA flash attention, which takes no
    mask; with a mask, passed as a broadcast (S, 1, 1, L_k) boolean, CUDA takes the memory-efficient one).
    """
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def attention_weights(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """The (S, H, L, L_k) softmax weights :func:`masked_attention` applies, written out (masked keys 0)."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a key mask; optional context tokens add keys and values.

    ``context`` (S / r, M, d) is shared by r consecutive sequences of ``x`` (S, L, d): its key/value
    projection runs once per context, then repeats. ``key_mask`` is (S, L + M), or None when every
    key is valid. Without context, q, k and v come from one GEMM over the two Linears' weights
    stacked (``q`` and ``kv`` stay separate parameters: state dicts and checkpoints are unchanged).
    """

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.attn_drop = heads, attn_drop
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.recorded: list[torch.Tensor] | None = None  # set by record_attention

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            qkv = F.linear(x, torch.cat([self.q.weight, self.kv.weight]), torch.cat([self.q.bias, self.kv.bias]))
            q, k, v = rearrange(qkv, "s l (three h e) -> three s h l e", three=3, h=self.heads)
        else:
            repeats = x.shape[0] // context.shape[0]
            kv = torch.cat([self.kv(x), self.kv(context).repeat_interleave(repeats, dim=0)], dim=1)
            q = rearrange(self.q(x), "s l (h e) -> s h l e", h=self.heads)
            k, v = rearrange(kv, "s l (two h e) -> two s h l e", two=2, h=self.heads)
        if self.recorded is None:  # the fast path
            out = masked_attention(q, k, v, key_mask, self.attn_drop if self.training else 0.0)
        else:
            weights = attention_weights(q, k, key_mask)
            self.recorded.append(weights)
            out = F.dropout(weights, self.attn_drop, self.training) @ v
        return self.proj_drop(self.proj(rearrange(out, "s h l e -> s l (h e)")))


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x)), with drop path."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        context = None if context is None else self.norm1(context)
        x = x + self.drop_path(self.attn(self.norm1(x), key_mask, context))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Encoder(nn.Module):
    """A stack of :class:`Block` (drop-path rates per block) and a final LayerNorm.

    ``checkpoint``: in training with gradients, each block keeps only its input for backward and
    runs again there (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant; the RNG state is
    restored, so dropout draws the same masks and gradients are those without it). Not while
    attention is recorded (:func:`record_attention`).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, drop_paths: list[float],
                 checkpoint: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, dp) for dp in drop_paths)
        self.norm = nn.LayerNorm(dim)
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None,
                context: torch.Tensor | None = None, keep: int | None = None) -> torch.Tensor:
        """(S, L, d) -> (S, L, d), or (S, ``keep``, d): the first ``keep`` tokens only (the final
        norm then skips the others)."""
        for block in cast(Iterable[Block], self.blocks):
            if self.checkpoint and self.training and torch.is_grad_enabled() and block.attn.recorded is None:
                x = checkpointed(block, x, key_mask, context, use_reentrant=False)
            else:
                x = block(x, key_mask, context)
        return self.norm(x if keep is None else x[:, :keep])


class FourierPosition(nn.Module):
    """Continuous 2D position encoding: (..., 2) patch-pixel coordinates -> (..., d).

    sin and cos of coordinate / ``img_size`` at frequencies pi * 2^k, k = 0..log2(img_size) (the
    finest has a period of 2 patch pixels), then an MLP.
    """

    frequencies: torch.Tensor  # a buffer

    def __init__(self, dim: int, img_size: int):
        super().__init__()
        bands = int(math.log2(img_size)) + 1
        self.img_size = img_size
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(bands), persistent=False)
        self.mlp = Mlp(4 * bands, dim, dim)

    def forward(self, centres: torch.Tensor) -> torch.Tensor:
        angles = (centres / self.img_size)[..., None] * self.frequencies  # (..., 2, bands)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2))


@dataclass
class AttentionRecord:
    """Attention weights of every block of the last forward pass under :func:`record_attention`.

    ``temporal[l]``: (B, N, H, L, L), N locations, L = K class tokens, then T steps, then one
    token per fused 2 km modality (v3 tokens). ``spatial[l]``: (B, K, H, N, N + M), keys the N
    locations, then the M context tokens of v3 (``context``: AMSR2 cells, ERA5 cells, optical).
    Rows sum to 1 over the keys; masked keys are 0. ``raw_*`` are the tensors the forward used,
    (B*N, H, L, L) and (B*K, H, N, N + M): they keep their graph when the forward had gradients
    (call ``retain_grad()`` on them before ``backward`` for :meth:`temporal_grads` and co).
    """

    raw_temporal: list[torch.Tensor]
    raw_spatial: list[torch.Tensor]
    batch_size: int = 0
    context: dict[str, int] = field(default_factory=dict)  # v3 context tokens per modality, key order

    def _split(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t.reshape((self.batch_size, -1) + t.shape[1:]) for t in tensors]

    @property
    def temporal(self) -> list[torch.Tensor]:
        return self._split(self.raw_temporal)

    @property
    def spatial(self) -> list[torch.Tensor]:
        return self._split(self.raw_spatial)

    def retain_grad(self) -> None:
        for t in self.raw_temporal + self.raw_spatial:
            t.retain_grad()

    def temporal_grads(self) -> list[torch.Tensor]:
        return self._split([_grad_of(t) for t in self.raw_temporal])

    def spatial_grads(self) -> list[torch.Tensor]:
        return self._split([_grad_of(t) for t in self.raw_spatial])


def _grad_of(weights: torch.Tensor) -> torch.Tensor:
    if weights.grad is None:
        raise RuntimeError("no gradient reached an attention map: call retain_grad() before backward, "
                           "and make the score depend on the output")
    return weights.grad


@contextmanager
def record_attention(model: TSViT) -> Iterator[AttentionRecord]:
    """Inside the block, ``model`` runs its attention written out and records the weights of every
    layer of both encoders into the yielded :class:`AttentionRecord` (filled by each forward; the
    last one wins). Outside it the fast path (SDPA) is untouched; outputs agree to float precision."""
    temporal = [b.attn for b in cast(Iterable[Block], model.temporal_encoder.blocks)]
    spatial = [b.attn for b in cast(Iterable[Block], model.spatial_encoder.blocks)]
    record = AttentionRecord([], [])
    for attn in temporal + spatial:
        attn.recorded = []
    original = model.forward_features

    def recorded(attn: Attention) -> list[torch.Tensor]:
        return cast(list[torch.Tensor], attn.recorded)  # a list, not None, inside this block

    def recorded_forward(batch: dict) -> torch.Tensor:
        for attn in temporal + spatial:
            recorded(attn).clear()
        features = original(batch)
        record.raw_temporal[:] = [recorded(a)[-1] for a in temporal]
        record.raw_spatial[:] = [recorded(a)[-1] for a in spatial]
        record.batch_size = features.shape[0]
        record.context.clear()
        if model.fusion == "tokens":
            for name in model.extra_modalities:
                if name in batch:
                    rows, cols = batch[name].shape[-2:]
                    q = model.optical_patch if name == "optical" else 1
                    record.context[name] = (rows // q) * (cols // q)
        return features

    model.forward_features = recorded_forward  # type: ignore[method-assign]  # this instance only, until the end
    try:
        yield record
    finally:
        del model.forward_features
        for attn in temporal + spatial:
            attn.recorded = None


class ConvRefine(nn.Module):
    """A light convolutional decoder over the tokens' pixels: (B, K, P, P) -> the same plus two
    3 x 3 convolutions of it (K -> ``hidden`` -> K, GELU between). The last convolution starts at
    zero, so an untrained refinement is the identity and the head starts as the paper's."""

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(hidden, channels, 3, padding=1))
        last = cast(nn.Conv2d, self.layers[-1])
        assert last.bias is not None  # made with one
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class TSViT(nn.Module):
    """TSViT over a batch dict; returns ``{chart: (B, K, P, P)}`` (logits, or 1 channel for SIC
    regression). See the module docstring for the design.

    Args:
        sar_channels: SAR-grid channels in the store (HH, HV, incidence[, distance]).
        img_size: P, the patch size in pixels the model takes (fixes the n x n position grid).
        patch_size: p, token size in pixels; must divide ``img_size``.
        dim, temporal_depth, spatial_depth, heads, mlp_ratio: transformer widths and depths.
        dropout: dropout of tokens, attention weights, projections and MLPs.
        drop_path: stochastic depth, rising linearly to this over temporal then spatial blocks.
        temporal: False = v1 (the target step only), True = the whole sequence.
        date_encoding: ``"day_of_year"`` or ``"days_before"`` (see :func:`date_index`).
        max_days_before: the clamp of ``days_before``, in days.
        fusion: None (SAR only), ``"tokens"`` (v3) or ``"early"`` (v3 ablation).
        downsample: the store's ``downsample`` (80 m pixels per patch pixel), places the 2 km cells.
        optical_channels: optical channels (0 = no optical modality); needs ``fusion``.
        optical_patch: optical tokenizer patch size, in optical pixels (``fusion="tokens"``).
        modality_dropout: per-sample probability of dropping each non-SAR modality in training.
        charts: charts to output; sic_mode: ``"classification"`` (11 logits) or ``"regression"``.
        checkpoint: activation checkpointing per block in training (see :class:`Encoder`): less
            memory for one more forward pass of the blocks; outputs and gradients unchanged.
        head: ``"linear"`` (the paper's: each class token predicts its own p x p pixels) or
            ``"conv"`` (that, refined by a light residual convolutional decoder, :class:`ConvRefine`,
            which lets neighbouring tokens' pixels inform each other; equal to the paper's at init).
        head_hidden: channels of the ``"conv"`` decoder.
    """

    def __init__(self, sar_channels: int = 3, img_size: int = 16, patch_size: int = 4, dim: int = 16,
                 temporal_depth: int = 1, spatial_depth: int = 1, heads: int = 2, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, drop_path: float = 0.0, temporal: bool = True,
                 date_encoding: str = "day_of_year", max_days_before: int = 30, fusion: str | None = None,
                 downsample: int = 10, optical_channels: int = 0, optical_patch: int = 8,
                 modality_dropout: float = 0.0, charts: tuple[str, ...] = schema.CHARTS,
                 sic_mode: str = "classification", checkpoint: bool = False, head: str = "linear",
                 head_hidden: int = 32):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide img_size {img_size}")
        if date_encoding not in DATE_ENCODINGS:
            raise ValueError(f"date_encoding must be one of {DATE_ENCODINGS}, not {date_encoding!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        if optical_channels and fusion is None:
            raise ValueError("optical_channels needs fusion='tokens' or 'early'")
        if not 0 <= modality_dropout < 1:
            raise ValueError(f"modality_dropout must be in [0, 1), not {modality_dropout}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        self.img_size, self.patch_size, self.grid = img_size, patch_size, img_size // patch_size
        self.temporal, self.fusion, self.downsample = temporal, fusion, downsample
        self.reads = MODALITIES if fusion else ("sar",)  # the modalities its forward takes from a batch
        self.reads_history = temporal  # and whether it takes the earlier acquisitions of a sequence
        self.reads_dates = True  # the acquisitions' dates, encoded (the target's alone in v1)
        self.date_encoding, self.max_days_before = date_encoding, max_days_before
        self.optical_channels, self.optical_patch = optical_channels, optical_patch
        self.modality_dropout, self.sic_mode = modality_dropout, sic_mode
        self.charts = tuple(charts)
        self.classes = {chart: output_channels(chart, sic_mode) for chart in self.charts}
        self.n_tokens = sum(self.classes.values())
        self.extra_modalities = tuple(GRID_CHANNELS) + (("optical",) if optical_channels else ())

        channels = sar_channels + 1  # + sar_mask
        if fusion == "early":
            channels += sum(GRID_CHANNELS.values()) + optical_channels + len(self.extra_modalities)
        self.patch_embed = nn.Linear(channels * patch_size ** 2, dim)
        n_dates = DAYS_IN_YEAR + 1 if date_encoding == "day_of_year" else max_days_before + 2
        self.date_embed = nn.Embedding(n_dates, dim, padding_idx=0)
        self.token_drop = nn.Dropout(dropout)
        self.class_tokens = nn.Parameter(torch.zeros(1, self.n_tokens, dim))
        self.space_pos = nn.Parameter(torch.zeros(1, self.grid ** 2, dim))
        rates = torch.linspace(0, drop_path, temporal_depth + spatial_depth).tolist()
        self.temporal_encoder = Encoder(dim, heads, mlp_ratio, dropout, rates[:temporal_depth], checkpoint)
        self.spatial_encoder = Encoder(dim, heads, mlp_ratio, dropout, rates[temporal_depth:], checkpoint)
        if fusion == "tokens":
            self.position = FourierPosition(dim, img_size)
            self.modality_embed = nn.Parameter(torch.zeros(1 + len(self.extra_modalities), dim))
            self.grid_embed = nn.ModuleDict({name: Mlp(c, dim, dim) for name, c in GRID_CHANNELS.items()})
            if optical_channels:
                self.optical_embed = nn.Linear(optical_channels * optical_patch ** 2, dim)
        self.head = nn.ModuleDict({chart: nn.Linear(dim, patch_size ** 2) for chart in self.charts})
        self.head_kind = head
        if head == "conv":
            self.refine = nn.ModuleDict({chart: ConvRefine(k, head_hidden) for chart, k in self.classes.items()})
        self.apply(self._init_linear)
        for tokens in [self.class_tokens, self.space_pos, self.date_embed.weight] + \
                ([self.modality_embed] if fusion == "tokens" else []):
            trunc_normal_(tokens, std=0.02)
        with torch.no_grad():
            self.date_embed.weight[0].zero_()

    @staticmethod
    def _init_linear(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def modality_present(self, batch: dict) -> dict[str, torch.Tensor]:
        """(B,) bool per non-SAR modality: its data key is there, its ``<name>_mask`` (if any) is
        True and, in training, ``modality_dropout`` (torch's global RNG) did not drop it."""
        b, device = batch["sar"].shape[0], batch["sar"].device
        present = {}
        for name in self.extra_modalities:
            if name not in batch:
                present[name] = torch.zeros(b, dtype=torch.bool, device=device)
                continue
            keep = batch.get(f"{name}_mask", torch.ones(b, dtype=torch.bool, device=device)).bool()
            if self.training and self.modality_dropout > 0:
                keep = keep & (torch.rand(b, device=device) >= self.modality_dropout)
            present[name] = keep
        return present

    def _early_channels(self, batch: dict, present: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        """(B, E, P, P): AMSR2, ERA5 (on the patch grid), optical (resized), one presence flag each."""
        b, device = batch["sar"].shape[0], batch["sar"].device
        stacks, flags = [], []
        widths = GRID_CHANNELS | {"optical": self.optical_channels}
        for name in self.extra_modalities:
            if name not in batch:
                stacks.append(torch.zeros(b, widths[name], size, size, device=device))
            else:
                data = batch[name] * present[name][:, None, None, None]
                if name == "optical":
                    data = F.interpolate(data, size=(size, size), mode="bilinear", antialias=True)
                else:
                    data = upsample_cells(data, batch["grid2km_offset"], size, self.downsample)
                stacks.append(data)
            flags.append(present[name][:, None, None, None].float().expand(b, 1, size, size))
        return torch.cat(stacks + flags, dim=1)

    def _context(self, batch: dict, present: dict[str, torch.Tensor]
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Non-SAR tokens per modality in the batch: ``{name: ((B, M, d) tokens, (B, M) key mask)}``."""
        out = {}
        for index, name in enumerate(self.extra_modalities, start=1):
            if name not in batch:
                continue
            data = batch[name] * present[name][:, None, None, None]
            if name == "optical":
                q = self.optical_patch
                if data.shape[-2] % q or data.shape[-1] % q:
                    raise ValueError(f"optical_patch {q} must divide the optical size "
                                     f"{tuple(data.shape[-2:])}")
                rows, cols = data.shape[-2] // q, data.shape[-1] // q
                embedded = self.optical_embed(
                    rearrange(data, "b c (h q1) (w q2) -> b (h w) (q1 q2 c)", q1=q, q2=q))
                scale = self.img_size / data.shape[-2]
                centres = patch_centres(rows, cols, q, scale, data.device)[None]
            else:
                embedded = self.grid_embed[name](rearrange(data, "b c h w -> b (h w) c"))
                centres = cell_centres(batch["grid2km_offset"], data.shape[-2], data.shape[-1],
                                       self.downsample)
            tokens = embedded + self.position(centres) + self.modality_embed[index]
            out[name] = tokens, present[name][:, None].expand(-1, embedded.shape[1])
        return out

    def _cell_under_tokens(self, offset: torch.Tensor, cells: int) -> torch.Tensor:
        """(B, N) index, in a ``cells`` x ``cells`` block, of the 2 km cell under each SAR token's
        centre pixel (patch pixel ``r * p + p // 2``), by the cell rule of :mod:`seaice_lib.grid`."""
        centre = torch.arange(self.grid, device=offset.device) * self.patch_size + self.patch_size // 2
        rows = cell_index(offset[:, 0, None], centre, self.downsample, schema.CELL_80M, cells)
        cols = cell_index(offset[:, 1, None], centre, self.downsample, schema.CELL_80M, cells)
        return (rows[:, :, None] * cells + cols[:, None, :]).flatten(1)

    def forward_features(self, batch: dict) -> torch.Tensor:
        """Class tokens after the spatial encoder: (B, K, N, d), K = class tokens of all charts."""
        sar, sar_mask = batch["sar"], batch["sar_mask"].bool()
        b, t, _, height, width = sar.shape
        if height != self.img_size or width != self.img_size:
            raise ValueError(f"this model takes {self.img_size} x {self.img_size} patches "
                             f"(img_size), not {height} x {width}")
        step_mask = batch.get("step_mask", torch.ones(b, t, dtype=torch.bool, device=sar.device)).bool()
        dates = date_index(batch, self.date_encoding, self.max_days_before)
        target = step_mask.sum(dim=1) - 1  # each sample's last real step
        if not self.temporal:
            rows = torch.arange(b, device=sar.device)
            sar, sar_mask = sar[rows, target, None], sar_mask[rows, target, None]
            step_mask, dates = step_mask[rows, target, None], dates[rows, target, None]
            target, t = torch.zeros_like(target), 1
        present = self.modality_present(batch) if self.fusion else {}

        x = torch.cat([torch.where(sar_mask[:, :, None], sar, 0.0), sar_mask[:, :, None].float()], dim=2)
        if self.fusion == "early":  # on the target step; zeros on the others
            at_target = torch.arange(t, device=sar.device) == target[:, None]  # (B, T)
            extra = self._early_channels(batch, present, height)[:, None] * at_target[:, :, None, None, None]
            x = torch.cat([x, extra], dim=2)
        p = self.patch_size
        tokens = self.patch_embed(rearrange(x, "b t c (h p1) (w p2) -> b t (h w) (p1 p2 c)", p1=p, p2=p))
        tokens = self.token_drop(tokens + self.date_embed(dates)[:, :, None])
        covered = rearrange(sar_mask, "b t (h p1) (w p2) -> b t (h w) (p1 p2)", p1=p, p2=p).any(-1)
        covered = covered & step_mask[:, :, None]  # (B, T, N)

        n, k = self.grid ** 2, self.n_tokens
        parts = [self.class_tokens.expand(b * n, -1, -1), rearrange(tokens, "b t n d -> (b n) t d")]
        keys = [torch.ones(b * n, k, dtype=torch.bool, device=sar.device),
                rearrange(covered, "b t n -> (b n) t")]
        others = self._context(batch, present) if self.fusion == "tokens" else {}
        for name in GRID_CHANNELS:  # each location's own 2 km cell joins its temporal sequence
            if name in others:
                cell_tokens, cell_keys = others[name]
                under = self._cell_under_tokens(batch["grid2km_offset"], batch[name].shape[-1])
                rows = torch.arange(b, device=sar.device)[:, None]
                parts.append(rearrange(cell_tokens[rows, under], "b n d -> (b n) 1 d"))
                keys.append(rearrange(cell_keys[rows, under], "b n -> (b n) 1"))
        classes = self.temporal_encoder(torch.cat(parts, dim=1), torch.cat(keys, dim=1), keep=k)

        x = rearrange(classes, "(b n) k d -> (b k) n d", b=b) + self.space_pos
        spatial_keys, context = None, None  # every location is a valid key
        if self.fusion == "tokens":
            centres = patch_centres(self.grid, self.grid, p, device=sar.device)
            x = x + self.position(centres) + self.modality_embed[0]
            if others:
                context = torch.cat([tokens for tokens, _ in others.values()], dim=1)
                context_keys = torch.cat([mask for _, mask in others.values()], dim=1)
                spatial_keys = torch.cat([torch.ones(b * k, n, dtype=torch.bool, device=sar.device),
                                          context_keys.repeat_interleave(k, dim=0)], dim=1)
        x = self.spatial_encoder(x, spatial_keys, context)
        return rearrange(x, "(b k) n d -> b k n d", b=b)

    def forward_head(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, K, N, d) class tokens -> ``{chart: (B, K_chart, P, P)}``, each token its own patch."""
        out, start = {}, 0
        for chart in self.charts:
            stop = start + self.classes[chart]
            out[chart] = unpatchify(self.head[chart](features[:, start:stop]), self.grid, self.patch_size)
            if self.head_kind == "conv":
                out[chart] = self.refine[chart](out[chart])
            start = stop
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))


# tiny: tests; small: trains on CPU in minutes on 64 x 64 patches; base: the paper's widths
# (dim 128, 4 + 4 blocks, 4 heads, MLP x 4) with 4-pixel tokens on 128 x 128 patches.
TSVIT_SIZES = {
    "tiny": {"img_size": 16, "patch_size": 4, "dim": 16, "temporal_depth": 1, "spatial_depth": 1,
             "heads": 2, "mlp_ratio": 2.0},
    "small": {"img_size": 64, "patch_size": 4, "dim": 64, "temporal_depth": 2, "spatial_depth": 2,
              "heads": 4, "mlp_ratio": 4.0},
    "base": {"img_size": 128, "patch_size": 4, "dim": 128, "temporal_depth": 4, "spatial_depth": 4,
             "heads": 4, "mlp_ratio": 4.0},
}


def _tsvit(size: str, defaults: dict, kwargs: dict) -> TSViT:
    return TSViT(**(TSVIT_SIZES[size] | defaults | kwargs))


@register_model("tsvit_v1", TSVIT_SIZES)
def tsvit_v1(size: str = "small", **kwargs) -> TSViT:
    """TSViT on the target acquisition only (T = 1)."""
    return _tsvit(size, {"temporal": False}, kwargs)


@register_model("tsvit_v2", TSVIT_SIZES)
def tsvit_v2(size: str = "small", **kwargs) -> TSViT:
    """TSViT on the SAR sequence."""
    return _tsvit(size, {"temporal": True}, kwargs)


@register_model("tsvit_v3", TSVIT_SIZES)
def tsvit_v3(size: str = "small", **kwargs) -> TSViT:
    """TSViT on the SAR sequence fused with AMSR2, ERA5 (and optical): ``fusion="tokens"`` or ``"early"``.

    Trained with modality dropout 0.1 (each non-SAR modality dropped for a tenth of the samples), so
    that it charts on when a modality is missing.
    """
    return _tsvit(size, {"temporal": True, "fusion": "tokens", "modality_dropout": 0.1}, kwargs)
