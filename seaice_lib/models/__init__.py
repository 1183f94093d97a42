"""Models: each takes a batch dict (see :mod:`seaice_lib.data.dataset`) and returns outputs per chart.

Outputs follow :mod:`.outputs` (logits, or one channel for SIC as regression; :func:`to_classes`
makes charts of either). :func:`create_model` builds a model by name, timm-style, with a ``size``
preset (``"tiny"`` for tests, ``"small"``, ``"base"``) and keyword overrides.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from ..sample_format import MODALITIES
from .outputs import SIC_MODES, output_channels, to_classes
from .unet import UNet

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {}


def register_model(name: str, sizes: Iterable[str]) -> Callable:
    """Decorator: ``fn(size, **kwargs) -> nn.Module`` becomes ``create_model(name, size, ...)`` for
    each preset name in ``sizes``."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn, tuple(sizes)
        return fn
    return wrap


def model_names() -> tuple[str, ...]:
    """Names :func:`create_model` knows, in registration order."""
    return tuple(_REGISTRY)


def model_sizes(name: str) -> tuple[str, ...]:
    """The size presets model ``name`` offers."""
    return _REGISTRY[name][1]


def create_model(name: str, size: str = "small", **kwargs) -> nn.Module:
    """A model by registry name (``unet``, ``tsvit_v1``, ``tsvit_v2``, ``tsvit_v3``).

    ``size`` picks a preset; ``kwargs`` override its entries and reach the constructor
    (``sar_channels``, ``downsample``, ``sic_mode``, ...).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {model_names()}")
    build, sizes = _REGISTRY[name]
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for {name}; choose from {sizes}")
    _check_kinds(build, kwargs)
    return build(size=size, **kwargs)


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def modalities_read(model: nn.Module, trained: Sequence[str]) -> tuple[str, ...]:
    """The ``trained`` modalities that ``model``'s architecture takes (``model.reads``), in order."""
    reads = getattr(model, "reads", MODALITIES)
    return tuple(m for m in trained if m in reads)


def reads_history(model: nn.Module) -> bool:
    """Whether ``model`` takes the earlier acquisitions of a sequence (``model.reads_history``; a
    model without the attribute is taken to): a single-date model is given its target alone."""
    return bool(getattr(model, "reads_history", True))


def _check_kinds(build: Callable[..., nn.Module], kwargs: dict) -> None:
    """TypeError naming the argument whose value is not of the plain kind (bool, int, float, str)
    its model's constructor declares: a YAML string "false" would otherwise be true."""
    model_class = typing.get_type_hints(build).get("return")
    # the class's own constructor is the one wanted
    hints = typing.get_type_hints(model_class.__init__) if isinstance(model_class, type) else {}  # type: ignore[misc]
    for key, value in kwargs.items():
        kind = hints.get(key)
        if kind not in _KINDS:
            continue
        fits = isinstance(value, (int, float) if kind is float else kind) and (kind is bool or not isinstance(value, bool))
        if not fits:
            raise TypeError(f"{key} must be {_KINDS[kind]}, not {value!r}")


_UNET_SIZES: dict[str, dict[str, Any]] = {"tiny": {"filters": (4, 8, 8)}, "small": {"filters": (16, 32, 64, 64)},
               "base": {"filters": (16, 32, 64, 64)}}


@register_model("unet", _UNET_SIZES)
def unet(size: str = "small", **kwargs) -> UNet:
    """The AutoICE toolbox U-Net (filters 16/32/64/64 in ``small`` and ``base``).

    Fully convolutional, it takes any ``img_size`` (the patch, in pixels) that survives its poolings:
    one per filter width, so at least ``2 ** len(filters)`` pixels (16 in ``small``); ValueError
    otherwise.
    """
    img_size = kwargs.pop("img_size", None)
    settings = _UNET_SIZES[size] | kwargs
    pools = len(settings["filters"])  # each encoder level and the bridge halve the patch
    if img_size is not None and img_size < 2 ** pools:
        raise ValueError(f"img_size {img_size}: the U-Net ({size}) halves a patch {pools} times and needs patches "
                         f"of at least {2 ** pools} pixels")
    return UNet(**settings)


from . import tsvit  # noqa: E402, F401  (registers tsvit_v1/v2/v3)
from .tsvit import TSViT  # noqa: E402

__all__ = ["SIC_MODES", "TSViT", "UNet", "create_model", "modalities_read", "model_names", "model_sizes",
           "output_channels", "reads_history", "register_model", "to_classes"]
