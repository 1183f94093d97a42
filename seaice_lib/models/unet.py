"""The AutoICE toolbox's U-Net, the baseline every model must beat.

Encoder-decoder with skip connections: double 3x3 conv blocks (batch norm, ReLU), max-pool
contraction through the filter list (toolbox: 16, 32, 64, 64) plus a bridge, bilinear up-sampling
expansion, and one 1x1 head per chart. Inputs are stacked early, as in the toolbox: the target's
SAR channels and, when asked, AMSR2/ERA5 brought from their 2 km cells onto the patch grid. With
``steps`` > 1 the earlier acquisitions are stacked too (each with its coverage mask): the
input-matched baseline for the temporal TSViT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import schema
from ..grid import upsample_cells
from ..sample_format import MODALITIES
from .outputs import output_channels


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> batch norm -> ReLU) x 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Down(nn.Sequential):
    """Max-pool by 2, then a double conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(c_in, c_out))


class Up(nn.Module):
    """Bilinear up-sampling by 2, padded to the skip's size, concatenated with it, double conv."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.conv = DoubleConv(c_in + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Toolbox U-Net over a batch dict; returns ``{chart: (B, n_classes, P, P) logits}``.

    Args:
        sar_channels: SAR-grid channels in the store (HH, HV, incidence[, distance]).
        filters: encoder widths (toolbox: 16, 32, 64, 64).
        grid2km: stack AMSR2 and ERA5 (upsampled to the patch) after the SAR, as the toolbox does.
        steps: acquisitions stacked, the target and the ``steps - 1`` before it, oldest first, each
            with its ``sar_mask`` as one more channel (missing ones are zeros); 1: the target only,
            without a mask channel (the toolbox's input).
        downsample: the store's ``downsample``, needed to place the 2 km cells.
        charts: output heads, one per chart.
        sic_mode: ``"classification"`` (11 logits) or ``"regression"`` (one channel, class units).
    """

    def __init__(self, sar_channels: int = 3, filters: tuple[int, ...] = (16, 32, 64, 64),
                 grid2km: bool = True, downsample: int = 10, charts: tuple[str, ...] = schema.CHARTS,
                 sic_mode: str = "classification", steps: int = 1):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be at least 1, not {steps}")
        self.grid2km, self.downsample, self.charts = grid2km, downsample, tuple(charts)
        self.sic_mode, self.steps = sic_mode, steps
        self.reads = MODALITIES if grid2km else ("sar",)  # the modalities its forward takes from a batch
        self.reads_history = steps > 1  # and whether it takes the earlier acquisitions of a sequence
        self.reads_dates = False  # the acquisitions' dates: never (their order only)
        c_in = (sar_channels if steps == 1 else steps * (sar_channels + 1)) + \
            (len(schema.AMSR2_CHANNELS) + len(schema.ERA5_VARIABLES) if grid2km else 0)
        self.stem = DoubleConv(c_in, filters[0])
        self.down = nn.ModuleList(Down(a, b) for a, b in zip(filters[:-1], filters[1:]))
        self.bridge = Down(filters[-1], filters[-1])
        widths = list(filters)
        ups, c = [], filters[-1]
        for skip in reversed(widths):
            ups.append(Up(c, skip, skip))
            c = skip
        self.up = nn.ModuleList(ups)
        self.heads = nn.ModuleDict({ch: nn.Conv2d(filters[0], output_channels(ch, sic_mode), 1)
                                    for ch in self.charts})

    def inputs(self, batch: dict) -> torch.Tensor:
        """Early-stacked (B, C, P, P) input: the SAR of the target step (and of the ``steps - 1``
        before it, with their masks), then AMSR2 and ERA5."""
        sar = batch["sar"]
        last = batch["step_mask"].sum(dim=1) - 1 if "step_mask" in batch else \
            torch.full((sar.shape[0],), sar.shape[1] - 1, device=sar.device)
        rows = torch.arange(sar.shape[0], device=sar.device)
        if self.steps == 1:
            target = sar[rows, last]
        else:
            which = last[:, None] - torch.arange(self.steps - 1, -1, -1, device=sar.device)  # (B, S)
            real = which >= 0
            mask = batch["sar_mask"][rows[:, None], which.clamp(min=0)].bool() & real[:, :, None, None]
            values = torch.where(mask[:, :, None], sar[rows[:, None], which.clamp(min=0)], 0.0)
            target = torch.cat([values, mask[:, :, None].float()], dim=2).flatten(1, 2)
        if not self.grid2km:
            return target
        grid = torch.cat([batch["amsr2"], batch["era5"]], dim=1)
        up = upsample_cells(grid, batch["grid2km_offset"], sar.shape[-1], self.downsample)
        return torch.cat([target, up], dim=1)

    def forward_features(self, batch: dict) -> torch.Tensor:
        return self.features_from_inputs(self.inputs(batch))

    def features_from_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, P, P) stacked inputs (:meth:`inputs`) -> (B, filters[0], P, P) decoder features."""
        x = self.stem(x)
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bridge(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip)
        return x

    def forward_head(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {ch: head(features) for ch, head in self.heads.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))
