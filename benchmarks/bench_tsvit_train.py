"""TSViT training steps against the machine's GEMM rate and against the same architecture written
the plain way, on SEAICE_BENCH_TSVIT_THREADS (2) CPU threads.

A training step is forward + the multi-task loss + backward + AdamW on the batch of
:mod:`benchmarks.bench_train` (3 SAR steps, the second sample one step short, native 2 km
AMSR2/ERA5 blocks). Per model (``tsvit_v2``, ``tsvit_v3``) and size (TSVIT_SIZES ``small``,
``base``), each in its own process, variants of one initial model are timed in turn, the order
rotating every round, with a 2048 x 2048 fp32 matmul timed in every round too:

* ``plain``: the blocks written the plain way (one fused qkv Linear, einsum attention with an
  explicit softmax, no masks, plain rearranges; the tokeniser is TSViT's own); it computes
  the same function when every key is valid, which is checked (``plain_max_abs_diff``);
* ``ours``: :class:`~seaice_lib.models.tsvit.TSViT` as it trains by default;
* ``checkpoint``: ``checkpoint=True`` (activation checkpointing per block);
* ``bf16``: the forward under ``torch.autocast("cpu", bfloat16)``, the loss outside it (as the
  trainer does on CUDA);
* ``compile``: ``model.compile()`` (SEAICE_BENCH_TSVIT_COMPILE=1; its compile seconds apart).

Figures: samples/s (median and range over the rounds); FLOP per sample from
:class:`torch.utils.flop_counter.FlopCounterMode` on one forward + backward of ``ours`` (the
useful work; SDPA's CPU kernels, which the counter does not know, counted by its SDPA formulas),
and that over the step time as GFLOP/s and as a fraction of the round's GEMM rate; the step's
memory, measured in a fresh process per variant (glibc told to return every freed block over
64 KiB at once: MALLOC_MMAP_THRESHOLD_): resident memory above what the process holds between
steps (weights, AdamW state, the batch; gradients freed) at the step's peak (VmHWM, reset through
/proc/self/clear_refs after a warm-up step), i.e. the activations kept for backward, the
gradients and the kernels' scratch; and, for ``ours``, the profiler's self time split into GEMM,
attention kernels, copies and fills, and the rest.

Settings: SEAICE_BENCH_TSVIT_MODELS ("tsvit_v2,tsvit_v3"), SEAICE_BENCH_TSVIT_SIZES
("small,base"), SEAICE_BENCH_TSVIT_PATCH (64), SEAICE_BENCH_TSVIT_BATCH (2),
SEAICE_BENCH_TSVIT_STEPS (timed steps per variant and round, 1), SEAICE_BENCH_TSVIT_ROUNDS (3),
SEAICE_BENCH_TSVIT_VARIANTS (all but compile). Writes ``<out>/tsvit_train.json``.
"""

import copy
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

MODELS = os.environ.get("SEAICE_BENCH_TSVIT_MODELS", "tsvit_v2,tsvit_v3").split(",")
SIZES = os.environ.get("SEAICE_BENCH_TSVIT_SIZES", "small,base").split(",")
PATCH = int(os.environ.get("SEAICE_BENCH_TSVIT_PATCH", "64"))
BATCH = int(os.environ.get("SEAICE_BENCH_TSVIT_BATCH", "2"))
STEPS = int(os.environ.get("SEAICE_BENCH_TSVIT_STEPS", "1"))
ROUNDS = int(os.environ.get("SEAICE_BENCH_TSVIT_ROUNDS", "3"))
THREADS = int(os.environ.get("SEAICE_BENCH_TSVIT_THREADS", "2"))
COMPILE = os.environ.get("SEAICE_BENCH_TSVIT_COMPILE", "0") == "1"
VARIANTS = os.environ.get("SEAICE_BENCH_TSVIT_VARIANTS",
                          "plain,ours,checkpoint,bf16" + (",compile" if COMPILE else "")).split(",")
GEMM_SIZE = 2048
DOWNSAMPLE = 4
MMAP_THRESHOLD = 64 * 1024  # bytes; glibc returns freed blocks above it to the system at once


