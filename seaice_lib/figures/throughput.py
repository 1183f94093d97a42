"""Loader and training throughput from the benchmarks' JSON (``benchmarks/bench_loader.py``:
``loader.json``; ``benchmarks/bench_train.py``: ``train.json``), which they write with
:func:`write_benchmark`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..jsondoc import COUNT, NON_NEGATIVE, POSITIVE, check_shape, content_sha256, edited, read_json
from ..provenance import provenance
from . import style

# what the figure reads of each benchmark's JSON, and the values it may hold (seaice_lib.jsondoc.check_shape)
SHAPES: dict[str, dict] = {
    "loader": {"patch": COUNT, "batch": COUNT, "downsample": COUNT, "toolbox_samples_per_s": POSITIVE,
               "ours_samples_per_s": POSITIVE, "toolbox_peak_rss_mib": POSITIVE, "ours_peak_rss_mib": POSITIVE},
    "train": {"settings": {"batch": COUNT, "patch": COUNT, "sequence_steps": COUNT, "threads": COUNT},
              "models": {"*": {"samples_per_s": POSITIVE, "above_baseline_mib": NON_NEGATIVE}}}}


RECORDS = {"made_by": dict, "content_sha256": str}  # what write_benchmark adds to a benchmark's JSON


def write_benchmark(path: Path, doc: Mapping) -> Path:
    """``doc`` as the benchmark JSON ``path`` (every benchmark's: ``loader.json``, ``train.json`` read
    here, ``edge.json``, ``synthetic.json``, ...) with what made it
    (``made_by``, :func:`~seaice_lib.provenance.provenance`) and the SHA-256 of its content
    (``content_sha256``, :func:`~seaice_lib.jsondoc.content_sha256`), under a temporary name renamed
    into place: a benchmark stopped midway leaves no half-written file."""
    doc = {**doc, "made_by": provenance()}
    return write_text(path, json.dumps(doc | {"content_sha256": content_sha256(doc)}, indent=1))


def read_benchmark(path: Path) -> dict:
    """``loader.json`` or ``train.json`` (by its name) as :func:`write_benchmark` wrote it; ValueError
    naming the file for one that records no ``made_by`` or ``content_sha256`` (not written by a
    benchmark, or before benchmarks recorded them), one edited since, and (with the key) one without
    the keys the figure reads or with a value no benchmark writes (a NaN, infinite or negative speed
    or memory, a batch of 0)."""
    doc = read_json(path)
    rerun = f"run `python -m benchmarks {path.stem} --out {path.parent}` again"
    if missing := [key for key in RECORDS if key not in doc]:
        raise ValueError(f"{path}: records no {' or '.join(missing)} (not written by the benchmark, or written "
                         f"before benchmarks recorded them): nothing tells its numbers measured; {rerun}")
    if edited(doc):
        raise ValueError(f"{path}: edited since it was written (its content_sha256 is not that of its content): "
                         f"{rerun}")
    check_shape(doc, {**SHAPES[path.stem], **RECORDS}, str(path))
    return doc


@style.paper()
def throughput_outputs(loader: Mapping | None, train: Mapping | None, out_dir: Path) -> list[Path]:
    """``fig_throughput``: samples/s of the patch loader against the toolbox's loading algorithm, and of a
    training step per model with its peak memory above the process baseline; ``table_throughput``
    holds the same numbers. Either document may be None (its panels are left out)."""
    plt = style.pyplot()
    panels = (["loader"] if loader else []) + (["train speed", "train memory"] if train else [])
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(2.4 * len(panels) + 0.4, 2.4))
    rows = []
    ax = iter(axes[0])
    if loader:
        a = next(ax)
        names = ["toolbox algorithm", "patch store"]
        speeds = [loader["toolbox_samples_per_s"], loader["ours_samples_per_s"]]
        a.bar(names, speeds, color=[style.FLOOR_COLOUR, style.OKABE_ITO[0]])
        a.set_yscale("log")
        a.set_ylabel("samples/s")
        a.set_title(f"loader: patch {loader['patch']} at {80 * loader['downsample']} m, "
                    f"batch {loader['batch']}", fontsize=6)
        for name, speed, mib in zip(names, speeds, (loader["toolbox_peak_rss_mib"], loader["ours_peak_rss_mib"])):
            rows.append({"stage": "loader", "what": name, "samples/s": speed, "peak MiB": mib})
    if train:
        models = train["models"]
        names = list(models)
        colour = list(style.colours(names).values())
        speed, memory = next(ax), next(ax)
        speed.bar(names, [models[n]["samples_per_s"] for n in names], color=colour)
        speed.set_ylabel("training samples/s")
        memory.bar(names, [models[n]["above_baseline_mib"] for n in names], color=colour)
        memory.set_ylabel("peak MiB above the process baseline")
        settings = train["settings"]
        for a in (speed, memory):
            a.tick_params(axis="x", rotation=45)
            a.set_title(f"batch {settings['batch']}, patch {settings['patch']}, T {settings['sequence_steps']}, "
                        f"{settings['threads']} threads", fontsize=6)
        rows += [{"stage": "training step", "what": n, "samples/s": models[n]["samples_per_s"],
                  "peak MiB": models[n]["above_baseline_mib"]} for n in names]
    written = style.save(fig, out_dir, "fig_throughput")
    return written + style.table(pd.DataFrame(rows), out_dir, "table_throughput",
                                 "Samples per second and peak memory (MiB; training: above the process "
                                 "baseline) on the benchmark machine.")
