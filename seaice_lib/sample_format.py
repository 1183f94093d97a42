"""The sample and batch format, defined once: every key a model is given or a dataset serves, its
dims, dtypes and the modality it comes with (:data:`KEYS`).

Everything that spells the format out is derived from here: the dataset's sequence keys and served
dtypes (:mod:`seaice_lib.data.dataset`), the whole-scene tiles (:mod:`seaice_lib.data.tiles`), the
ONNX graph's inputs and check batches (:mod:`seaice_lib.edge.export`), the optional modalities of the
edge runtime, and the 2 km input widths of the models. The story: docs/data.md ("Samples and
batches"). Torch-free: the edge runtime uses it.

Dims: ``T`` steps (oldest first, the target last), ``C`` SAR channels, ``P`` patch pixels, ``G``
2 km cells under a patch, ``amsr2``/``era5`` the channels of that grid; a batch puts ``B`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import schema

MODALITIES = ("sar", "amsr2", "era5")  # the inputs a model may be trained on; SAR always
OPTIONAL_MODALITIES = ("amsr2", "era5")  # a fusing model charts without them (TSViT v3: "<name>_mask" inputs)
GRID_CHANNELS = {"amsr2": len(schema.AMSR2_CHANNELS), "era5": len(schema.ERA5_VARIABLES)}


@dataclass(frozen=True)
class Key:
    """One key of a sample or batch."""

    name: str
    dims: tuple[str, ...]  # per sample (see the module docstring); a batch puts B first
    dtype: str  # as a model is given it (numpy and torch dtype name)
    compact: str  # as a compact batch serves it, the store's dtype (``PatchDataset(compact=True)``)
    source: str  # "patch" (cut from the store grid), "sequence" (the target's dates), "batch" (collate), "dataset"
    modality: str | None  # the input it comes with ("grid": amsr2 or era5); None: every sample
    model_input: bool  # given to a model, an input of its ONNX graph
    doc: str


KEYS = (
    Key("sar", ("T", "C", "P", "P"), "float32", "float16", "patch", "sar", True, "standard-scaled, 0 where masked"),
    Key("sar_mask", ("T", "P", "P"), "bool", "bool", "patch", "sar", True, "True = SAR data"),
    Key("days_before", ("T",), "float32", "float32", "sequence", "sar", True,
        "days from each acquisition to the target's (target: 0)"),
    Key("day_of_year", ("T",), "int64", "int64", "sequence", "sar", True, "1..366 (0 is kept for padding)"),
    Key("step_mask", ("T",), "bool", "bool", "batch", "sar", True, "True = a real step, False = padding"),
    Key("amsr2", ("amsr2", "G", "G"), "float32", "float16", "patch", "amsr2", True, "native 2 km cells under the patch"),
    Key("era5", ("era5", "G", "G"), "float32", "float16", "patch", "era5", True,
        "u10m_rotated along samples, v10m_rotated along lines"),
    Key("grid2km_offset", ("2",), "int64", "int64", "patch", "grid", True, "where the 2 km cells sit: seaice_lib.grid"),
    Key("origin", ("2",), "int64", "int64", "patch", None, False, "80 m pixel of the patch's top-left in the target"),
    Key("labels", ("P", "P"), "int64", "uint8", "patch", None, False, "per chart (SIC, SOD, FLOE), 255 = no label"),
    Key("scene", (), "int64", "int64", "dataset", None, False, "index into dataset.scene_ids"),
)
BY_NAME = {k.name: k for k in KEYS}
SEQUENCE_KEYS = tuple(k.name for k in KEYS if k.dims[:1] == ("T",) and k.source != "batch")  # padded by collate
MODEL_INPUTS = tuple(k.name for k in KEYS if k.model_input)
MODALITY_KEYS = {m: tuple(k.name for k in KEYS if k.modality == m and k.source == "patch") for m in MODALITIES}


_DTYPES = {compact: {k.name: k.compact if compact else k.dtype for k in KEYS} for compact in (False, True)}


def dtypes(compact: bool = False) -> dict[str, str]:
    """Key -> dtype name as a batch serves it (the store's when ``compact``); one shared dict: read only."""
    return _DTYPES[bool(compact)]


def shape(name: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """The per-sample shape of key ``name`` for the dim ``sizes`` (``T``, ``C``, ``P``, ``G``)."""
    fixed = {**GRID_CHANNELS, "2": 2}
    return tuple(sizes[d] if d in sizes else fixed[d] for d in BY_NAME[name].dims)
