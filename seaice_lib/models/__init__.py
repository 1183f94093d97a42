"""Models: each takes a batch dict (see :mod:`seaice_lib.data.dataset`) and returns outputs per chart.

Outputs follow :mod:`.outputs` (logits, or one channel for SIC as regression; :func:`to_classes`
makes charts of either). :func:`create_model` builds a model by name, timm-style, with a ``size``
preset (``"tiny"`` for tests, ``"small"``, ``"base"``) and keyword overrides.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .outputs import SIC_MODES, output_channels, to_classes
from .unet import UNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: ``fn(size, **kwargs) -> nn.Module`` becomes ``create_model(name, ...)``."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return wrap


def model_names() -> tuple[str, ...]:
    """Names :func:`create_model` knows, in registration order."""
    return tuple(_REGISTRY)


def create_model(name: str, size: str = "small", **kwargs) -> nn.Module:
    """A model by registry name (``unet``, ``tsvit_v1``, ``tsvit_v2``, ``tsvit_v3``).

    ``size`` picks a preset; ``kwargs`` override its entries and reach the constructor
    (``sar_channels``, ``downsample``, ``sic_mode``, ...).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {model_names()}")
    return _REGISTRY[name](size=size, **kwargs)


_UNET_SIZES = {"tiny": {"filters": (4, 8, 8)}, "small": {"filters": (16, 32, 64, 64)},
               "base": {"filters": (16, 32, 64, 64)}}


@register_model("unet")
def unet(size: str = "small", **kwargs) -> UNet:
    """The AutoICE toolbox U-Net (filters 16/32/64/64 in ``small`` and ``base``).

    Fully convolutional: ``img_size``, which the transformers need, is accepted and not used.
    """
    kwargs.pop("img_size", None)
    if size not in _UNET_SIZES:
        raise ValueError(f"unknown size {size!r} for unet; choose from {tuple(_UNET_SIZES)}")
    return UNet(**(_UNET_SIZES[size] | kwargs))


from . import tsvit  # noqa: E402, F401  (registers tsvit_v1/v2/v3)
from .tsvit import TSViT  # noqa: E402


__all__ = ["SIC_MODES", "TSViT", "UNet", "create_model", "model_names", "output_channels",
           "register_model", "to_classes"]
