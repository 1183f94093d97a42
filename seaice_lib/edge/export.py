"""ONNX export of a trained run: ``seaice export RUN_DIR [--int8] [--out DIR]``.

The run's model (:meth:`~seaice_lib.engine.run.Run.load_model`) is traced by the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``) with its batch dict flattened into named inputs, the
batch size (``batch``) and the sequence length (``steps``) left dynamic:

    sar (batch, steps, C, P, P) float32, sar_mask (batch, steps, P, P) bool,
    days_before (batch, steps) float32, day_of_year (batch, steps) int64, step_mask (batch, steps) bool,
    amsr2 (batch, 14, G, G) float32, era5 (batch, 6, G, G) float32, grid2km_offset (batch, 2) int64,
    and for TSViT v3 amsr2_mask, era5_mask (batch,) bool: False charts without that modality.

Outputs are the model's, one per chart (``SIC``, ``SOD``, ``FLOE``: (batch, K, P, P) float32,
logits or the SIC value). ``--int8`` adds ``model.int8.onnx`` (:func:`quantize_int8`): the U-Net
quantised statically (QDQ, convolutions in int8, activation ranges calibrated on the store's
patches of the training scenes), TSViT dynamically (MatMul and Gemm weights in int8).
``export.json`` (written last) records the model spec, the patch settings of the run's store (tiles
must be cut with them), the inputs and outputs, how int8 was quantised (``int8``), the opset and
the torch version, and the largest logit difference between the graph and the PyTorch model on a
check batch. The runtime: :mod:`seaice_lib.edge.runtime`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .. import logs, schema
from ..arguments import Parser
from ..atomic import atomic_path, folder_lock, out_folder, write_text
from ..data.patches import PatchConfig
from ..data.store import store_groups_sha256
from ..engine.evaluation import check_downsample
from ..engine.run import Run
from ..models import reads_history
from ..provenance import file_sha256
from ..provenance import provenance as software_provenance
from ..sample_format import BY_NAME, MODALITIES, MODEL_INPUTS, OPTIONAL_MODALITIES, shape
from ..stages import EXPORT, is_run_folder, other_stage
from .runtime import EXPORT_FILE, FORMAT, MODEL_FILES, SETTINGS_KEY, settings_sha256, source_run

OPSET = 18
log = logging.getLogger(__name__)
CALIBRATION_PATCHES = 256  # patches that calibrate static int8 (activation ranges)
STATIC_INT8 = ("unet",)  # models quantised statically (convolutions); the others dynamically
SEQUENCE_INPUTS = tuple(n for n in MODEL_INPUTS if BY_NAME[n].dims[:1] == ("T",))  # dynamic: batch and steps
_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(bool)": "bool", "tensor(int64)": "int64"}


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The graph inputs of ``model``: the SAR sequence, the 2 km grids where its architecture reads
    them (``model.reads``: none for a U-Net without ``grid2km`` and TSViT v1/v2, so an integrator
    feeds those only SAR), and a presence flag per optional modality for models that fuse them (TSViT v3)."""
    reads = set(getattr(model, "reads", MODALITIES))
    grid = bool(reads & set(OPTIONAL_MODALITIES))  # the 2 km cells' place comes with either grid
    taken = tuple(n for n in MODEL_INPUTS if BY_NAME[n].modality in reads or (BY_NAME[n].modality == "grid" and grid))
    flags = tuple(f"{m}_mask" for m in OPTIONAL_MODALITIES) if getattr(model, "fusion", None) else ()
    return taken + flags


