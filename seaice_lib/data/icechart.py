"""SIGRID-3 egg codes of raw AI4Arctic scenes to SIC, SOD and FLOE label charts, and back.

The code tables below are the one home of the conversion both ways: ``*_CLASS_OF_CODE`` reads the
ice services' codes, ``*_CODE_FOR_CLASS`` (one code per class, each reading back to its class)
writes them, for the synthetic scenes and for SIGRID-3 polygons of predicted charts
(:func:`sigrid_codes`).

A raw scene holds ``polygon_icechart`` (polygon id per pixel, NaN outside the chart) and
``polygon_codes`` (header row, then one ``;``-separated egg-code row per polygon, ``-9`` = not
filled). The conversion rules, and the choices made where the dataset's facts are silent, are
listed in docs/data.md ("Egg codes to charts").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..schema import CHART_FILL, CHARTS, POLYGON_CODES_HEADER

NOT_FILLED = -9
HEADER_FIELDS = tuple(POLYGON_CODES_HEADER.split(";"))
# columns 0..12 (poly_id .. CD) are integer codes; CF (13) is unused, POLY_TYPE (14) is text
CODE_COLUMNS = HEADER_FIELDS[:13]
PARTIALS = (("CA", "SA", "FA"), ("CB", "SB", "FB"), ("CC", "SC", "FC"))
# a partial's class sum must reach this share of the SIC (CT) class for SOD and FLOE
DOMINANT_SHARE = 0.65

# code -> class; codes absent from a table map to CHART_FILL
SIC_CLASS_OF_CODE: dict[int, int] = {
    0: 0, 1: 0, 2: 0, 55: 0, **{10 * k: k for k in range(1, 10)}, 91: 10, 92: 10,
}
SOD_CLASS_OF_CODE: dict[int, int] = {
    0: 0, 80: 0, 81: 1, 82: 1, 83: 2, 84: 2, 85: 2, 87: 3, 88: 3, 89: 3,
    86: 4, 91: 4, 93: 4, 95: 5, 96: 5, 97: 5, 98: CHART_FILL, 99: CHART_FILL,
}
FLOE_CLASS_OF_CODE: dict[int, int] = {
    0: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 5, 9: 6, 10: 6,
    1: CHART_FILL, 8: CHART_FILL, 21: CHART_FILL, 22: CHART_FILL,
}

# class -> one canonical code that converts back to it (for the synthetic data generator)
SIC_CODE_FOR_CLASS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 92)
# 80 no stage of development, 81 new, 83 young, 87 thin first-year, 93 thick first-year, 95 old ice
SOD_CODE_FOR_CLASS = (80, 81, 83, 87, 93, 95)
# 0 open water (toolbox), 2 ice cake, 3 small, 4 medium, 5 big, 6 vast floe, 10 icebergs
FLOE_CODE_FOR_CLASS = (0, 2, 3, 4, 5, 6, 10)
CLASS_OF_CODE = {"SIC": SIC_CLASS_OF_CODE, "SOD": SOD_CLASS_OF_CODE, "FLOE": FLOE_CLASS_OF_CODE}
CODE_FOR_CLASS = {"SIC": SIC_CODE_FOR_CLASS, "SOD": SOD_CODE_FOR_CLASS, "FLOE": FLOE_CODE_FOR_CLASS}

PolygonCodes = Sequence[str | bytes] | np.ndarray

UNDETERMINED = 99  # SIGRID-3: stage or form undetermined/unknown (reads back as no label)
# SIGRID-3 POLY_TYPE: I ice, W water, L land, N no data
POLY_ICE, POLY_WATER, POLY_LAND, POLY_NO_DATA = "I", "W", "L", "N"


def _check_tables() -> None:
    """Each class's writing code reads back to that class (the tables are one home, both ways)."""
    for chart, codes in CODE_FOR_CLASS.items():
        back = [CLASS_OF_CODE[chart].get(code) for code in codes]
        if back != list(range(len(codes))):
            raise AssertionError(f"{chart}: CODE_FOR_CLASS {codes} reads back as {back}")


_check_tables()


@dataclass(frozen=True)
class PolygonTable:
    """Parsed ``polygon_codes``: int64 codes (n_poly, 13) in ``CODE_COLUMNS`` order, POLY_TYPE."""

    codes: np.ndarray
    poly_type: np.ndarray

    @property
    def poly_ids(self) -> np.ndarray:
        return self.codes[:, 0]

    def column(self, name: str) -> np.ndarray:
        """One integer column by its header name, e.g. ``"CT"``."""
        return self.codes[:, CODE_COLUMNS.index(name)]


def _text(row: str | bytes) -> str:
    return (row.decode() if isinstance(row, bytes) else str(row)).strip()


