"""Whole scenes: target scenes predicted tile by tile at the store's spacing, back to 80 m, scored.

The tiling, blending and return to 80 m are :mod:`seaice_lib.data.tiles` (torch-free, shared with
the ONNX edge runtime, :mod:`seaice_lib.edge.runtime`); here :class:`SceneTiles` adds the torch
samples and batches and :func:`predict_scene` runs a PyTorch model over them. Tile outputs are
blended with a Hann window (probabilities, or the SIC value), turned into classes as
:func:`~seaice_lib.models.to_classes` does and brought back to 80 m block by block
(:func:`~seaice_lib.grid.block_upsample`); pixels without SAR data get 255. :func:`score_scenes`
is the official metric on every labelled pixel of whole scenes at 80 m (sharded by scene under
DDP), for networks through :func:`evaluate_scenes` and for the per-pixel floors; training writes
it to ``evaluation.json``. Details: docs/data.md ("Whole scenes"). Chart
files and the upload package: :mod:`seaice_lib.charts.inference`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .. import schema
from ..data import tiles as numpy_tiles
from ..data.dataset import StoredSequence, patch_sample
from ..data.patches import InputFiles, PatchConfig, cut_patch
from ..data.scene import Scene, SceneError, fill_problem, find_scenes, open_dataset
from ..data.sequences import SceneSequence
from ..data.tiles import SceneCharts, ScenePaths, as_config, hann_window, recorded_inputs, scene_paths, scene_sequence
from ..models import reads_history
from ..sample_format import OPTIONAL_MODALITIES
from ..walk import Walk
from .evaluation import Evaluation, _rank_and_world, check_downsample, predict_batches
from .metrics import AutoIceAccumulator

__all__ = ["SceneCharts", "ScenePaths", "SceneTiles", "as_config", "evaluate_scenes", "hann_window",
           "input_records", "predict_scene", "predict_tiles", "read_reference", "scene_files", "scene_paths",
           "scene_sequence", "score_scenes"]

log = logging.getLogger(__name__)
# the files scores are made from, each hashed once per process while its size and modification time
# stay (training scores the same validation scenes at every curve step)
_READ = InputFiles()


def input_records(paths: Iterable[Path]) -> list[dict]:
    """The records of the files ``paths`` read (:data:`~.evaluation.INPUT_FILE`): absolute path
    (``file``), ``bytes``, ``mtime_ns`` and ``sha256``, as store groups record theirs; checked
    with :func:`~seaice_lib.data.store.changed_files`."""
    return [_READ.entry(p, str(p.absolute())) for p in paths]


class Predicted(NamedTuple):
    """What a scene's prediction gave and was given (:func:`score_scenes`)."""

    charts: Mapping[str, np.ndarray]  # chart -> (H, W) uint8 at 80 m
    n_tiles: int  # the tiles run
    # where its inputs held values the reader masks beyond the dataset's no-data convention, (H, W)
    # bool, with the count per variable; None: nowhere
    masked: tuple[np.ndarray, dict[str, int]] | None
    inputs: tuple[Path, ...]  # the scene files read, oldest first, the target last
    left_out: tuple[SceneError, ...] = ()  # earlier acquisitions of its window that could not be read


def scene_files(scene_ids: Sequence[str], folder: str | Path, pattern: str = "*_prep.nc") -> list[Path]:
    """The file of each scene id in ``folder`` (matched by the first 19 characters of the name,
    ``YYYYMMDDTHHMMSS_{dmi|cis}``), in order; ValueError naming the folder and the ids it lacks."""
    by_id = {schema.scene_key(p): p for p in find_scenes(folder, pattern)}
    missing = [s for s in scene_ids if schema.scene_key(s) not in by_id]
    if missing:
        raise ValueError(f"{folder}: no {pattern} file for the scenes {missing}")
    return [by_id[schema.scene_key(s)] for s in scene_ids]


class SceneTiles(numpy_tiles.SceneTiles):
    """:class:`seaice_lib.data.tiles.SceneTiles` with its tiles as torch samples and batches."""

    def __init__(self, sequence: SceneSequence, cfg: PatchConfig, overlap: float = 0.25, absent: Sequence[str] = ()):
        super().__init__(sequence, cfg, overlap, absent)
        self.dates = StoredSequence(torch.from_numpy(self.days_before), torch.from_numpy(self.day_of_year),
                                    sequence.target.region)

    def sample(self, r: int, c: int) -> dict:
        """The tile at store pixel (``r``, ``c``) as a :class:`~seaice_lib.data.dataset.PatchDataset`
        sample (without ``scene``): the same keys, dtypes and values as a stored patch there."""
        return patch_sample(cut_patch(self.grid, r, c, self.cfg), self.dates)

    def batch(self, origins: list[tuple[int, int]]) -> dict:
        """The tiles at ``origins``, as :func:`~seaice_lib.data.dataset.collate` batches them
        (:meth:`arrays` as tensors)."""
        arrays = self.arrays(origins)
        return {k: ({c: torch.from_numpy(v) for c, v in a.items()} if isinstance(a, dict)
                    else torch.from_numpy(a)) for k, a in arrays.items()}


