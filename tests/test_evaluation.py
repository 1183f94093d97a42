import json
import os
import socket

import numpy as np
import pytest
import torch
from torch import nn

from seaice_lib import schema
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.engine.evaluation import RARE_CLASSES, Evaluation, compare_runs, evaluate
from seaice_lib.engine.metrics import autoice_scores, confusion_matrix
from seaice_lib.models import create_model, to_classes

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


def test_evaluate_equals_the_official_scores_computed_by_hand(patch_store):
    data = PatchDataset(patch_store)
    model = _unet().eval()
    true, pred = {c: [] for c in schema.CHARTS}, {c: [] for c in schema.CHARTS}
    with torch.no_grad():
        for start in range(0, len(data), 7):
            batch = collate([data[i] for i in range(start, min(start + 7, len(data)))])
            outputs = model(batch)
            for chart in schema.CHARTS:
                true[chart].append(batch["labels"][chart].numpy())
                pred[chart].append(outputs[chart].argmax(dim=1).numpy())
    model.train()
    ev = evaluate(model, data, batch_size=5)
    assert model.training  # evaluation leaves the mode as it was
    assert ev.scores() == autoice_scores(true, pred)
    for chart in schema.CHARTS:
        expected = confusion_matrix(np.concatenate(true[chart]), np.concatenate(pred[chart]), chart)
        np.testing.assert_array_equal(ev.confusion[chart], expected)
    assert ev.n_patches == len(data)


def test_sic_regression_is_rounded_and_clamped(patch_store):
    outputs = {"SIC": torch.tensor([-3.0, 4.4, 4.6, 99.0, 0.49, 10.2]).reshape(1, 1, 2, 3),
               "SOD": torch.tensor([0.0, 5.0, 1.0, 0.0, 0.0, 0.0]).reshape(1, 6, 1, 1)}
    classes = to_classes(outputs)
    assert classes["SIC"].tolist() == [[[0, 4, 5], [10, 0, 10]]]
    assert classes["SOD"].tolist() == [[[1]]]
    # evaluate charts regression outputs through the same rule
    data = PatchDataset(patch_store)
    ev = evaluate(FixedSic(), data, batch_size=8)
    p = data[0]["sar"].shape[-1]
    sic_map = SIC_CLASSES[np.arange(p * p) % 4].reshape(p, p)
    expected = sum(confusion_matrix(data[i]["labels"]["SIC"].numpy(), sic_map, "SIC")
                   for i in range(len(data)))
    np.testing.assert_array_equal(ev.confusion["SIC"], expected)
    assert set(np.flatnonzero(ev.confusion["SIC"].sum(axis=0))) == set(SIC_CLASSES)
    assert np.flatnonzero(ev.confusion["SOD"].sum(axis=0)).tolist() == [2]


@pytest.mark.parametrize("sic_regression", [False, True])
def test_an_oracle_scores_100_on_every_chart(patch_store, sic_regression):
    ev = evaluate(Oracle(sic_regression), PatchDataset(patch_store), batch_size=16)
    assert ev.scores() == {"SIC": 100.0, "SOD": 100.0, "FLOE": 100.0, "combined": 100.0}


def test_json_round_trip_and_per_class_names(patch_store, tmp_path):
    data = PatchDataset(patch_store)
    ev = evaluate(_unet(), data, batch_size=16, info={"model": "unet", "split": "all"})
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
    oracle = evaluate(Oracle(), data, batch_size=16)
    for chart in schema.CHARTS:
        support = data.histograms[:, schema.HISTOGRAM_SLICES[chart]].sum(axis=0)
        names = schema.CLASSES[chart].names
        assert oracle.per_class_f1()[chart] == {names[k]: 1.0 for k in np.flatnonzero(support)}
    assert "Open water" in oracle.per_class_f1()["SOD"]


def test_an_augmenting_dataset_is_refused(patch_store):
    with pytest.raises(ValueError, match="without augmentation"):
        evaluate(_unet(), PatchDataset(patch_store, augment=True))


def _ddp_worker(rank: int, port: int, state: str, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = create_model("unet", size="tiny", downsample=2)
        model.load_state_dict(torch.load(state))
        evaluate(model, PatchDataset(store), batch_size=4).to_json(f"{out}/rank{rank}.json")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_evaluate_shards_and_agree_with_one_process(patch_store, tmp_path):
    model = _unet()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    single = evaluate(model, PatchDataset(patch_store), batch_size=4)
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
    f1 = ev.per_class("SOD")["f1"]
    assert ev.rare_f1("SOD") == pytest.approx(100 * (f1[1] + f1[2] + f1[3]) / 3)
    assert f1[1] == 0 and f1[3] == 1
    assert ev.rare_f1("FLOE") == 100.0
    absent = Evaluation({**ev.confusion, "FLOE": np.diag([50, 0, 0, 0, 50, 50, 0])})
    assert np.isnan(absent.rare_f1("FLOE"))  # no rare class in the truth: undefined, not 0


def test_compare_runs_ranks_runs_by_combined_score(tmp_path):
    _evaluation({1: 0.2}, {"model": "unet", "steps": 10}).to_json(_run_dir(tmp_path, "a"))
    _evaluation({}, {"model": "tsvit_v2", "steps": 20, "n_params": 5}).to_json(_run_dir(tmp_path, "b"))
    (tmp_path / "not_a_run").mkdir()
    table = compare_runs(tmp_path)
    assert list(table["run"]) == ["b", "a"] and list(table["model"]) == ["tsvit_v2", "unet"]
    assert table.loc[0, "combined"] == 100.0 and table.loc[1, "combined"] < 100.0
    assert table.loc[1, "SOD rare F1"] < 100.0 == table.loc[0, "SOD rare F1"]
    assert list(table["steps"]) == [20, 10] and table.loc[0, "n_params"] == 5
    assert compare_runs(tmp_path / "not_a_run").empty


def _run_dir(root, name):
    (root / name).mkdir()
    return root / name / "evaluation.json"
