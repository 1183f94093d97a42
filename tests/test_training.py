import functools
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from seaice_lib import schema
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.data.samplers import ClassBalancedSampler
from seaice_lib.data.splits import split_scenes
from seaice_lib.engine import config
from seaice_lib.engine.config import TrainConfig, parse_overrides
from seaice_lib.engine.distributed import Distributed, init_distributed
from seaice_lib.engine.evaluation import Evaluation, evaluate_patch_proxy
from seaice_lib.engine.losses import LossConfig
from seaice_lib.engine.run import load_model
from seaice_lib.engine.training import METRICS_COLUMNS, Trainer, build_optimizer, build_scheduler, lr_factor, main, train
from seaice_lib.engine.whole_scenes import evaluate_scenes
from seaice_lib.models import model_names
from seaice_lib.stopping import STOP_SIGNALS, STOPPED_EXIT_CODE
from tests.output_lines import lines_of, read_until
from tests.pausing_train import alive, group_members, main_paused, signals_pending, wait_until
from tests.training_runs import free_port, metrics_rows, one_process_on_the_global_batch, run_weights, train_config

PAUSING_TRAIN = Path(__file__).parent / "pausing_train.py"
# TSViT v3 with every random draw of training on: dropout, drop path, modality dropout, augmentation
# and balanced draws
TSVIT_V3 = {"model": "tsvit_v3", "model_kwargs": {"dropout": 0.2, "drop_path": 0.1, "modality_dropout": 0.5},
            "augment": True, "balance_power": 0.5}


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
        cfg = train_config(patch_store, tmp_path_factory.mktemp("ref") / name, **extra)
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
    ref, got = run_weights(ref_dir), run_weights(run)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert _deterministic(metrics_rows(run)) == _deterministic(metrics_rows(ref_dir))
    assert second["scores"] == ref_summary["scores"]


def _forked(target, *args):
    """A started child forked from this process (no fresh imports) running ``target(*args)``."""
    child = mp.get_context("fork").Process(target=target, args=args)
    child.start()
    return child


def _train_single_threaded(cfg: TrainConfig) -> None:
    torch.set_num_threads(1)  # as the runs it is compared with: thread counts change float sums
    train(cfg)


def _preemptible_train(argv: list[str], step: int, paused, go) -> None:
    """`seaice train` in a process group of its own (with its DataLoader workers), pausing after
    ``step`` until ``go`` is set."""
    os.setpgrp()
    torch.set_num_threads(1)

    def pause() -> None:
        paused.set()
        go.wait(120)
    sys.exit(main_paused(argv, step, pause))


def test_preemption_signals_the_process_group_and_workers_outlive_it(patch_store, tmp_path):
    """SIGTERM to the trainer's whole process group, as torchrun and Slurm send it, reaches its
    DataLoader workers too: they outlive it, the trainer checkpoints, `seaice train` exits with the
    preemption status, and the resumed run ends bit-identical to an uninterrupted one (TSViT v3
    with dropout and modality dropout, two workers)."""
    ref_cfg = train_config(patch_store, tmp_path / "ref", **TSVIT_V3, num_workers=2, evaluate=False)
    reference = _forked(_train_single_threaded, ref_cfg)
    run = tmp_path / "run"
    cfg = TrainConfig.from_dict(ref_cfg.to_dict() | {"out_dir": str(run)})
    paused, go = mp.get_context("fork").Event(), mp.get_context("fork").Event()
    child = _forked(_preemptible_train, ["--config", str(cfg.to_yaml(tmp_path / "c.yaml"))], 2, paused, go)
    try:
        assert paused.wait(120), "the training process never reached step 2"
        workers = group_members(child.pid) - {child.pid}
        assert len(workers) == cfg.num_workers, workers  # its DataLoader workers, in its group
        os.killpg(child.pid, signal.SIGTERM)  # the trainer and both workers
        # the workers take it (a fatal signal would end them) before the trainer goes on
        wait_until(lambda: not any(signals_pending(w) for w in workers), 60, "SIGTERM taken by the workers")
        assert all(alive(w) for w in workers)
        go.set()
        child.join(120)
    finally:
        if child.is_alive():
            os.killpg(child.pid, signal.SIGKILL)
    assert child.exitcode == STOPPED_EXIT_CODE
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert not (run / "model.pt").exists()
    resumed = _forked(_train_single_threaded, cfg)
    for process in (reference, resumed):
        process.join(300)
        assert process.exitcode == 0
    ref, got = run_weights(tmp_path / "ref"), run_weights(run)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


