import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seaice_lib import schema
from seaice_lib.engine.losses import (
    LossConfig,
    MultiTaskLoss,
    class_weights,
    cross_entropy,
    focal_loss,
    regression_mse,
    store_class_weights,
)


def _logits_and_target(k=6, seed=0, unlabelled=0.3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 5, 7, generator=g, requires_grad=True)
    target = torch.randint(0, k, (2, 5, 7), generator=g)
    target[torch.rand(2, 5, 7, generator=g) < unlabelled] = 255
    return logits, target


def test_cross_entropy_equals_torch_on_labelled_pixels():
    logits, target = _logits_and_target()
    keep = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    assert torch.allclose(cross_entropy(logits, target), expected)
    # 255 pixels are ignored: changing their logits changes nothing
    moved = logits.detach().clone()
    moved.permute(0, 2, 3, 1)[~keep] += 100.0
    assert torch.allclose(cross_entropy(moved, target), expected)


def test_weighted_cross_entropy_is_a_mean_over_labelled_pixels():
    logits, target = _logits_and_target()
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 4.0])
    keep = target != 255
    per_pixel = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep], reduction="none")
    expected = (per_pixel * w[target[keep]]).sum() / keep.sum()
    assert torch.allclose(cross_entropy(logits, target, w), expected)


def test_class_weights_follow_the_formula():
    totals = np.array([600.0, 300.0, 100.0, 0.0])
    p = np.array([0.6, 0.3, 0.1])
    w = class_weights(totals, "inverse", max_weight=100.0).numpy()
    expected = (1 / p) / (p * (1 / p)).sum()
    assert np.allclose(w[:3], expected) and w[3] == 100.0
    assert np.isclose((p * w[:3]).sum(), 1.0)
    w = class_weights(totals, "inverse_sqrt", max_weight=100.0).numpy()
    raw = p ** -0.5
    assert np.allclose(w[:3], raw / (p * raw).sum())
    capped = class_weights(totals, "inverse", max_weight=2.0).numpy()
    assert capped.max() == 2.0 and np.isclose(capped[0], expected[0])
    assert torch.equal(class_weights(totals, "none"), torch.ones(4))
    assert class_weights(totals).dtype == torch.float32
    with pytest.raises(ValueError, match="weighting"):
        class_weights(totals, "sqrt")
    with pytest.raises(ValueError, match="positive sum"):
        class_weights([0, 0])


def test_store_class_weights_read_the_index(patch_store):
    import zarr
    totals = zarr.open_group(str(patch_store), mode="r")["index"].attrs["class_totals"]
    weights = store_class_weights(patch_store, "inverse")
    assert set(weights) == set(schema.CHARTS)
    for chart in schema.CHARTS:
        # the "inverse" formula written out: c / p_k with sum_k p_k w_k = 1, capped at 10 (the default),
        # 10 for an absent class
        counts = np.asarray(totals[chart], np.float64)
        assert len(counts) == schema.N_CLASSES[chart] and counts.sum() > 0
        seen = counts > 0
        p = counts[seen] / counts.sum()
        expected = np.full(len(counts), 10.0)
        expected[seen] = np.minimum((1 / p) / seen.sum(), 10.0)  # sum_k p_k / p_k = number of seen classes
        np.testing.assert_allclose(weights[chart].numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="class_totals"):
        store_class_weights(patch_store.parent / "missing.zarr")


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_pixels():
    logits, target = _logits_and_target()
    alpha = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 4.0])
    keep = target != 255
    per_pixel = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep], reduction="none")
    assert torch.allclose(focal_loss(logits, target, 0.0), per_pixel.mean())
    assert torch.allclose(focal_loss(logits, target, 0.0, alpha), (per_pixel * alpha[target[keep]]).mean())
    # an easy pixel (p_y ~ 0.97) loses far more than a hard one (p_y ~ 0.1) when gamma > 0
    easy = torch.tensor([[4.0, 0.0, 0.0]]).reshape(1, 3, 1, 1)
    hard = torch.tensor([[0.0, 2.0, 2.0]]).reshape(1, 3, 1, 1)
    y = torch.zeros(1, 1, 1, dtype=torch.int64)
    ratio_easy = focal_loss(easy, y, 2.0) / cross_entropy(easy, y)
    ratio_hard = focal_loss(hard, y, 2.0) / cross_entropy(hard, y)
    assert ratio_easy < 0.01 and ratio_hard > 0.5