def example_batch(cfg: PatchConfig, batch: int = 2, steps: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch of the store's shapes (every step real, every modality present)."""
    g = torch.Generator().manual_seed(seed)
    sizes = {"T": steps, "C": len(cfg.sar_variables), "P": cfg.patch, "G": cfg.grid_cells}

    def size(name: str) -> tuple[int, ...]:
        return (batch, *shape(name, sizes))

    return {"sar": torch.randn(size("sar"), generator=g),
            "sar_mask": torch.rand(size("sar_mask"), generator=g) > 0.1,
            "days_before": torch.arange(steps - 1, -1, -1, dtype=torch.float32).repeat(batch, 1),
            "day_of_year": torch.randint(1, 367, size("day_of_year"), generator=g),
            "step_mask": torch.ones(size("step_mask"), dtype=torch.bool),
            "amsr2": torch.randn(size("amsr2"), generator=g),
            "era5": torch.randn(size("era5"), generator=g),
            "grid2km_offset": torch.randint(0, schema.CELL_80M, size("grid2km_offset"), generator=g) + cfg.downsample // 2,
            **{f"{m}_mask": torch.ones(batch, dtype=torch.bool) for m in OPTIONAL_MODALITIES}}


class FlatInputs(nn.Module):
    """``model`` with its batch dict as positional tensors (``names``) and a tuple of outputs per
    chart (``charts``): the signature an ONNX graph has."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], charts: tuple[str, ...]):
        super().__init__()
        self.model, self.names, self.charts = model, names, charts

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(dict(zip(self.names, inputs)))
        return tuple(outputs[c] for c in self.charts)


def _attention(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
               scale: float | None = None, enable_gqa: bool = False):
    """ONNX for ``aten.scaled_dot_product_attention`` (inference): softmax(q kᵀ scale + mask) v, a
    boolean mask added as 0 / -inf. Each query must keep one key, as
    :func:`~seaice_lib.models.tsvit.masked_attention` requires. The exporter's own translation applies
    a boolean mask with two Where nodes on the whole (S, H, L, L_k) score tensor; this one runs
    TSViT v3 about 30 % faster in ONNX Runtime (docs/edge.md)."""
    from onnxscript import ir
    from onnxscript import opset18 as op

    head = query.shape[-1] if query.shape is not None else None
    if is_causal or enable_gqa or not isinstance(head, int):
        raise ValueError("export supports attention with a static head size, not causal or grouped")
    scores = op.Mul(op.MatMul(query, op.Transpose(key, perm=[0, 1, 3, 2])),
                    op.Constant(value_float=scale if scale is not None else head ** -0.5))
    if attn_mask is not None:
        if attn_mask.dtype == ir.DataType.BOOL:
            # onnxscript types Constant as any tensor type, Where as a constrained type variable
            attn_mask = op.Where(attn_mask, op.Constant(value_float=0.0),  # type: ignore[type-var]
                                 op.Constant(value_float=float("-inf")))
        scores = op.Add(scores, attn_mask)
    return op.MatMul(op.Softmax(scores, axis=-1), value)


def model_charts(model: nn.Module) -> tuple[str, ...]:
    """The charts ``model`` predicts, in its order (``model.charts``, which both model classes set)."""
    return tuple(cast(Sequence[str], model.charts))


def export_onnx(model: nn.Module, cfg: PatchConfig, path: str | Path, opset: int = OPSET) -> Path:
    """``model`` (eval mode) as an ONNX graph at ``path`` (temporary name, then renamed), batch and
    steps dynamic."""
    names, charts = input_names(model), model_charts(model)
    example = example_batch(cfg)
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("steps")
    dynamic = tuple({0: batch, 1: steps} if n in SEQUENCE_INPUTS else {0: batch} for n in names)
    wrapper = FlatInputs(model, names, charts).eval()  # the model too; the exporter warns otherwise
    with warnings.catch_warnings():  # the inputs share their batch and steps axes, as meant: not news
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used, since it shares the same "
                                r"shape constraints with another axis", category=UserWarning)
        program = torch.onnx.export(wrapper, tuple(example[n] for n in names),
                                    dynamo=True, dynamic_shapes=(dynamic,), input_names=list(names),
                                    output_names=list(charts), opset_version=opset, verbose=False,
                                    custom_translation_table={
                                        torch.ops.aten.scaled_dot_product_attention.default: _attention})
    assert program is not None  # the dynamo exporter returns its program
    with atomic_path(path) as tmp:
        program.save(str(tmp))
        written = written_opset(tmp)
        if written != opset:  # the exporter may write another opset than asked: never record a wish
            raise ValueError(f"--opset {opset}: the exporter wrote opset {written} instead (it converts only "
                             f"to opsets it supports; {OPSET} is the default)")
    return Path(path)


def written_opset(path: str | Path) -> int:
    """The default-domain opset an ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def graph_feeds(batch: Mapping[str, torch.Tensor | np.ndarray],
                names: Sequence[str]) -> dict[str, np.ndarray]:
    """The graph inputs ``names`` of a batch dict (:func:`~seaice_lib.data.dataset.collate`'s keys)
    as numpy arrays, every optional modality marked present where the batch lacks its flag."""
    size = len(batch["sar"])
    return {n: np.asarray(batch[n]) if n in batch else np.ones(size, bool) for n in names}


def calibration_batches(store: str | Path, names: Sequence[str], scenes: Sequence[str] | None = None,
                        patches: int = CALIBRATION_PATCHES, batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Graph feeds of up to ``patches`` patches of ``store`` (those of the target scenes
    ``scenes``, else all), evenly spaced through the store's index, in batches of ``batch``: the
    inputs static int8 quantisation calibrates its activation ranges on. The scene groups are first
    checked as training checks them: groups ``seaice patches`` would keep, as cut (their arrays read
    once), up to date with the store's scenes folder where it is here
    (:func:`~seaice_lib.data.patches.check_up_to_date`)."""
    from ..data.dataset import PatchDataset, collate
    from ..data.patches import check_up_to_date, store_scenes_dir

    data = PatchDataset(store, scenes)
    ids = data.scene_ids if scenes is None else list(scenes)
    scenes_dir = store_scenes_dir(store)
    check_up_to_date(store, scenes_dir if scenes_dir is not None and scenes_dir.is_dir() else None, ids,
                     read_arrays=True)
    if len(data) == 0:
        where = f" in scenes {list(scenes)}" if scenes else ""
        raise ValueError(f"{store}: no patches to calibrate int8 on{where}")
    picks = np.unique(np.linspace(0, len(data) - 1, min(patches, len(data))).astype(int))
    return [graph_feeds(collate([data[int(i)] for i in picks[k:k + batch]]), names)
            for k in range(0, len(picks), batch)]


def output_nodes(path: str | Path) -> list[str]:
    """Names of the nodes of the ONNX graph at ``path`` that produce its outputs (the heads)."""
    import onnx

    graph = onnx.load(str(path)).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if outputs & set(n.output)]


def quantize_int8(source: str | Path, path: str | Path,
                  calibration: Sequence[Mapping[str, np.ndarray]] | None = None) -> dict:
    """An int8 copy (ONNX Runtime) of the graph at ``source`` into ``path``; returns how it was
    quantised (``export.json``'s ``int8``).

    With ``calibration`` (graph feeds, :func:`calibration_batches`): static quantisation, QDQ
    format, weights int8 per output channel, activations uint8 with ranges (min/max) calibrated
    on those batches: convolutions run as ``QLinearConv``. Without: dynamic quantisation of the
    MatMul and Gemm weights, activations quantised per batch (TSViT: static quantisation ran it
    no faster and flipped more classes, docs/edge.md)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            return next(self.batches, None)

    # ONNX Runtime's logger warns about every pre-processing step left out
    logging.disable(logging.WARNING)
    try:
        with atomic_path(path) as tmp:
            if calibration is None:
                # pre-processing is left out: symbolic shape inference fails on these graphs
                quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul", "Gemm"])
            else:
                pre = Path(tmp).with_name(Path(tmp).name + ".pre.onnx")
                try:  # ONNX's shape inference (the symbolic one fails here) and graph clean-up first
                    quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
                    quantize_static(str(pre), str(tmp), Feeds(), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, nodes_to_exclude=output_nodes(pre))
                finally:
                    pre.unlink(missing_ok=True)
    finally:
        logging.disable(logging.NOTSET)
    if calibration is None:
        return {"method": "dynamic", "op_types": ["MatMul", "Gemm"], "weights": "int8 per tensor",
                "activations": "uint8, range of each batch"}
    return {"method": "static", "format": "QDQ", "weights": "int8 per output channel",
            "activations": "uint8, min/max ranges calibrated",
            "calibration_patches": sum(len(b["sar"]) for b in calibration)}


def largest_logit_difference(model: nn.Module, session, names: tuple[str, ...],
                             batch: dict[str, torch.Tensor]) -> float:
    """max |graph - PyTorch| over every output of ``batch`` (the SIC value too); ValueError when
    either gives a value that is not finite (a NaN would hide from the maximum)."""
    with torch.inference_mode():
        expected = model(batch)
    got = session.run(None, graph_feeds(batch, names))
    for g, c in zip(got, model_charts(model)):
        if not (np.isfinite(g).all() and torch.isfinite(expected[c]).all()):
            raise ValueError(f"{c}: the model gives values that are not finite on the check batch "
                             "(damaged weights?): no export")
    return max(float(np.abs(g - expected[c].numpy()).max()) for g, c in zip(got, model_charts(model)))


def export_model(model: nn.Module, spec: dict, cfg: PatchConfig, out: str | Path, int8: bool = False,
                 opset: int = OPSET, provenance: dict | None = None,
                 calibration: Sequence[Mapping[str, np.ndarray]] | None = None) -> Path:
    """Export ``model`` (built from the registry ``spec``, for tiles cut with ``cfg``) into the
    folder ``out``; returns the ``export.json`` written (last: an earlier export's goes first, so
    a folder stopped half-way is no export). ``provenance`` adds entries (``source``,
    ``config_sha256``). With ``int8``, the models of :data:`STATIC_INT8` are quantised statically
    on the graph feeds ``calibration`` (:func:`calibration_batches`; required for them), the
    others dynamically (:func:`quantize_int8`)."""
    import onnxruntime as ort

    static = spec["name"] in STATIC_INT8
    if int8 and static and not calibration:
        raise ValueError(f"int8 {spec['name']}: static quantisation needs calibration batches")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_FILE).unlink(missing_ok=True)
    fp32 = export_onnx(model, cfg, out / MODEL_FILES["fp32"], opset)
    files, quantisation = {"fp32": fp32.name}, {}
    if int8:
        quantisation = {"int8": quantize_int8(fp32, out / MODEL_FILES["int8"],
                                              calibration if static else None)}
        files["int8"] = MODEL_FILES["int8"]
    else:
        (out / MODEL_FILES["int8"]).unlink(missing_ok=True)  # it would be another model's
    stamp = settings_sha256({"model": spec, "patch_settings": dataclasses.asdict(cfg)})
    for name in files.values():
        _stamp(out / name, stamp)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    steps = max(1, cfg.max_steps)
    check = example_batch(cfg, batch=3, steps=steps, seed=1)
    doc = {"format": FORMAT, "model": spec, "patch_settings": dataclasses.asdict(cfg), "files": files,
           "sha256": {precision: file_sha256(out / name) for precision, name in files.items()},
           "inputs": [{"name": i.name, "dtype": _ONNX_DTYPES.get(i.type, i.type), "shape": i.shape}
                      for i in session.get_inputs()],
           "outputs": [{"name": o.name, "dtype": _ONNX_DTYPES.get(o.type, o.type), "shape": o.shape}
                       for o in session.get_outputs()],
           **quantisation, "opset": written_opset(fp32), "torch_version": torch.__version__,
           "onnxruntime_version": ort.__version__, **(provenance or {}),
           "check": {"batch": 3, "steps": steps, "largest_logit_difference":
                     largest_logit_difference(model, session, input_names(model), check)},
           "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "made_by": software_provenance()}
    return write_text(out / EXPORT_FILE, json.dumps(doc, indent=1))


def _stamp(path: Path, stamp: str) -> None:
    """Record ``stamp`` (:func:`~seaice_lib.edge.runtime.settings_sha256`) in the ONNX file's metadata."""
    import onnx

    graph = onnx.load(str(path))
    kept = [p for p in graph.metadata_props if p.key != SETTINGS_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept + [onnx.StringStringEntryProto(key=SETTINGS_KEY, value=stamp)])
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))


def check_export_folder(out: str | Path, run_dir: str | Path) -> None:
    """ValueError naming ``out`` where an export of run ``run_dir`` may not be written there: it
    holds files of an export's names (``export.json``, the ONNX files) but no export, or, in a
    folder other than the run's own ``export/`` (which its export always replaces, the run's folder
    moved or copied or not), another run's export (by the weights its ``export.json`` records); or
    it is a run folder (the run's own too: `train` would then find an export where its run goes)."""
    out = Path(out)
    run = Path(run_dir).resolve()
    if is_run_folder(out):
        whose = "the run's own folder" if out.resolve() == run else "a run folder of another training"
        raise ValueError(f"--out {out}: {whose}, not an export folder of run {run}: give another folder (the default "
                         "is RUN/export)")
    if other := other_stage(out, own=(EXPORT,)):
        raise ValueError(f"--out {out}: {other}, not an export folder: give another folder (the default is RUN/export)")
    names = [name for name in (EXPORT_FILE, *MODEL_FILES.values()) if (out / name).exists()]
    if not names:
        return
    try:
        source = Path(json.loads((out / EXPORT_FILE).read_text())["source"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"--out {out}: holds {', '.join(names)} but no readable export.json of seaice export: "
                         "give a new or empty folder") from None
    if out.resolve() != run / "export" and source_run(source) != run:
        raise ValueError(f"--out {out}: holds the export of {source}, not of run {run}: give another folder, "
                         "or remove that export first")


def export_run(run_dir: str | Path, out: str | Path | None = None, int8: bool = False,
               store: str | Path | None = None, opset: int = OPSET) -> Path:
    """Export a run folder's model into ``out`` (default ``RUN_DIR/export``) with
    :func:`export_model`; ``store`` names the patch store whose settings the tiles are cut with
    (default: the run's). Static int8 calibrates on the store's patches of the run's training
    scenes, and is refused where the store holds none of them: the validation scenes stay unseen,
    so the score change measured on them is fair."""
    run = Run(run_dir)
    cfg = run.patch_config(store)
    model = run.load_model()
    check_downsample(model, cfg.downsample, f"the store {store} has" if store is not None else "the run's store has")
    img_size = getattr(model, "img_size", None)
    if isinstance(img_size, int) and img_size != cfg.patch:
        raise ValueError(f"the model takes {img_size} x {img_size} patches, the store's are {cfg.patch} x {cfg.patch}")
    weights = run.weights
    spec = {**run.spec, "modalities": list(getattr(model, "modalities", MODALITIES)),  # what it reads: what it is fed
            "reads_history": reads_history(model)}
    provenance: dict[str, Any] = {"source": str(weights.resolve()), "source_sha256": file_sha256(weights),
                                  "config_sha256": file_sha256(run.config_file) if run.config_file else "unknown"}
    calibration = None
    if int8 and spec["name"] in STATIC_INT8:
        store = Path(store) if store is not None else \
            Path(run.required_config(" to find the store that calibrates int8; give --store").store)
        scenes = run.train_scenes(store)
        if scenes is None:
            raise ValueError(f"store {store} holds none of run {run.folder}'s training scenes (or the run records "
                             "no split): int8 would be calibrated on scenes it was not trained on, its validation "
                             "scenes perhaps; name a store that holds its training scenes (--store)")
        calibration = calibration_batches(store, input_names(model), scenes)
        provenance |= {"calibration_scenes": scenes, "calibration_store": str(store.resolve()),
                       "calibration_store_content": store_groups_sha256(store, scenes)}
        if missing := sorted(set(run.recorded_train_scenes or ()) - set(scenes)):
            provenance["calibration_scenes_missing"] = missing
            log.warning("store %s holds %d of run %s's %d training scenes: int8 is calibrated on those (missing: %s)",
                        store, len(scenes), run.folder, len(scenes) + len(missing), logs.first_few(missing, 5))
    out = Path(out) if out is not None else run.export_dir
    with folder_lock(out, "exporting"):  # one writer per export folder
        check_export_folder(out, run.folder)
        return export_model(model, spec, cfg, out, int8, opset, provenance, calibration)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Export a trained run's model to ONNX (dynamic batch and sequence length) "
                               "for the edge runtime (seaice edge-predict).", epilog=logs.EPILOG)
    parser.add_argument("run", type=Path, help="run folder of `seaice train`")
    parser.add_argument("--out", type=out_folder, default=None, help="export folder (default: RUN/export)")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (U-Net: static int8 calibrated on the store's "
                             "patches of the training scenes; TSViT: dynamic int8)")
    parser.add_argument("--store", type=Path, default=None,
                        help="patch store whose settings cut the tiles (default: the run's)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        parser.error(f"{args.run}: no such run folder")
    if args.store is not None and not args.store.is_dir():
        parser.error(f"--store {args.store}: no such store")
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not OPSET <= args.opset <= newest:  # the graph's own functions are written in opset 18
        parser.error(f"--opset must be {OPSET}..{newest} (this onnx), not {args.opset}")
    try:  # as evaluate and predict: a folder that is no run, or a store of other settings, is a usage error
        run = Run(args.run)
        check_export_folder(args.out if args.out is not None else run.export_dir, args.run)
        run.patch_config(args.store)
    except ValueError as err:
        parser.error(str(err))
    path = export_run(args.run, args.out, args.int8, args.store, args.opset)
    doc = json.loads(path.read_text())
    print(f"exported {doc['model']['name']} to {path.parent}: {', '.join(doc['files'].values())}; "
          f"largest logit difference {doc['check']['largest_logit_difference']:.2e} on a check batch")
    return 0