# what a trainer's process group receives: SIGTERM (torchrun, scancel), SIGUSR1 (Slurm's warning),
# SIGINT (torchrun passes on a Ctrl-C)
GROUP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class _SignalledInWorkers(PatchDataset):
    """A dataset whose every item, read in a DataLoader worker, first sends that worker GROUP_SIGNALS."""

    def __getitem__(self, i: int) -> dict:
        if torch.utils.data.get_worker_info() is not None:
            for sig in GROUP_SIGNALS:
                os.kill(os.getpid(), sig)
        return super().__getitem__(i)


def test_validation_workers_outlive_the_stop_signals(reference, patch_store):
    """The validation loader's workers (an epoch ends in the preemption window too) ignore the
    signals; the trainer's own, STOP_SIGNALS, are among them."""
    cfg, summary = reference["plain"]
    model = load_model(Path(cfg.out_dir))
    signalled = evaluate_patch_proxy(model, _SignalledInWorkers(patch_store, summary["val_scenes"]), 8, num_workers=2)
    assert signalled.scores() == evaluate_patch_proxy(model, PatchDataset(patch_store, summary["val_scenes"]), 8).scores()
    assert set(STOP_SIGNALS) <= set(GROUP_SIGNALS)


def _val_paths(synthetic_dir, val):
    return [next(synthetic_dir.glob(f"{sid}*_prep.nc")) for sid in val]


