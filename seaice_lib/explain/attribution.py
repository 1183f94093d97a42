"""Gradient attributions: integrated gradients per modality and acquisition (Captum), Grad-CAM of
the U-Net (pytorch-grad-cam). docs/explain.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ..models.unet import UNet

INPUTS = ("sar", "amsr2", "era5", "optical")  # batch keys attributions can be asked for


def class_score(model: nn.Module, batch: dict, chart: str, index: int,
                where: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) sum over the pixels ``where`` ((B, P, P) bool, default all) of the logit (or SIC
    regression value, ``index`` 0) of ``chart``'s class ``index``: the score explained."""
    out = model(batch)[chart][:, index]
    if where is not None:
        out = out * where.to(out.dtype)
    return out.flatten(1).sum(1)


def used_inputs(model: nn.Module, batch: dict, chart: str, index: int,
                candidates: tuple[str, ...] = INPUTS) -> tuple[str, ...]:
    """Those of ``candidates`` in the batch that the score depends on (gradients reach them)."""
    present = tuple(n for n in candidates if n in batch)
    if not present:
        raise ValueError(f"none of the inputs {candidates} is in the batch")
    values = [batch[n].detach().float().requires_grad_(True) for n in present]  # the caller's untouched
    with torch.enable_grad():
        score = class_score(model, {**batch, **dict(zip(present, values))}, chart, index)
        grads = torch.autograd.grad(score.sum(), values, allow_unused=True)
    return tuple(n for n, g in zip(present, grads) if g is not None)


class Attribution(NamedTuple):
    """Integrated gradients of one score, summed to what a reader asks about."""

    per_input: dict[str, torch.Tensor]  # input key -> (B,) summed attribution
    per_step: torch.Tensor  # (B, T) summed attribution of each acquisition's SAR
    maps: dict[str, torch.Tensor]  # input key -> the attribution, the input's shape
    delta: torch.Tensor  # (B,) completeness error: sum of attributions - (score - baseline score)


def integrated_gradients(model: nn.Module, batch: dict, chart: str, index: int,
                         where: torch.Tensor | None = None, inputs: tuple[str, ...] | None = None,
                         steps: int = 32) -> Attribution:
    """Integrated gradients (Sundararajan et al., ICML 2017, through Captum) of :func:`class_score`
    for the batch's ``inputs`` (default: those of :data:`INPUTS` in the batch), from a baseline of
    zeros: the standardised mean of every variable, i.e. "no information". Masks, dates and offsets
    stay as they are. ``steps`` Riemann steps (Gauss-Legendre)."""
    from captum.attr import IntegratedGradients

    was_training = model.training
    model.eval()
    names = used_inputs(model, batch, chart, index, inputs or INPUTS)

    def forward(*values: torch.Tensor) -> torch.Tensor:
        return class_score(model, {**batch, **dict(zip(names, values))}, chart, index,
                           None if where is None else where[:values[0].shape[0]])

    try:
        values = tuple(batch[n].detach().float() for n in names)
        attributions, delta = IntegratedGradients(forward).attribute(
            values, baselines=tuple(torch.zeros_like(v) for v in values), n_steps=steps,
            internal_batch_size=values[0].shape[0], return_convergence_delta=True)
    finally:
        model.train(was_training)
    maps = dict(zip(names, (a.detach() for a in attributions)))
    per_step = maps["sar"].flatten(2).sum(-1) if "sar" in maps else torch.zeros(values[0].shape[0], 0)
    return Attribution({n: a.flatten(1).sum(1) for n, a in maps.items()}, per_step, maps, delta.detach())


class _UNetLogits(nn.Module):
    """The U-Net from its stacked input tensor to one chart's (B, K, P, P) outputs (what Grad-CAM needs)."""

    def __init__(self, unet: UNet, chart: str):
        super().__init__()
        self.unet, self.chart = unet, chart

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet.heads[self.chart](self.unet.features_from_inputs(x))


class _ClassOver:
    """Grad-CAM target: the class ``index`` summed over a (P, P) pixel mask of one sample."""

    def __init__(self, index: int, mask: np.ndarray):
        self.index, self.mask = index, torch.from_numpy(np.asarray(mask, np.float32))

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.index] * self.mask.to(output.device)).sum()


def unet_gradcam(unet: UNet, batch: dict, chart: str, index: int,
                 where: torch.Tensor | None = None, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., ICCV 2017, through pytorch-grad-cam) of the U-Net for class
    ``index`` of ``chart`` summed over the pixels ``where``: (B, P, P) in [0, 1]. ``layer``
    defaults to the decoder's second-to-last block (half resolution)."""
    from pytorch_grad_cam import GradCAM

    was_training = unet.training
    unet.eval()
    try:
        x = unet.inputs(batch).detach()
        mask = torch.ones(x.shape[0], *x.shape[-2:], dtype=torch.bool) if where is None else where.bool()
        targets = [_ClassOver(index, m.cpu().numpy()) for m in mask]
        with GradCAM(model=_UNetLogits(unet, chart), target_layers=[layer or unet.up[-2]]) as cam:
            return cam(input_tensor=x, targets=targets)
    finally:
        unet.train(was_training)