def parse_polygon_codes(codes: PolygonCodes) -> PolygonTable:
    """Parse raw ``polygon_codes`` rows (header first); ValueError names the offending row."""
    rows = [_text(r) for r in np.asarray(codes, dtype=object).ravel()]
    if not rows:
        raise ValueError("polygon_codes is empty: expected the header row")
    if rows[0] != POLYGON_CODES_HEADER:
        raise ValueError(f"polygon_codes row 0: header {rows[0]!r}, "
                         f"expected {POLYGON_CODES_HEADER!r}")
    values = np.empty((len(rows) - 1, len(CODE_COLUMNS)), np.int64)
    poly_type = []
    for i, row in enumerate(rows[1:], start=1):
        fields = [f.strip() for f in row.split(";")]
        if len(fields) != len(HEADER_FIELDS):
            raise ValueError(f"polygon_codes row {i}: {len(fields)} fields, expected "
                             f"{len(HEADER_FIELDS)}: {row!r}")
        for j, field in enumerate(fields[:len(CODE_COLUMNS)]):
            try:
                values[i - 1, j] = int(field)
            except ValueError:
                raise ValueError(f"polygon_codes row {i}: {CODE_COLUMNS[j]} = {field!r} is not an "
                                 f"integer: {row!r}") from None
        poly_type.append(fields[-1])
    ids, counts = np.unique(values[:, 0], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"polygon_codes: duplicate poly_id {ids[counts > 1].tolist()}")
    return PolygonTable(values, np.array(poly_type, dtype=str))


def _dominant(sums: dict[int, int], sic: int, min_share: float) -> int:
    """Class with the largest summed concentration (first seen on ties) if it reaches the share."""
    if not sums:
        return CHART_FILL
    best = max(sums, key=sums.__getitem__)  # first of equal sums wins: A before B before C
    return best if sums[best] / sic >= min_share else CHART_FILL


def _polygon_charts(codes: dict[str, int], poly_type: str, min_share: float) -> dict[str, int]:
    """SIC, SOD and FLOE classes of one polygon's egg code (column name -> code)."""
    sic = 0 if poly_type.upper() == "W" else SIC_CLASS_OF_CODE.get(codes["CT"], CHART_FILL)
    if sic in (0, CHART_FILL):
        return {"SIC": sic, "SOD": sic, "FLOE": sic}
    if codes["CA"] == NOT_FILLED:  # CT > 0 here, as its class is 1..10
        codes = {**codes, "CA": codes["CT"]}
    sod_sums: dict[int, int] = {}
    floe_sums: dict[int, int] = {}
    floe_unknown = False
    for c_col, s_col, f_col in PARTIALS:
        if codes[c_col] == NOT_FILLED:
            continue
        floe = FLOE_CLASS_OF_CODE.get(codes[f_col], CHART_FILL)
        floe_unknown |= codes[f_col] != NOT_FILLED and floe == CHART_FILL
        conc = SIC_CLASS_OF_CODE.get(codes[c_col], CHART_FILL)
        if conc == CHART_FILL:
            continue
        if codes[s_col] != NOT_FILLED:
            sod = SOD_CLASS_OF_CODE.get(codes[s_col], CHART_FILL)
            sod_sums[sod] = sod_sums.get(sod, 0) + conc
        if codes[f_col] != NOT_FILLED:
            floe_sums[floe] = floe_sums.get(floe, 0) + conc
    return {
        "SIC": sic,
        "SOD": _dominant(sod_sums, sic, min_share),
        "FLOE": CHART_FILL if floe_unknown else _dominant(floe_sums, sic, min_share),
    }