def test_run_directory_metrics_and_load_model(reference, patch_store, synthetic_dir):
    cfg, summary = reference["plain"]
    run = Path(cfg.out_dir)
    rows = metrics_rows(run)
    assert list(rows[0]) == METRICS_COLUMNS
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "3"), ("1", "6")]
    assert all(math.isfinite(float(r[c])) for r in rows for c in METRICS_COLUMNS)
    assert TrainConfig.from_yaml(run / "config.yaml") == cfg
    ev = Evaluation.from_json(run / "evaluation.json")
    _, val = split_scenes(patch_store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
    proxy = ev.info.pop("patch_proxy")
    read = ev.info.pop("input_files")
    assert ev.info == {"model": "unet", "modalities": ["sar", "amsr2", "era5"], "run": run.name, "steps": 6,
                       "n_params": summary["n_params"],
                       "train_seconds": summary["train_seconds"], "val_scenes": val, "scenes": val,
                       "scope": "full scenes at 80 m", "overlap": 0.25, "labels": "scene charts",
                       "weights_sha256": hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()}
    # the files scored, each validation scene among them, as they are (figures checks them)
    assert {str(p) for p in _val_paths(synthetic_dir, val)} <= {e["file"] for e in read}
    assert all(e["sha256"] == hashlib.sha256(Path(e["file"]).read_bytes()).hexdigest() for e in read)
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
    assert evaluate_patch_proxy(models[0], PatchDataset(patch_store, val)).scores() == proxy


def test_checkpoint_every_rerun_and_config_mismatch(patch_store, tmp_path):
    cfg = train_config(patch_store, tmp_path / "run", steps=4, steps_per_epoch=4, checkpoint_every=2, evaluate=False)
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


def test_a_finished_run_trained_again_scores_an_edited_evaluation_again(patch_store, tmp_path):
    """R2: train on a finished run whose evaluation.json was edited (every pixel right) or records
    no content_sha256 writes its scores again, as first written; nothing is trained."""
    cfg = train_config(patch_store, tmp_path / "run", steps=2, steps_per_epoch=2)
    train(cfg)
    path = tmp_path / "run" / "evaluation.json"
    first = json.loads(path.read_text())
    right = {c: [[sum(row) if i == j else 0 for j in range(len(row))] for i, row in enumerate(m)]
             for c, m in first["confusion"].items()}
    for damaged in (first | {"confusion": right}, {k: v for k, v in first.items() if k != "content_sha256"}):
        path.write_text(json.dumps(damaged))
        train(cfg, on_step=lambda s, m: pytest.fail("a finished run trained again"))
        again = Evaluation.from_json(path)
        assert again.content_checked and {c: m.tolist() for c, m in again.confusion.items()} == first["confusion"]


def test_time_budget_stops_cleanly(patch_store, tmp_path):
    cfg = train_config(patch_store, tmp_path / "run", time_budget_s=1e-9, steps_per_epoch=10, steps=20)
    summary = train(cfg)
    assert summary["status"] == "time_budget" and summary["steps"] == 1
    assert [r["step"] for r in metrics_rows(tmp_path / "run")] == ["1"]
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
    with pytest.raises(ValueError, match=r"lr must be in \(0, 10\], not 1e\+300"):  # overflowed float32 updates
        TrainConfig(store="s", out_dir="o", lr=1e300)
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_cli_trains_from_a_config_file(patch_store, tmp_path, capsys):
    path = train_config(patch_store, tmp_path / "run", steps=2, steps_per_epoch=2).to_yaml(tmp_path / "c.yaml")
    assert main(["--config", str(path), "--set", "steps=1", "--set", "evaluate=false"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert TrainConfig.from_yaml(tmp_path / "run" / "config.yaml").steps == 1


def test_the_scenes_of_the_final_evaluation(patch_store, synthetic_dir, tmp_path):
    """scenes_dir defaults to the store's record; without one, or without the folder, training
    stops before it starts, naming the setting, unless it does not evaluate."""
    old_store = tmp_path / "old.zarr"
    shutil.copytree(patch_store, old_store)
    root = json.loads((old_store / "zarr.json").read_text())
    del root["attributes"]["scenes_dir"]  # as stores were built before they recorded it
    (old_store / "zarr.json").write_text(json.dumps(root))
    trainer = Trainer(train_config(patch_store, tmp_path / "a"), Distributed(), None)
    assert trainer.scenes_dir == synthetic_dir.resolve()
    assert [p.name[:19] for p in trainer.val_paths] == trainer.val_ids and trainer.val_ids
    for store, extra, message in [
            (old_store, {}, "scenes_dir is not set and the store .*old.zarr records no scenes folder"),
            (patch_store, {"scenes_dir": str(tmp_path / "nowhere")}, "scenes_dir .*nowhere: no such folder"),
            (patch_store, {"scenes_dir": str(tmp_path)}, "scenes_dir: .*no \\*_prep.nc file for the scenes")]:
        with pytest.raises(ValueError, match=message):
            train(train_config(store, tmp_path / "b", **extra))
        assert not (tmp_path / "b" / "checkpoints").exists()
        Trainer(train_config(store, tmp_path / "c", **extra, evaluate=False), Distributed(), None)
    explicit = Trainer(train_config(old_store, tmp_path / "d", scenes_dir=str(synthetic_dir)), Distributed(), None)
    assert explicit.val_paths == trainer.val_paths


def _launch(world: int, fn, *args) -> None:
    """``fn(rank, *args)`` in ``world`` processes forked from this one (no fresh imports), each in
    one gloo group with the others, as torchrun would set them up; a failing rank raises here."""
    mp.start_processes(_rank_main, args=(world, free_port(), fn, args), nprocs=world, start_method="fork")


def _rank_main(rank: int, world: int, port: int, fn, args: tuple) -> None:
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        fn(rank, *args)
    finally:
        torch.distributed.destroy_process_group()


def _record_modality_dropout(model: torch.nn.Module, path: Path) -> None:
    """Make ``model`` save the modalities its first training forward kept, {name: (B,) bool}."""
    present = model.modality_present

    def recording(batch: dict) -> dict:
        kept = present(batch)
        if model.training and not path.exists():
            torch.save(kept, path)
        return kept
    model.modality_present = recording


def _ddp_first_runs(rank: int, cfgs: dict, out: Path) -> None:
    """Rank ``rank`` of the first runs of ``ddp_runs``, saving its shares of the U-Net's epochs,
    its first modality-dropout draw and the stopped run's summary under ``out``."""
    trainer = Trainer(cfgs["unet"], init_distributed("cpu"), None)
    epochs = cfgs["unet"].steps // cfgs["unet"].steps_per_epoch
    torch.save([list(trainer.epoch_loader(e, 0).sampler) for e in range(epochs)], out / f"shards{rank}.pt")
    trainer.run()
    torch.distributed.barrier()
    trainer = Trainer(cfgs["tsvit_v3"], init_distributed("cpu"), None)
    _record_modality_dropout(trainer.model, out / f"modality{rank}.pt")
    trainer.run()
    torch.distributed.barrier()
    hook = _signal_at(3, signal.SIGUSR1) if rank == 1 else None  # one rank's signal stops them all
    (out / f"interrupted{rank}.json").write_text(json.dumps(train(cfgs["resumed"], on_step=hook)))


def _train_rank(rank: int, cfg: TrainConfig) -> None:
    train(cfg)


@pytest.fixture(scope="module")
def ddp_runs(patch_store, tmp_path_factory):
    """Two-rank runs (gloo, CPU): the U-Net with augmentation, balanced draws, SGD and the final
    evaluation (``unet``); TSViT v3 with dropout, modality dropout and a DataLoader worker per rank
    (``tsvit_v3``); the same stopped after step 3 by SIGUSR1 to rank 1, then resumed in fresh
    processes (``resumed``). {name: config, "out": folder of the ranks' records}."""
    root = tmp_path_factory.mktemp("ddp")
    base = dict(steps=4, steps_per_epoch=2)
    # SGD for the U-Net: AdamW scales every gradient to a full step, also the float noise of the
    # ones that are 0 in exact arithmetic (conv biases under batch norm), which is not the same noise
    # in one process as on two ranks
    cfgs = {"unet": train_config(patch_store, root / "unet", **base, batch_size=2, augment=True, balance_power=0.5,
                         optimizer="sgd", lr=0.1),
            "tsvit_v3": train_config(patch_store, root / "tsvit_v3", **base, **TSVIT_V3, num_workers=1, evaluate=False)}
    cfgs["resumed"] = TrainConfig.from_dict(cfgs["tsvit_v3"].to_dict() | {"out_dir": str(root / "resumed")})
    _launch(2, _ddp_first_runs, cfgs, root)
    _launch(2, _train_rank, cfgs["resumed"])
    return cfgs | {"out": root}


def test_ddp_equals_one_process_on_the_global_batch(ddp_runs):
    """Two ranks train as one process on their global batch (weights and losses to float
    precision), on disjoint shares of each epoch's draws that together are the whole sequence."""
    cfg = ddp_runs["unet"]
    train_ids, _ = split_scenes(cfg.store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
    sequence = ClassBalancedSampler(PatchDataset(cfg.store, train_ids), cfg.balance_chart, cfg.balance_power,
                                    cfg.steps_per_epoch * cfg.batch_size * 2, cfg.seed)
    shards = [torch.load(ddp_runs["out"] / f"shards{rank}.pt") for rank in (0, 1)]
    for epoch in range(cfg.steps // cfg.steps_per_epoch):
        sequence.set_epoch(epoch)
        draws = sequence.draw(sequence.num_samples).tolist()
        # positions 0, 2, 4, ... of the epoch's draws to rank 0, 1, 3, 5, ... to rank 1
        assert shards[0][epoch] == draws[0::2] and shards[1][epoch] == draws[1::2]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the ranks: thread counts change float sums
    try:
        model, losses = one_process_on_the_global_batch(cfg, 2)
    finally:
        torch.set_num_threads(threads)
    got = run_weights(Path(cfg.out_dir))
    for name, param in model.named_parameters():  # not BN running statistics: DDP keeps rank 0's
        torch.testing.assert_close(got[name], param.detach(), rtol=1e-5, atol=1e-6)
    epoch_losses = [float(r["train_loss"]) for r in metrics_rows(Path(cfg.out_dir))]
    per_epoch = cfg.steps_per_epoch
    assert epoch_losses == pytest.approx([sum(losses[e:e + per_epoch]) / per_epoch
                                          for e in range(0, cfg.steps, per_epoch)], rel=1e-5)


def test_ddp_evaluation_sharded_by_scene_equals_one_process(ddp_runs, patch_store, synthetic_dir):
    """The final scores, each rank scoring its share of the validation scenes (patches each
    epoch) with rank 0's batch-norm statistics, equal one process scoring the saved model."""
    run = Path(ddp_runs["unet"].out_dir)
    ev = Evaluation.from_json(run / "evaluation.json")
    val = ev.info["val_scenes"]
    assert len(val) > 1
    assert evaluate_scenes(load_model(run), _val_paths(synthetic_dir, val), synthetic_dir, patch_store,
                           batch_size=64).scores() == ev.scores()
    assert evaluate_patch_proxy(load_model(run), PatchDataset(patch_store, val)).scores() == ev.info["patch_proxy"]


def test_ddp_ranks_draw_their_own_dropout_masks(ddp_runs):
    """Each rank its own random stream: the first training step's modality-dropout masks differ
    (with every rank seeded alike, they were the same)."""
    kept = [torch.load(ddp_runs["out"] / f"modality{rank}.pt") for rank in (0, 1)]
    assert kept[0].keys() == kept[1].keys() == {"amsr2", "era5"}
    assert any(not torch.equal(kept[0][m], kept[1][m]) for m in kept[0])


def test_ddp_resume_is_bit_identical_with_dropout_and_workers(ddp_runs):
    """World size 2, TSViT v3 with dropout, modality dropout and a worker per rank: stopped after
    step 3 by a signal to one rank, resumed in fresh processes, it ends bit-identical to the run
    that was never stopped. Another world size cannot resume it."""
    ref_cfg, cfg = ddp_runs["tsvit_v3"], ddp_runs["resumed"]
    for rank in (0, 1):
        summary = json.loads((ddp_runs["out"] / f"interrupted{rank}.json").read_text())
        assert summary["status"] == "preempted" and summary["steps"] == 3
    ref_dir, run = Path(ref_cfg.out_dir), Path(cfg.out_dir)
    ref, got = run_weights(ref_dir), run_weights(run)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    assert _deterministic(metrics_rows(run)) == _deterministic(metrics_rows(ref_dir))
    assert [r["step"] for r in metrics_rows(run)] == ["2", "4"]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
    with pytest.raises(ValueError, match="world size"):
        train(cfg)


def _found(wanted: set[str], seen: list[str]) -> bool:
    """Whether each marker in ``wanted`` is in one of the lines ``seen``. The ranks share one pipe,
    so a marker can share a line with another rank's unterminated output."""
    return all(any(marker in line for line in seen) for marker in wanted)


def _read_until(lines: queue.Queue, wanted: set[str], timeout: float) -> list[str]:
    """Lines up to the one that completes ``wanted`` (or the end, or ``timeout`` seconds)."""
    return read_until(lines, functools.partial(_found, wanted), timeout)


@pytest.mark.slow  # 20 to 40 s: torchrun and its two trainers start Python and import torch
def test_torchrun_passes_a_preemption_to_every_trainer_and_worker(ddp_runs, tmp_path):
    """SIGTERM to torchrun, which signals each trainer's process group (the trainer and its
    DataLoader worker): every trainer checkpoints and exits with the preemption status, and the
    resumed run ends bit-identical to the uninterrupted one."""
    run = tmp_path / "run"
    cfg = TrainConfig.from_dict(ddp_runs["tsvit_v3"].to_dict() | {"out_dir": str(run)})
    go = tmp_path / "go"
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc-per-node", "2", str(PAUSING_TRAIN), "3",
                             str(go), "--config", str(cfg.to_yaml(tmp_path / "c.yaml"))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = lines_of(proc.stdout)
        seen = _read_until(lines, {"paused 0", "paused 1"}, timeout=300)
        assert _found({"paused 0", "paused 1"}, seen), "\n".join(seen)
        trainers = [int(pid) for pid in re.findall(r"paused \d+ (\d+)", "\n".join(seen))]
        workers = {pid: group_members(pid) - {pid} for pid in trainers}  # each trainer has a group
        assert len(trainers) == 2 and all(len(w) == cfg.num_workers for w in workers.values()), workers
        os.killpg(proc.pid, signal.SIGTERM)  # torchrun's group; it signals each trainer's own group
        seen += _read_until(lines, {"signalled 0 SIGTERM", "signalled 1 SIGTERM"}, timeout=60)
        assert _found({"signalled 0 SIGTERM", "signalled 1 SIGTERM"}, seen), "\n".join(seen)
        # the workers take it (a fatal signal would end them) before the trainers go on
        ranks_workers = set().union(*workers.values())
        wait_until(lambda: not any(signals_pending(w) for w in ranks_workers), 60, "SIGTERM taken by the workers")
        assert all(alive(w) for w in ranks_workers)
        go.touch()
        seen += _read_until(lines, {f"exit {rank} {STOPPED_EXIT_CODE}" for rank in (0, 1)}, timeout=120)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _found({f"exit {rank} {STOPPED_EXIT_CODE}" for rank in (0, 1)}, seen), "\n".join(seen)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert not (run / "model.pt").exists()
    _launch(2, _train_rank, cfg)
    ref, got = run_weights(Path(ddp_runs["tsvit_v3"].out_dir)), run_weights(run)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_tsvit_v2_trains_and_resumes(patch_store, tmp_path):
    assert "tsvit_v2" in model_names()
    cfg = train_config(patch_store, tmp_path / "run", model="tsvit_v2", steps=2, steps_per_epoch=2)
    assert train(cfg, on_step=_signal_at(1, signal.SIGTERM))["status"] == "preempted"
    assert train(cfg)["status"] == "completed"
    batch = next(iter(torch.utils.data.DataLoader(PatchDataset(patch_store), batch_size=2, collate_fn=collate)))
    with torch.no_grad():
        out = load_model(tmp_path / "run")(batch)
    assert {c: tuple(o.shape) for c, o in out.items()} == {c: (2, schema.N_CLASSES[c], 16, 16) for c in schema.CHARTS}


def test_shuffle_labels_permutes_each_batch_and_training_still_runs(patch_store, tmp_path):
    """The label-randomisation control: the loss sees each batch's label maps moved to other samples
    (every chart by the same permutation), the run completes, and a typo in the flag is a config error."""
    cfg = train_config(patch_store, tmp_path / "run", shuffle_labels=True, steps=3, steps_per_epoch=3, evaluate=False)
    trainer = Trainer(cfg, Distributed(), None)
    drawn = list(trainer.epoch_loader(0, 0))  # the batches the run draws (no augmentation: the same twice)
    seen, loss_fn = [], trainer.loss_fn

    def recording_loss(outputs, labels):
        seen.append({c: v.clone() for c, v in labels.items()})
        return loss_fn(outputs, labels)

    trainer.loss_fn = recording_loss
    assert trainer.run()["status"] == "completed"
    assert len(seen) == len(drawn) == 3
    moved = 0
    for batch, labels in zip(drawn, seen):
        original = [torch.stack([batch["labels"][c][i] for c in schema.CHARTS]) for i in range(cfg.batch_size)]
        given = [torch.stack([labels[c][i] for c in schema.CHARTS]) for i in range(cfg.batch_size)]
        unused = list(range(cfg.batch_size))  # each given sample is one original sample's charts, used once
        for sample in given:
            match = next(j for j in unused if torch.equal(sample, original[j]))
            unused.remove(match)
        moved += sum(not torch.equal(g, o) for g, o in zip(given, original))
    assert moved > 0
    assert (tmp_path / "run" / "model.pt").exists()
    with pytest.raises(ValueError, match="shuffle_labels must be true or false"):
        train_config(patch_store, tmp_path / "bad", shuffle_labels="yes")


@pytest.mark.parametrize("has_bf16", [True, False])
def test_amp_bf16_autocasts_on_a_cpu_with_bf16_instructions_else_trains_fp32_with_a_warning(
        has_bf16, patch_store, tmp_path, monkeypatch):
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: has_bf16)
    cfg = train_config(patch_store, tmp_path / "run", amp="bf16", steps=2, steps_per_epoch=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(cfg, Distributed(), None)
    assert any("training in fp32 on cpu" in str(w.message) for w in caught) is not has_bf16
    dtypes, loss_fn = [], trainer.loss_fn

    def recording_loss(outputs, labels):
        dtypes.extend(o.dtype for o in outputs.values())
        return loss_fn(outputs, labels)

    trainer.loss_fn = recording_loss
    assert trainer.run()["status"] == "completed"
    assert set(dtypes) == {torch.bfloat16 if has_bf16 else torch.float32}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # the weights stay fp32
    scored = []  # validation in fp32, whatever amp trains in: the scores of the charts predict makes
    hook = trainer.model.register_forward_hook(lambda module, args, out: scored.extend(o.dtype for o in out.values()))
    trainer.last_eval = None
    assert trainer.validate() is not None
    hook.remove()
    assert scored and set(scored) == {torch.float32}