# ---- the plain way
class PlainAttention(nn.Module):
    """softmax(q k^T / sqrt(e)) v over every key, scores materialised; q, k, v from one Linear."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "s l (three h e) -> three s h l e", three=3, h=self.heads)
        if context is not None:
            dim = x.shape[-1]
            kv = nn.functional.linear(context, self.qkv.weight[dim:], self.qkv.bias[dim:])
            ck, cv = rearrange(kv, "s m (two h e) -> two s h m e", two=2, h=self.heads)
            repeats = x.shape[0] // context.shape[0]
            k = torch.cat([k, ck.repeat_interleave(repeats, dim=0)], dim=2)
            v = torch.cat([v, cv.repeat_interleave(repeats, dim=0)], dim=2)
        scores = torch.einsum("shle,shme->shlm", q, k) * q.shape[-1] ** -0.5
        weights = self.drop(scores.softmax(dim=-1))
        out = torch.einsum("shlm,shme->shle", weights, v)
        return self.drop(self.proj(rearrange(out, "s h l e -> s l (h e)")))


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = PlainAttention(dim, heads, dropout)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), None if context is None else self.norm1(context))
        return x + self.drop(self.fc2(self.drop(nn.functional.gelu(self.fc1(self.norm2(x))))))


class PlainEncoder(nn.Module):
    """Takes the place of a TSViT encoder; key masks are ignored."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList()
        for block in encoder.blocks:
            dim, hidden = block.mlp.fc1.in_features, block.mlp.fc1.out_features
            plain = PlainBlock(dim, block.attn.heads, hidden, block.attn.attn_drop)
            with torch.no_grad():
                plain.attn.qkv.weight.copy_(torch.cat([block.attn.q.weight, block.attn.kv.weight]))
                plain.attn.qkv.bias.copy_(torch.cat([block.attn.q.bias, block.attn.kv.bias]))
            plain.attn.proj.load_state_dict(block.attn.proj.state_dict())
            for name in ("norm1", "norm2"):
                getattr(plain, name).load_state_dict(getattr(block, name).state_dict())
            plain.fc1.load_state_dict(block.mlp.fc1.state_dict())
            plain.fc2.load_state_dict(block.mlp.fc2.state_dict())
            self.blocks.append(plain)
        self.norm = copy.deepcopy(encoder.norm)

    def forward(self, x, key_mask, context=None, keep=None):
        for block in self.blocks:
            x = block(x, context)
        x = self.norm(x)
        return x if keep is None else x[:, :keep]


def plain_copy(model: nn.Module) -> nn.Module:
    """``model`` (a TSViT) with its encoders written the plain way, same weights."""
    plain = copy.deepcopy(model)
    plain.temporal_encoder = PlainEncoder(model.temporal_encoder)
    plain.spatial_encoder = PlainEncoder(model.spatial_encoder)
    return plain


# ---- measurements
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def gemm_gflops(size: int = GEMM_SIZE, repeats: int = 3) -> float:
    """fp32 ``size`` x ``size`` matmul rate, GFLOP/s (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def flop_counter() -> "torch.utils.flop_counter.FlopCounterMode":
    """FlopCounterMode that also counts SDPA's CPU kernels (with its own SDPA formulas)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    return fc.FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad, q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_backward_flop_count(grad, q, k, v)})


