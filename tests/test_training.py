import csv
import json
import math
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from seaice_lib import schema
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.data.splits import split_scenes
from seaice_lib.engine.evaluation import Evaluation, evaluate
from seaice_lib.engine.scenes import evaluate_scenes
from seaice_lib.engine.losses import LossConfig
from seaice_lib.models import model_names
from seaice_lib.engine.training import (METRICS_COLUMNS, Distributed, TrainConfig, Trainer, build_optimizer,
                                        build_scheduler, load_model, lr_factor, main, parse_overrides, train)


def _cfg(store, out_dir, **overrides) -> TrainConfig:
    base = dict(store=str(store), out_dir=str(out_dir), model="unet", model_size="tiny", batch_size=4,
                steps=6, steps_per_epoch=3, warmup_steps=2, lr=1e-2, checkpoint_every=0, augment=False,
                balance_power=0.0, val_fraction=0.3, eval_batch_size=64, device="cpu", progress=False)
    return TrainConfig(**(base | overrides))


def _weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def _rows(run_dir):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _deterministic(rows):
    """CSV rows without the wall-clock columns."""
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")} for r in rows]


def _signal_at(step, sig):
    def hook(s, model):
        if s == step:
            os.kill(os.getpid(), sig)
    return hook


@pytest.fixture(scope="module")
def reference(patch_store, tmp_path_factory):
    """Uninterrupted 6-step runs (plain, and augmented with balanced draws): {variant: (cfg, summary)}."""
    out = {}
    for name, extra in (("plain", {}), ("augmented", {"augment": True, "balance_power": 0.5})):
        cfg = _cfg(patch_store, tmp_path_factory.mktemp("ref") / name, **extra)
        out[name] = (cfg, train(cfg))
    return out


@pytest.mark.parametrize("variant, stop_at, sig", [("plain", 4, signal.SIGTERM),
                                                   ("augmented", 3, signal.SIGUSR1),
                                                   ("augmented", 5, signal.SIGTERM)])
def test_interrupted_and_resumed_run_is_bit_identical(reference, tmp_path, variant, stop_at, sig):
    ref_cfg, ref_summary = reference[variant]
    assert ref_summary["status"] == "completed" and ref_summary["steps"] == 6
    cfg = TrainConfig.from_dict(ref_cfg.to_dict() | {"out_dir": str(tmp_path / "run")})
    before = signal.getsignal(sig)
    first = train(cfg, on_step=_signal_at(stop_at, sig))
    assert signal.getsignal(sig) is before  # handlers restored
    run = tmp_path / "run"
    assert first["status"] == "preempted" and first["steps"] == stop_at
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == stop_at
    assert not (run / "model.pt").exists() and not (run / "evaluation.json").exists()
    resumed_steps = []
    second = train(cfg, on_step=lambda s, m: resumed_steps.append(s))
    assert second["status"] == "completed" and resumed_steps == list(range(stop_at + 1, 7))
    ref_dir = Path(ref_cfg.out_dir)
    ref, got = _weights(ref_dir), _weights(run)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert _deterministic(_rows(run)) == _deterministic(_rows(ref_dir))
    assert second["scores"] == ref_summary["scores"]


def _val_paths(synthetic_dir, val):
    return [next(synthetic_dir.glob(f"{sid}*_prep.nc")) for sid in val]