def predict_tiles(model: nn.Module, tiles: SceneTiles, batch_size: int = 8,
                  device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Blended outputs on the store grid, chart -> (K, h, w) float32 (:func:`~seaice_lib.data.tiles.blend`)."""
    check_downsample(model, tiles.cfg.downsample)
    chunks = tiles.chunks(batch_size)
    predicted = predict_batches(model, map(tiles.batch, chunks), device, amp_dtype, progress,
                                total=len(chunks))
    return numpy_tiles.blend(tiles, ((origins, {c: o.cpu().numpy() for c, o in outputs.items()})
                                     for origins, (_, outputs) in zip(chunks, predicted)))


def predict_scene(model: nn.Module, target: str | Path, scenes: ScenePaths,
                  settings: PatchConfig | str | Path, batch_size: int = 8,
                  device: torch.device | str = "cpu", overlap: float = 0.25,
                  amp_dtype: torch.dtype | None = None, progress: bool = False,
                  keep_blended: bool = False, mask_no_data: bool = True) -> SceneCharts:
    """Charts of a whole target scene at 80 m, (H, W) uint8 per chart.

    ``scenes`` (a folder or files) supplies the earlier acquisitions of the target's sequence
    (none for a model that reads none: :func:`~seaice_lib.models.reads_history`);
    ``settings`` is the store's :class:`PatchConfig` or the store's path. Pixels without SAR data
    are 255 unless ``mask_no_data`` is False; ``keep_blended`` keeps the store-grid blends.
    """
    cfg = as_config(settings)
    unused = [m for m in OPTIONAL_MODALITIES if m not in getattr(model, "modalities", OPTIONAL_MODALITIES)]
    tiles = SceneTiles(scene_sequence(target, scenes, cfg, reads_history(model)), cfg, overlap,
                       unused)  # what it never reads is not read
    blended = predict_tiles(model, tiles, batch_size, device, amp_dtype, progress)
    return tiles.scene_charts(blended, keep_blended, mask_no_data)


def read_reference(path: str | Path, shape: tuple[int, int], scene_id: str | None = None) -> dict[str, np.ndarray]:
    """Chart -> (H, W) uint8 from a reference file (``<scene>_prep_reference.nc``: ``SIC``,
    ``SOD``, ``FLOE``, 255 = no label) of a scene of ``shape``. A missing chart, another shape, the
    scene's dims in the other order (a square scene transposed), a class out of range, or an SIC
    chart without any label raises :class:`SceneError` naming the file and the variable, as do a
    ``chart_fill_value`` other than 255 and NaN (no class, and not the fill value); float variables
    are taken when they hold whole classes. A file that records another ``scene_id`` than the
    scene's (copied or renamed) raises it too."""
    charts = {}
    with open_dataset(path) as ds:
        recorded = ds.attrs.get("scene_id")
        if scene_id is not None and recorded is not None and str(recorded) != scene_id:
            raise SceneError(path, f"holds the reference of scene {recorded!r}, not of {scene_id}, whose name "
                                   "it has (copied or renamed?)", "scene_id")
        for chart in schema.CHARTS:
            if chart not in ds:
                raise SceneError(path, "missing from the reference file", chart)
            dims = tuple(ds[chart].dims)
            if set(dims) == set(schema.SAR_DIMS) and dims != schema.SAR_DIMS:
                raise SceneError(path, f"dims {dims}: transposed, the scene's are {schema.SAR_DIMS}", chart)
            values = np.asarray(ds[chart].values)
            if values.shape != tuple(shape):
                raise SceneError(path, f"shape {values.shape}, the scene's is {tuple(shape)}", chart)
            if problem := fill_problem(ds[chart]):
                raise SceneError(path, problem, chart)
            if values.dtype.kind == "f":
                if np.isnan(values).any():
                    raise SceneError(path, f"holds NaN, neither a class nor the no-label value {schema.CHART_FILL} "
                                           "(chart_fill_value)", chart)
                if (values != np.round(values)).any():
                    raise SceneError(path, "holds values that are not whole classes", chart)
            elif values.dtype.kind not in "iu":
                raise SceneError(path, f"dtype {values.dtype} holds no classes", chart)
            bad = (values != schema.CHART_FILL) & ((values < 0) | (values >= schema.N_CLASSES[chart]))
            if bad.any():
                raise SceneError(path, f"classes {sorted(np.unique(values[bad]).tolist())[:5]} outside "
                                       f"0..{schema.N_CLASSES[chart] - 1} and 255", chart)
            if chart == "SIC" and (values == schema.CHART_FILL).all():
                raise SceneError(path, "holds no label (every pixel 255): nothing to score the scene on", chart)
            charts[chart] = values.astype(np.uint8)
    return charts


def _gather_over_ranks(items: list) -> list:
    """``items`` of every rank, concatenated in rank order, when ``torch.distributed`` is initialised."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def _sum_over_ranks(n: int) -> int:
    """``n`` summed over the ranks when ``torch.distributed`` is initialised."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return n
    device = (torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl"
              else torch.device("cpu"))
    total = torch.tensor([n], dtype=torch.int64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def score_scenes(scenes: ScenePaths, predict: Callable[[Path], Predicted],
                 info: dict | None = None, references: Mapping[str, str | Path] | None = None,
                 walk: Walk | None = None, progress: bool = False) -> Evaluation:
    """The official metric on every labelled pixel of whole scenes at 80 m: the one scoring loop of
    networks (:func:`evaluate_scenes`) and per-pixel floors (:func:`~.floors.evaluate_floor`).

    ``predict(path)`` gives the scene's :class:`Predicted`: its charts, chart -> (H, W) uint8 at 80 m
    (a class on every pixel, where SAR has no data too, as the official scorer counts them), the
    tiles it ran, the pixels whose inputs were not finite or out of range (the target's,
    :meth:`Scene.masked_inputs`, and those an earlier acquisition's such values reach,
    :attr:`SceneCharts.masked_pixels`; or None), the files it read and the earlier acquisitions it
    could not read; it raises ``ValueError`` where it has no charts to give. A class made on masked
    pixels would come from made-up input: those pixels get no class (255), each labelled one counted
    wrong (:mod:`.metrics`); the scene is named in a warning and ``info["unusable_inputs"]`` gives
    its labelled pixels so counted per chart and the masked values per variable (``labelled_pixels``,
    ``values``), and the earlier acquisitions left out unread (``left_out``, ``"FILE: problem"``;
    charted without them). ``references`` maps scene ids to reference files (:func:`read_reference`)
    scored instead of the scene's own charts (the test set's ``<scene>_prep_reference.nc``);
    ``info["labels"]`` says which (``"scene charts"`` or ``"reference files"``). ``info["input_files"]``
    records every file read, each once in scene order (the scene's files left out unread, so that a
    repair makes the scores stale, its sequence, oldest first, then its reference file): its
    absolute path (``file``), ``bytes``, ``mtime_ns`` and ``sha256``, as store groups record theirs
    (:class:`~seaice_lib.data.patches.InputFiles`; :meth:`Evaluation.changed_inputs` checks them).
    Without a ``walk`` a scene that cannot be scored raises; with one it is named there and left
    out, and ``info`` lists it under ``failed_scenes`` (``scenes``: those scored). Under
    ``torch.distributed``, rank r scores the scenes ``r::world`` and the counts are all-reduced:
    every rank must call it with the same scenes and returns the same :class:`Evaluation`, each
    pixel counted once.
    """
    paths = scene_paths(scenes)
    if not paths:
        raise ValueError("no scenes to evaluate")
    rank, world = _rank_and_world()
    acc = AutoIceAccumulator()

    def score(path: Path) -> tuple[str, int, dict, list[dict]]:
        """The scene's counts added; its id, tiles, unusable inputs (none: {}) and the files read."""
        with Scene(path, validate=False) as scene:
            sid, shape = scene.scene_id, scene.shape
        reference = None
        if references is None:
            with Scene(path) as scene:
                true = scene.charts()
        elif sid not in references:
            raise ValueError(f"no reference file for the scene {sid}")
        else:
            reference = Path(references[sid])
            true = read_reference(reference, shape, sid)
        predicted = predict(path)
        charts = predicted.charts
        unusable: dict = {}
        if predicted.masked is not None and predicted.masked[1]:
            mask, values = predicted.masked
            charts = {c: np.where(mask, schema.CHART_FILL, v).astype(np.uint8) for c, v in charts.items()}
            labelled = {c: int((mask & (true[c] != schema.CHART_FILL)).sum()) for c in schema.CHARTS}
            unusable = {"labelled_pixels": labelled, "values": values}
            log.warning(f"{sid}: inputs not finite or out of range ({', '.join(f'{v} {n} values' for v, n in values.items())}"
                        f"): no class there, each labelled pixel counted wrong "
                        f"({', '.join(f'{c} {n}' for c, n in labelled.items())})")
        acc.update(true, charts, no_class="labelled_pixels" in unusable)
        if predicted.left_out:
            unusable["left_out"] = numpy_tiles.left_out_lines(predicted.left_out)
            log.warning(f"{sid}: charted without earlier acquisitions that could not be read: "
                        f"{'; '.join(unusable['left_out'])}")
        read = [*recorded_inputs(predicted.inputs, predicted.left_out), *([reference] if reference is not None else [])]
        return sid, predicted.n_tiles, unusable, input_records(read)

    done = (walk or Walk("scenes", stop_on_failure=True)).each(paths[rank::world], score, desc="evaluate",
                                                               progress=progress and rank == 0)
    acc.all_reduce()
    order = {schema.scene_key(p): i for i, p in enumerate(paths)}

    def in_order(items: list) -> list:
        """``(scene id, ...)`` items of every rank, in the order of ``scenes``."""
        return sorted(_gather_over_ranks(items), key=lambda item: order.get(item[0], len(order)))

    scored = [sid for sid, *_ in in_order(done)]
    unusable = dict(in_order([(sid, u) for sid, _, u, _ in done if u]))
    read = {entry["file"]: entry for _, entries in in_order([(sid, r) for sid, _, _, r in done]) for entry in entries}
    if not scored:
        why = f": {'; '.join(walk.failed[:3])}" if walk is not None and walk.failed else ""
        raise ValueError(f"no scene could be scored{why}")
    left_out = {"failed_scenes": [s for s in order if s not in scored]} if walk is not None else {}
    return Evaluation({c: acc.confusion_matrix(c) for c in schema.CHARTS},
                      _sum_over_ranks(sum(n for _, n, _, _ in done)),
                      {**(info or {}), "scenes": scored, **left_out, "scope": "full scenes at 80 m",
                       **({"unusable_inputs": unusable} if unusable else {}),
                       "labels": "scene charts" if references is None else "reference files",
                       "input_files": list(read.values())},
                      {c: acc.no_class(c) for c in schema.CHARTS})


def evaluate_scenes(model: nn.Module, scenes: ScenePaths, scenes_dir: str | Path,
                    settings: PatchConfig | str | Path, batch_size: int = 8,
                    device: torch.device | str = "cpu", overlap: float = 0.25,
                    amp_dtype: torch.dtype | None = None, progress: bool = False,
                    info: dict | None = None,
                    references: Mapping[str, str | Path] | None = None,
                    walk: Walk | None = None) -> Evaluation:
    """Score ``model`` on whole labelled scenes at 80 m against their charts (:func:`score_scenes`,
    which says what ``references``, ``walk`` and DDP do), streaming, each scene predicted by
    :func:`predict_scene` with the scenes of ``scenes_dir`` as its history. ``Evaluation.n_patches``
    counts the tiles run. Non-finite model outputs on a scene: no score for it (``ValueError``);
    inputs not finite or out of range, the target's or an earlier acquisition's where its sample
    reaches the target (named ``VARIABLE of FILE``): no class there (:func:`score_scenes`)."""
    cfg = as_config(settings)
    rank, _ = _rank_and_world()

    def predict(path: Path) -> Predicted:
        predicted = predict_scene(model, path, scenes_dir, cfg, batch_size=batch_size,
                                  device=device, overlap=overlap, amp_dtype=amp_dtype,
                                  progress=progress and rank == 0, mask_no_data=False)
        if predicted.non_finite:
            raise ValueError(f"{path}: the model gave non-finite outputs on store pixels "
                             f"({', '.join(f'{c} {n}' for c, n in predicted.non_finite.items())}): no score")
        masked = None
        if predicted.masked_pixels is not None:
            masked = (predicted.masked_pixels, {(name if file == path.name else f"{name} of {file}"): n
                                                for file, counts in predicted.masked_inputs.items()
                                                for name, n in counts.items()})
        return Predicted(predicted.charts, predicted.n_tiles, masked, predicted.inputs, predicted.left_out_history)

    return score_scenes(scenes, predict, {**(info or {}), "overlap": overlap}, references, walk, progress)