def test_regression_mse_ignores_unlabelled_pixels():
    out = torch.tensor([[[[1.0, 2.0], [7.0, 100.0]]]], requires_grad=True)
    target = torch.tensor([[[0, 2], [10, 255]]])
    loss = regression_mse(out, target)
    assert torch.isclose(loss, torch.tensor((1.0 + 0.0 + 9.0) / 3))
    loss.backward()
    assert out.grad[0, 0, 1, 1] == 0


def _outputs(sic_channels=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {c: torch.randn(2, sic_channels if c == "SIC" else n, 4, 4, generator=g, requires_grad=True)
            for c, n in schema.N_CLASSES.items()}


def _labels(seed=1):
    g = torch.Generator().manual_seed(seed)
    return {c: torch.randint(0, n, (2, 4, 4), generator=g) for c, n in schema.N_CLASSES.items()}


def test_all_unlabelled_batch_gives_zero_and_finite_gradients():
    for sic_mode, channels in (("classification", 11), ("regression", 1)):
        for kind in ("ce", "focal"):
            outputs = _outputs(channels)
            labels = {c: torch.full((2, 4, 4), 255) for c in schema.CHARTS}
            total, parts = MultiTaskLoss(LossConfig(kind=kind), sic_mode=sic_mode)(outputs, labels)
            assert total.item() == 0 and all(v.item() == 0 for v in parts.values())
            total.backward()
            assert all(o.grad is not None and torch.isfinite(o.grad).all() for o in outputs.values())


def test_task_weights_combine_the_chart_losses():
    outputs, labels = _outputs(1), _labels()
    cfg = LossConfig(task_weights={"SIC": 1.0, "SOD": 3.0, "FLOE": 3.0})
    total, parts = MultiTaskLoss(cfg, sic_mode="regression")(outputs, labels)
    # every pixel of _labels() is labelled: plain means over all pixels
    assert torch.isclose(parts["SIC"], ((outputs["SIC"][:, 0] - labels["SIC"].float()) ** 2).mean())
    assert torch.isclose(parts["SOD"], F.cross_entropy(outputs["SOD"], labels["SOD"]))
    assert torch.isclose(parts["FLOE"], F.cross_entropy(outputs["FLOE"], labels["FLOE"]))
    assert torch.isclose(total, parts["SIC"] + 3 * parts["SOD"] + 3 * parts["FLOE"])
    assert not any(p.requires_grad for p in parts.values())
    half = MultiTaskLoss(LossConfig(task_weights={"SIC": 0.5, "SOD": 0.0, "FLOE": 2.0}), sic_mode="regression")
    assert torch.isclose(half(outputs, labels)[0], 0.5 * parts["SIC"] + 2 * parts["FLOE"])


def test_class_weights_reach_the_chart_losses_and_bad_shapes_fail():
    outputs, labels = _outputs(), _labels()
    w = {"SOD": torch.arange(1.0, 7.0)}
    loss = MultiTaskLoss(LossConfig(), class_weights=w)
    # sum of w_y * CE over the (all labelled) pixels / their count, not torch's / sum of weights
    per_pixel = F.cross_entropy(outputs["SOD"], labels["SOD"], reduction="none")
    expected = (per_pixel * w["SOD"][labels["SOD"]]).mean()
    assert torch.isclose(loss.chart_loss("SOD", outputs["SOD"], labels["SOD"]), expected)
    with pytest.raises(ValueError, match="sic_mode='regression'"):
        MultiTaskLoss()(_outputs(1), labels)
    with pytest.raises(ValueError, match="6 values"):
        MultiTaskLoss(class_weights={"SOD": torch.ones(5)})
    with pytest.raises(ValueError, match="label_smoothing"):
        LossConfig(kind="focal", label_smoothing=0.1)
    with pytest.raises(ValueError, match="unknown charts"):
        LossConfig(task_weights={"SIT": 1.0})
