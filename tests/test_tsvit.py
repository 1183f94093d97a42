"""TSViT v1/v2/v3: shapes and gradients, masking, dates, un-patchify, fusion.

Golden outputs of every model, on tests/model_batches.py's batch, are pinned in tests/test_models.py.
"""

import pytest
import torch

from seaice_lib import schema
from seaice_lib.grid import upsample_cells
from seaice_lib.models import TSViT, create_model, model_names, model_sizes
from seaice_lib.models.tsvit import cell_centres, date_index, patch_centres, record_attention, unpatchify
from tests.model_batches import G, P, mixed_batch

DS = 10  # downsample


def _model(name: str, **kwargs) -> TSViT:
    torch.manual_seed(0)
    return create_model(name, "tiny", **kwargs).eval()


def _run(model: TSViT, batch: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(batch)


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Outputs differ well beyond float noise (the invariance checks allow 1e-6)."""
    return (a - b).abs().max().item() > 1e-5


@pytest.mark.parametrize("name, kwargs", [
    ("tsvit_v1", {}), ("tsvit_v2", {"sic_mode": "regression"}), ("tsvit_v3", {"optical_channels": 4}),
    ("tsvit_v3", {"fusion": "early", "optical_channels": 4, "sic_mode": "regression"}),
    ("tsvit_v2", {"dropout": 0.1, "drop_path": 0.1, "date_encoding": "days_before"}),
])
def test_shapes_and_gradients(name, kwargs):
    model = _model(name, **kwargs).train()
    out = model(mixed_batch())
    sic = 1 if kwargs.get("sic_mode") == "regression" else 11
    assert {c: tuple(v.shape) for c, v in out.items()} == {
        "SIC": (3, sic, P, P), "SOD": (3, 6, P, P), "FLOE": (3, 7, P, P)}
    sum(v.square().mean() for v in out.values()).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["tsvit_v2", "tsvit_v3"])
def test_padding_and_uncovered_steps_change_nothing(name):
    model, batch = _model(name), mixed_batch()
    ref = _run(model, batch)
    changed = dict(batch, sar=batch["sar"].clone(), day_of_year=batch["day_of_year"].clone(),
                   days_before=batch["days_before"].clone())
    changed["sar"][~batch["step_mask"]] = 5.0  # padded steps
    changed["sar"][0, 1, :, :4, :4] = -3.0  # step 1 of sample 0 has no valid pixel at token (0, 0)
    changed["day_of_year"][~batch["step_mask"]] = 77
    changed["days_before"][~batch["step_mask"]] = 12.0
    for chart, out in _run(model, changed).items():
        torch.testing.assert_close(out, ref[chart], atol=1e-6, rtol=0)
    real = dict(batch, sar=batch["sar"].clone())
    real["sar"][0, 0] += 1.0  # an earlier real step of sample 0
    assert _differs(_run(model, real)["SOD"][0], ref["SOD"][0])


def test_uncovered_step_is_not_attended():
    """Without spatial mixing, token (0, 0) of sample 0 gives what it gives without step 1 at all."""
    model, batch = _model("tsvit_v2", spatial_depth=0), mixed_batch()
    keep = [0, 2, 3]
    dropped = {key: batch[key][:, keep]
               for key in ("sar", "sar_mask", "step_mask", "day_of_year", "days_before")}
    ref, out = _run(model, batch), _run(model, batch | dropped)
    for chart in schema.CHARTS:
        torch.testing.assert_close(out[chart][0, :, :4, :4], ref[chart][0, :, :4, :4], atol=1e-6, rtol=0)
        assert _differs(out[chart][0, :, 4:, 4:], ref[chart][0, :, 4:, 4:])


def test_date_indices_and_padding_embedding():
    batch = {"day_of_year": torch.tensor([[1, 366, 200], [45, 0, 9]]),
             "days_before": torch.tensor([[18.4, 18.6, 0.0], [45.0, 3.0, 2.0]]),
             "step_mask": torch.tensor([[True, True, True], [True, False, False]])}
    assert date_index(batch, "day_of_year").tolist() == [[1, 366, 200], [45, 0, 0]]
    # whole days + 1: 18.4 -> 18, 18.6 -> 19, 45 -> clamped to 30, padding -> 0
    assert date_index(batch, "days_before", max_days_before=30).tolist() == [[19, 20, 1], [31, 0, 0]]
    with pytest.raises(ValueError, match="date_encoding"):
        date_index(batch, "month")
    for encoding in ("day_of_year", "days_before"):
        model = _model("tsvit_v2", date_encoding=encoding)
        assert model.date_embed.padding_idx == 0 and not model.date_embed.weight[0].any()
        ref = _run(model, mixed_batch())
        for key in ("day_of_year", "days_before"):
            moved = mixed_batch()  # move the date of sample 0's first (real) step
            moved["day_of_year"][0, 0] = moved["day_of_year"][0, 0] % 300 + 10
            moved["days_before"][0, 0] = 25.0 if moved["days_before"][0, 0] < 15 else 5.0
            moved = mixed_batch() | {key: moved[key]}
            out = _run(model, moved)["SIC"]
            if key == encoding:
                assert _differs(out, ref["SIC"]), encoding
            else:  # the other date field is ignored
                torch.testing.assert_close(out, ref["SIC"], atol=1e-6, rtol=0)


def test_unpatchify_puts_each_token_on_its_own_patch():
    n, p = 3, 2
    pixels = torch.arange(n * n)[None, None, :, None] * 10 + torch.arange(p * p)  # token * 10 + inside
    image = unpatchify(pixels, n, p)[0, 0]
    for y in range(n * p):
        for x in range(n * p):
            token, inside = (y // p) * n + x // p, (y % p) * p + x % p
            assert image[y, x] == token * 10 + inside


def test_each_token_predicts_its_own_patch():
    """Without the spatial encoder, perturbing one token's pixels moves only that token's outputs."""
    model, batch = _model("tsvit_v2", spatial_depth=0), mixed_batch()
    ref = _run(model, batch)
    changed = dict(batch, sar=batch["sar"].clone())
    changed["sar"][:, :, :, 4:8, 12:16] += 2.0  # token (1, 3) of every step
    out = _run(model, changed)
    for chart in schema.CHARTS:
        moved = (out[chart] - ref[chart]).abs().amax(dim=(0, 1)) > 1e-6
        expected = torch.zeros(P, P, dtype=torch.bool)
        expected[4:8, 12:16] = True
        assert torch.equal(moved, expected), chart


def test_the_conv_head_starts_as_the_papers_and_reaches_two_pixels_past_a_token():
    linear, conv = _model("tsvit_v2", spatial_depth=0), _model("tsvit_v2", spatial_depth=0, head="conv")
    missing, unexpected = conv.load_state_dict(linear.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine.") for k in missing)
    batch = mixed_batch()
    ref = _run(linear, batch)
    assert all(torch.equal(_run(conv, batch)[c], ref[c]) for c in schema.CHARTS)  # the refinement starts at zero
    # one step of training makes it more than the identity; then every parameter gets a gradient
    conv.train()
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        sum(v.square().mean() for v in conv(batch).values()).backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())
    for refine in conv.refine.values():  # a trained refinement's weight sizes, for the reach below
        torch.nn.init.normal_(refine.layers[-1].weight, std=0.1)
    conv.eval()
    ref = _run(conv, batch)
    changed = dict(batch, sar=batch["sar"].clone())
    changed["sar"][:, :, :, 4:8, 12:16] += 2.0  # token (1, 3) of every step, at the right edge
    out = _run(conv, changed)
    for chart in schema.CHARTS:  # two 3 x 3 convolutions: the token and two pixels around it, no further
        moved = (out[chart] - ref[chart]).abs().amax(dim=(0, 1)) > 1e-6
        assert moved[2:10, 10:16].all() and not moved[:2].any() and not moved[10:].any(), chart
        assert not moved[:, :10].any(), chart
    with pytest.raises(ValueError, match="head must be one of"):
        _model("tsvit_v1", head="mlp")


def test_v1_sees_the_target_step_only():
    model, batch = _model("tsvit_v1"), mixed_batch()
    ref = _run(model, batch)
    earlier = dict(batch, sar=batch["sar"].clone(), day_of_year=batch["day_of_year"].clone())
    earlier["sar"][0, :3] = 7.0  # sample 0: all but its target (step 3)
    earlier["sar"][1, 0] = 7.0  # sample 1: its target is step 1
    earlier["sar"][2, 1:] = 7.0  # sample 2: padding after its only step
    earlier["day_of_year"][0, :3] = 9
    for chart, out in _run(model, earlier).items():
        torch.testing.assert_close(out, ref[chart], atol=1e-6, rtol=0)
    target = dict(batch, sar=batch["sar"].clone())
    target["sar"][1, 1] += 1.0
    assert _differs(_run(model, target)["SOD"][1], ref["SOD"][1])


@pytest.mark.parametrize("fusion", ["tokens", "early"])
def test_missing_modalities(fusion):
    model, batch = _model("tsvit_v3", fusion=fusion, optical_channels=4), mixed_batch()
    ref = _run(model, batch)
    with_masks = batch | {f"{m}_mask": torch.ones(3, dtype=torch.bool) for m in ("amsr2", "era5", "optical")}
    for chart, out in _run(model, with_masks).items():  # mask True == no mask key
        torch.testing.assert_close(out, ref[chart], atol=1e-6, rtol=0)
    missing = batch | {"amsr2_mask": torch.tensor([True, False, True])}
    out_missing = _run(model, missing)
    scrambled = missing | {"amsr2": batch["amsr2"].clone()}
    scrambled["amsr2"][1] = torch.randn(14, G, G) * 100
    for chart, out in _run(model, scrambled).items():
        torch.testing.assert_close(out, out_missing[chart], atol=1e-6, rtol=0)
    torch.testing.assert_close(out_missing["SOD"][[0, 2]], ref["SOD"][[0, 2]], atol=1e-6, rtol=0)
    assert _differs(out_missing["SOD"][1], ref["SOD"][1])
    # AMSR2 values matter when present
    present = batch | {"amsr2": batch["amsr2"] + 1.0}
    assert _differs(_run(model, present)["SOD"], ref["SOD"])


@pytest.mark.parametrize("fusion", ["tokens", "early"])
def test_optical_present_or_absent(fusion):
    model, batch = _model("tsvit_v3", fusion=fusion, optical_channels=4), mixed_batch()
    ref = _run(model, batch)
    absent = {k: v for k, v in batch.items() if k != "optical"}
    masked = batch | {"optical_mask": torch.zeros(3, dtype=torch.bool)}
    out_absent, out_masked = _run(model, absent), _run(model, masked)
    for chart in schema.CHARTS:
        torch.testing.assert_close(out_masked[chart], out_absent[chart], atol=1e-5, rtol=0)
        assert _differs(out_absent[chart], ref[chart])
    other = batch | {"optical": batch["optical"] * -1.0}
    assert _differs(_run(model, other)["SOD"], ref["SOD"])


def test_modality_dropout_only_in_training():
    model, batch = _model("tsvit_v3", modality_dropout=0.5, optical_channels=4), mixed_batch(lengths=(2,) * 16)
    assert all(p.all() for p in model.modality_present(batch).values())  # eval: nothing dropped
    model.train()
    torch.manual_seed(5)
    present = model.modality_present(batch)
    assert 0 < sum(int(p.sum()) for p in present.values()) < 3 * 16
    torch.manual_seed(5)
    trained = model(batch)
    masks = {f"{name}_mask": keep for name, keep in present.items()}
    expected = _run(model.eval(), batch | masks)
    for chart in schema.CHARTS:
        torch.testing.assert_close(trained[chart].detach(), expected[chart], atol=1e-6, rtol=0)
    without_dropout = _run(model, batch)  # eval mode again: all present
    assert _differs(without_dropout["SOD"], expected["SOD"])


def test_cell_centres_match_the_store_rule():
    offset = torch.tensor([[3, 17], [24, 0]])
    centres = cell_centres(offset, 7, 7, downsample=DS).reshape(2, 7, 7, 2)
    # cell (0, 0) of sample 0: 80 m centre 12.5 -> (12.5 - 3 - 0.5) / 10 + 0.5 = 1.4
    assert centres[0, 0, 0].tolist() == pytest.approx([1.4, -0.0])
    assert centres[1, 2, 3].tolist() == pytest.approx([(62.5 - 24.5) / 10 + 0.5, (87.5 - 0.5) / 10 + 0.5])
    # every pixel centre (i + 0.5) lies inside the cell the store assigns it to
    cells = torch.arange(7.0)[None, :, None, None].expand(2, 7, 7, 1)
    grid = torch.cat([cells, cells.transpose(1, 2)], -1).permute(0, 3, 1, 2)  # (B, 2, G, G): cell (r, c)
    assigned = upsample_cells(grid, offset, P, DS)  # (B, 2, P, P)
    half = schema.CELL_80M / (2 * DS)
    for b in range(2):
        for i in range(P):
            for j in range(P):
                r, c = assigned[b, :, i, j].long().tolist()
                assert abs(i + 0.5 - centres[b, r, c, 0]) < half and abs(j + 0.5 - centres[b, r, c, 1]) < half


def test_each_location_gets_the_cell_under_its_centre():
    """The local 2 km token of each SAR location is the cell the store assigns its centre pixel."""
    model = _model("tsvit_v3")
    offset = torch.tensor([[3, 17], [24, 0], [12, 12]])
    cells = G
    index = torch.arange(cells * cells, dtype=torch.float32).reshape(1, 1, cells, cells).expand(3, 1, -1, -1)
    assigned = upsample_cells(index, offset, P, DS)[:, 0]  # (B, P, P): flat cell index per pixel
    centre = torch.arange(model.grid) * model.patch_size + model.patch_size // 2
    expected = assigned[:, centre[:, None], centre[None, :]].flatten(1).long()
    assert torch.equal(model._cell_under_tokens(offset, cells), expected)
    # without the spatial stage, only a location's own cell reaches it: changing that cell moves
    # exactly the patches of the tokens above it, changing a cell under no token centre moves nothing
    torch.manual_seed(0)
    local_only = create_model("tsvit_v3", "tiny", spatial_depth=0).eval()
    batch = mixed_batch(optical=False)
    ref = _run(local_only, batch)["SOD"]
    under = local_only._cell_under_tokens(batch["grid2km_offset"], G)[0]  # (N,) sample 0
    changed = dict(batch, amsr2=batch["amsr2"].clone())
    cell = int(under[0])
    changed["amsr2"][0, :, cell // G, cell % G] += 3.0
    moved = (_run(local_only, changed)["SOD"][0] - ref[0]).abs().amax(dim=0) > 1e-5  # (P, P)
    p = local_only.patch_size
    expect = (under == cell).reshape(local_only.grid, local_only.grid).repeat_interleave(p, 0).repeat_interleave(p, 1)
    assert torch.equal(moved, expect)
    elsewhere = dict(batch, amsr2=batch["amsr2"].clone())
    unused = next(c for c in range(G * G) if c not in set(under.tolist()))
    elsewhere["amsr2"][0, :, unused // G, unused % G] += 3.0
    assert torch.equal(_run(local_only, elsewhere)["SOD"], ref)


def test_patch_centres():
    assert patch_centres(2, 2, 4).tolist() == [[2, 2], [2, 6], [6, 2], [6, 6]]
    # optical 32 px over a 16 px patch (scale 0.5), 8 px tokens: centres at 2 and 6 patch pixels
    assert patch_centres(1, 2, 8, scale=0.5).tolist() == [[2, 2], [2, 6]]


def test_tokens_and_positions_start_small():
    torch.manual_seed(0)
    model = create_model("tsvit_v3", "small")
    for tokens in (model.class_tokens, model.space_pos, model.date_embed.weight[1:], model.modality_embed):
        assert tokens.std().item() == pytest.approx(0.02, rel=0.2)
        assert tokens.mean().abs() < 0.005
    assert not model.date_embed.weight[0].any()


def test_registry_and_argument_errors():
    assert {"tsvit_v1", "tsvit_v2", "tsvit_v3"} <= set(model_names())
    assert create_model("tsvit_v3", "base").spatial_encoder.blocks.__len__() == 4
    assert all(model_sizes(name) == ("tiny", "small", "base") for name in model_names())  # TrainConfig's choices
    for name in ("tsvit_v2", "unet"):
        with pytest.raises(ValueError, match=f"unknown size 'huge' for {name}"):
            create_model(name, "huge")
    with pytest.raises(ValueError, match="must divide img_size"):
        create_model("tsvit_v2", "tiny", patch_size=3)
    with pytest.raises(ValueError, match="16 x 16 patches"):
        wrong_size = {"sar": torch.zeros(3, 4, 3, 20, 20), "sar_mask": torch.ones(3, 4, 20, 20)}
        _model("tsvit_v2")(mixed_batch() | wrong_size)
    with pytest.raises(ValueError, match="optical_channels needs fusion"):
        create_model("tsvit_v2", "tiny", optical_channels=4)


@pytest.mark.parametrize("name, kwargs", [("tsvit_v1", {}), ("tsvit_v2", {}),
                                          ("tsvit_v3", {"optical_channels": 4, "temporal_depth": 2}),
                                          ("tsvit_v3", {"fusion": "early", "optical_channels": 4})])
def test_recorded_attention_reproduces_the_fast_path(name, kwargs):
    """Under record_attention the written-out attention gives SDPA's outputs, its weights are
    distributions over the keys with masked keys at 0, and the fast path is back afterwards."""
    model, batch = _model(name, downsample=DS, **kwargs), mixed_batch()
    fast = _run(model, batch)
    with record_attention(model) as record, torch.no_grad():
        recorded = model(batch)
    for chart in fast:
        torch.testing.assert_close(recorded[chart], fast[chart], atol=1e-5, rtol=1e-5)
    b, n, k = 3, (P // 4) ** 2, model.n_tokens
    t = 1 if name == "tsvit_v1" else 4
    fused = 2 if model.fusion == "tokens" else 0
    assert len(record.temporal) == len(model.temporal_encoder.blocks)
    assert len(record.spatial) == len(model.spatial_encoder.blocks)
    context = sum(record.context.values())
    assert record.context == ({"amsr2": G * G, "era5": G * G, "optical": 16} if fused else {})
    for w in record.temporal:
        assert w.shape == (b, n, model.temporal_encoder.blocks[0].attn.heads, k + t + fused, k + t + fused)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    for w in record.spatial:
        assert w.shape == (b, k, w.shape[2], n, n + context)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    if name != "tsvit_v1":  # sample 2 has one step: its padding steps get no attention
        assert record.temporal[0][2, :, :, :, k + 1:k + t].abs().max() == 0
        # step 1 of sample 0 does not cover token (0, 0): no location-0 query attends to it
        assert record.temporal[0][0, 0, :, :, k + 1].abs().max() == 0
    assert all(blk.attn.recorded is None for blk in model.temporal_encoder.blocks)
    assert "forward_features" not in vars(model)
    again = _run(model, batch)
    for chart in fast:
        assert torch.equal(again[chart], fast[chart])


# ---- training options: every one leaves the function alone (goldens: tests/test_models.py)
def _train_step(model: TSViT, batch: dict, seed: int = 3) -> tuple[dict, dict]:
    """Outputs and parameter gradients of one training forward + backward, dropout drawn from ``seed``."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model.train()(batch)
    sum(v.square().mean() for v in out.values()).backward()
    return {c: v.detach() for c, v in out.items()}, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_attention_without_a_mask_is_attention_with_every_key_valid():
    from seaice_lib.models.tsvit import attention_weights, masked_attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 2, 7, 4, generator=gen) for _ in range(3))
    every = torch.ones(5, 7, dtype=torch.bool)
    torch.testing.assert_close(masked_attention(q, k, v, None), masked_attention(q, k, v, every), atol=1e-6, rtol=0)
    by_hand = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)  # head size 4
    torch.testing.assert_close(attention_weights(q, k, None), by_hand, atol=1e-6, rtol=0)
    torch.testing.assert_close(masked_attention(q, k, v, None), by_hand @ v, atol=1e-6, rtol=0)


