import json
import os
import socket
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.metrics import confusion_matrix, f1_score, r2_score
from torch import nn

from seaice_lib import schema
from seaice_lib.data.dataset import PatchDataset
from seaice_lib.data.patches import PatchConfig
from seaice_lib.data.scene import SceneError
from seaice_lib.engine.evaluation import RARE_CLASSES, Evaluation, EvaluationEdited, compare_runs, evaluate_patch_proxy
from seaice_lib.engine.whole_scenes import evaluate_scenes, read_reference
from seaice_lib.models import create_model, to_classes
from seaice_lib.walk import Walk
from tests.charting_inputs import write_reference
from tests.scene_edits import copy_scenes, edit_variable, twin_of

SIC_VALUES = torch.tensor([-3.0, 4.4, 4.6, 99.0])  # -> classes 0, 4, 5, 10
SIC_CLASSES = np.array([0, 4, 5, 10])


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("unet", size="tiny", downsample=2)


def _one_hot(classes: torch.Tensor, chart: str) -> torch.Tensor:
    return 10.0 * nn.functional.one_hot(classes, schema.N_CLASSES[chart]).permute(0, 3, 1, 2).float()


class FixedSic(nn.Module):
    """SIC regression values cycling through ``SIC_VALUES`` pixel by pixel; SOD 2 and FLOE 4."""

    def forward(self, batch):
        b, p = batch["sar"].shape[0], batch["sar"].shape[-1]
        sic = SIC_VALUES[torch.arange(p * p) % 4].reshape(1, 1, p, p).expand(b, 1, p, p)
        fixed = torch.zeros(b, p, p, dtype=torch.int64)
        return {"SIC": sic, "SOD": _one_hot(fixed + 2, "SOD"), "FLOE": _one_hot(fixed + 4, "FLOE")}


class Oracle(nn.Module):
    """One-hot logits of the batch's labels (255 -> 0); SIC as a regression value when asked."""

    def __init__(self, sic_regression: bool = False):
        super().__init__()
        self.sic_regression = sic_regression

    def forward(self, batch):
        out = {c: _one_hot(torch.where(v == 255, 0, v), c) for c, v in batch["labels"].items()}
        if self.sic_regression:
            sic = batch["labels"]["SIC"]
            noise = torch.linspace(-0.45, 0.45, sic.numel()).reshape(sic.shape)
            out["SIC"] = (torch.where(sic == 255, 0, sic).float() + noise)[:, None]
        return out