def test_run_directory_metrics_and_load_model(reference, patch_store, synthetic_dir):
    cfg, summary = reference["plain"]
    run = Path(cfg.out_dir)
    rows = _rows(run)
    assert list(rows[0]) == METRICS_COLUMNS
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "3"), ("1", "6")]
    assert all(math.isfinite(float(r[c])) for r in rows for c in METRICS_COLUMNS)
    assert TrainConfig.from_yaml(run / "config.yaml") == cfg
    ev = Evaluation.from_json(run / "evaluation.json")
    _, val = split_scenes(patch_store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
    proxy = ev.info.pop("patch_proxy")
    assert ev.info == {"model": "unet", "run": run.name, "steps": 6, "n_params": summary["n_params"],
                       "train_seconds": summary["train_seconds"], "val_scenes": val, "scenes": val,
                       "scope": "full scenes at 80 m", "overlap": 0.25}
    assert summary["val_scenes"] == val
    # evaluation.json and the summary: the official metric on the whole validation scenes at 80 m,
    # as evaluate_scenes computes it afresh from model.pt (the store recorded where the scenes are)
    assert ev.scores() == summary["scores"]
    fresh = evaluate_scenes(load_model(run / "model.pt"), _val_paths(synthetic_dir, val), synthetic_dir,
                            patch_store, batch_size=cfg.eval_batch_size)
    assert fresh.scores() == ev.scores() and fresh.n_patches == ev.n_patches
    for chart in schema.CHARTS:
        assert (fresh.confusion[chart] == ev.confusion[chart]).all()
    # the epoch rows are the patch proxy, kept in evaluation.json beside the official score
    assert float(rows[-1]["val_combined"]) == proxy["combined"] and proxy.keys() == ev.scores().keys()
    # the run dir, model.pt and the checkpoint rebuild the same model; its scores are the run's
    batch = next(iter(torch.utils.data.DataLoader(PatchDataset(patch_store, val), batch_size=4,
                                                  collate_fn=collate)))
    models = [load_model(p) for p in (run, run / "model.pt", run / "checkpoints" / "last.pt")]
    assert not any(m.training for m in models)
    with torch.no_grad():
        outs = [m(batch) for m in models]
    assert all(torch.equal(o[c], outs[0][c]) for o in outs for c in schema.CHARTS)
    assert evaluate(models[0], PatchDataset(patch_store, val)).scores() == proxy


def test_checkpoint_every_rerun_and_config_mismatch(patch_store, tmp_path):
    cfg = _cfg(patch_store, tmp_path / "run", steps=4, steps_per_epoch=4, checkpoint_every=2, evaluate=False)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    seen = []
    summary = train(cfg, on_step=lambda s, m: seen.append(torch.load(ckpt, weights_only=True)["step"]
                                                          if ckpt.exists() else None))
    assert seen == [None, None, 2, 2] and summary["status"] == "completed"
    assert summary["scores"] is None and not (tmp_path / "run" / "evaluation.json").exists()
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    again = train(cfg, on_step=lambda s, m: pytest.fail("a finished run trained again"))
    assert again["status"] == "completed" and again["steps"] == 4
    for change in ({"lr": 0.5}, {"loss": LossConfig(kind="focal")}, {"batch_size": 2}):
        with pytest.raises(ValueError, match=f"cannot resume.*{next(iter(change))}"):
            train(TrainConfig.from_dict(cfg.to_dict() | change))
    # settings that do not shape the trajectory may change
    assert train(TrainConfig.from_dict(cfg.to_dict() | {"checkpoint_every": 3, "progress": True}))["steps"] == 4


def test_time_budget_stops_cleanly(patch_store, tmp_path):
    cfg = _cfg(patch_store, tmp_path / "run", time_budget_s=0.0, steps_per_epoch=10, steps=20)
    summary = train(cfg)
    assert summary["status"] == "time_budget" and summary["steps"] == 1
    assert [r["step"] for r in _rows(tmp_path / "run")] == ["1"]
    assert summary["scores"] is not None and (tmp_path / "run" / "model.pt").exists()


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(store="s", out_dir="o", lr=0.1, warmup_steps=4, steps=14, min_lr_ratio=0.1)
    opt = build_optimizer(cfg, torch.nn.Linear(2, 2))
    sched = build_scheduler(cfg, opt)
    lrs = []
    for _ in range(cfg.steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    cosine = [0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1] + cosine)
    assert lr_factor(14, 4, 14, 0.1) == pytest.approx(0.1) and lr_factor(100, 4, 14, 0.1) == pytest.approx(0.1)


def test_optimizer_selection_and_weight_decay_groups():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    adamw = build_optimizer(TrainConfig(store="s", out_dir="o", weight_decay=0.05), model)
    sgd = build_optimizer(TrainConfig(store="s", out_dir="o", optimizer="sgd", momentum=0.8), model)
    assert type(adamw) is torch.optim.AdamW and type(sgd) is torch.optim.SGD
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    decayed, plain = adamw.param_groups
    assert decayed["weight_decay"] == 0.05 and [p.ndim for p in decayed["params"]] == [4]
    assert plain["weight_decay"] == 0 and len(plain["params"]) == 3  # conv bias, BN weight and bias


def test_yaml_round_trip_overrides_and_bad_configs(tmp_path):
    cfg = TrainConfig(store="data/patches.zarr", out_dir="runs/x", model_kwargs={"depth": 2},
                      loss=LossConfig(kind="focal", task_weights={"SIC": 2.0, "SOD": 1.0, "FLOE": 1.0}))
    path = cfg.to_yaml(tmp_path / "cfg.yaml")
    assert TrainConfig.from_yaml(path) == cfg
    over = TrainConfig.from_yaml(path, **parse_overrides(["lr=3e-4", "loss.focal_gamma=1", "amp=bf16"]))
    assert over.lr == 3e-4 and over.amp == "bf16" and over.loss.focal_gamma == 1 and over.loss.kind == "focal"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg.to_dict() | {"learning_rate": 1}))
    with pytest.raises(ValueError, match="bad.yaml.*unknown keys.*learning_rate"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg.to_dict() | {"loss": {"kind": "hinge"}}))
    with pytest.raises(ValueError, match="loss kind"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(store="s", out_dir="o", optimizer="adam")
    with pytest.raises(ValueError, match="lr must be a number"):
        TrainConfig(store="s", out_dir="o", lr="fast")
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_cli_trains_from_a_config_file(patch_store, tmp_path, capsys):
    path = _cfg(patch_store, tmp_path / "run", steps=2, steps_per_epoch=2).to_yaml(tmp_path / "c.yaml")
    assert main(["--config", str(path), "--set", "steps=1", "--set", "evaluate=false"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert TrainConfig.from_yaml(tmp_path / "run" / "config.yaml").steps == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_doc: dict, out: str) -> None:
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(cfg_doc)

    def save_params(step, model):
        if step == cfg.steps:
            flat = torch.cat([p.detach().flatten() for p in model.parameters()])
            torch.save(flat, os.path.join(out, f"rank{rank}.pt"))
    summary = train(cfg, on_step=save_params)
    torch.save(summary["scores"], os.path.join(out, f"scores{rank}.pt"))


def test_the_scenes_of_the_final_evaluation(patch_store, synthetic_dir, tmp_path):
    """scenes_dir defaults to the store's record; without one, or without the folder, training
    stops before it starts, naming the setting, unless it does not evaluate."""
    old_store = tmp_path / "old.zarr"
    shutil.copytree(patch_store, old_store)
    root = json.loads((old_store / "zarr.json").read_text())
    del root["attributes"]["scenes_dir"]  # as stores were built before they recorded it
    (old_store / "zarr.json").write_text(json.dumps(root))
    trainer = Trainer(_cfg(patch_store, tmp_path / "a"), Distributed(), None)
    assert trainer.scenes_dir == synthetic_dir.resolve()
    assert [p.name[:19] for p in trainer.val_paths] == trainer.val_ids and trainer.val_ids
    for store, extra, message in [
            (old_store, {}, "scenes_dir is not set and the store .*old.zarr records no scenes folder"),
            (patch_store, {"scenes_dir": str(tmp_path / "nowhere")}, "scenes_dir .*nowhere: no such folder"),
            (patch_store, {"scenes_dir": str(tmp_path)}, "scenes_dir: .*no \\*_prep.nc file for the scenes")]:
        with pytest.raises(ValueError, match=message):
            train(_cfg(store, tmp_path / "b", **extra))
        assert not (tmp_path / "b" / "checkpoints").exists()
        Trainer(_cfg(store, tmp_path / "c", **extra, evaluate=False), Distributed(), None)
    explicit = Trainer(_cfg(old_store, tmp_path / "d", scenes_dir=str(synthetic_dir)), Distributed(), None)
    assert explicit.val_paths == trainer.val_paths


@pytest.mark.slow  # about 20 s: two processes start torch
def test_ddp_two_cpu_processes_keep_replicas_identical(patch_store, synthetic_dir, tmp_path):
    cfg = _cfg(patch_store, tmp_path / "run", steps=4, steps_per_epoch=2, augment=True, balance_power=0.5)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True)
    p0, p1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(p0, p1)
    run = tmp_path / "run"
    assert [r["step"] for r in _rows(run)] == ["2", "4"] and (run / "evaluation.json").exists()
    scores = Evaluation.from_json(run / "evaluation.json").scores()
    assert torch.load(tmp_path / "scores0.pt") == torch.load(tmp_path / "scores1.pt") == scores
    # sharded scoring with rank 0's batch-norm statistics equals one process scoring the saved model:
    # whole scenes in evaluation.json, the patch proxy beside them
    _, val = split_scenes(patch_store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
    info = Evaluation.from_json(run / "evaluation.json").info
    assert evaluate_scenes(load_model(run), _val_paths(synthetic_dir, val), synthetic_dir, patch_store,
                           batch_size=cfg.eval_batch_size).scores() == scores
    assert evaluate(load_model(run), PatchDataset(patch_store, val)).scores() == info["patch_proxy"]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
    with pytest.raises(ValueError, match="world size"):
        train(cfg)


@pytest.mark.skipif("tsvit_v2" not in model_names(), reason="tsvit_v2 not registered")
def test_tsvit_v2_trains_and_resumes(patch_store, tmp_path):
    cfg = _cfg(patch_store, tmp_path / "run", model="tsvit_v2", steps=2, steps_per_epoch=2)
    assert train(cfg, on_step=_signal_at(1, signal.SIGTERM))["status"] == "preempted"
    assert train(cfg)["status"] == "completed"
    batch = next(iter(torch.utils.data.DataLoader(PatchDataset(patch_store), batch_size=2, collate_fn=collate)))
    with torch.no_grad():
        out = load_model(tmp_path / "run")(batch)
    assert {c: tuple(o.shape) for c, o in out.items()} == {c: (2, schema.N_CLASSES[c], 16, 16) for c in schema.CHARTS}
