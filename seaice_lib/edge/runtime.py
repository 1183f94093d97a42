"""The edge runtime: an exported model (``seaice export``) charts whole scenes with ONNX Runtime, no torch.

An export folder holds ``model.onnx`` (and ``model.int8.onnx``) and ``export.json`` (the model, the
patch settings of its store, the graph's inputs and outputs; written last, so a folder without it
is no export). :class:`EdgeModel` runs the graph on the batches of
:class:`seaice_lib.data.tiles.SceneTiles` and blends, classifies and masks exactly as the PyTorch
path (:func:`seaice_lib.engine.whole_scenes.predict_scene`): the same tiles, Hann window and return to
80 m. Optional modalities (AMSR2, ERA5) can be marked absent for TSViT v3 graphs, which take a
presence flag per sample. Neither this module nor what it imports loads torch
(``pip install "seaice_lib[edge]"``).

CLI: ``seaice edge-predict EXPORT_DIR SCENE... --out DIR`` (``--help``): one CF chart file per
scene (:mod:`seaice_lib.charts.cf`); ``seaice edge-predict EXPORT_DIR --follow DIR --out OUT`` charts
each scene as it lands in DIR (:mod:`seaice_lib.charts.follow`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import logs, schema
from ..arguments import Parser
from ..atomic import folder_lock
from ..charts import cf, follow, maps, options
from ..data.patches import PatchConfig
from ..data.tiles import SceneCharts, ScenePaths, SceneTiles, blend, chart_inputs, recorded_inputs, scene_sequence, target_scenes
from ..provenance import file_sha256
from ..sample_format import OPTIONAL_MODALITIES
from ..stopping import STOPPED_EXIT_CODE, Stopped, abandon_on_stop
from ..walk import Walk

log = logging.getLogger(__name__)

EXPORT_FILE = "export.json"
FORMAT = "seaice-export/1"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def source_run(weights: str | Path) -> Path:
    """The run folder of weights an export records as its ``source`` (``RUN/model.pt`` or
    ``RUN/checkpoints/last.pt``), resolved."""
    weights = Path(weights).resolve()
    return weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent


def export_dir(path: str | Path) -> Path:
    """The export folder ``path`` names: one holding ``export.json``, or a run folder whose
    ``export/`` does; ValueError naming ``path`` otherwise."""
    path = Path(path)
    for folder in (path, path / "export"):
        if (folder / EXPORT_FILE).is_file():
            return folder
    raise ValueError(f"{path}: no {EXPORT_FILE} here or in {path / 'export'} "
                     "(export a run first: seaice export RUN_DIR)")


def read_export(path: str | Path) -> dict:
    """The description in an export folder's ``export.json`` (see :func:`export_dir`), checked:
    ValueError naming the file and what is wrong."""
    file = export_dir(path) / EXPORT_FILE
    try:
        doc = json.loads(file.read_text())
    except ValueError as err:
        raise ValueError(f"{file}: not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ValueError(f"{file}: format {found!r}, expected {FORMAT!r}")
    missing = [k for k in ("model", "patch_settings", "files", "inputs", "outputs") if k not in doc]
    if missing:
        raise ValueError(f"{file}: lacks {missing}")
    return doc


SETTINGS_KEY = "seaice_settings_sha256"  # ONNX metadata: the export.json settings the graph was made for


def settings_sha256(doc: Mapping) -> str:
    """SHA-256 of what an export.json says about its graph (``model``, ``patch_settings``):
    stamped into the ONNX files at export, so an edit of either is found (:class:`EdgeModel`)."""
    text = json.dumps({"model": doc["model"], "patch_settings": doc["patch_settings"]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def patch_config(doc: Mapping) -> PatchConfig:
    """The :class:`PatchConfig` an export records (``patch_settings``)."""
    settings = dict(doc["patch_settings"])
    settings["sar_variables"] = tuple(settings["sar_variables"])
    return PatchConfig(**settings)


class EdgeModel:
    """An exported model in an ONNX Runtime session (CPU).

    Args:
        path: the export folder, or a run folder holding ``export/``.
        precision: ``"fp32"`` (``model.onnx``) or ``"int8"`` (``model.int8.onnx``, ``--int8``).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        try:  # the edge extra; imported here so that --help works without it
            import onnxruntime as ort
        except ImportError:
            raise ValueError('onnxruntime is not installed: pip install "seaice_lib[edge]"') from None
        if precision not in MODEL_FILES:
            raise ValueError(f"precision must be one of {tuple(MODEL_FILES)}, not {precision!r}")
        self.folder = export_dir(path)
        self.doc = read_export(self.folder)
        # the run the export sits in (named or not): its model.pt, or the checkpoint of a run not finished
        # (as `seaice export` takes); an export folder shipped without its run has neither beside it
        weights = self.folder.parent / "model.pt"
        weights = weights if weights.is_file() else self.folder.parent / "checkpoints" / "last.pt"
        if weights.is_file() and "source_sha256" not in self.doc:
            raise ValueError(f"{self.folder / EXPORT_FILE}: records no source_sha256 (the weights it was exported from), "
                             f"so it cannot be checked against {weights}: export the run again")
        if weights.is_file() and file_sha256(weights) != self.doc["source_sha256"]:
            source = self.doc.get("source", "")
            why = "the run trained on after the export" if source_run(source) == source_run(weights) else \
                f"it is the export of {source}"
            raise ValueError(f"{self.folder}: exported from other weights than {weights} holds now ({why}): "
                             "export the run again")
        if Path(str(self.doc.get("source", ""))).parts[-2:] == ("checkpoints", "last.pt"):
            log.warning("%s: exported from %s, the last checkpoint of a training that had not finished: it charts "
                        "with unfinished weights (export the run again once it has finished)",
                        self.folder, self.doc["source"])
        name = self.doc["files"].get(precision)
        if name is None:
            raise ValueError(f"{self.folder / EXPORT_FILE}: no {precision} model"
                             + (" (export with --int8)" if precision == "int8" else ""))
        self.file = self.folder / name
        if not self.file.is_file():
            raise ValueError(f"{self.file}: missing, though {EXPORT_FILE} lists it")
        recorded = self.sha256 = self.doc.get("sha256", {}).get(precision)
        if recorded is None:
            raise ValueError(f"{self.folder / EXPORT_FILE}: records no hash of {name} (an export of an older "
                             "version): export the run again")
        if file_sha256(self.file) != recorded:
            raise ValueError(f"{self.file}: not the model {EXPORT_FILE} describes (its SHA-256 differs from the "
                             "one recorded): export the run again, or put back the file the export wrote")
        self.cfg = patch_config(self.doc)
        self.precision = precision
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for unreadable graphs
            raise ValueError(f"{self.file}: ONNX Runtime cannot load it ({err})") from None
        stamp = self.session.get_modelmeta().custom_metadata_map.get(SETTINGS_KEY)
        if stamp is not None and stamp != settings_sha256(self.doc):
            raise ValueError(f"{self.folder / EXPORT_FILE}: its model or patch_settings are not those {name} was "
                             "exported with (edited since?): export the run again")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        sar = next((i for i in self.session.get_inputs() if i.name == "sar"), None)
        if sar is not None and sar.shape[-2:] != [self.cfg.patch, self.cfg.patch]:
            raise ValueError(f"{self.folder / EXPORT_FILE}: patch_settings give tiles of {self.cfg.patch} pixels, "
                             f"but {self.file.name} takes {sar.shape[-2:]}: export the run again")

    @property
    def reads_history(self) -> bool:
        """Whether the model takes earlier acquisitions (the spec's ``reads_history``; exports from
        before it was recorded are given them, as they were then)."""
        return bool(self.doc["model"].get("reads_history", True))

    @property
    def optional_modalities(self) -> tuple[str, ...]:
        """The modalities this graph can chart without (its ``<name>_mask`` inputs)."""
        return tuple(m for m in OPTIONAL_MODALITIES if f"{m}_mask" in self.input_names)

    def run(self, batch: Mapping[str, np.ndarray], absent: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Outputs ``{chart: (B, K, P, P) float32}`` of one batch (:meth:`SceneTiles.arrays`), with
        the modalities in ``absent`` masked out (v3 graphs only), and those the model was not
        trained on (the spec's ``modalities``) always."""
        unknown = set(absent) - set(self.optional_modalities)
        if unknown:
            raise ValueError(f"{self.file}: this model cannot chart without {sorted(unknown)} "
                             f"(it can without: {list(self.optional_modalities) or 'none'})")
        b = len(batch["sar"])
        trained = self.doc["model"].get("modalities", OPTIONAL_MODALITIES)
        feeds = {}
        for name in self.input_names:
            modality = name.removesuffix("_mask")
            if modality in OPTIONAL_MODALITIES and modality != name:
                feeds[name] = np.full(b, modality not in absent and modality in trained)
            elif name in batch:
                feeds[name] = batch[name]
            else:
                raise ValueError(f"{self.file}: the graph needs the input {name!r}, the batch lacks it")
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def predict_tiles(self, tiles: SceneTiles, batch_size: int = 8, absent: Sequence[str] = (),
                      progress: bool = False, times: follow.BatchTimes | None = None
                      ) -> dict[str, np.ndarray]:
        """Blended outputs on the store grid, chart -> (K, h, w) float32
        (:func:`seaice_lib.data.tiles.blend`); ``times`` gets the wall time of each batch's
        :meth:`run`."""
        times = times if times is not None else follow.BatchTimes()

        def outputs():
            for origins in logs.progress_bar(tiles.chunks(batch_size), desc="predict", unit="batch", leave=False,
                                disable=not progress):
                arrays = tiles.arrays(origins)
                times.start()
                predicted = self.run(arrays, absent)
                times.stop(len(origins))
                yield origins, predicted

        return blend(tiles, outputs())

    def predict_scene(self, target: str | Path, scenes: ScenePaths, batch_size: int = 8,
                      overlap: float = 0.25, absent: Sequence[str] = (), progress: bool = False,
                      keep_blended: bool = False, mask_no_data: bool = True,
                      times: follow.BatchTimes | None = None) -> SceneCharts:
        """Charts of a whole target scene at 80 m, as
        :func:`~seaice_lib.engine.whole_scenes.predict_scene` makes them; ``scenes`` (a folder or
        files) supplies the earlier acquisitions of the target's sequence, ``times`` gets the
        wall time of each batch (:meth:`predict_tiles`)."""
        trained = self.doc["model"].get("modalities", OPTIONAL_MODALITIES)
        unread = sorted({*absent, *(m for m in OPTIONAL_MODALITIES if m not in trained)})  # never fed: never read
        tiles = SceneTiles(scene_sequence(target, scenes, self.cfg, self.reads_history), self.cfg, overlap, unread)
        blended = self.predict_tiles(tiles, batch_size, absent, progress, times)
        return tiles.scene_charts(blended, keep_blended, mask_no_data)


def chart_scene(model: EdgeModel, target: str | Path, out_dir: str | Path,
                scenes: ScenePaths | None = None, batch_size: int = 8, overlap: float = 0.25,
                absent: Sequence[str] = (), probabilities: bool = False, progress: bool = False,
                clock: Callable[[], float] = time.perf_counter, made: str | None = None,
                producer: Mapping[str, str] | None = None) -> follow.Charted:
    """Chart one target scene into its CF chart file in ``out_dir``
    (:func:`seaice_lib.charts.cf.write_scene_charts`), earlier acquisitions from ``scenes``
    (default: the target's folder); ``made``: its :func:`made_by` when already known; ``producer``: ACDD
    attributes (:func:`seaice_lib.charts.cf.producer`). Returns the file, the tiles, the seconds of
    :meth:`EdgeModel.predict_scene` (tiles, model, blending, 80 m) and each batch's seconds of
    :meth:`EdgeModel.run` by ``clock`` (seconds)."""
    times = follow.BatchTimes(clock)
    start = time.monotonic()
    charts = model.predict_scene(target, scenes if scenes is not None else Path(target).parent,
                                 batch_size, overlap, absent, progress, keep_blended=probabilities,
                                 times=times)
    predict_s = time.monotonic() - start
    attrs = {**cf.provenance(model.doc["model"]["name"], None, charts.inputs),
             "model_config_sha256": model.doc.get("config_sha256", "unknown"),
             "model_runtime": f"onnxruntime {model.precision} ({model.file.name})",
             "model_weights_sha256": model.sha256, "tile_overlap": str(overlap),
             "made_by": made or made_by(model, overlap, absent, probabilities,
                                        recorded_inputs(charts.inputs, charts.left_out_history), producer),
             **(producer or {})}
    if absent:
        attrs["modalities_absent"] = ", ".join(absent)
    path = cf.write_predicted(out_dir, target, charts, model.cfg.downsample, attrs)
    return follow.Charted(path, charts.n_tiles, predict_s, tuple(times.batches))


def made_by(model: EdgeModel, overlap: float, absent: Sequence[str], probabilities: bool,
            inputs: Sequence[str | Path], producer: Mapping[str, str] | None = None) -> str:
    """The ``made_by`` of a chart file from an exported model, the scene files ``inputs`` and the
    producer's metadata (:func:`seaice_lib.charts.cf.made_by`)."""
    return cf.made_by(model.sha256, f"onnxruntime {model.precision}",
                      {"patch_config": model.doc["patch_settings"], "tile_overlap": overlap,
                       "probabilities": probabilities, "modalities_absent": sorted(absent)}, inputs, producer)


def chart_scenes(model: EdgeModel, targets: ScenePaths, out_dir: str | Path,
                 scenes: ScenePaths | None = None, batch_size: int = 8, overlap: float = 0.25,
                 absent: Sequence[str] = (), probabilities: bool = False,
                 progress: bool = False, overwrite: bool = False, walk: Walk | None = None,
                 producer: Mapping[str, str] | None = None) -> Walk:
    """One CF chart file per target (:func:`seaice_lib.charts.cf.write_scene_charts`) in
    ``out_dir``; earlier acquisitions come from ``scenes`` (default: each target's own folder).

    A chart file already there is kept when the same model and options made it, charted again with
    ``overwrite``, else the scene fails naming it (:func:`seaice_lib.charts.cf.reusable`). A scene
    that fails is named and the others go on (:mod:`seaice_lib.walk`). Returns the walk: the chart
    files written or found (``done``) and one line per failed scene (``failed``).
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    def record(target: Path) -> str:
        history = scenes if scenes is not None else target.parent
        return made_by(model, overlap, absent, probabilities,
                       chart_inputs(target, history, model.cfg, model.reads_history), producer)

    def write(target: Path, made: str) -> None:
        chart_scene(model, target, out_dir, scenes, batch_size, overlap, absent, probabilities, progress, made=made,
                    producer=producer)

    walk = walk or Walk("scenes")
    cf.chart_each(targets, out_dir, record, write, overwrite, walk, progress, maps.withdraw_outdated)
    return walk


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Chart whole scenes with an exported model on ONNX Runtime (no torch): "
                               "one CF chart file per scene; or, with --follow, each scene that "
                               "lands in a folder.", epilog=logs.EPILOG)
    parser.add_argument("export", type=Path, help="export folder (seaice export), or a run folder holding export/")
    parser.add_argument("targets", type=Path, nargs="*", metavar="SCENE",
                        help="*_prep.nc scenes to chart (or folders of them); none with --follow")
    options.add_charting(parser, "--scenes")
    options.add_tiling(parser)
    parser.add_argument("--int8", action="store_true", help="run model.int8.onnx")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--without", nargs="+", action="extend", default=[], choices=OPTIONAL_MODALITIES,
                        help="chart without these modalities (TSViT v3 only)")
    follow.add_options(parser)
    maps.add_options(parser)
    args = parser.parse_args(argv)
    follow.check_options(parser, args, args.targets)
    maps.check_options(parser, args)
    options.check(parser, args)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, not {args.threads}")
    try:
        targets = target_scenes(args.targets, args.history)
    except ValueError as err:
        parser.error(str(err))
    try:
        export = export_dir(args.export)  # a path that names no export
    except ValueError as err:
        parser.error(str(err))
    if args.int8 and "int8" not in read_export(export)["files"]:
        parser.error(f"--int8: {export / EXPORT_FILE} lists no int8 model (export with --int8)")
    # a stale or damaged export is a data error: one line, exit 1 (seaice_lib.cli)
    model = EdgeModel(export, "int8" if args.int8 else "fp32", args.threads)
    read = model.doc["model"].get("modalities", ["sar", *OPTIONAL_MODALITIES])
    if unread := [m for m in args.without if m not in read]:  # a v3 graph takes both masks, whatever it was trained on
        parser.error(f"--without {' '.join(args.without)}: this {model.doc['model']['name']} does not read "
                     f"{', '.join(unread)} (it reads {' + '.join(read)}): leave the option out")
    if set(args.without) - set(model.optional_modalities):
        can = f"only without {list(model.optional_modalities)}" if model.optional_modalities else \
            "with every modality it was trained on (only TSViT v3 graphs chart without some)"
        parser.error(f"--without {' '.join(args.without)}: {model.doc['model']['name']} charts {can}")
    with folder_lock(args.out, "charting"):  # one writer per output folder
        if args.follow is not None:
            def chart_and_convert(path: Path) -> follow.Charted:
                maps.check_scenes_maps(args, [path])  # a --crs of another region, a twin's polygons there: nothing written
                charted = chart_scene(model, path, args.out, args.history or args.follow, args.batch_size, args.overlap,
                                      args.without, args.probabilities, producer=args.producer)
                maps.convert_for(args, charted.path, path)
                return charted

            return follow.follow_command(args, chart_and_convert, lambda path: made_by(
                model, args.overlap, args.without, args.probabilities,
                chart_inputs(path, args.history or args.follow, model.cfg, model.reads_history), args.producer),
                model.cfg.sar_variables, kept=lambda chart, path: maps.convert_for(args, chart, path))
        maps.check_scenes_maps(args, targets)  # --crs, twins: refused before any chart file is written
        walk = Walk("scenes")
        try:
            with abandon_on_stop():
                chart_scenes(model, targets, args.out, args.history, args.batch_size, args.overlap, args.without,
                             args.probabilities, progress=not args.quiet, overwrite=args.overwrite, walk=walk,
                             producer=args.producer)
                # the other formats, made from each chart file
                maps.convert_all(args, walk, {schema.scene_key(p): p for p in targets})
        except Stopped as stop:
            print(cf.stopped_line(str(stop), targets, walk, args.out), file=sys.stderr)
            return STOPPED_EXIT_CODE
        charted = [p for p in targets if cf.charts_path(args.out, schema.scene_key(p)) in walk.done]
        unusable = cf.unusable_inputs(charted, walk.done, model.cfg.sar_variables)  # as predict's upload package
    print(walk.summary(f"charted into {args.out}"), file=sys.stderr if walk.failed or unusable else sys.stdout)
    if unusable:  # charted and recorded, each named in a warning above, but not to pass for complete charts
        print(f"not fit for an upload package: {unusable}; repair or leave out those scenes", file=sys.stderr)
        return 1
    return walk.exit_code