def test_fused_projection_is_the_two_linears():
    """Without context one GEMM gives q, k, v; it is q(x) and kv(x) (parameters and state dict unchanged)."""
    from seaice_lib.models.tsvit import Attention

    torch.manual_seed(0)
    attn = Attention(8, 2)
    assert set(attn.state_dict()) == {"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias"}
    x = torch.randn(3, 5, 8)
    q = attn.q(x).reshape(3, 5, 2, 4).transpose(1, 2)
    k, v = attn.kv(x).reshape(3, 5, 2, 2, 4).permute(2, 0, 3, 1, 4)
    expected = attn.proj(torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1).matmul(v).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(attn(x, None), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, kwargs", [
    ("tsvit_v2", {"dropout": 0.1, "drop_path": 0.1}),
    ("tsvit_v3", {"dropout": 0.1, "drop_path": 0.1, "modality_dropout": 0.3, "optical_channels": 4})])
def test_checkpointing_recomputes_blocks_and_changes_nothing(name, kwargs):
    """With ``checkpoint=True`` every block runs twice in a training step (forward, and again in
    backward) and outputs and gradients are bit-identical, dropout included (same RNG draws)."""
    plain, checkpointed = _model(name, **kwargs), _model(name, checkpoint=True, **kwargs)
    batch = mixed_batch()
    ref_out, ref_grads = _train_step(plain, batch)
    calls = []
    for block in checkpointed.temporal_encoder.blocks:  # (forward hooks do not see the recomputation)
        block.forward = lambda *args, forward=block.forward: calls.append(1) or forward(*args)
    out, grads = _train_step(checkpointed, batch)
    assert len(calls) == 2 * len(checkpointed.temporal_encoder.blocks)
    for chart in ref_out:
        assert torch.equal(out[chart], ref_out[chart]), chart
    for pname, grad in ref_grads.items():
        assert torch.equal(grads[pname], grad), pname
    calls.clear()
    _run(checkpointed, batch)  # no gradients: no recomputation
    assert len(calls) == len(checkpointed.temporal_encoder.blocks)