def polygon_classes(table: PolygonTable, min_share: float = DOMINANT_SHARE
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Chart -> (poly_ids, uint8 class per polygon); ``min_share`` is the SOD/FLOE share rule's."""
    per_polygon = [
        _polygon_charts(dict(zip(CODE_COLUMNS, row.tolist(), strict=True)), str(kind), min_share)
        for row, kind in zip(table.codes, table.poly_type, strict=True)
    ]
    result = {}
    for chart in CHARTS:
        classes = np.array([p[chart] for p in per_polygon], dtype=np.uint8)
        result[chart] = (table.poly_ids.copy(), classes)
    return result


def rasterize_charts(polygon_icechart: np.ndarray, codes: PolygonCodes | PolygonTable,
                     block: int = 1 << 22, on_unknown: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Chart -> uint8 array shaped like ``polygon_icechart``; NaN (outside the chart) -> 255.

    Pixels are looked up by ``np.searchsorted`` on the sorted polygon ids, ``block`` pixels at a
    time to bound memory on 10,000 x 10,000 scenes. A polygon id that the table lacks has no egg
    code: its pixels get 255 and the count of them (with some of the ids) goes to ``on_unknown``,
    or, without it, raises ValueError: never a silent loss of labels.
    """
    table = codes if isinstance(codes, PolygonTable) else parse_polygon_codes(codes)
    classes = polygon_classes(table)
    order = np.argsort(table.poly_ids)
    n = len(order)
    # sorted ids and one LUT per chart over them; slot n is "no polygon" (NaN equals no pixel value)
    keys = np.append(table.poly_ids[order].astype(np.float64), np.nan)
    luts = {chart: np.append(classes[chart][1][order], np.uint8(CHART_FILL)) for chart in CHARTS}
    ids = np.asarray(polygon_icechart)
    flat = ids.reshape(-1)
    out = {chart: np.empty(flat.shape, np.uint8) for chart in CHARTS}
    unknown, examples = 0, set()
    for start in range(0, flat.size, block):
        part = flat[start:start + block].astype(np.float64)
        pos = np.searchsorted(keys[:n], part)  # 0..n; NaN sorts last
        missing = (keys[pos] != part) & ~np.isnan(part)
        if missing.any():
            unknown += int(missing.sum())
            examples |= set(np.unique(part[missing])[:5].tolist())
        pos = np.where(keys[pos] == part, pos, n)
        for chart in CHARTS:
            out[chart][start:start + block] = luts[chart][pos]
    if unknown:
        message = (f"{unknown} pixels of polygon_icechart carry polygon ids that polygon_codes lacks "
                   f"(e.g. [{', '.join(f'{i:g}' for i in sorted(examples)[:5])}]): their egg codes are unknown")
        if on_unknown is None:
            raise ValueError(message)
        on_unknown(message)
    return {chart: a.reshape(ids.shape) for chart, a in out.items()}


def sigrid_codes(sic: int, sod: int, floe: int) -> tuple[dict[str, int], str]:
    """The SIGRID-3 egg code (``CODE_COLUMNS`` but poly_id -> integer code, -9 not filled) and
    POLY_TYPE of a region of one SIC, SOD and FLOE class each (255: no label): the inverse of
    :func:`polygon_classes` for every consistent triple.

    SIC 255 gives a no-data polygon (``N``), SIC 0 a water polygon (``W``: SOD and FLOE read back
    as open water whatever they were), else an ice polygon (``I``) of one ice type: total
    concentration CT, CA not filled (one type: CT applies), SA and FA the stage and form, 99
    (undetermined) where SOD or FLOE has no label. ValueError for a class out of range."""
    for chart, value in (("SIC", sic), ("SOD", sod), ("FLOE", floe)):
        if value != CHART_FILL and not 0 <= value < len(CODE_FOR_CLASS[chart]):
            raise ValueError(f"{chart} class {value}: not a class (0..{len(CODE_FOR_CLASS[chart]) - 1} or {CHART_FILL})")
    codes = dict.fromkeys(CODE_COLUMNS[1:], NOT_FILLED)
    if sic == CHART_FILL:
        return codes, POLY_NO_DATA
    codes["CT"] = SIC_CODE_FOR_CLASS[sic]
    if sic == 0:
        return codes, POLY_WATER
    codes["SA"] = UNDETERMINED if sod == CHART_FILL else SOD_CODE_FOR_CLASS[sod]
    codes["FA"] = UNDETERMINED if floe == CHART_FILL else FLOE_CODE_FOR_CLASS[floe]
    return codes, POLY_ICE


def egg_code_row(poly_id: int, ct: int, partials: Sequence[tuple[int, int, int]] = (),
                 poly_type: str = "I") -> str:
    """One ``polygon_codes`` row; ``partials``: up to 3 (concentration, stage, form), -9 = empty."""
    if len(partials) > len(PARTIALS):
        raise ValueError(f"at most {len(PARTIALS)} partials (A, B, C), got {len(partials)}")
    if not poly_type or ";" in poly_type:
        raise ValueError(f"poly_type must be a non-empty string without ';', got {poly_type!r}")
    filled = [tuple(int(v) for v in p) for p in partials]
    if any(len(p) != 3 for p in filled):
        raise ValueError(f"each partial is (concentration, stage, form), got {list(partials)}")
    filled += [(NOT_FILLED,) * 3] * (len(PARTIALS) - len(filled))
    fields = [int(poly_id), int(ct), *(v for p in filled for v in p), *(NOT_FILLED,) * 3]
    return ";".join(str(v) for v in fields) + f";{poly_type}"


def format_polygon_codes(rows: Iterable[str]) -> list[str]:
    """The ``polygon_codes`` variable: header row, then the given egg-code rows."""
    return [POLYGON_CODES_HEADER, *rows]
