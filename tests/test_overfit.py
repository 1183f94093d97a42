"""Every registered model, at its tiny size, memorises one fixed batch: the loss goes near zero.

The batch: the two patches of the tiny store holding the most classes. The threshold: every
chart's mean cross-entropy over the labelled pixels below 0.05 nats, i.e. the labelled class gets a
geometric-mean probability above 0.95 (an untrained model gives about 1/K: ln K = 1.8 to 2.4 nats).
A model blind to its input, however it used pixel positions, could not get below the entropy of
the two patches' labels at each position (about 0.14 to 0.37 here; asserted above the threshold),
so passing needs the inputs, the heads and every pixel in its place.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seaice_lib import schema
from seaice_lib.data.dataset import PatchDataset, collate
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.losses import LossConfig, MultiTaskLoss
from seaice_lib.engine.run import model_spec
from seaice_lib.models import create_model, model_names

THRESHOLD = 0.05  # nats of cross-entropy per chart
MAX_STEPS = 500  # Adam at 2e-2 gets there in about 110 to 290 steps, whatever the seed
LR = 2e-2


@pytest.fixture(scope="module")
def batch(patch_store) -> dict:
    """The two patches of the store with the most classes, as one batch."""
    data = PatchDataset(patch_store)
    classes = sum((data.histograms[:, schema.HISTOGRAM_SLICES[c]] > 0).sum(axis=1) for c in schema.CHARTS)
    return collate([data[int(i)] for i in np.argsort(-classes, kind="stable")[:2]])


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def input_blind_floor(labels: torch.Tensor) -> float:
    """The least mean cross-entropy (nats) over the labelled pixels of ``labels`` (B, P, P) for any
    prediction that depends on the pixel position only: the labels' entropy at each position."""
    flat = labels.reshape(labels.shape[0], -1).numpy()
    counts = np.stack([(flat == k).sum(axis=0) for k in np.unique(flat[flat != 255])])  # (K, P*P)
    totals = counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nats = -np.where(counts > 0, counts * np.log(counts / totals), 0.0).sum()
    return float(nats / totals.sum())


def test_the_batch_needs_the_inputs(batch):
    for chart, labels in batch["labels"].items():
        assert input_blind_floor(labels) > 2 * THRESHOLD, chart


@pytest.mark.parametrize("name", model_names())
def test_model_memorises_one_batch(name, batch, patch_store, one_thread):
    torch.manual_seed(0)
    spec = model_spec(TrainConfig(store=str(patch_store), out_dir="unused", model=name, model_size="tiny"),
                      PatchDataset(patch_store).settings, patch_store)
    model = create_model(name, "tiny", **spec["kwargs"]).train()
    loss_fn = MultiTaskLoss(LossConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for step in range(MAX_STEPS + 1):
        outputs = model(batch)
        chart_losses = {c: F.cross_entropy(outputs[c], batch["labels"][c], ignore_index=255).item()
                        for c in schema.CHARTS}
        if max(chart_losses.values()) < THRESHOLD:
            break
        optimizer.zero_grad()
        loss_fn(outputs, batch["labels"])[0].backward()
        optimizer.step()
    assert max(chart_losses.values()) < THRESHOLD, f"after {MAX_STEPS} steps: {chart_losses}"
