"""Per-pixel floors: gradient boosting on each store pixel's own inputs, the score every network must beat.

Features come from the store's own path (``co_register``, the 2 km cell rule); a floor is one
HistGradientBoosting model per chart, scored on whole scenes at 80 m as networks are. What each
feature set holds and why floors matter: docs/models.md, "Per-pixel floors".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import schema
from ..data.patches import PatchConfig
from ..data.scene import Scene
from ..data.sequences import SceneInfo, SceneSequence, build_sequences, co_register
from ..grid import block_upsample, cell_index, patch_cells
from ..walk import Walk
from .evaluation import Evaluation
from .whole_scenes import Predicted, score_scenes

HH, HV, INCIDENCE = schema.SAR_GRID_VARIABLES[:3]
SAR_FEATURES = (HH, HV, INCIDENCE, f"{HH}_mean3x3", f"{HH}_std3x3", f"{HV}_mean3x3", f"{HV}_std3x3")
HISTORY_FEATURES = (f"previous_{HH}", f"previous_{HV}", "previous_covered")
AMSR2_FEATURES = tuple(schema.AMSR2_CHANNELS)
ERA5_FEATURES = tuple(schema.ERA5_VARIABLES)
ALL_FEATURES = SAR_FEATURES + HISTORY_FEATURES + AMSR2_FEATURES + ERA5_FEATURES
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "sar": SAR_FEATURES,
    "sar_history": SAR_FEATURES + HISTORY_FEATURES,
    "sar_amsr2_era5": SAR_FEATURES + AMSR2_FEATURES + ERA5_FEATURES,
    "amsr2": AMSR2_FEATURES,
    "era5": ERA5_FEATURES,
    "all": ALL_FEATURES,
}


class SceneFeatures(NamedTuple):
    """One target scene on the store grid (h = H // downsample, w likewise)."""

    scene_id: str
    path: Path
    shape: tuple[int, int]  # (H, W) of the scene at 80 m
    downsample: int
    names: tuple[str, ...]
    features: np.ndarray  # (F, h, w) float32, NaN where a value is missing
    valid: np.ndarray  # (h, w) bool: the target's SAR covers the pixel (the store's sar_mask)
    labels: np.ndarray  # (3, h, w) uint8 SIC, SOD, FLOE; 255 = no label or no SAR data
    inputs: tuple[Path, ...]  # the scene files of its sequence, oldest first, the target last
    # (H, W) bool at 80 m: pixels that input values masked as not finite or out of range reach (the
    # target's or an earlier step's), and the count per variable ("NAME" or "NAME of FILE"); None: none
    masked: tuple[np.ndarray, dict[str, int]] | None = None

    def select(self, feature_set: str | Sequence[str]) -> SceneFeatures:
        """The same scene with only the features of ``feature_set`` (a name of
        :data:`FEATURE_SETS` or a list of feature names), in that order."""
        names = feature_names(feature_set)
        index = [self.names.index(n) for n in names]
        return self._replace(names=names, features=self.features[index])


def feature_names(feature_set: str | Sequence[str]) -> tuple[str, ...]:
    """The feature names of a set of :data:`FEATURE_SETS`, or a list of names, checked."""
    if isinstance(feature_set, str):
        if feature_set not in FEATURE_SETS:
            raise ValueError(f"feature set must be one of {list(FEATURE_SETS)}, not {feature_set!r}")
        return FEATURE_SETS[feature_set]
    unknown = [n for n in feature_set if n not in ALL_FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}")
    return tuple(feature_set)


def window_stats(values: np.ndarray, valid: np.ndarray, size: int = 3
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (population) of the valid pixels of (h, w) ``values`` in the
    ``size`` x ``size`` window around each pixel; NaN where the window holds no valid pixel."""
    r = size // 2
    v = np.where(valid, values, 0.0).astype(np.float64)
    padded = [np.pad(a, r) for a in (v, v * v, valid.astype(np.float64))]
    h, w = values.shape
    s, s2, n = (sum(a[i:i + h, j:j + w] for i in range(size) for j in range(size)) for a in padded)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        var = np.where(n > 0, s2 / n - mean * mean, np.nan)
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 0)).astype(np.float32)


def grid2km_on_store(scene: Scene, variables: Sequence[str], downsample: int) -> np.ndarray:
    """(C, h, w): each store pixel takes the 2 km cell under its sample pixel (the cell rule, with
    the whole scene as one patch at origin 0; pixels past the 2 km grid's end take its last cell)."""
    block, _ = scene.read_grid2km(tuple(variables))  # the whole scene: cells from (0, 0)
    h, w = scene.shape[0] // downsample, scene.shape[1] // downsample
    _, offset = patch_cells(0, downsample)
    rows = cell_index(offset, np.arange(h), downsample, n_cells=block.shape[1])
    cols = cell_index(offset, np.arange(w), downsample, n_cells=block.shape[2])
    return block[:, rows[:, None], cols[None, :]].astype(np.float32)


def scene_features(seq: SceneSequence, downsample: int, method: str = "bilinear",
                   feature_set: str | Sequence[str] = "all") -> SceneFeatures:
    """The features of ``seq``'s target on the store grid at ``downsample`` (see :data:`FEATURE_SETS`).

    SAR comes from ``co_register`` (the store's path, HH, HV and incidence angle), NaN where the
    step is masked; the history is the step before the target, with a 0/1 flag of its coverage
    (all 0 for a sequence of one); AMSR2 and ERA5 are the 2 km cell under each sample pixel.
    """
    co = co_register(seq, downsample, (HH, HV, INCIDENCE), method)
    with Scene(seq.target.path) as scene:
        masked, counts = scene.masked_inputs(tuple(dict.fromkeys(schema.SAR_VARIABLES + (HH, HV, INCIDENCE))))
    values = dict(counts)
    for step in co.masked_history:
        masked |= block_upsample(step.pixels, downsample, seq.target.shape)
        values |= {f"{name} of {step.path.name}": n for name, n in step.values.items()}
    valid = co.sar_mask[-1]
    target = np.where(valid[None], co.sar[-1], np.nan).astype(np.float32)
    texture: list[np.ndarray] = []
    for channel in (0, 1):
        texture.extend(window_stats(co.sar[-1, channel], valid))
    if len(seq) > 1:
        covered = co.sar_mask[-2]
        previous = np.where(covered[None], co.sar[-2, :2], np.nan).astype(np.float32)
    else:
        covered = np.zeros_like(valid)
        previous = np.full((2,) + valid.shape, np.nan, np.float32)
    with Scene(seq.target.path) as scene:
        amsr2 = grid2km_on_store(scene, schema.AMSR2_CHANNELS, downsample)
        era5 = grid2km_on_store(scene, schema.ERA5_VARIABLES, downsample)
    features = np.concatenate([target, np.stack(texture), previous, covered[None].astype(np.float32),
                               amsr2, era5]).astype(np.float32)
    out = SceneFeatures(seq.target.scene_id, seq.target.path, seq.target.shape, downsample,
                        ALL_FEATURES, features, valid, co.labels, tuple(step.path for step in seq.steps),
                        (masked, values) if values else None)
    return out.select(feature_set) if feature_set != "all" else out


def target_sequences(targets: Iterable[str | Path], scenes: Iterable[str | Path],
                     cfg: PatchConfig) -> list[SceneSequence]:
    """The sequence of each of ``targets`` as the store builds it (``cfg``'s window, steps and
    overlap), its earlier steps drawn from ``scenes`` (which may include the targets)."""
    target_paths = [Path(p).resolve() for p in targets]
    infos = {p: SceneInfo.read(p) for p in sorted({Path(s).resolve() for s in scenes} | set(target_paths))}
    sequences = {s.target.path: s for s in build_sequences(list(infos.values()), cfg.window_days,
                                                           cfg.min_overlap, cfg.max_steps)}
    return [sequences[p] for p in target_paths]


class PixelFloor:
    """Per-pixel gradient boosting: SIC as regression (rounded, clipped to 0..10), SOD and FLOE as
    classification, each trained on the pixels labelled for it.

    Args:
        feature_set: a name of :data:`FEATURE_SETS` or a list of feature names.
        max_pixels: training pixels drawn (without replacement, seeded) from the labelled,
            SAR-valid pixels of the training scenes.
        max_iter, learning_rate, max_leaf_nodes: of each sklearn HistGradientBoosting model
            (no early stopping).
        seed: draws the pixels and seeds every model.
        threads: OpenMP threads for fitting and predicting (None: sklearn's default, every core).
            On a busy machine one thread is far faster: OpenMP threads wait on each other.
    """

    def __init__(self, feature_set: str | Sequence[str] = "all", max_pixels: int = 200_000,
                 max_iter: int = 200, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 seed: int = 0, threads: int | None = None):
        self.feature_set = feature_set if isinstance(feature_set, str) else "custom"
        self.names = feature_names(feature_set)
        self.max_pixels, self.seed, self.threads = max_pixels, seed, threads
        self.params = {"max_iter": max_iter, "learning_rate": learning_rate,
                       "max_leaf_nodes": max_leaf_nodes, "early_stopping": False,
                       "random_state": seed}
        self.models: dict[str, Any] = {}  # per chart: the one class seen (an int), or a fitted sklearn model
        self.n_train: dict[str, int] = {}

    def fit(self, scenes: Iterable[SceneFeatures]) -> PixelFloor:
        """Fit on the labelled (any chart), SAR-valid pixels of ``scenes``, ``max_pixels`` of them."""
        xs, ys = [], []
        for sf in scenes:
            sf = sf.select(self.names)
            keep = sf.valid & (sf.labels != schema.CHART_FILL).any(axis=0)
            xs.append(sf.features[:, keep].T)
            ys.append(sf.labels[:, keep].T)
        if not xs:
            raise ValueError("no training scenes")
        x, y = np.concatenate(xs), np.concatenate(ys)
        if len(x) > self.max_pixels:
            pick = np.sort(np.random.default_rng(self.seed).choice(len(x), self.max_pixels,
                                                                   replace=False))
            x, y = x[pick], y[pick]
        return self.fit_pixels(x, y)

    def fit_pixels(self, x: np.ndarray, labels: np.ndarray) -> PixelFloor:
        """Fit on (n, F) features and (n, 3) SIC, SOD, FLOE labels (255 = no label), all pixels."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"features must be (n, {len(self.names)}), not {x.shape}")
        self.models, self.n_train = {}, {}
        with self._thread_limit():
            for i, chart in enumerate(schema.CHARTS):
                self._fit_chart(chart, x, labels[:, i])
        return self

    def _thread_limit(self):
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        return nullcontext() if self.threads is None else threadpool_limits(self.threads, "openmp")

    def _fit_chart(self, chart: str, x: np.ndarray, labels: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        labelled = labels != schema.CHART_FILL
        y = labels[labelled].astype(np.int64)
        self.n_train[chart] = int(labelled.sum())
        if len(y) == 0:
            raise ValueError(f"{chart}: no labelled training pixels")
        if chart == "SIC":
            model = HistGradientBoostingRegressor(**self.params)
        elif len(np.unique(y)) == 1:
            self.models[chart] = int(y[0])  # one class seen: predict it everywhere
            return
        else:
            model = HistGradientBoostingClassifier(**self.params)
        self.models[chart] = model.fit(x[labelled], y)

    def predict_pixels(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(n, F) features -> ``{chart: (n,) uint8}`` classes."""
        if not self.models:
            raise RuntimeError("fit the floor first")
        x = np.asarray(x, np.float32)
        out = {}
        with self._thread_limit():
            for chart, model in self.models.items():
                if isinstance(model, int):
                    out[chart] = np.full(len(x), model, np.uint8)
                elif chart == "SIC":
                    top = schema.N_CLASSES[chart] - 1
                    out[chart] = np.clip(np.rint(model.predict(x)), 0, top).astype(np.uint8)
                else:
                    out[chart] = model.predict(x).astype(np.uint8)
        return out

    def predict(self, features: np.ndarray | SceneFeatures) -> dict[str, np.ndarray]:
        """(F, h, w) features (or a :class:`SceneFeatures`, its features selected) ->
        ``{chart: (h, w) uint8}`` on every pixel, SAR-valid or not."""
        if isinstance(features, SceneFeatures):
            features = features.select(self.names).features
        f, h, w = features.shape
        if f != len(self.names):
            raise ValueError(f"expected {len(self.names)} features {self.names}, got {f}")
        flat = self.predict_pixels(features.reshape(f, -1).T)
        return {c: v.reshape(h, w) for c, v in flat.items()}


def evaluate_floor(floor: PixelFloor, scenes: Iterable[SceneFeatures], info: Mapping | None = None,
                   walk: Walk | None = None) -> Evaluation:
    """Score ``floor`` on whole labelled scenes at 80 m through the networks' own loop
    (:func:`~.scenes.score_scenes`): store-grid classes brought to 80 m by ``grid.block_upsample``
    and compared with the scene's charts on every labelled pixel (where SAR has no data too). As for
    the networks, pixels that input values masked as not finite or out of range reach get no class
    and count wrong (``SceneFeatures.masked``)."""
    by_path = {sf.path: sf for sf in scenes}

    def predict(path: Path) -> Predicted:
        sf = by_path[path]
        return Predicted({c: block_upsample(v, sf.downsample, sf.shape) for c, v in floor.predict(sf).items()}, 0,
                         sf.masked, sf.inputs)

    return score_scenes(list(by_path), predict,
                        {**(info or {}), "model": f"floor_{floor.feature_set}", "feature_set": floor.feature_set,
                         "features": list(floor.names), "n_train_pixels": dict(floor.n_train)}, walk=walk)