class Variant:
    """One model with its own AdamW; ``step()`` is one training step."""

    def __init__(self, model: nn.Module, batch: dict, loss_fn: nn.Module, bf16: bool = False):
        self.model, self.batch, self.loss_fn, self.bf16 = model.train(), batch, loss_fn, bf16
        self.optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.seconds: list[float] = []

    def forward_backward(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.model(self.batch)
        loss, _ = self.loss_fn(outputs, self.batch["labels"])
        loss.backward()

    def step(self) -> None:
        self.optim.zero_grad(set_to_none=True)
        self.forward_backward()
        self.optim.step()

    def timed(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.seconds.append((time.perf_counter() - start) / steps)

    def step_peak_mib(self) -> float:
        """Resident memory a step adds at its peak over the between-steps state, MiB."""
        self.optim.zero_grad(set_to_none=True)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _status_kib("VmRSS")
        self.step()
        return (_status_kib("VmHWM") - before) / 1024


GEMM_OPS = ("mm", "addmm", "bmm", "baddbmm")


def op_kind(name: str) -> str:
    """``gemm``, ``attention`` (SDPA kernels), ``copies`` (copies, concatenations, fills) or ``other``."""
    name = name.removeprefix("aten::").removeprefix("aten.").split(".")[0]  # profiler / FLOP counter names
    return "gemm" if name in GEMM_OPS else "attention" if "scaled_dot_product" in name else \
        "copies" if name in ("copy_", "cat", "fill_", "zero_") else "other"


def profile_split(variant: Variant, flops_by_op: dict[str, int]) -> dict:
    """One step's profiled self CPU time per :func:`op_kind` (shares), and the GFLOP/s of the GEMM
    and attention ops alone (``flops_by_op``: the FLOP counter's figures of a forward + backward)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        variant.step()
    seconds = {"gemm": 0.0, "attention": 0.0, "copies": 0.0, "other": 0.0}
    for event in prof.key_averages():
        seconds[op_kind(event.key)] += event.self_cpu_time_total / 1e6
    flops = {"gemm": 0, "attention": 0}
    for op, count in flops_by_op.items():
        if op_kind(op) in flops:
            flops[op_kind(op)] += count
    total = sum(seconds.values())
    return {"shares": {kind: round(t / total, 3) for kind, t in seconds.items()},
            "gflops": {kind: round(flops[kind] / seconds[kind] / 1e9, 1) for kind in flops}}


def setup(name: str, size: str) -> tuple[nn.Module, dict, nn.Module]:
    """The initial model (seed 0), the batch and the loss, on THREADS threads."""
    from benchmarks.bench_train import make_batch
    from seaice_lib.engine.losses import LossConfig, MultiTaskLoss
    from seaice_lib.models import create_model

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = create_model(name, size=size, downsample=DOWNSAMPLE, img_size=PATCH)
    return model, make_batch(batch=BATCH, patch=PATCH), MultiTaskLoss(LossConfig())


def make_variant(kind: str, model: nn.Module, batch: dict, loss_fn: nn.Module) -> Variant:
    """Variant ``kind`` of ``model`` (a copy, same weights; ``compile`` not compiled yet)."""
    if kind == "plain":
        return Variant(plain_copy(model), batch, loss_fn)
    copied = copy.deepcopy(model)
    if kind == "checkpoint":
        for encoder in (copied.temporal_encoder, copied.spatial_encoder):
            encoder.checkpoint = True
    return Variant(copied, batch, loss_fn, bf16=kind == "bf16")


def run_memory(name: str, size: str, kind: str) -> dict:
    """``step_peak_mib`` of variant ``kind``, in this (fresh) process."""
    variant = make_variant(kind, *setup(name, size))
    if kind == "compile":
        variant.model.compile()
    variant.step()  # warm-up: AdamW state, kernels' caches
    return {"step_peak_mib": round(variant.step_peak_mib(), 1)}


def run_timing(name: str, size: str) -> dict:
    """Every variant of ``name`` at ``size`` timed in turn in this process; figures as a dict."""
    model, batch, loss_fn = setup(name, size)
    result = {"n_params": sum(p.numel() for p in model.parameters())}

    # the plain way computes the same function when every step and key is valid
    full = batch | {"step_mask": torch.ones_like(batch["step_mask"]),
                    "sar_mask": torch.ones_like(batch["sar_mask"])}
    with torch.no_grad():
        ours_out, plain_out = model.eval()(full), plain_copy(model).eval()(full)
    result["plain_max_abs_diff"] = max((ours_out[c] - plain_out[c]).abs().max().item() for c in ours_out)

    variants = {kind: make_variant(kind, model, batch, loss_fn) for kind in VARIANTS}
    flops = {}
    for kind in ("ours", "plain"):
        counter = flop_counter()
        with counter:
            make_variant(kind, model, batch, loss_fn).forward_backward()
        flops[kind] = counter.get_total_flops()
        if kind == "ours":
            flops_by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    result["flop_per_sample"] = flops["ours"] / BATCH
    result["plain_flop_per_sample"] = flops["plain"] / BATCH
    if "compile" in variants:
        variants["compile"].model.compile()
        start = time.perf_counter()
        variants["compile"].step()
        result["compile_s"] = round(time.perf_counter() - start, 1)
    for variant in variants.values():  # warm-up
        variant.step()

    gemm = []
    order = list(variants)
    for r in range(ROUNDS):
        gemm.append(gemm_gflops())
        for kind in order[r % len(order):] + order[:r % len(order)]:
            variants[kind].timed(STEPS)
    result["gemm_gflops"] = [round(g, 1) for g in gemm]
    if "ours" in variants:
        result["profile_ours"] = profile_split(variants["ours"], flops_by_op) | {"gemm_gflops": round(gemm_gflops(), 1)}

    figures = {}
    for kind, variant in variants.items():
        rates = [BATCH / s for s in variant.seconds]
        work = flops["plain" if kind == "plain" else "ours"]
        fractions = [work / s / 1e9 / g for s, g in zip(variant.seconds, gemm)]
        figures[kind] = {"samples_per_s": round(statistics.median(rates), 3),
                         "samples_per_s_range": [round(min(rates), 3), round(max(rates), 3)],
                         "ms_per_step": round(1000 * statistics.median(variant.seconds), 1),
                         "gflops": round(work / statistics.median(variant.seconds) / 1e9, 1),
                         "of_gemm": round(statistics.median(fractions), 3),
                         "of_gemm_range": [round(min(fractions), 3), round(max(fractions), 3)],
                         "samples_per_s_best": round(max(rates), 3),
                         "of_gemm_best": round(work / min(variant.seconds) / 1e9 / max(gemm), 3)}
    result["variants"] = figures
    return result


def _child(*args: str, memory: bool = False) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    if memory:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_tsvit_train", *args],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(out: Path) -> dict:
    results = {}
    for name in MODELS:
        for size in SIZES:
            result = _child("time", name, size)
            figures = result["variants"]
            for kind in figures:
                figures[kind] |= _child("memory", name, size, kind, memory=True)
            for kind in figures if "plain" in figures else ():
                for stat in ("", "_best"):
                    figures[kind][f"speed_vs_plain{stat}"] = round(
                        figures[kind][f"samples_per_s{stat}"] / figures["plain"][f"samples_per_s{stat}"], 3)
                figures[kind]["memory_vs_plain"] = round(
                    figures[kind]["step_peak_mib"] / figures["plain"]["step_peak_mib"], 3)
            results[f"{name}/{size}"] = result
    print(f"batch {BATCH}, patch {PATCH} at {80 * DOWNSAMPLE} m, 3 steps, {THREADS} threads, "
          f"{ROUNDS} rounds of {STEPS} step(s)")
    print("median over the rounds [range]; best: fastest round (and, for the GEMM share, the fastest GEMM)")
    print(f"{'model':16s} {'variant':10s} {'samples/s':>9s} {'range':>13s} {'best':>6s} {'GFLOP/s':>8s} "
          f"{'of GEMM':>8s} {'best':>6s} {'step MiB':>9s} {'vs plain':>9s} {'best':>6s} {'mem/plain':>9s}")
    for key, r in results.items():
        for v, f in r["variants"].items():
            lo, hi = f["samples_per_s_range"]
            print(f"{key:16s} {v:10s} {f['samples_per_s']:9.2f} {lo:6.2f}-{hi:<6.2f} {f['samples_per_s_best']:6.2f} "
                  f"{f['gflops']:8.1f} {f['of_gemm']:8.2f} {f['of_gemm_best']:6.2f} {f['step_peak_mib']:9.0f} "
                  f"{f.get('speed_vs_plain', 0):9.2f} {f.get('speed_vs_plain_best', 0):6.2f} "
                  f"{f.get('memory_vs_plain', 0):9.2f}")
        print(f"{key:16s} {r['flop_per_sample'] / 1e9:.2f} GFLOP/sample, GEMM {r['gemm_gflops']} GFLOP/s, "
              f"profile of ours {r['profile_ours']}")
    doc = {"settings": {"models": MODELS, "sizes": SIZES, "patch": PATCH, "batch": BATCH, "steps": STEPS,
                        "rounds": ROUNDS, "threads": THREADS, "downsample": DOWNSAMPLE, "sequence_steps": 3,
                        "gemm_size": GEMM_SIZE, "variants": VARIANTS},
           "results": results}
    from seaice_lib.figures.throughput import write_benchmark

    write_benchmark(out / "tsvit_train.json", doc)
    return doc


if __name__ == "__main__":
    print(json.dumps(run_timing(*sys.argv[2:]) if sys.argv[1] == "time" else run_memory(*sys.argv[2:])))
