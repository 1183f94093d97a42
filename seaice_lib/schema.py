"""The AI4Arctic dataset in one place: file schemas, class tables, input variables, statistics.

Every other module reads names, dims, dtypes and class facts from here. Source: the AI4Arctic
sea-ice challenge dataset manual and toolbox; docs/data.md tells the facts behind them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --- dimensions ---------------------------------------------------------------------------------
SAR_DIMS = ("sar_lines", "sar_samples")
GRID2KM_DIMS = ("2km_grid_lines", "2km_grid_samples")
TIEPOINT_DIMS = ("sar_sample_2dgrid_points", "sar_line_2dgrid_points")
RAW_TIEPOINT_DIM = "sar_grid_points"

RTT_PIXEL_SPACING_M = 80
RAW_PIXEL_SPACING_M = 40
GRID2KM_SPACING_M = 2000
# one 2 km cell covers this many SAR pixels per side: 25 at 80 m, 50 at 40 m
CELL_80M = GRID2KM_SPACING_M // RTT_PIXEL_SPACING_M
CELL_40M = GRID2KM_SPACING_M // RAW_PIXEL_SPACING_M
TIEPOINTS_PER_SIDE = 21

CHART_FILL = 255  # "no label" in every chart array, on disk and in memory
SAR_FILL = 0.0  # "no data" in RTT SAR, incidence angle and distance map

# --- charts -------------------------------------------------------------------------------------
CHARTS = ("SIC", "SOD", "FLOE")


@dataclass(frozen=True)
class ChartClasses:
    """Class names and plot colours (hex) of one chart; index = class value."""

    chart: str
    names: tuple[str, ...]
    colours: tuple[str, ...]
    # share (%) of labelled training pixels per class, from the 512 RTT train scenes
    train_share: tuple[float, ...]

    @property
    def n_classes(self) -> int:
        return len(self.names)


CLASSES: dict[str, ChartClasses] = {
    "SIC": ChartClasses(
        "SIC",
        tuple(f"{10 * i}%" for i in range(11)),
        ("#0b2a59", "#163f7a", "#22569b", "#2f6eb8", "#4686c9", "#62a0d6",
         "#82b8e0", "#a3cde9", "#c3e0f1", "#e0eff8", "#ffffff"),
        (56.9, 0.43, 2.17, 1.68, 1.18, 1.90, 1.19, 2.23, 3.33, 6.57, 22.4),
    ),
    "SOD": ChartClasses(
        "SOD",
        ("Open water", "New ice", "Young ice", "Thin first-year ice", "Thick first-year ice",
         "Old ice"),
        ("#0b2a59", "#f0a0ff", "#b050d8", "#ffff64", "#27c627", "#c86428"),
        (66.4, 1.78, 2.53, 2.13, 14.9, 12.3),
    ),
    "FLOE": ChartClasses(
        "FLOE",
        ("Open water", "Cake ice", "Small floe", "Medium floe", "Big floe", "Vast floe", "Bergs"),
        ("#0b2a59", "#ffdfa0", "#f5b041", "#e67e22", "#b03a2e", "#641e16", "#e8e8e8"),
        (66.6, 0.37, 2.37, 4.03, 6.01, 20.4, 0.15),
    ),
}
N_CLASSES = {chart: c.n_classes for chart, c in CLASSES.items()}
# SOD new and young ice: thin ice that one SAR date hardly tells apart, an earlier acquisition can
SOD_NEW, SOD_YOUNG = 1, 2
# class histograms of the three charts side by side (patch store, samplers): SIC | SOD | FLOE
HISTOGRAM_SLICES = {"SIC": slice(0, 11), "SOD": slice(11, 17), "FLOE": slice(17, 24)}
N_HISTOGRAM_BINS = 24
# share (%) of pixels with no label in the real training set
TRAIN_UNLABELLED_SHARE = {"SIC": 40.0, "SOD": 49.0, "FLOE": 49.0}

# --- variables ----------------------------------------------------------------------------------
AMSR2_CHANNELS = tuple(
    f"btemp_{f}{p}" for f in ("6_9", "7_3", "10_7", "18_7", "23_8", "36_5", "89_0") for p in "hv"
)
ERA5_VARIABLES = ("u10m_rotated", "v10m_rotated", "t2m", "skt", "tcwv", "tclw")
SAR_VARIABLES = ("nersc_sar_primary", "nersc_sar_secondary")
SAR_GRID_VARIABLES = SAR_VARIABLES + ("sar_incidenceangle", "distance_map")
# the AutoICE toolbox's 24 input variables, in its order
TOOLBOX_INPUTS = SAR_GRID_VARIABLES + AMSR2_CHANNELS + ERA5_VARIABLES

# (mean, std) used by the toolbox; RTT inputs are z = (x - mean) / std of the physical value
NORM_STATS: dict[str, tuple[float, float]] = {
    "nersc_sar_primary": (-14.5083, 5.65975),
    "nersc_sar_secondary": (-24.7012, 4.74676),
    "sar_incidenceangle": (33.998, 8.32227),
    "distance_map": (23.6277, 14.9902),
    "btemp_6_9h": (148.847, 61.6485),
    "btemp_6_9v": (203.519, 38.6664),
    "btemp_7_3h": (149.899, 61.6754),
    "btemp_7_3v": (204.205, 38.6662),
    "btemp_10_7h": (153.892, 60.8752),
    "btemp_10_7v": (208.904, 36.245),
    "btemp_18_7h": (165.68, 52.6179),
    "btemp_18_7v": (218.587, 28.0604),
    "btemp_23_8h": (182.209, 42.8872),
    "btemp_23_8v": (226.396, 22.1176),
    "btemp_36_5h": (185.195, 38.6444),
    "btemp_36_5v": (228.206, 17.6526),
    "btemp_89_0h": (212.537, 22.585),
    "btemp_89_0v": (241.257, 16.311),
    "u10m_rotated": (0.674799, 4.74965),
    "v10m_rotated": (0.607557, 5.1961),
    "t2m": (268.627, 9.46917),
    "skt": (268.91, 10.3053),
    "tcwv": (7.74774, 5.26858),
    "tclw": (0.0412455, 0.0711281),
}

UNITS = {
    "nersc_sar_primary": "dB", "nersc_sar_secondary": "dB", "sar_incidenceangle": "degrees",
    "distance_map": "zone id", **{c: "K" for c in AMSR2_CHANNELS},
    "u10m_rotated": "m/s", "v10m_rotated": "m/s", "t2m": "K", "skt": "K",
    "tcwv": "kg/m^2", "tclw": "kg/m^2",
}

# The values a variable can physically hold, in its physical units (UNITS), and what lies beyond.
# A SAR-grid value outside its range is no data there (as the dataset's 0 is); a 2 km value outside
# it (the dataset has no no-data value for AMSR2 and ERA5) refuses the scene. Facts behind each bound:
# docs/data.md ("Values the reader accepts").
PHYSICAL_RANGE: dict[str, tuple[float, float]] = {
    # sigma0 of Sentinel-1 EW: noise floor near -26 dB (HV), bright ridges and ships up to about +10 dB
    "nersc_sar_primary": (-60.0, 30.0), "nersc_sar_secondary": (-60.0, 30.0),
    "sar_incidenceangle": (0.0, 90.0),  # degrees; EW spans about 19-47
    "distance_map": (0.0, 41.0),  # zone ids 0 (land) .. 41 (beyond 300 km)
    # brightness temperatures: above 0 K, below any Earth surface's emission (about 330 K)
    **{c: (0.0, 350.0) for c in AMSR2_CHANNELS},
    "u10m_rotated": (-100.0, 100.0), "v10m_rotated": (-100.0, 100.0),  # m/s: beyond any storm's 10 m wind
    "t2m": (150.0, 350.0), "skt": (150.0, 350.0),  # K: the Earth's recorded extremes are 184-330 K
    "tcwv": (0.0, 100.0), "tclw": (0.0, 10.0),  # kg/m^2: tropics reach about 70 and 2
}

# distance-to-land zones: 0 = land, zone k (1..40) covers [edges[k-1], edges[k]) km, 41 = beyond 300 km.
# Zones 1-3 (0-0.5, 0.5-1, 1-2 km) are the dataset's; the manual's bins between 2 and 300 km are not
# given exactly in the public facts, so they are taken log-spaced here (used by the generator only).
DISTANCE_ZONE_EDGES_KM = np.concatenate([[0.0, 0.5, 1.0], np.geomspace(2.0, 300.0, 38)])
N_DISTANCE_ZONES = 42


@dataclass(frozen=True)
class VariableSpec:
    """Expected dims and dtype of one variable in a scene file."""

    dims: tuple[str, ...]
    dtype: str
    attrs: tuple[str, ...] = ()
    required: bool = True


@dataclass(frozen=True)
class FileSchema:
    """What a scene file of one kind must hold."""

    kind: str
    variables: dict[str, VariableSpec]
    global_attrs: tuple[str, ...] = field(default=())


_CHART_ATTRS = ("polygon", "chart_fill_value")
_SAR_ATTRS = ("polarisation", "upstream_id", "description", "min", "max", "variable_fill_value")

RTT_SCHEMA = FileSchema(
    "ready-to-train",
    {
        **{c: VariableSpec(SAR_DIMS, "uint8", _CHART_ATTRS, required=False) for c in CHARTS},
        **{v: VariableSpec(SAR_DIMS, "float32", _SAR_ATTRS) for v in SAR_VARIABLES},
        "sar_incidenceangle": VariableSpec(SAR_DIMS, "float32"),
        "distance_map": VariableSpec(SAR_DIMS, "float32"),
        "sar_grid2d_latitude": VariableSpec(TIEPOINT_DIMS, "float64"),
        "sar_grid2d_longitude": VariableSpec(TIEPOINT_DIMS, "float64"),
        **{v: VariableSpec(GRID2KM_DIMS, "float32") for v in AMSR2_CHANNELS + ERA5_VARIABLES},
    },
    ("scene_id", "original_id", "ice_service", "flip", "pixel_spacing"),
)

RAW_SCHEMA = FileSchema(
    "raw",
    {
        **{v: VariableSpec(SAR_DIMS, "float32") for v in SAR_VARIABLES},
        "sar_incidenceangle": VariableSpec(SAR_DIMS, "float32"),
        "distance_map": VariableSpec(SAR_DIMS, "float32"),
        "polygon_icechart": VariableSpec(SAR_DIMS, "float32", required=False),
        "polygon_codes": VariableSpec(("polygon_codes",), "str", required=False),
        **{
            v: VariableSpec((RAW_TIEPOINT_DIM,), "float64")
            for v in ("sar_grid_line", "sar_grid_sample", "sar_grid_latitude",
                      "sar_grid_longitude", "sar_grid_incidenceangle", "sar_grid_height")
        },
        **{v: VariableSpec(GRID2KM_DIMS, "float32") for v in AMSR2_CHANNELS + ERA5_VARIABLES},
    },
)

# SIGRID-3 egg-code table header in raw files' `polygon_codes` (row 0)
POLYGON_CODES_HEADER = "poly_id;CT;CA;SA;FA;CB;SB;FB;CC;SC;FC;CN;CD;CF;POLY_TYPE"

# --- ice services and regions -------------------------------------------------------------------
ICE_SERVICES = ("dmi", "cis")
REGIONS = {
    "dmi": ("SouthEast", "CentralEast", "NorthEast", "Qaanaaq", "NorthWest", "CentralWest",
            "SouthWest", "CapeFarewell"),
    "cis": ("SGRDIEA", "SGRDIFOXE", "SGRDINFLD", "SGRDIWA", "SGRDIMID", "SGRDIHA"),
}


# A scene's id: acquisition time and ice service, the first 19 characters of its ready-to-train name
SCENE_ID = re.compile(r"[0-9]{8}T[0-9]{6}_(" + "|".join(ICE_SERVICES) + ")")  # ASCII digits: \d takes any script's
SCENE_ID_LENGTH = 19


def scene_key(name: str | Path) -> str:
    """The first SCENE_ID_LENGTH characters of a file's name (or of an id): the scene id of a name
    that follows the dataset's pattern, unchecked (``data.scene.scene_id_from_name`` checks it)."""
    return Path(name).name[:SCENE_ID_LENGTH]


