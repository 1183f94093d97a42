"""Small training runs for the tests: a tiny config, what a finished run folder holds, a free port
for a rendezvous, and what DDP ranks should compute, done in one process."""

import csv
import socket

import torch

from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.data.samplers import ClassBalancedSampler
from seaice_lib.data.splits import split_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.distributed import seed_everything
from seaice_lib.engine.losses import MultiTaskLoss
from seaice_lib.engine.run import model_spec
from seaice_lib.engine.training import build_optimizer, build_scheduler
from seaice_lib.models import create_model


def train_config(store, out_dir, **overrides) -> TrainConfig:
    """A tiny U-Net for 6 steps (epochs of 3) on CPU, no augmentation, uniform draws; ``overrides``
    change any entry."""
    base = dict(store=str(store), out_dir=str(out_dir), model="unet", model_size="tiny", batch_size=4,
                steps=6, steps_per_epoch=3, warmup_steps=2, lr=1e-2, checkpoint_every=0, augment=False,
                balance_power=0.0, val_fraction=0.3, eval_batch_size=64, device="cpu", progress=False)
    return TrainConfig(**(base | overrides))


def run_weights(run_dir) -> dict:
    """The state dict of a run's model.pt."""
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def metrics_rows(run_dir) -> list[dict]:
    """The rows of a run's metrics.csv."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_process_on_the_global_batch(cfg: TrainConfig, world: int) -> tuple[torch.nn.Module, list[float]]:
    """What ``world`` DDP ranks should compute, in one process: the model and each step's loss.

    Each step takes the next ``world * batch_size`` draws of the single-process balanced sequence
    (the global batch); its loss is the mean of the losses of its ``world`` shards, every
    ``world``-th sample (what DDP's gradient averaging optimises: each rank's labelled-pixel
    means and batch-norm statistics are its shard's own). Initialisation, clipping, optimizer and
    schedule are the single-process ones.
    """
    train_ids, _ = split_scenes(cfg.store, cfg.val_fraction, cfg.split_seed, by=cfg.split_by)
    data = PatchDataset(cfg.store, train_ids, augment=cfg.augment, seed=cfg.seed)
    per_step = world * cfg.batch_size
    draws = ClassBalancedSampler(data, cfg.balance_chart, cfg.balance_power, cfg.steps_per_epoch * per_step, cfg.seed)
    seed_everything(cfg.seed)
    model = create_model(cfg.model, cfg.model_size, **model_spec(cfg, data.settings, cfg.store)["kwargs"])
    loss_fn = MultiTaskLoss(cfg.loss, None, cfg.sic_mode)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    losses = []
    for step in range(cfg.steps):
        epoch, k = divmod(step, cfg.steps_per_epoch)
        draws.set_epoch(epoch)
        data.set_epoch(epoch)
        batch = draws.draw(draws.num_samples)[k * per_step:(k + 1) * per_step]
        optimizer.zero_grad()
        losses.append(0.0)
        for rank in range(world):
            shard = collate([data[int(i)] for i in batch[rank::world]])
            loss = loss_fn(model(shard), shard["labels"])[0] / world
            loss.backward()
            losses[-1] += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
    return model, losses