def test_checkpointing_leaves_recorded_attention_alone():
    """Under record_attention a checkpointed model runs its blocks once and keeps the attention's graph."""
    model, batch = _model("tsvit_v2", checkpoint=True, temporal_depth=2), mixed_batch()
    with record_attention(model.train()) as record:
        out = model(batch)
        record.retain_grad()
        out["SOD"].sum().backward()
    assert [len(t) for t in (record.raw_temporal, record.raw_spatial)] == [2, 1]
    assert all(g.abs().sum() > 0 for g in record.temporal_grads())


@pytest.mark.parametrize("name, kwargs", [("tsvit_v2", {}), ("tsvit_v3", {"optical_channels": 4})])
def test_bf16_autocast_stays_close(name, kwargs):
    """Under CPU bf16 autocast (8-bit mantissa) outputs stay within 0.01 of fp32 (the tiny model's
    outputs reach about 0.3; measured differences are about 0.002)."""
    model, batch = _model(name, **kwargs), mixed_batch()
    ref = _run(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _run(model, batch)
    for chart in ref:
        assert low[chart].dtype == torch.bfloat16
        torch.testing.assert_close(low[chart].float(), ref[chart], atol=1e-2, rtol=0)


@pytest.mark.slow  # inductor compiles a training graph: about 45 s on one core
def test_compiled_training_step_matches_eager():
    """``model.compile()`` (what TrainConfig.compile does): outputs within 1e-5 and gradients within
    1e-4 of eager, without dropout (inductor draws its own dropout masks), state dict unchanged."""
    model, batch = _model("tsvit_v2"), mixed_batch()
    ref_out, ref_grads = _train_step(model, batch)
    keys = list(model.state_dict())
    model.compile()
    out, grads = _train_step(model, batch)
    assert list(model.state_dict()) == keys
    for chart in ref_out:
        torch.testing.assert_close(out[chart], ref_out[chart], atol=1e-5, rtol=0)
    for pname, grad in ref_grads.items():
        torch.testing.assert_close(grads[pname], grad, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # inductor compiles the training graph: about a minute on one core
def test_a_compiled_run_trains_the_same_weights_within_rounding(patch_store, tmp_path):
    """``compile: true`` through `seaice train` (no dropout; SGD, so a weight moves by lr times its
    gradient): the losses of the two steps within 1e-5 relative and the weights of model.pt, saved
    under the uncompiled names, within 1e-6 of the eager run's."""
    from torch._dynamo.utils import counters

    from seaice_lib.engine.training import train
    from tests.training_runs import metrics_rows, run_weights, train_config

    runs, losses, graphs = {}, {}, {}
    for compiled in (False, True):
        out = tmp_path / f"compile_{compiled}"
        counters.clear()
        train(train_config(patch_store, out, model="tsvit_v2", steps=2, steps_per_epoch=1, evaluate=False,
                   optimizer="sgd", compile=compiled, model_kwargs={"dropout": 0.0, "drop_path": 0.0}))
        runs[compiled] = run_weights(out)
        losses[compiled] = [float(row["train_loss"]) for row in metrics_rows(out)]
        graphs[compiled] = counters["stats"]["unique_graphs"]
    assert graphs[False] == 0 and graphs[True] > 0  # dynamo traced the model only when asked to
    assert list(runs[True]) == list(runs[False])
    assert losses[False][1] != losses[False][0]  # the first step moved the weights
    assert len(losses[True]) == 2 and losses[True] == pytest.approx(losses[False], rel=1e-5)
    for name, weight in runs[False].items():
        torch.testing.assert_close(runs[True][name], weight, atol=1e-6, rtol=0)


def test_a_checkpointed_run_trains_the_same_weights(patch_store, tmp_path):
    """``model_kwargs: {checkpoint: true}`` through `seaice train` (dropout on): the weights of
    model.pt are bit-identical to those of the same run without it."""
    from seaice_lib.engine.training import train
    from tests.training_runs import run_weights, train_config

    runs = {}
    for checkpoint in (False, True):
        out = tmp_path / f"checkpoint_{checkpoint}"
        train(train_config(patch_store, out, model="tsvit_v2", steps=2, steps_per_epoch=2, evaluate=False,
                   model_kwargs={"checkpoint": checkpoint, "dropout": 0.1, "drop_path": 0.1}))
        runs[checkpoint] = run_weights(out)
    assert runs[False].keys() == runs[True].keys()
    assert all(torch.equal(runs[False][k], runs[True][k]) for k in runs[False])
