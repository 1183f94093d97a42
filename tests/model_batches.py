"""A model input for the tests: a collated-style batch of sequences of mixed lengths (the TSViT
tests run on it, and tests/test_models.py pins every model's golden outputs on it)."""

import torch

from seaice_lib import schema

P, G = 16, 8  # tiny patches, 2 km block


def mixed_batch(seed: int = 0, lengths=(4, 2, 1), optical: bool = True) -> dict:
    """A collated-style batch: mixed lengths (padding has random SAR, the collate zeros elsewhere),
    step 1 of sample 0 does not cover token (0, 0), partial coverage elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    step_mask = torch.arange(t) < torch.tensor(lengths)[:, None]
    sar_mask = torch.rand(b, t, P, P, generator=gen) > 0.2
    sar_mask[0, 1, :4, :4] = False
    days_before = torch.rand(b, t, generator=gen) * 40
    days_before[torch.arange(b), torch.tensor(lengths) - 1] = 0
    batch = {"sar": torch.randn(b, t, 3, P, P, generator=gen) * sar_mask[:, :, None],
             "sar_mask": sar_mask, "step_mask": step_mask,
             "day_of_year": torch.randint(1, 367, (b, t), generator=gen) * step_mask,
             "days_before": days_before * step_mask,
             "amsr2": torch.randn(b, 14, G, G, generator=gen), "era5": torch.randn(b, 6, G, G, generator=gen),
             "grid2km_offset": torch.randint(0, 25, (b, 2), generator=gen),
             "labels": {c: torch.zeros(b, P, P, dtype=torch.int64) for c in schema.CHARTS}}
    batch["sar"][~step_mask] = torch.randn(int((~step_mask).sum()), 3, P, P, generator=gen)
    if optical:
        batch["optical"] = torch.randn(b, 4, 32, 32, generator=gen)
    return batch
