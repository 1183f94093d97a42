"""Every model: golden outputs; the U-Net baseline and the 2 km placement it relies on.

The golden outputs (tests/data/model_golden.json) pin each model's architecture and
initialisation on the batch of tests/model_batches.py: after a deliberate change, regenerate them with
``python -m tests.test_models --regenerate`` and say why in the commit.
"""

import argparse
import json
from pathlib import Path

import pytest
import torch

from seaice_lib import schema
from seaice_lib.grid import upsample_cells
from seaice_lib.models import UNet, create_model, model_names
from tests.model_batches import mixed_batch

GOLDEN_PATH = Path(__file__).parent / "data" / "model_golden.json"
# key -> (registry name, kwargs of its tiny config)
GOLDEN = {
    "unet": ("unet", {"downsample": 10}),
    "unet_regression": ("unet", {"downsample": 10, "sic_mode": "regression"}),
    "tsvit_v1": ("tsvit_v1", {}),
    "tsvit_v2": ("tsvit_v2", {}),
    "tsvit_v2_days_before": ("tsvit_v2", {"date_encoding": "days_before"}),
    "tsvit_v3": ("tsvit_v3", {"optical_channels": 4}),
    "tsvit_v3_early": ("tsvit_v3", {"fusion": "early", "optical_channels": 4}),
    "tsvit_v3_regression": ("tsvit_v3", {"sic_mode": "regression"}),
}
GOLDEN_ELEMENTS = ((0, 0, 0, 0), (1, 2, 5, 9), (2, -1, -1, -1), (0, 3, 15, 4))


def _summary(outputs: dict[str, torch.Tensor]) -> dict:
    return {chart: {"sum": out.double().sum().item(), "abs_sum": out.double().abs().sum().item(),
                    "elements": [out[b, k % out.shape[1], y, x].item() for b, k, y, x in GOLDEN_ELEMENTS]}
            for chart, out in outputs.items()}


def _golden(key: str) -> dict:
    name, kwargs = GOLDEN[key]
    torch.manual_seed(0)
    model = create_model(name, "tiny", **kwargs).eval()
    with torch.no_grad():
        return _summary(model(mixed_batch()))


def test_every_model_has_golden_outputs():
    assert {name for name, _ in GOLDEN.values()} == set(model_names())


@pytest.mark.parametrize("key", GOLDEN)
def test_golden_outputs(key):
    expected = json.loads(GOLDEN_PATH.read_text())[key]
    got = _golden(key)
    assert got.keys() == expected.keys()
    for chart, values in expected.items():
        for stat in ("sum", "abs_sum"):
            assert got[chart][stat] == pytest.approx(values[stat], rel=1e-4, abs=1e-5), (chart, stat)
        assert got[chart]["elements"] == pytest.approx(values["elements"], rel=1e-4, abs=1e-6), chart


def test_upsample_cells_follows_the_store_rule():
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(3, 5, 7, 7, generator=g)
    offset = torch.tensor([[0, 24], [12, 3], [30, 41]])
    out = upsample_cells(grid, offset, patch=20, downsample=5)
    assert out.shape == (3, 5, 20, 20)
    for b in range(3):
        for i in range(20):
            for j in range(20):
                r = min((int(offset[b, 0]) + i * 5) // 25, 6)
                c = min((int(offset[b, 1]) + j * 5) // 25, 6)
                assert torch.equal(out[b, :, i, j], grid[b, :, r, c])


def _batch(t=3, p=32, g=4):
    gen = torch.Generator().manual_seed(1)
    return {"sar": torch.randn(2, t, 3, p, p, generator=gen),
            "step_mask": torch.tensor([[True] * t, [True] + [False] * (t - 1)]),
            "amsr2": torch.randn(2, 14, g, g, generator=gen), "era5": torch.randn(2, 6, g, g, generator=gen),
            "grid2km_offset": torch.tensor([[2, 3], [20, 7]])}


def test_unet_heads_shapes_and_gradients():
    model = UNet(downsample=2)
    out = model(_batch())
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        c: (2, schema.N_CLASSES[c], 32, 32) for c in schema.CHARTS}
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert UNet(grid2km=False).inputs(_batch()).shape == (2, 3, 32, 32)
    # odd sizes go through the padding of the expanding path
    assert UNet(downsample=2)(_batch(p=36))["SOD"].shape == (2, 6, 36, 36)


def test_unet_sees_the_target_step_only():
    model = UNet(downsample=2).eval()
    batch = _batch()
    with torch.no_grad():
        ref = model(batch)["SOD"]
        padded = dict(batch, sar=batch["sar"].clone())
        padded["sar"][1, 1:] = 7.0  # padding steps of sample 1 and earlier steps of sample 0
        padded["sar"][0, :-1] = 7.0
        assert torch.allclose(model(padded)["SOD"], ref)
        changed = dict(batch, sar=batch["sar"].clone())
        changed["sar"][1, 0] += 1.0  # sample 1's only real step is its target
        assert not torch.allclose(model(changed)["SOD"][1], ref[1])


def test_stacked_unet_sees_exactly_its_last_steps():
    """``steps=2``: the target and the step before it, with masks; earlier steps and padding do not
    reach it, and a sample with one real step gets zeros (and a zero mask) for the missing one."""
    model = UNet(downsample=2, steps=2).eval()
    batch = _batch()  # sample 0: 3 real steps; sample 1: 1 real step, then padding
    batch["sar_mask"] = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) > 0.2
    x = model.inputs(batch)
    assert x.shape == (2, 2 * 4 + 20, 32, 32)
    sar, mask = batch["sar"], batch["sar_mask"].float()
    torch.testing.assert_close(x[0, :3], sar[0, 1] * mask[0, 1])
    torch.testing.assert_close(x[0, 3], mask[0, 1])
    torch.testing.assert_close(x[0, 4:7], sar[0, 2] * mask[0, 2])
    assert not x[1, :4].any()  # sample 1 has no step before its target
    torch.testing.assert_close(x[1, 4:7], sar[1, 0] * mask[1, 0])
    with torch.no_grad():
        ref = model(batch)["SOD"]
        moved = dict(batch, sar=batch["sar"].clone())
        moved["sar"][0, 0] = 7.0  # two steps back: out of reach
        moved["sar"][1, 1:] = 7.0  # padding
        torch.testing.assert_close(model(moved)["SOD"], ref)
        moved["sar"][0, 1] += 1.0  # the step before the target: in reach
        assert not torch.allclose(model(moved)["SOD"][0], ref[0])
    with pytest.raises(ValueError, match="steps"):
        UNet(steps=0)


def _regenerate() -> None:
    GOLDEN_PATH.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_PATH.write_text(json.dumps({key: _golden(key) for key in GOLDEN}, indent=1) + "\n")
    print(f"wrote {GOLDEN_PATH}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="golden outputs of every model")
    parser.add_argument("--regenerate", action="store_true", help=f"rewrite {GOLDEN_PATH}")
    if parser.parse_args().regenerate:
        _regenerate()