def service_of(scene_id: str) -> str:
    """The ice service (``dmi`` or ``cis``) of a scene id or file name; ValueError otherwise."""
    match = SCENE_ID.match(Path(scene_id).name)
    if not match:
        raise ValueError(f"{scene_id!r} is not a scene id (YYYYMMDDTHHMMSS_{{dmi|cis}})")
    return match.group(1)


def rtt_name_from_raw(raw_name: str) -> str:
    """Ready-to-train file name of a raw scene file name (the dataset's own rule)."""
    return raw_name[17:32] + "_" + raw_name[77:80] + "_prep.nc"


def region_from_raw(raw_name: str) -> str:
    """Ice-chart region named in a raw file name (DMI ``SouthEast``..., CIS ``SGRDIEA``...):
    ``..._icechart_cis_<Region>_<time>_pl_a.nc`` or ``..._icechart_dmi_<time>_<Region>_RIC.nc``.
    ValueError for a name without one (sequences and region splits group scenes by it)."""
    service, parts = raw_name[77:80], raw_name[81:].split("_")
    region = parts[0] if service == "cis" else parts[1] if service == "dmi" and len(parts) > 1 else ""
    if raw_name[68:77] != "icechart_" or not region.isascii() or not region.isalnum():
        raise ValueError(f"{raw_name!r} is not a raw AI4Arctic file name naming an ice-chart region "
                         "(..._icechart_cis_<Region>_... or ..._icechart_dmi_<time>_<Region>_...)")
    return region