def official_scores(true: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict[str, float]:
    """The AutoICE scores by sklearn: labelled pixels only (true != 255), R² of SIC classes,
    weighted F1 of SOD and FLOE, in % rounded to 3 decimals; combined (2·SIC + 2·SOD + FLOE) / 5
    of the rounded scores, rounded."""
    scores = {}
    for chart in schema.CHARTS:
        t, p = np.ravel(true[chart]), np.ravel(pred[chart])
        t, p = t[t != 255], p[t != 255]
        value = r2_score(t, p) if chart == "SIC" else f1_score(t, p, average="weighted",
                                                               zero_division=0)
        scores[chart] = round(100 * value, 3)
    scores["combined"] = round((2 * scores["SIC"] + 2 * scores["SOD"] + scores["FLOE"]) / 5, 3)
    return scores


def assert_matches_sklearn(ev: Evaluation, true: dict[str, np.ndarray], pred: dict[str, np.ndarray]):
    """``ev`` holds the confusion matrices, per-class F1 and official scores sklearn gives."""
    assert ev.scores() == pytest.approx(official_scores(true, pred), abs=1e-9)
    for chart in schema.CHARTS:
        t, p = np.ravel(true[chart]), np.ravel(pred[chart])
        t, p = t[t != 255], p[t != 255]
        classes = list(range(schema.N_CLASSES[chart]))
        np.testing.assert_array_equal(ev.confusion[chart], confusion_matrix(t, p, labels=classes))
        np.testing.assert_allclose(ev.per_class(chart)["f1"],
                                   f1_score(t, p, labels=classes, average=None, zero_division=0))


class Echo(nn.Module):
    """One-hot logits of the classes each sample carries as ``pred_<chart>``."""

    def forward(self, batch):
        return {c: _one_hot(batch[f"pred_{c}"], c) for c in schema.CHARTS}


class ListDataset(list):
    """Samples in memory, standing for a :class:`PatchDataset` without augmentation."""

    augment, downsample, store = False, 1, "memory"


def test_official_scores_of_small_label_arrays_worked_out_by_hand():
    # six pixels in two samples of 1 x 3; 255 = no label
    true = {"SIC": [0, 0, 5, 10, 10, 255], "SOD": [0, 0, 4, 4, 5, 255], "FLOE": [0, 255, 5, 5, 6, 6]}
    pred = {"SIC": [0, 1, 5, 9, 10, 3], "SOD": [0, 4, 4, 4, 5, 1], "FLOE": [0, 0, 5, 3, 6, 6]}
    samples = ListDataset(
        {"labels": {c: torch.tensor(true[c][k:k + 3]).reshape(1, 3) for c in schema.CHARTS},
         **{f"pred_{c}": torch.tensor(pred[c][k:k + 3]).reshape(1, 3) for c in schema.CHARTS}}
        for k in (0, 3))
    ev = evaluate_patch_proxy(Echo(), samples, batch_size=1)
    # SIC on the 5 labelled pixels: mean 5, SS_tot = 4 * 25 = 100, SS_res = 1 + 1 = 2: R² = 0.98
    # SOD: F1 open water 2·1/(2 + 1) = 2/3 (support 2), thick first-year 2·2/(2 + 3) = 0.8 (2),
    #      old ice 1 (1): (2·2/3 + 2·0.8 + 1) / 5 = 0.786667
    # FLOE: F1 open water 1 (1), vast 2·1/(2 + 1) = 2/3 (2), bergs 1 (2), medium 0 with no
    #      support: (1 + 2·2/3 + 2) / 5 = 0.866667
    # combined: (2·98 + 2·78.667 + 86.667) / 5 = 88.0002
    assert ev.scores() == {"SIC": 98.0, "SOD": 78.667, "FLOE": 86.667, "combined": 88.0}
    assert_matches_sklearn(ev, true, pred)
    assert ev.n_patches == 2


class NoisyOracle(nn.Module):
    """The batch's labels, shifted to the next class on pixels with (row + col) % 3 == 0;
    unlabelled pixels as class 0. SIC as a regression value (class - 0.4) when asked."""

    def __init__(self, sic_regression: bool):
        super().__init__()
        self.sic_regression = sic_regression

    def forward(self, batch):
        out = {}
        for chart, labels in batch["labels"].items():
            classes = noisy_classes(labels.numpy(), schema.N_CLASSES[chart])
            out[chart] = _one_hot(torch.from_numpy(classes), chart)
            if chart == "SIC" and self.sic_regression:
                out[chart] = torch.from_numpy(classes).float()[:, None] - 0.4
        return out


def noisy_classes(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(..., P, P) labels -> what :class:`NoisyOracle` predicts for them."""
    p = labels.shape[-1]
    wrong = (np.arange(p)[:, None] + np.arange(p)[None, :]) % 3 == 0
    classes = np.where(wrong, (labels + 1) % n_classes, labels)
    return np.where(labels == 255, 0, classes).astype(np.int64)


@pytest.mark.parametrize("sic_regression", [False, True])
def test_patch_evaluation_matches_sklearn_on_the_pooled_labels(patch_store, sic_regression):
    data = PatchDataset(patch_store)
    true = {c: np.stack([data[i]["labels"][c].numpy() for i in range(len(data))])
            for c in schema.CHARTS}
    pred = {c: noisy_classes(v, schema.N_CLASSES[c]) for c, v in true.items()}
    model = NoisyOracle(sic_regression)
    ev = evaluate_patch_proxy(model, data, batch_size=5)
    assert model.training  # evaluation leaves the mode as it was
    assert_matches_sklearn(ev, true, pred)
    assert 0 < ev.scores()["combined"] < 90 and ev.n_patches == len(data)


class PositionModel(nn.Module):
    """Classes that are functions of each pixel's row R and column C on the store grid (from the
    tile's ``origin``): SIC (a regression value) (R + 2C) % 11 - 0.3, SOD (R // 3 + C) % 6,
    FLOE (R·C) % 7."""

    def __init__(self, downsample: int):
        super().__init__()
        self.downsample = downsample

    def forward(self, batch):
        p = batch["sar"].shape[-1]
        rows = (batch["origin"][:, 0, None] // self.downsample + torch.arange(p))[:, :, None]
        cols = (batch["origin"][:, 1, None] // self.downsample + torch.arange(p))[:, None, :]
        sic = ((rows + 2 * cols) % 11).float()[:, None] - 0.3
        return {"SIC": sic, "SOD": _one_hot((rows // 3 + cols) % 6, "SOD"),
                "FLOE": _one_hot((rows * cols) % 7, "FLOE")}


def test_whole_scene_evaluation_matches_sklearn_on_the_scenes_charts(synthetic_dir):
    downsample = 3
    cfg = PatchConfig(patch=16, downsample=downsample, max_steps=3, window_days=30, min_overlap=0.1)
    paths = sorted(synthetic_dir.glob("*_prep.nc"))[2:4]  # open water only, then mixed ice
    ev = evaluate_scenes(PositionModel(downsample), paths, synthetic_dir, cfg, batch_size=4,
                         overlap=0.5)
    true, pred = {c: [] for c in schema.CHARTS}, {c: [] for c in schema.CHARTS}
    for path in paths:
        with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as ds:
            charts = {c: ds[c].values for c in schema.CHARTS}
        h, w = charts["SIC"].shape
        # each 80 m pixel takes its store pixel; lines and samples past the last whole block of
        # ``downsample`` take the last one; every labelled pixel counts, with SAR data or not
        rows = np.minimum(np.arange(h) // downsample, h // downsample - 1)[:, None]
        cols = np.minimum(np.arange(w) // downsample, w // downsample - 1)[None, :]
        expected = {"SIC": (rows + 2 * cols) % 11, "SOD": (rows // 3 + cols) % 6,
                    "FLOE": (rows * cols) % 7}
        for chart in schema.CHARTS:
            true[chart].append(charts[chart].ravel())
            pred[chart].append(expected[chart].ravel())
    true = {c: np.concatenate(v) for c, v in true.items()}
    pred = {c: np.concatenate(v) for c, v in pred.items()}
    assert_matches_sklearn(ev, true, pred)
    assert ev.info["scenes"] == [p.name[:19] for p in paths]


def _assert_scored_with_no_class(ev, true, pred):
    """The official scores of ``pred`` against ``true``, each labelled pixel of no class counted per true class."""
    assert ev.scores() == pytest.approx(official_scores(true, pred), abs=1e-9)
    for chart in schema.CHARTS:
        t, p = true[chart].ravel(), pred[chart].ravel()
        np.testing.assert_array_equal(ev.no_class[chart], np.bincount(t[(t != 255) & (p == 255)],
                                                                      minlength=schema.N_CLASSES[chart]))


def _position_classes(shape, downsample, block):
    """What :class:`PositionModel` charts at 80 m (its classes from the store pixel's position), no class in ``block``."""
    h, w = shape
    rows = np.minimum(np.arange(h) // downsample, h // downsample - 1)[:, None]
    cols = np.minimum(np.arange(w) // downsample, w // downsample - 1)[None, :]
    pred = {"SIC": (rows + 2 * cols) % 11, "SOD": (rows // 3 + cols) % 6, "FLOE": (rows * cols) % 7}
    pred = {c: np.broadcast_to(v, (h, w)).copy() for c, v in pred.items()}
    for v in pred.values():
        v[block] = 255
    return pred


def test_labelled_pixels_whose_sar_is_not_finite_get_no_class_and_count_wrong(synthetic_dir, tmp_path, caplog):
    """An inf HH block: the model would see the reader's 0 there, a made-up input. Those pixels get
    no class (255) and count as sklearn counts a 255 in a submission (F1: a miss; R²: the value 255);
    the scene is named, and the evaluation records the labelled pixels per chart, also in its JSON."""
    downsample = 3
    cfg = PatchConfig(patch=16, downsample=downsample, max_steps=3, window_days=30, min_overlap=0.1)
    folder = copy_scenes(sorted(synthetic_dir.glob("*_prep.nc")), tmp_path / "scenes")
    path = sorted(folder.glob("*_prep.nc"))[3]  # mixed ice
    block = (slice(5, 25), slice(10, 40))
    edit_variable(path, "nersc_sar_primary", lambda v: v.__setitem__(block, np.inf))
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as ds:
        true = {c: ds[c].values for c in schema.CHARTS}
    pred = _position_classes(true["SIC"].shape, downsample, block)
    labelled = {c: int((true[c][block] != 255).sum()) for c in schema.CHARTS}
    assert min(labelled.values()) > 0
    with caplog.at_level("WARNING"):
        ev = evaluate_scenes(PositionModel(downsample), [path], folder, cfg, batch_size=4, overlap=0.5)
    _assert_scored_with_no_class(ev, true, pred)
    for chart in schema.CHARTS:
        t, p = true[chart].ravel(), pred[chart].ravel()
        np.testing.assert_allclose(ev.per_class(chart)["f1"][np.unique(t[t != 255])],
                                   f1_score(t[t != 255], p[t != 255], labels=np.unique(t[t != 255]), average=None))
    assert ev.info["unusable_inputs"] == {path.name[:19]: {"labelled_pixels": labelled,
                                                           "values": {"nersc_sar_primary": 20 * 30}}}
    assert f"{path.name[:19]}: inputs not finite or out of range (nersc_sar_primary 600 values)" in caplog.text
    back = Evaluation.from_json(ev.to_json(tmp_path / "evaluation.json"))
    assert back.scores() == ev.scores() and back.info == ev.info
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(back.no_class[chart], ev.no_class[chart])


def test_pixels_an_earlier_acquisitions_infinite_sar_reaches_get_no_class_and_count_wrong(synthetic_dir, tmp_path,
                                                                                          caplog):
    """The target's history is a copy of it one second earlier (the same grid: store pixel for store
    pixel) with an inf HH block, aligned to the store's 3 x 3 blocks, and a block of the no-data
    value, and NaN HH where its HV has no data. The inf block's pixels get no class and count wrong,
    as the target's own would, named by the earlier file; the no-data block and the NaN outside the
    earlier scene's footprint are no coverage, as outside its swath: those pixels keep their class."""
    downsample = 3
    cfg = PatchConfig(patch=16, downsample=downsample, max_steps=3, window_days=30, min_overlap=0.1)
    folder = tmp_path / "scenes"
    path = copy_scenes(sorted(synthetic_dir.glob("*_prep.nc"))[3:4], folder) / sorted(synthetic_dir.glob("*_prep.nc"))[3].name
    earlier = twin_of(path, folder)
    block, no_data = (slice(6, 24), slice(9, 39)), (slice(30, 36), slice(9, 21))
    with netCDF4.Dataset(earlier) as nc:
        nc.set_auto_mask(False)
        hv_no_data = nc["nersc_sar_secondary"][:] == schema.SAR_FILL  # its swath's edge
    assert hv_no_data.any() and not hv_no_data[block].any()
    edit_variable(earlier, "nersc_sar_primary", lambda v: (v.__setitem__(block, np.inf),
                                                           v.__setitem__(no_data, schema.SAR_FILL),
                                                           v.__setitem__(hv_no_data, np.nan)))
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as ds:
        true = {c: ds[c].values for c in schema.CHARTS}
        assert (ds["nersc_sar_primary"].values[block] != schema.SAR_FILL).all()  # inside the swath
    pred = _position_classes(true["SIC"].shape, downsample, block)
    labelled = {c: int((true[c][block] != 255).sum()) for c in schema.CHARTS}
    assert min(labelled.values()) > 0 and (true["SIC"][no_data] != 255).any()
    with caplog.at_level("WARNING"):
        ev = evaluate_scenes(PositionModel(downsample), [path], folder, cfg, batch_size=4, overlap=0.5)
    _assert_scored_with_no_class(ev, true, pred)
    name = f"nersc_sar_primary of {earlier.name}"
    assert ev.info["unusable_inputs"] == {path.name[:19]: {"labelled_pixels": labelled, "values": {name: 18 * 30}}}
    assert f"{path.name[:19]}: inputs not finite or out of range ({name} 540 values)" in caplog.text


def test_sic_regression_is_rounded_and_clamped(patch_store):
    outputs = {"SIC": torch.tensor([-3.0, 4.4, 4.6, 99.0, 0.49, 10.2]).reshape(1, 1, 2, 3),
               "SOD": torch.tensor([0.0, 5.0, 1.0, 0.0, 0.0, 0.0]).reshape(1, 6, 1, 1)}
    classes = to_classes(outputs)
    assert classes["SIC"].tolist() == [[[0, 4, 5], [10, 0, 10]]]
    assert classes["SOD"].tolist() == [[[1]]]
    # evaluate charts regression outputs through the same rule
    data = PatchDataset(patch_store)
    ev = evaluate_patch_proxy(FixedSic(), data, batch_size=8)
    p = data[0]["sar"].shape[-1]
    sic_map = SIC_CLASSES[np.arange(p * p) % 4].reshape(p, p)
    true = np.stack([data[i]["labels"]["SIC"].numpy() for i in range(len(data))])
    pred = np.broadcast_to(sic_map, true.shape)
    np.testing.assert_array_equal(
        ev.confusion["SIC"], confusion_matrix(true[true != 255], pred[true != 255], labels=range(11)))
    assert set(np.flatnonzero(ev.confusion["SIC"].sum(axis=0))) == set(SIC_CLASSES)
    assert np.flatnonzero(ev.confusion["SOD"].sum(axis=0)).tolist() == [2]


@pytest.mark.parametrize("sic_regression", [False, True])
def test_an_oracle_scores_100_on_every_chart(patch_store, sic_regression):
    ev = evaluate_patch_proxy(Oracle(sic_regression), PatchDataset(patch_store), batch_size=16)
    assert ev.scores() == {"SIC": 100.0, "SOD": 100.0, "FLOE": 100.0, "combined": 100.0}


def test_json_round_trip_and_per_class_names(patch_store, tmp_path):
    data = PatchDataset(patch_store)
    ev = evaluate_patch_proxy(_unet(), data, batch_size=16, info={"model": "unet", "split": "all"})
    path = ev.to_json(tmp_path / "evaluation.json")
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]  # no temporary file left
    back = Evaluation.from_json(path)
    assert back.scores() == ev.scores() and back.n_patches == ev.n_patches == len(data)
    assert back.info == {"model": "unet", "split": "all"}
    assert back.per_class_f1() == ev.per_class_f1()
    for chart in schema.CHARTS:
        np.testing.assert_array_equal(back.confusion[chart], ev.confusion[chart])
        assert back.confusion[chart].dtype == np.int64
    doc = json.loads(path.read_text())
    assert doc["scores"] == ev.scores()
    np.testing.assert_allclose(doc["per_class"]["SOD"]["f1"], ev.per_class("SOD")["f1"])
    # per-class F1 names exactly the classes present in the truth
    oracle = evaluate_patch_proxy(Oracle(), data, batch_size=16)
    for chart in schema.CHARTS:
        present = np.unique(np.stack([data[i]["labels"][chart].numpy() for i in range(len(data))]))
        names = schema.CLASSES[chart].names
        assert oracle.per_class_f1()[chart] == {names[k]: 1.0 for k in present if k != 255}
    assert "Open water" in oracle.per_class_f1()["SOD"]


def test_an_augmenting_dataset_is_refused(patch_store):
    with pytest.raises(ValueError, match="without augmentation"):
        evaluate_patch_proxy(_unet(), PatchDataset(patch_store, augment=True))


def _ddp_worker(rank: int, port: int, state: str, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = create_model("unet", size="tiny", downsample=2)
        model.load_state_dict(torch.load(state))
        evaluate_patch_proxy(model, PatchDataset(store), batch_size=4).to_json(f"{out}/rank{rank}.json")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_evaluate_shards_and_agree_with_one_process(patch_store, tmp_path):
    model = _unet()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    single = evaluate_patch_proxy(model, PatchDataset(patch_store), batch_size=4)
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(_free_port(), str(tmp_path / "state.pt"), str(patch_store), str(tmp_path)),
        nprocs=2, start_method="spawn")
    for rank in range(2):
        got = Evaluation.from_json(tmp_path / f"rank{rank}.json")
        assert got.n_patches == single.n_patches
        for chart in schema.CHARTS:  # summed over both shards: each patch counted once
            np.testing.assert_array_equal(got.confusion[chart], single.confusion[chart])


def _evaluation(sod_right: dict[int, float], info: dict) -> Evaluation:
    """SIC and FLOE perfect; SOD class k (100 pixels each) right in ``sod_right[k]`` of its pixels
    (the rest predicted as open water), other classes all right."""
    sod = np.zeros((6, 6), np.int64)
    for k in range(6):
        right = int(100 * sod_right.get(k, 1.0))
        sod[k, k] += right
        sod[k, 0] += 100 - right
    confusion = {"SIC": np.diag(np.full(11, 50)), "SOD": sod, "FLOE": np.diag(np.full(7, 50))}
    return Evaluation(confusion, n_patches=3, info=info)


def test_rare_classes_follow_the_real_training_shares():
    assert RARE_CLASSES == {"SOD": (1, 2, 3), "FLOE": (1, 2, 3, 6)}  # under 5 % of real pixels
    ev = _evaluation({1: 0.0, 2: 0.5}, {})
    # F1 of new ice 0 (none right), young ice 2·50/(100 + 50) = 2/3, thin first-year ice 1
    assert ev.rare_f1("SOD") == pytest.approx(100 * (0 + 2 / 3 + 1) / 3)
    assert ev.rare_f1("FLOE") == 100.0
    absent = Evaluation({**ev.confusion, "FLOE": np.diag([50, 0, 0, 0, 50, 50, 0])})
    assert np.isnan(absent.rare_f1("FLOE"))  # no rare class in the truth: undefined, not 0


SAR_UNET = {"name": "unet", "size": "tiny", "kwargs": {"grid2km": False}, "modalities": ["sar"]}


def _scored_run(root: Path, name: str, ev: Evaluation, scene: Path, spec: dict = SAR_UNET) -> Path:
    """Run folder ``root/name`` with a model.pt holding the model ``spec`` alone (and the run's
    name: each its own bytes) and ``ev`` written as its evaluation of those weights on ``scene`` as
    it is now; the evaluation.json."""
    import hashlib

    from seaice_lib.engine import checkpoints

    (root / name).mkdir()
    checkpoints.save({"spec": spec, "run": name}, root / name / "model.pt")
    st = scene.stat()
    ev.info |= {"weights_sha256": hashlib.sha256((root / name / "model.pt").read_bytes()).hexdigest(),
                "input_files": [{"file": str(scene.absolute()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                                 "sha256": hashlib.sha256(scene.read_bytes()).hexdigest()}]}
    return ev.to_json(root / name / "evaluation.json")


def test_compare_runs_ranks_runs_by_combined_score(tmp_path):
    scene = tmp_path / "scene_prep.nc"
    scene.write_bytes(b"a scene")
    runs = tmp_path / "runs"
    runs.mkdir()
    _scored_run(runs, "a", _evaluation({1: 0.2}, {"model": "unet", "steps": 10}), scene)
    # RT20-R1: an evaluation of an earlier commit recorded the config's modalities, not those the model reads
    _scored_run(runs, "b", _evaluation({}, {"model": "tsvit_v3", "steps": 20, "n_params": 5,
                                            "modalities": ["sar", "amsr2", "era5"]}), scene,
                {"name": "tsvit_v3", "size": "tiny", "kwargs": {}, "modalities": ["sar", "amsr2"]})
    (runs / "not_a_run").mkdir()
    table = compare_runs(runs)
    assert list(table["run"]) == ["b", "a"] and list(table["model"]) == ["tsvit_v3", "unet"]
    # RT18-R23: not two seeds of one model; each what its weights' model reads, as export and predict give it,
    # SAR as a sequence where it reads the earlier acquisitions (RT21-R6)
    assert list(table["inputs"]) == ["sar sequence + amsr2", "sar"]
    # run a: SOD F1 open water 2·100/(100 + 180) = 5/7, new ice 2·20/(100 + 20) = 1/3, others 1:
    # (5/7 + 1/3 + 4) / 6 = 84.127 %; combined (2·100 + 2·84.127 + 100) / 5 = 93.651
    assert table.loc[0, "combined"] == 100.0 and table.loc[1, "combined"] == 93.651
    assert table.loc[1, "SOD"] == 84.127
    assert table.loc[1, "SOD rare F1"] < 100.0 == table.loc[0, "SOD rare F1"]
    assert list(table["steps"]) == [20, 10] and table.loc[0, "n_params"] == 5
    assert compare_runs(runs / "not_a_run").empty
    with pytest.raises(ValueError, match=r"runs/mistyped: no such folder of runs"):
        compare_runs(runs / "mistyped")


def test_compare_runs_leaves_out_by_name_a_run_whose_evaluation_does_not_score_its_model(tmp_path):
    """RT13-R1: the table of runs (notebook 05's) reads each run as `seaice figures` does
    (Run.model_evaluation): another run's evaluation.json copied in, one edited with its
    content_sha256 dropped, one of a scene changed since, a run without one: each named, left out."""
    scene = tmp_path / "scene_prep.nc"
    scene.write_bytes(b"a scene")
    runs = tmp_path / "runs"
    runs.mkdir()
    good = _scored_run(runs, "a", _evaluation({1: 0.2}, {"model": "unet"}), scene)
    _scored_run(runs, "b", _evaluation({}, {"model": "unet"}), scene)
    (runs / "b" / "evaluation.json").write_bytes(good.read_bytes())  # a's scores, a's weights
    edited = _scored_run(runs, "c", _evaluation({1: 0.0, 2: 0.0}, {"model": "unet"}), scene)
    doc = json.loads(edited.read_text())
    del doc["content_sha256"]  # as an evaluation written before they recorded it: perfect matrices then
    doc["confusion"] = {c: np.diag(np.asarray(m).sum(1)).tolist() for c, m in doc["confusion"].items()}
    edited.write_text(json.dumps(doc))
    other_scene = tmp_path / "other_prep.nc"
    other_scene.write_bytes(b"another scene")
    _scored_run(runs, "d", _evaluation({}, {"model": "unet"}), other_scene)
    other_scene.write_bytes(b"another scene, re-delivered")
    (runs / "e").mkdir()
    (runs / "e" / "config.yaml").write_text("store: s\nout_dir: e\n")  # still training
    walk = Walk("runs", report=lambda line: None)
    table = compare_runs(runs, walk)
    assert list(table["run"]) == ["a"] and table.loc[0, "combined"] < 100.0
    assert [line.split(": ")[0] for line in walk.failed] == [str(runs / n / "evaluation.json") for n in "bcd"] + \
        [str(runs / "e")]
    b, c, d, e = walk.failed
    assert "scores weights" in b and "not the run's model.pt" in b
    assert "records no content_sha256" in c
    assert f"scored against {other_scene.absolute()}" in d and "changed since" in d
    assert "no evaluation.json" in e
    with pytest.raises(ValueError, match="b/evaluation.json: scores weights"):
        compare_runs(runs)  # without a walk: the first such run stops it


def _written(tmp_path) -> tuple[Evaluation, dict, Path]:
    """An evaluation with every field to_json writes (no_class too), written to run ``a``'s
    ``evaluation.json`` in ``tmp_path``; it, the document and the file."""
    ev = _evaluation({1: 0.5}, {"model": "unet", "run": "a", "val_scenes": ["20180101T000000_dmi"],
                                "weights_sha256": "ab" * 32})
    ev.confusion["FLOE"] = np.diag([50, 0, 0, 0, 50, 50, 0])
    ev.no_class = {"SOD": np.arange(6)}
    path = ev.to_json(_run_dir(tmp_path, "a"))
    return ev, json.loads(path.read_text()), path


def _changed(value):
    """``value`` (parsed JSON) with its first leaf changed: a number + 1, a string + "x", null 0."""
    if isinstance(value, dict):
        first = next(iter(value))
        return {**value, first: _changed(value[first])}
    if isinstance(value, list):
        return [_changed(value[0]), *value[1:]]
    if isinstance(value, str):
        return value + "x"
    return 0 if value is None else value + 1


def test_an_evaluation_edited_in_any_field_since_it_was_written_is_refused_by_name(tmp_path):
    """R2: to_json records the SHA-256 of what it writes; any field edited since (scores, matrices,
    counts, info, provenance, the hash itself) is refused naming the file, not read as scores."""
    ev, doc, path = _written(tmp_path)
    fields = [k for k in doc if k != "content_sha256"]
    assert sorted(fields) == ["confusion", "info", "made_by", "n_patches", "no_class", "per_class", "scores"]
    back = Evaluation.from_json(path)
    assert back.content_checked and back.scores() == ev.scores()
    for edit in [*({**doc, k: _changed(doc[k])} for k in fields), {**doc, "content_sha256": "0" * 64},
                 {**doc, "content_sha256": None}, {**doc, "confusion": {**doc["confusion"], "SOD": np.diag(
                     np.asarray(doc["confusion"]["SOD"]).sum(1)).tolist()}}]:
        path.write_text(json.dumps(edit, indent=1))
        with pytest.raises(EvaluationEdited, match=f"^{path}: edited since it was written"):
            Evaluation.from_json(path)
    with pytest.raises(EvaluationEdited):
        compare_runs(tmp_path)  # the table of runs reads it the same way


def test_an_evaluation_reformatted_by_json_tools_is_still_read(tmp_path):
    """R2: a reformatting that keeps every value (indentation, key order, 1.0 spelt 1 as jq writes
    it) is no edit."""
    ev, doc, path = _written(tmp_path)

    def jq(value):  # as `jq .` writes numbers: integral floats as integers, NaN as null
        if isinstance(value, dict):
            return {k: jq(v) for k, v in reversed(value.items())}
        if isinstance(value, list):
            return [jq(v) for v in value]
        if isinstance(value, float):
            return None if value != value else int(value) if value.is_integer() else value
        return value

    assert '"SIC": 100.0' in path.read_text()  # jq writes 100
    for reformatted in (json.dumps(jq(doc), indent=2), json.dumps(doc, separators=(",", ":"), sort_keys=True)):
        assert reformatted != path.read_text()
        path.write_text(reformatted)
        back = Evaluation.from_json(path)
        assert back.scores() == ev.scores() and back.content_checked
        for chart in schema.CHARTS:
            np.testing.assert_array_equal(back.confusion[chart], ev.confusion[chart])


def test_an_evaluation_written_before_evaluations_recorded_their_content_is_read_unchecked(tmp_path):
    _, doc, path = _written(tmp_path)
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "content_sha256"}))
    assert not Evaluation.from_json(path).content_checked


def _run_dir(root, name):
    (root / name).mkdir()
    return root / name / "evaluation.json"


@pytest.mark.parametrize("dtype, no_label, message", [
    (np.int16, -1, r"SOD: classes \[-1\] outside 0..5 and 255"),
    (np.float32, np.nan, "SOD: holds NaN, neither a class nor the no-label value 255"),
    (np.uint8, 7, "SOD: chart_fill_value 7: the dataset's no-label value is 255")])
def test_a_reference_whose_no_label_is_not_the_declared_255_is_refused_by_name(tmp_path, dtype, no_label, message):
    """Reference files declare chart_fill_value 255: another no-label value (-1 in int16, NaN in a
    float file, or a declared 7) is not read as "no label" but fails, naming the file and the chart."""
    gaps = np.arange(12).reshape(3, 4) % 3 == 0
    charts = {c: np.where(gaps, no_label if c == "SOD" else 255, 1).astype(dtype) for c in schema.CHARTS}
    path = write_reference(charts, tmp_path / "ref.nc", dtype)
    if no_label == 7:  # the file declares 7 SOD's fill value
        with netCDF4.Dataset(path, "a") as nc:
            nc["SOD"].chart_fill_value = 7
    with pytest.raises(SceneError, match=f"ref.nc: {message}"):
        read_reference(path, (3, 4))
