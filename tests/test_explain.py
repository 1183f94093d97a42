"""Explanations on constructed cases whose right answer is known, and their sanity checks.

Toy tasks (small models trained here in seconds): in ``step1`` only the second of three
acquisitions carries the class (SOD new vs young) of each 4 x 4 token, at that token; in ``amsr2``
only the AMSR2 cell under each pixel does. Every other input is noise of the same spread. Rollout
is checked against a model whose attention is uniform by construction, worked out by hand.
"""

import functools
import logging
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seaice_lib import schema
from seaice_lib.explain import ablation, attention, attribution, sanity
from seaice_lib.grid import upsample_cells
from seaice_lib.models import create_model

P, G, DS, T = 16, 8, 10, 3
NEW, YOUNG = 1, 2


def toy_batch(task: str, b: int, gen: torch.Generator) -> dict:
    sar = torch.randn(b, T, 3, P, P, generator=gen)
    amsr2, era5 = torch.randn(b, 14, G, G, generator=gen), torch.randn(b, 6, G, G, generator=gen)
    offset = torch.randint(0, 25, (b, 2), generator=gen)
    if task == "step1":  # each 4 x 4 token's class is the sign of its HH at step 1
        sign = torch.where(torch.randn(b, P // 4, P // 4, generator=gen) > 0, 1.0, -1.0)
        sign = sign.repeat_interleave(4, -2).repeat_interleave(4, -1)
        sar[:, 1, 0] = sign * 1.5  # clearly one way or the other
        new = sign > 0
    else:  # each token's class is the sign of AMSR2 channel 0 in the cell under its centre pixel
        centre = upsample_cells(amsr2[:, :1], offset, P, DS)[:, 0, 2::4, 2::4]
        new = (centre > 0).repeat_interleave(4, -2).repeat_interleave(4, -1)
    days = torch.tensor([[250, 253, 256]]).expand(b, T)
    return {"sar": sar, "sar_mask": torch.ones(b, T, P, P, dtype=torch.bool),
            "step_mask": torch.ones(b, T, dtype=torch.bool), "day_of_year": days,
            "days_before": (256 - days).float(), "amsr2": amsr2, "era5": era5, "grid2km_offset": offset,
            "sod": torch.where(new, NEW, YOUNG)}


def train_toy(name: str, task: str, shuffle_labels: bool = False, target: float = 0.97,
              max_steps: int = 400, seed: int = 0, **kwargs):
    """A small model (``tiny`` at width 32, 4 heads: width 16 learns too slowly) trained on
    ``task`` (SOD only) until its accuracy on held-out batches reaches ``target`` (checked every
    20 steps, at most ``max_steps``); with ``shuffle_labels`` the labels are permuted across the
    batch (the label-randomisation sanity check) and it trains ``max_steps``. One thread: these
    toys learn at one thread's float rounding and stall for hundreds of steps at two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_toy(name, task, shuffle_labels, target, max_steps, seed, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _train_toy(name, task, shuffle_labels, target, max_steps, seed, **kwargs):
    torch.manual_seed(seed)
    if name == "unet":
        model = create_model(name, "tiny", downsample=DS, **kwargs)
    else:
        model = create_model(name, "tiny", downsample=DS, img_size=P, **({"dim": 32, "heads": 4} | kwargs))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, max_steps + 1):
        batch = toy_batch(task, 8, gen)
        labels = batch["sod"][torch.randperm(8, generator=gen)] if shuffle_labels else batch["sod"]
        loss = F.cross_entropy(model(batch)["SOD"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not shuffle_labels and step % 20 == 0 and accuracy(model.eval(), task) >= target:
            break
        model.train()
    return model.eval()


def accuracy(model, task: str) -> float:
    batch = toy_batch(task, 32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        return (model(batch)["SOD"].argmax(1) == batch["sod"]).float().mean().item()


@pytest.fixture(scope="module")
def step1_model():
    model = train_toy("tsvit_v2", "step1")
    assert accuracy(model, "step1") >= 0.97  # the toy was learned: its explanations mean something
    return model


@pytest.fixture(scope="module")
def amsr2_model():
    model = train_toy("tsvit_v3", "amsr2", target=0.9, modality_dropout=0.0)
    assert accuracy(model, "amsr2") >= 0.9
    return model


@pytest.fixture(scope="module")
def unet_model():
    """The stacked U-Net (its T steps as channels) trained on the ``step1`` toy."""
    unet = train_toy("unet", "step1", steps=T, grid2km=False)
    assert accuracy(unet, "step1") > 0.95
    return unet


@pytest.fixture(scope="module")
def probe():
    return toy_batch("step1", 8, torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def amsr2_probe():
    return toy_batch("amsr2", 8, torch.Generator().manual_seed(5))


def test_integrated_gradients_pick_the_second_acquisition(step1_model, probe):
    ig = attribution.integrated_gradients(step1_model, probe, "SOD", NEW, steps=64)
    per_step = ig.per_step.abs().mean(0)
    assert per_step.argmax() == 1 and per_step[1] > 3 * per_step[[0, 2]].max(), per_step
    # completeness, against the model's own score difference computed here, on the architecture
    # untrained: a trained toy's score can jump along the path (one did by a seventh of its range
    # within 1/400 of it: saturated attention), which no 64-point rule integrates
    torch.manual_seed(0)
    smooth = create_model("tsvit_v2", "tiny", downsample=DS, img_size=P, dim=32, heads=4).eval()
    ig = attribution.integrated_gradients(smooth, probe, "SOD", NEW, steps=64)
    with torch.no_grad():  # the score explained, written out: the new-ice logit summed over each sample's pixels
        score = smooth(probe)["SOD"][:, NEW].sum((1, 2))
        base = smooth({**probe, "sar": torch.zeros_like(probe["sar"])})["SOD"][:, NEW].sum((1, 2))
    torch.testing.assert_close(ig.per_input["sar"], score - base, atol=1e-3 * float((score - base).abs().max()), rtol=0)


def test_relevance_points_at_the_right_date_for_one_class_in_most_toys(probe):
    """Relevance keeps only positive gradient x attention, so a class a toy carries in the attention
    pattern itself gets none on the step that decides it (docs/explain.md). Which class that is
    depends on the trained toy, and the toy on float rounding (another CPU's kernels train another
    one from the same seed). Measured on five seeds: step 1 leads the relevance of new ice in some
    toys, of young ice in others, of both in one, of neither in one. Asserted: in at least 3 of 5
    toys, one class's relevance (on its own pixels) peaks at step 1."""
    hits = []
    for seed in range(5):
        model = train_toy("tsvit_v2", "step1", seed=seed)
        assert accuracy(model, "step1") >= 0.97
        peaks = [int(attention.relevance(model, probe, "SOD", cls, where=probe["sod"] == cls)["sar"]
                     .sum(-1).mean(0).argmax()) for cls in (NEW, YOUNG)]
        hits.append(1 in peaks)
    assert sum(hits) >= 3, hits


def uniform_model(name: str, **kwargs):
    """A TSViT whose attention is uniform over the keys it may attend: queries and keys are zero."""
    torch.manual_seed(0)
    model = create_model(name, "tiny", downsample=DS, img_size=P, temporal_depth=2, spatial_depth=2, **kwargs)
    with torch.no_grad():
        for block in list(model.temporal_encoder.blocks) + list(model.spatial_encoder.blocks):
            block.attn.q.weight.zero_()
            block.attn.q.bias.zero_()
    return model.eval()


def test_rollout_of_uniform_attention_worked_out_by_hand():
    """Uniform attention over L keys, two layers: each layer is A = 0.5 U + 0.5 I (U = 1/L
    everywhere), so the rollout is A @ A = 0.75 U + 0.25 I (U @ U = U). Temporal sequences have
    L = K + T keys (all steps real and covered), the spatial ones N; v3 adds the cell tokens to
    each temporal sequence and the context tokens as keys that are never queries."""
    batch = toy_batch("step1", 2, torch.Generator().manual_seed(0))
    model = uniform_model("tsvit_v2")
    k, n = model.n_tokens, model.grid ** 2
    _, record = attention.attention_maps(model, batch)
    length = k + T
    expected_t = 0.75 / length  # a class token's share of a step (off the diagonal)
    torch.testing.assert_close(attention.temporal_rollout(record, k),
                               torch.full((2, n, k, T), expected_t))
    torch.testing.assert_close(attention.temporal_attention(record, k), torch.full((2, n, k, T), 1 / length))
    sar = attention.spatial_rollout(record, k)["sar"]  # (B, K, N_out, N_in, T)
    to_location = 0.75 / n + 0.25 * torch.eye(n)
    torch.testing.assert_close(sar, (to_location[:, :, None] * expected_t).expand(2, k, n, n, T))
    # v3: 2 cell tokens join each temporal sequence; 64 AMSR2 + 64 ERA5 context keys join the spatial ones
    model = uniform_model("tsvit_v3", modality_dropout=0.0)
    _, record = attention.attention_maps(model, batch)
    assert record.context == {"amsr2": G * G, "era5": G * G}
    shares = attention.modality_share(record, model.n_tokens)
    keys = n + 2 * G * G
    # local: a class token's steps vs each cell token: T : 1 : 1 (same share each)
    torch.testing.assert_close(shares["local"]["amsr2"], torch.full((2, model.n_tokens, n), 1 / (T + 2)))
    # global: A has rows 0.5/keys everywhere + 0.5 on the diagonal for locations, identity rows
    # for context keys; (A @ A)[loc, ctx] = 0.5/keys * (sum over locations m of A[loc, m]) + A[loc, ctx]
    per_key = 0.5 / keys * (0.5 * n / keys + 0.5) + 0.5 / keys
    torch.testing.assert_close(shares["global"]["amsr2"], torch.full((2, model.n_tokens, n), G * G * per_key))
    # total: (A @ A)[loc, m] = 0.25 n / keys^2 + 0.5 / keys (+ 0.25 when m = loc) for locations m,
    # so a row's mass on the locations is 0.25 n^2 / keys^2 + 0.5 n / keys + 0.25; each location's
    # class token passes 0.75 / (K + T + 2) of it to each of its T steps and 2 cell tokens
    # (temporal rollout as above); each modality adds its G^2 context keys' per_key
    to_locations = 0.25 * n * n / keys ** 2 + 0.5 * n / keys + 0.25
    per_token = to_locations * 0.75 / (model.n_tokens + T + 2)
    sar, amsr2 = T * per_token, per_token + G * G * per_key
    total = {"sar": sar / (sar + 2 * amsr2), "amsr2": amsr2 / (sar + 2 * amsr2)}
    for name, share in total.items():
        torch.testing.assert_close(shares["total"][name], torch.full((2, model.n_tokens, n), share))


def test_rollout_and_relevance_of_no_layers_raise():
    """An encoder without blocks (``temporal_depth=0``) has no attention to roll out: a ValueError
    saying so (the functions returned None, typed as a tensor, found by mypy)."""
    with pytest.raises(ValueError, match="no attention layers"):
        attention.rollout([])
    with pytest.raises(ValueError, match="no attention layers"):
        attention._relevance([])


def test_temporal_attention_and_rollout_favour_the_second_acquisition(step1_model, probe):
    _, record = attention.attention_maps(step1_model, probe)
    k = attention.class_token(step1_model, "SOD", NEW)
    att = attention.temporal_attention(record, step1_model.n_tokens)[:, 0, k]  # top-left location
    roll = attention.temporal_rollout(record, step1_model.n_tokens)[:, 0, k]
    assert att.mean(0).argmax() == 1 and roll.mean(0).argmax() == 1, (att.mean(0), roll.mean(0))


def test_amsr2_is_found_where_it_carries_the_class(amsr2_model, amsr2_probe):
    batch = amsr2_probe
    ig = attribution.integrated_gradients(amsr2_model, batch, "SOD", NEW, steps=24)
    per_channel = {name: ig.maps[name].abs().mean((0, 2, 3)) for name in ("amsr2", "era5")}
    assert per_channel["amsr2"].argmax() == 0, per_channel  # the one variable that carries the class
    assert per_channel["amsr2"][0] > max(per_channel["amsr2"][1:].max(), per_channel["era5"].max())
    _, record = attention.attention_maps(amsr2_model, batch)
    shares = attention.modality_share(record, amsr2_model.n_tokens)
    local = {cls: {name: float(v[:, attention.class_token(amsr2_model, "SOD", cls)].mean())
                   for name, v in shares["local"].items()} for cls in (NEW, YOUNG)}
    # the numbers docs/explain.md reports: attention mass is not evidence. The young-ice token's
    # local attention goes to the AMSR2 cell token; the new-ice token's to SAR, and twice as
    # much to the ERA5 cell token as to AMSR2's, though ERA5 is noise
    assert local[YOUNG]["amsr2"] == pytest.approx(0.70, abs=0.05), local
    for name, share in {"sar": 0.67, "amsr2": 0.10, "era5": 0.23}.items():
        assert local[NEW][name] == pytest.approx(share, abs=0.05), local
    # relevance explains young ice on its pixels by AMSR2, new ice not (docs/explain.md)
    young = batch["sod"] == YOUNG
    per_input = {}
    for cls, where in ((YOUNG, young), (NEW, ~young)):
        rel = attention.relevance(amsr2_model, batch, "SOD", cls, where=where)
        per_input[cls] = {"sar": float(rel["sar"].sum((1, 2)).mean()),
                          "amsr2": float(rel["amsr2"].mean()), "era5": float(rel["era5"].mean())}
    assert per_input[YOUNG]["amsr2"] > 10 * max(per_input[YOUNG]["era5"], per_input[YOUNG]["sar"]), per_input
    assert per_input[NEW]["amsr2"] < min(per_input[NEW]["era5"], per_input[NEW]["sar"]), per_input


def test_unet_gradcam_lights_the_new_ice(unet_model, probe):
    """The stacked U-Net on the ``step1`` toy: Grad-CAM of "new ice" over the new-ice pixels
    lights them, and not the young ice around them."""
    new = probe["sod"] == NEW
    cam = attribution.unet_gradcam(unet_model, probe, "SOD", NEW, where=new)
    assert cam.shape == (8, P, P) and 0 <= cam.min() and cam.max() <= 1
    assert cam[new.numpy()].mean() > 2 * cam[~new.numpy()].mean(), (cam[new.numpy()].mean(), cam[~new.numpy()].mean())


def _new_ice_token(model) -> int:
    return attention.class_token(model, "SOD", NEW)


def _record(model, batch):
    return attention.attention_maps(model, batch)[1]


def _modality_maps(model, batch) -> torch.Tensor:
    """(9, B, N): the new-ice token's local, global and total share maps of SAR, AMSR2 and ERA5."""
    shares = attention.modality_share(_record(model, batch), model.n_tokens)
    return torch.stack([v[:, _new_ice_token(model)] for kind in shares.values() for v in kind.values()])


# explanation -> (toy, (model, its toy's batch) -> the explanation of "new ice", similarity measure)
EXPLANATIONS = {
    "relevance": ("step1", lambda m, b: attention.relevance(m, b, "SOD", NEW)["sar"], sanity.similarity),
    "temporal_attention": ("step1", lambda m, b: attention.temporal_attention(
        _record(m, b), m.n_tokens)[:, :, _new_ice_token(m)], sanity.similarity),
    "temporal_rollout": ("step1", lambda m, b: attention.temporal_rollout(
        _record(m, b), m.n_tokens)[:, :, _new_ice_token(m)], sanity.similarity),
    "spatial_rollout": ("step1", lambda m, b: attention.spatial_rollout(
        _record(m, b), m.n_tokens)["sar"][:, _new_ice_token(m)], sanity.similarity),
    # each share map on its own: pooled, the maps' ranks say which modality gets more (below)
    "modality_share": ("amsr2", _modality_maps, sanity.per_map_similarity),
    "unet_gradcam": ("unet", lambda m, b: torch.from_numpy(attribution.unet_gradcam(
        m, b, "SOD", NEW, where=b["sod"] == NEW)), sanity.similarity),
}
TOYS = {"step1": ("step1_model", "probe"), "amsr2": ("amsr2_model", "amsr2_probe"),
        "unet": ("unet_model", "probe")}
# An explanation fails a check when its rank correlation with the trained model's explanation stays
# at 0.5 or more. Measured on these toys (docs/explain.md): after the weights / the labels, the
# attention-based ones and Grad-CAM at most 0.16 / 0.28, integrated gradients 0.43 / 0.41 (0.27-0.53
# under the label check over seeds and CPUs: asserted on a mean, below); pooled
# modality shares, which fail, 0.66 / 0.92.
SURVIVES = 0.5


@pytest.mark.parametrize("name", EXPLANATIONS)
def test_explanations_fail_when_weights_are_randomised(name, request):
    toy, explain, measure = EXPLANATIONS[name]
    model, batch = (request.getfixturevalue(f) for f in TOYS[toy])
    cascade = sanity.cascading_randomisation(model, lambda m: explain(m, batch), measure=measure)
    names = [group for group, _ in cascade]
    assert names[0] in ("head", "heads") and names[-1] in ("embeddings", "stem"), names
    assert cascade[-1][1] < SURVIVES, cascade  # nothing of the trained explanation is left
    assert measure(explain(model, batch), explain(model, batch)) == pytest.approx(1.0)  # deterministic


@pytest.fixture(scope="module")
def label_randomised(request):
    """Toy -> the same architecture trained ~120 steps on its toy with labels permuted across the
    batch (built on first use)."""
    built = {}

    def get(toy: str):
        if toy not in built:
            name, task, kwargs = {"step1": ("tsvit_v2", "step1", {}),
                                  "amsr2": ("tsvit_v3", "amsr2", {"modality_dropout": 0.0}),
                                  "unet": ("unet", "step1", {"steps": T, "grid2km": False})}[toy]
            built[toy] = train_toy(name, task, shuffle_labels=True, max_steps=120, **kwargs)
            assert accuracy(built[toy], task) < 0.75  # it learned nothing real
        return built[toy]
    return get


def _ig_maps(model, batch):
    return attribution.integrated_gradients(model, batch, "SOD", NEW, steps=8).maps["sar"]


def test_integrated_gradients_fail_when_the_weights_were_redrawn(step1_model, probe):
    cascade = sanity.cascading_randomisation(step1_model, functools.partial(_ig_maps, batch=probe))
    assert cascade[-1][1] < SURVIVES, cascade


def test_integrated_gradients_fail_when_labels_were_randomised_on_average_over_toys(probe):
    """Integrated gradients sit near the threshold under the label check: rank correlation 0.27 to
    0.53 between a toy and the same architecture trained on permuted labels, over seeds (float
    rounding of training moves it too). Asserted on the mean over three seeds' pairs (0.43 here)."""
    values = []
    for seed in range(3):
        trained = train_toy("tsvit_v2", "step1", seed=seed)
        shuffled = train_toy("tsvit_v2", "step1", shuffle_labels=True, max_steps=120, seed=seed)
        values.append(sanity.similarity(_ig_maps(trained, probe), _ig_maps(shuffled, probe)))
    assert sum(values) / len(values) < SURVIVES, values


@pytest.mark.parametrize("name", EXPLANATIONS)
def test_explanations_fail_when_labels_were_randomised(name, request, label_randomised):
    toy, explain, measure = EXPLANATIONS[name]
    model, batch = (request.getfixturevalue(f) for f in TOYS[toy])
    assert measure(explain(model, batch), explain(label_randomised(toy), batch)) < SURVIVES


def test_pooled_modality_shares_survive_randomisation(amsr2_model, amsr2_probe, label_randomised):
    """A known failure, asserted so that docs/explain.md stays true: compared as one explanation,
    the share maps of all modalities keep their ranking (SAR's local share above the cell tokens',
    SAR's global share above the context tokens') after every weight is redrawn and after training
    on shuffled labels. Which modality gets the most attention is set by the architecture (how
    many tokens of each), not learned; each map on its own passes (above)."""
    explain = functools.partial(_modality_maps, batch=amsr2_probe)
    cascade = sanity.cascading_randomisation(amsr2_model, explain)
    assert cascade[-1][1] >= SURVIVES, cascade
    assert sanity.similarity(explain(amsr2_model), explain(label_randomised("amsr2"))) >= SURVIVES


def test_per_map_similarity_compares_each_map_on_its_own():
    """Two maps on different levels (0..9 and 100..109), each reversed in the other explanation:
    every map is anti-correlated (-1), yet pooled ranks, which keep the levels apart, agree half
    way: 1 - 6 * 2 * sum((2i - 9)^2, i < 10) / (20 * (20^2 - 1)) = 1 - 3960 / 7980."""
    a = torch.stack([torch.arange(10.0), torch.arange(10.0) + 100])
    b = a.flip(-1)
    assert sanity.per_map_similarity(a, b) == pytest.approx(-1.0)
    assert sanity.per_map_similarity(a, torch.stack([a[0], b[1]])) == pytest.approx(1.0)  # the most similar map
    assert sanity.similarity(a, b) == pytest.approx(1 - 3960 / 7980)
    with pytest.raises(ValueError, match="different shapes"):
        sanity.per_map_similarity(a, a[:, :5])


def test_layer_groups_cover_every_parameter_once(step1_model):
    for model in (step1_model, create_model("unet", "tiny", downsample=DS)):
        params = [id(p) for _, group in sanity.layer_groups(model) for p in group]
        assert sorted(params) == sorted(id(p) for p in model.parameters())


def test_ablation_transforms():
    batch = toy_batch("step1", 4, torch.Generator().manual_seed(3))
    batch["step_mask"][0, 2] = False  # sample 0: two steps, its target is step 1
    one = ablation.target_only(batch)
    assert one["sar"].shape[1] == 1 and torch.equal(one["sar"][0, 0], batch["sar"][0, 1])
    assert torch.equal(one["sar"][1, 0], batch["sar"][1, 2]) and one["step_mask"].all()
    dropped = ablation.without("amsr2")(batch)
    assert not dropped["amsr2"].any() and not dropped["amsr2_mask"].any() and torch.equal(dropped["era5"], batch["era5"])
    shuffled = ablation.shuffled_dates(batch)
    for i in range(4):
        n = int(batch["step_mask"][i].sum())
        before, after = batch["day_of_year"][i, :n], shuffled["day_of_year"][i, :n]
        assert sorted(before.tolist()) == sorted(after.tolist()) and not torch.equal(before, after)
        assert after[n - 1] != before[n - 1]  # RT22-R1: the target's own date moves (v1 reads it alone)
    assert torch.equal(shuffled["sar"], batch["sar"])
    batch["step_mask"][1, :2] = False  # sample 1: its target alone
    batch["amsr2_mask"] = torch.tensor([True, True, False, True])  # sample 2: no AMSR2 (an edge input)
    assert {name: a.alters(batch).tolist() for name, a in ablation.ABLATIONS.items()} == {
        "none": [False] * 4, "no_history": [True, False, True, True], "no_amsr2": [True, True, False, True],
        "no_era5": [True] * 4, "shuffled_dates": [True, False, True, True]}


def test_ablation_table_on_whole_scenes(rtt_paths, synthetic_dir, patch_store, caplog):
    """A model that never sees AMSR2 (v2) loses exactly nothing without it; one that never sees
    the earlier acquisitions (v1: it reads the target alone, checked on a batch) gets no row of
    removing them (RT20-R11: it changes nothing) nor of shuffling the dates: it charts from its
    target alone (RT22-R4), so no other date is there to trade, though on a batch with earlier
    steps the shuffle moves its target's date (its output changes)."""
    from seaice_lib.data.dataset import PatchDataset, collate

    torch.manual_seed(0)
    scenes = rtt_paths[:2]
    model = create_model("tsvit_v2", "tiny", downsample=2, img_size=16).eval()
    table = ablation.ablation_table(model, scenes, synthetic_dir, patch_store,
                                    ablations=("none", "no_amsr2", "shuffled_dates"))
    assert set(table.ablation) == {"none", "no_amsr2", "shuffled_dates"}
    top = ablation.ablation_summary(table)
    assert list(top.columns) == [*sorted((*schema.CHARTS, "combined")), "tiles_altered"]
    assert top.loc["none", "tiles_altered"] == 0 and top.loc["no_amsr2", "tiles_altered"] > 0
    top = top.drop(columns="tiles_altered")
    assert (top.loc["none"] == 0).all() and (top.loc["no_amsr2"] == 0).all(), top
    assert np.isfinite(table.score).all()
    single = create_model("tsvit_v1", "tiny", downsample=2, img_size=16).eval()
    data = PatchDataset(patch_store)
    batch = collate([data[i] for i in range(len(data)) if len(data[i]["day_of_year"]) > 1][:4])
    with torch.no_grad():
        plain, alone, shuffled = (single(f(batch)) for f in (lambda b: b, ablation.target_only, ablation.shuffled_dates))
    assert all(torch.equal(plain[chart], alone[chart]) for chart in schema.CHARTS)
    assert not all(torch.equal(plain[chart], shuffled[chart]) for chart in schema.CHARTS)
    table = ablation.ablation_table(single, scenes, synthetic_dir, patch_store,
                                    ablations=("none", "no_history", "shuffled_dates", "no_amsr2"))
    assert set(table.ablation) == {"none", "no_amsr2"}  # RT22-R4: charted from its target alone, no date to trade
    stacked = create_model("unet", "tiny", downsample=2, steps=2).eval()  # RT21-R2: reads no dates
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(stacked(batch).values(),
                                                        stacked(ablation.shuffled_dates(batch)).values()))
    table = ablation.ablation_table(stacked, scenes, synthetic_dir, patch_store,
                                    ablations=("none", "no_history", "shuffled_dates"))
    assert set(table.ablation) == {"none", "no_history"} and (table[table.ablation == "no_history"].tiles_altered > 0).all()
    # RT22-R1: scenes without an earlier acquisition in reach: removing them or trading their dates
    # altered no tile, measured nothing, and gets no row (a warning says why)
    with caplog.at_level(logging.WARNING, logger="seaice_lib.explain.ablation"):
        table = ablation.ablation_table(stacked, scenes[:1], scenes[:1], patch_store,
                                        ablations=("none", "no_history", "shuffled_dates"))
        lone = ablation.ablation_table(model, scenes[:1], scenes[:1], patch_store, ablations=("none", "shuffled_dates"))
    assert set(table.ablation) == {"none"} and set(lone.ablation) == {"none"}
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all(re.fullmatch(rf"ablation {name} left out: it altered none of the [1-9]\d* tiles "
                                               rf"it was run on \({why}\), so it measured nothing", line)
                                  for line, (name, why) in zip(said, (
                                      ("no_history", "no tile has an earlier acquisition in its window"),
                                      ("shuffled_dates", "no tile has an earlier acquisition whose date could trade "
                                                         "places")))), said
    with pytest.raises(ValueError, match="unknown ablations"):
        ablation.ablation_table(model, scenes, synthetic_dir, patch_store, ablations=("no_sar",))
    model.modalities = ("sar",)  # RT19-R5/R13: what it reads (Run.load_model's); no row of removing another
    table = ablation.ablation_table(model, scenes, synthetic_dir, patch_store, ablations=("none", "no_amsr2", "no_era5"))
    assert set(table.ablation) == {"none"}
    assert ablation.Ablated(model, ablation.ABLATIONS["no_history"]).modalities == ("sar",)


class InputReader(nn.Module):
    """Charts read straight off one input each, no learning (the store's downsample 2), each split at
    the tile's mean of what it reads (so a removed input, constant, splits nothing): SIC 100 %
    where AMSR2's first channel is above it under the pixel, else 0 %; SOD thick first-year ice
    where ERA5's first channel is, else open water; FLOE small floes where HH is, in the earliest
    acquisition found by its date (most days before the target), else no floes."""

    downsample = 2

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        sar, offset = batch["sar"], batch["grid2km_offset"]

        def above_mean(values: torch.Tensor) -> torch.Tensor:  # (B, P, P) -> (B, P, P) bool
            return values > values.mean((1, 2), keepdim=True)

        def cells(key: str) -> torch.Tensor:
            return upsample_cells(batch[key][:, :1], offset, sar.shape[-1], self.downsample)[:, 0]

        def logits(chart: str, classes: torch.Tensor) -> torch.Tensor:
            return 10 * F.one_hot(classes, schema.N_CLASSES[chart]).permute(0, 3, 1, 2).float()

        days = batch["days_before"].masked_fill(~batch["step_mask"].bool(), -1.0)
        earliest_hh = sar[torch.arange(sar.shape[0]), days.argmax(1), 0]
        return {"SIC": 10.0 * above_mean(cells("amsr2"))[:, None].float(),
                "SOD": logits("SOD", torch.where(above_mean(cells("era5")), 4, 0)),
                "FLOE": logits("FLOE", torch.where(above_mean(earliest_hh), 2, 0))}


def test_ablation_moves_exactly_the_charts_read_from_what_it_removes(rtt_paths, synthetic_dir, patch_store):
    """Positive control: on scenes with two and three acquisitions, each ablation changes the
    score of the charts :class:`InputReader` reads from the input it removes (and the combined
    score), and leaves every row of the other charts exactly as it was."""
    reads = {"no_amsr2": {"SIC"}, "no_era5": {"SOD"}, "no_history": {"FLOE"}, "shuffled_dates": {"FLOE"}}
    table = ablation.ablation_table(InputReader(), rtt_paths[1:3], synthetic_dir, patch_store)
    for name, charts in reads.items():
        rows = table[table.ablation == name].set_index(["chart", "class"])["change"]
        for chart in schema.CHARTS:
            if chart in charts:
                assert rows[(chart, "all")] != 0, (name, rows)
            else:
                assert (rows[chart] == 0).all(), (name, chart, rows[chart])
        assert rows[("combined", "all")] != 0, (name, rows)


def test_explaining_leaves_the_batch_as_it_was(step1_model, probe):
    before = {k: (v.clone(), v.requires_grad) for k, v in probe.items()}
    attribution.integrated_gradients(step1_model, probe, "SOD", NEW, steps=4)
    attention.relevance(step1_model, probe, "SOD", NEW)
    for key, (value, grad) in before.items():
        assert torch.equal(probe[key], value) and probe[key].requires_grad == grad, key
