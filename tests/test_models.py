import torch

from seaice_lib import schema
from seaice_lib.dataset import upsample_grid2km
from seaice_lib.models import UNet


def test_upsample_grid2km_follows_the_store_rule():
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(3, 5, 7, 7, generator=g)
    offset = torch.tensor([[0, 24], [12, 3], [30, 41]])
    out = upsample_grid2km(grid, offset, patch=20, downsample=5)
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
