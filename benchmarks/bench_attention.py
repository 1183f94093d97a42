"""TSViT attention: our path (``scaled_dot_product_attention`` with a boolean key mask) vs plain
softmax attention written with einsum and with ``@`` (the same math, masked keys filled with -inf),
forward + backward of a dense output gradient (as in training; the stride-0 gradient of
``out.sum()`` slows the plain ways' backward).

Sizes are those of ``tsvit_v3`` ``small`` (dim 64, 4 heads, 4-pixel tokens on 64 x 64 patches,
24 class tokens) at batch SEAICE_BENCH_ATTN_BATCH (2; time and memory grow linearly with it),
T = 4 steps, downsample 10 (a 27 x 27 block of 2 km cells per modality):

* temporal: B * 256 sequences of 24 + 4 tokens, a quarter of the step keys masked;
* spatial: B * 24 sequences of 256 tokens (v1, v2), every key valid;
* spatial_fusion: B * 24 sequences of 256 SAR queries over 256 + 2 * 729 keys (v3: AMSR2 and ERA5
  cells as keys), AMSR2 missing for one sample.

Each implementation runs in its own process on 2 threads; a stage's peak memory is the process's
VmHWM above its resident size once the stage's inputs exist (the kernel's peak counter is reset
there through /proc/self/clear_refs; reported as null where that is not allowed). Outputs and
gradients of all three are checked to agree.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

BATCH = int(os.environ.get("SEAICE_BENCH_ATTN_BATCH", "2"))
DIM, HEADS, CLASSES, TOKENS, STEPS, CELLS = 64, 4, 24, 256, 4, 2 * 27 ** 2
REPEATS = 2


def stages(batch: int = BATCH) -> dict[str, dict[str, int]]:
    """Sequences, queries and keys per stage."""
    return {"temporal": {"sequences": batch * TOKENS, "queries": CLASSES + STEPS, "keys": CLASSES + STEPS},
            "spatial": {"sequences": batch * CLASSES, "queries": TOKENS, "keys": TOKENS},
            "spatial_fusion": {"sequences": batch * CLASSES, "queries": TOKENS, "keys": TOKENS + CELLS}}


def einsum_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     key_mask: torch.Tensor) -> torch.Tensor:
    """Reference: softmax(q k^T / sqrt(e), masked keys -inf) v, every score materialised."""
    scores = torch.einsum("shle,shme->shlm", q, k) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.einsum("shlm,shme->shle", scores.softmax(dim=-1), v)


def inputs(stage: str, batch: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """q (S, H, L, e), k and v (S, H, L_k, e) requiring grad, key mask (S, L_k)."""
    size = stages(batch)[stage]
    s, e = size["sequences"], DIM // HEADS
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(s, HEADS, size["queries"], e, generator=gen).requires_grad_()
    k = torch.randn(s, HEADS, size["keys"], e, generator=gen).requires_grad_()
    v = torch.randn(s, HEADS, size["keys"], e, generator=gen).requires_grad_()
    mask = torch.ones(s, size["keys"], dtype=torch.bool)
    if stage == "temporal":  # class tokens always valid, a quarter of the steps not
        mask[:, CLASSES:] = torch.rand(s, STEPS, generator=gen) > 0.25
    elif stage == "spatial_fusion":  # sample 0 (its first 24 sequences) without AMSR2
        mask[:CLASSES, TOKENS:TOKENS + CELLS // 2] = False
    return q, k, v, mask


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """The same math with ``@`` (batched GEMMs, no einsum layout copies): TSViT's recording path."""
    from seaice_lib.models.tsvit import attention_weights

    return attention_weights(q, k, key_mask) @ v


def _implementation(name: str):
    from seaice_lib.models.tsvit import masked_attention

    return {"sdpa": masked_attention, "einsum": einsum_attention, "matmul": matmul_attention}[name]


def _status_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])


