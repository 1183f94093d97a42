"""Models: each takes a batch dict (see :mod:`seaice_lib.dataset`) and returns logits per chart."""

from .unet import UNet

__all__ = ["UNet"]