def _child(name: str) -> None:
    """Time fwd + bwd of every stage (one warm-up, then REPEATS calls); print JSON per stage: ms per
    call, peak MiB above the inputs (None where the peak counter cannot be reset)."""
    torch.set_num_threads(2)
    attention = _implementation(name)
    result = {}
    for stage in stages():
        q, k, v, mask = inputs(stage)
        grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))  # dense, as in training
        resident = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            resettable = True
        except OSError:
            resettable = False
        times = []
        for _ in range(REPEATS + 1):
            t0 = time.perf_counter()
            attention(q, k, v, mask).backward(grad)
            times.append(time.perf_counter() - t0)
            q.grad = k.grad = v.grad = None
        peak = (_status_kib("VmHWM") - resident) / 1024 if resettable else None
        result[stage] = {"ms": 1000 * min(times[1:]), "peak_mib": peak}
        del q, k, v, mask
    print(json.dumps(result))


def _measure(name: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_attention", name],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _agree(stage: str) -> float:
    """Largest |difference| of outputs and q/k/v gradients of both paths on 8 sequences of the stage."""
    from seaice_lib.models.tsvit import masked_attention

    results = []
    for attention in (masked_attention, einsum_attention, matmul_attention):
        q, k, v, mask = (x[:8].detach().requires_grad_(x.requires_grad) for x in inputs(stage))
        out = attention(q, k, v, mask)
        out.square().sum().backward()
        results.append([out.detach(), q.grad, k.grad, v.grad])
    return max((a - b).abs().max().item() for other in results[1:] for a, b in zip(results[0], other))


def main(out_dir: Path) -> dict:
    from seaice_lib.figures.throughput import write_benchmark

    torch.set_num_threads(2)
    measured = {name: _measure(name) for name in ("sdpa", "einsum", "matmul")}
    rows = {}
    for stage, size in stages().items():
        sdpa, einsum, matmul = (measured[name][stage] for name in ("sdpa", "einsum", "matmul"))
        rows[stage] = size | {
            "sdpa_ms": round(sdpa["ms"], 1), "einsum_ms": round(einsum["ms"], 1), "matmul_ms": round(matmul["ms"], 1),
            "einsum_over_sdpa_time": round(einsum["ms"] / sdpa["ms"], 2),
            "matmul_over_sdpa_time": round(matmul["ms"] / sdpa["ms"], 2),
            "sdpa_peak_mib": sdpa["peak_mib"] and round(sdpa["peak_mib"], 1),
            "einsum_peak_mib": einsum["peak_mib"] and round(einsum["peak_mib"], 1),
            "max_abs_difference": _agree(stage)}
        assert rows[stage]["max_abs_difference"] < 1e-4, rows[stage]
    result = {"batch": BATCH, "dim": DIM, "heads": HEADS, "threads": 2, "repeats": REPEATS, "stages": rows}
    print(f"{'stage':>15} {'seqs':>5} {'Lq':>4} {'Lk':>5} {'sdpa ms':>8} {'einsum ms':>9} {'ratio':>6} "
          f"{'matmul ms':>9} {'ratio':>6} "
          f"{'sdpa MiB':>9} {'einsum MiB':>10} {'max diff':>9}")
    for stage, r in rows.items():
        print(f"{stage:>15} {r['sequences']:>5} {r['queries']:>4} {r['keys']:>5} {r['sdpa_ms']:>8} "
              f"{r['einsum_ms']:>9} {r['einsum_over_sdpa_time']:>6} {r['matmul_ms']:>9} "
              f"{r['matmul_over_sdpa_time']:>6} {r['sdpa_peak_mib']:>9} "
              f"{r['einsum_peak_mib']:>10} {r['max_abs_difference']:>9.1e}")
    print("forward + backward, best of 2 per call after a warm-up; ratios = einsum or matmul time / sdpa time; "
          "MiB = peak resident memory above the inputs")
    write_benchmark(out_dir / "attention.json", result)
    return result


if __name__ == "__main__":
    _child(sys.argv[1])
