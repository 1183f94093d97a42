"""SIGRID-3 egg-code conversion: hand-worked polygons per rule, parsing, rasterizing, round trips.

Comments show the arithmetic in SIC classes: concentration code 30 -> 3, 92 -> 10, so CA 30 under
CT 92 is a share of 3/10 = 0.3. FLOE 255 marks "no label" as in the charts.
"""

from __future__ import annotations

import numpy as np
import pytest

from seaice_lib.data.icechart import (
    CLASS_OF_CODE,
    CODE_FOR_CLASS,
    FLOE_CODE_FOR_CLASS,
    SIC_CODE_FOR_CLASS,
    SOD_CODE_FOR_CLASS,
    egg_code_row,
    format_polygon_codes,
    parse_polygon_codes,
    polygon_classes,
    rasterize_charts,
)
from seaice_lib.schema import CHART_FILL, CHARTS, N_CLASSES, POLYGON_CODES_HEADER

NA = -9  # not filled
FILL = CHART_FILL


def convert(ct: int, partials=(), poly_type: str = "I", **kwargs) -> tuple[int, int, int]:
    """(SIC, SOD, FLOE) of one polygon built from its egg code."""
    table = parse_polygon_codes(format_polygon_codes([egg_code_row(1, ct, partials, poly_type)]))
    out = polygon_classes(table, **kwargs)
    return tuple(int(out[chart][1][0]) for chart in CHARTS)


# --- concentration codes --------------------------------------------------------------------------

@pytest.mark.parametrize("code, sic", [
    (0, 0), (1, 0), (2, 0), (55, 0),
    *((10 * k, k) for k in range(1, 10)),
    (91, 10), (92, 10),
    # not in the table: not filled, undetermined, SIGRID-3 intervals -> no label
    (NA, FILL), (99, FILL), (13, FILL), (46, FILL), (79, FILL), (81, FILL),
])
def test_sic_is_class_of_ct(code, sic):
    assert convert(code)[0] == sic


# every stage and form code of the dataset's tables (../shared/ai4arctic.md) on a one-partial
# full-ice polygon, CT 92 -> 10: the partial holds 10 / 10 of the ice, so its classes are the polygon's

@pytest.mark.parametrize("stage, sod", [
    (0, 0), (80, 0), (81, 1), (82, 1), (83, 2), (84, 2), (85, 2), (87, 3), (88, 3), (89, 3),
    (86, 4), (91, 4), (93, 4), (95, 5), (96, 5), (97, 5), (98, FILL), (99, FILL),
])
def test_sod_is_class_of_the_stage_code(stage, sod):
    assert convert(92, [(92, stage, 4)])[1] == sod


@pytest.mark.parametrize("form, floe", [
    (0, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 5), (9, 6), (10, 6),
    (1, FILL), (8, FILL), (21, FILL), (22, FILL),
])
def test_floe_is_class_of_the_form_code(form, floe):
    assert convert(92, [(92, 87, form)])[2] == floe


# --- the 0.65 share rule --------------------------------------------------------------------------

def test_share_just_above_threshold_keeps_class():
    # CT 90 -> 9; A: 60 -> 6, stage 87 -> 3, form 4 -> 3; B: 30 -> 3, stage 81 -> 1, form 2 -> 1
    # SOD sums {3: 6, 1: 3}, FLOE sums {3: 6, 1: 3}; 6 / 9 = 0.667 >= 0.65 -> 3 and 3
    assert convert(90, [(60, 87, 4), (30, 81, 2)]) == (9, 3, 3)


def test_share_just_below_threshold_is_no_label():
    # CT 80 -> 8; A: 50 -> 5 (stage 87 -> 3, form 4 -> 3); B: 30 -> 3 (stage 81 -> 1, form 2 -> 1)
    # largest sum 5; 5 / 8 = 0.625 < 0.65 -> 255 for SOD and FLOE
    assert convert(80, [(50, 87, 4), (30, 81, 2)]) == (8, FILL, FILL)


def test_share_exactly_at_threshold_keeps_class():
    # 0.65 = 13/20 is out of reach with a CT class <= 10, so the ">=" boundary is checked at 0.7:
    # CT 92 -> 10; A: 70 -> 7 (stage 93 -> 4, form 5 -> 4); 7 / 10 = 0.7 >= 0.7 -> 4
    assert convert(92, [(70, 93, 5), (30, 81, 2)], min_share=0.7) == (10, 4, 4)
    # A: 60 -> 6; 6 / 10 = 0.6 < 0.7 -> 255
    assert convert(92, [(60, 93, 5), (40, 81, 2)], min_share=0.7) == (10, FILL, FILL)
    # nearest reachable shares either side of 0.65 at the default: 2/3 = 0.667 in, 5/8 = 0.625 out
    assert convert(30, [(20, 93, 5)])[1:] == (4, 4)
    assert convert(80, [(50, 93, 5)])[1:] == (FILL, FILL)


def test_partials_of_one_class_are_summed_to_pass_the_threshold():
    # CT 90 -> 9; A: 30 -> 3, stage 87 -> 3, form 5 -> 4; B: 30 -> 3, stage 88 -> 3, form 5 -> 4;
    # C: 30 -> 3, stage 95 -> 5, form 2 -> 1
    # SOD sums {3: 3 + 3 = 6, 5: 3}; FLOE sums {4: 6, 1: 3}; 6 / 9 = 0.667 >= 0.65 -> SOD 3, FLOE 4
    # (any single partial alone: 3 / 9 = 0.333 -> would fail)
    assert convert(90, [(30, 87, 5), (30, 88, 5), (30, 95, 2)]) == (9, 3, 4)


def test_summed_partials_beat_a_larger_single_partial():
    # CT 92 -> 10; A: 40 -> 4, stage 95 -> 5, form 6 -> 5; B: 30 -> 3, stage 87 -> 3, form 4 -> 3;
    # C: 30 -> 3, stage 89 -> 3, form 4 -> 3
    # SOD sums {5: 4, 3: 3 + 3 = 6} -> class 3 beats the single largest partial A
    # with min_share 0.5: 6 / 10 = 0.6 >= 0.5 -> 3; at the default 0.6 < 0.65 -> 255
    assert convert(92, [(40, 95, 6), (30, 87, 4), (30, 89, 4)], min_share=0.5) == (10, 3, 3)
    assert convert(92, [(40, 95, 6), (30, 87, 4), (30, 89, 4)]) == (10, FILL, FILL)


def test_ties_go_to_the_first_partial():
    # CT 80 -> 8; A: 40 -> 4, stage 87 -> 3, form 3 -> 2; B: 40 -> 4, stage 93 -> 4, form 5 -> 4
    # sums {3: 4, 4: 4} tie -> first seen (A); 4 / 8 = 0.5 >= 0.5
    assert convert(80, [(40, 87, 3), (40, 93, 5)], min_share=0.5) == (8, 3, 2)
    # swapped order: B's classes come first now -> 4, 4
    assert convert(80, [(40, 93, 5), (40, 87, 3)], min_share=0.5) == (8, 4, 4)


# --- CA := CT, not-filled fields ------------------------------------------------------------------

def test_empty_ca_takes_ct():
    # CT 92 -> 10, CA -9 -> CA := 92 -> 10; stage 93 -> 4, form 6 -> 5; 10 / 10 = 1 -> SOD 4, FLOE 5
    assert convert(92, [(NA, 93, 6)]) == (10, 4, 5)
    # CT 70 -> 7, CA := 70 -> 7; 7 / 7 = 1 -> stage 81 -> 1, form 2 -> 1
    assert convert(70, [(NA, 81, 2)]) == (7, 1, 1)


def test_empty_ca_without_stage_or_form_gives_no_label():
    # CT 92, CA := 92, but SA and FA -9: no partial counts -> SOD, FLOE 255
    assert convert(92) == (10, FILL, FILL)


def test_empty_b_and_c_are_skipped():
    # CT 92 -> 10; B has stage and form but CB -9 -> not present; A: 92 -> 10, stage 86 -> 4,
    # form 4 -> 3; 10 / 10 -> SOD 4, FLOE 3
    assert convert(92, [(92, 86, 4), (NA, 95, 8)]) == (10, 4, 3)


def test_partial_without_stage_or_form_does_not_count():
    # CT 92 -> 10; A: 50 -> 5, stage -9, form 5 -> 4; B: 50 -> 5, stage 93 -> 4, form 5 -> 4
    # SOD sums {4: 5} -> 5 / 10 = 0.5 -> 255; FLOE sums {4: 5 + 5 = 10} -> 10 / 10 -> 4
    assert convert(92, [(50, NA, 5), (50, 93, 5)]) == (10, FILL, 4)
    # same with the form missing instead: SOD {4: 10} -> 4; FLOE {4: 5} -> 0.5 -> 255
    assert convert(92, [(50, 93, NA), (50, 93, 5)]) == (10, 4, FILL)


def test_unknown_partial_concentration_is_skipped():
    # CT 90 -> 9; A: 99 (undetermined) -> skipped; B: 70 -> 7, stage 87 -> 3, form 4 -> 3
    # 7 / 9 = 0.778 >= 0.65 -> SOD 3, FLOE 3
    assert convert(90, [(99, 95, 6), (70, 87, 4)]) == (9, 3, 3)


# --- FLOE codes mapping to 255 --------------------------------------------------------------------

def test_fast_ice_form_is_no_floe_label():
    # CT 92 -> 10; A: 92 -> 10, stage 86 -> 4, form 8 (fast ice) -> 255 -> FLOE 255;
    # SOD 10 / 10 = 1 -> 4
    assert convert(92, [(92, 86, 8)]) == (10, 4, FILL)


@pytest.mark.parametrize("form", [1, 8, 21, 22, 99])
def test_any_floe_partial_mapping_to_255_makes_floe_255(form):
    # CT 92 -> 10; A: 80 -> 8, stage 93 -> 4, form 6 -> 5 (8 / 10 = 0.8 would pass);
    # B: 20 -> 2, stage 93 -> 4, form `form` -> 255 -> FLOE 255; SOD {4: 8 + 2 = 10} -> 4
    assert convert(92, [(80, 93, 6), (20, 93, form)]) == (10, 4, FILL)


# --- stage codes 98, 99 ---------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [98, 99])
def test_stage_98_99_is_no_sod_label(stage):
    # CT 92 -> 10; A: 92 -> 10, stage -> 255; sums {255: 10} -> largest is 255 -> SOD 255;
    # form 6 -> 5, 10 / 10 -> FLOE 5
    assert convert(92, [(92, stage, 6)]) == (10, FILL, 5)
    # A: 50 -> 5 stage -> 255; B: 40 -> 4 stage 93 -> 4: {255: 5, 4: 4} -> 255 is largest -> 255
    assert convert(92, [(50, stage, 6), (40, 93, 6)]) == (10, FILL, 5)
    # A: 80 -> 8 stage 93 -> 4; B: 20 -> 2 stage -> 255: {4: 8, 255: 2}; 8 / 10 = 0.8 -> SOD 4
    assert convert(92, [(80, 93, 6), (20, stage, 6)]) == (10, 4, 5)


def test_undetermined_ct_is_no_label_everywhere():
    # CT 99 -> SIC 255, so no share can be computed: SOD, FLOE 255
    assert convert(99, [(92, 93, 6)]) == (FILL, FILL, FILL)
    # CT -9 on an ice polygon: the same
    assert convert(NA, [(92, 93, 6)]) == (FILL, FILL, FILL)


# --- open water -----------------------------------------------------------------------------------

@pytest.mark.parametrize("poly_type", ["W", "w"])
def test_water_polygon_is_open_water(poly_type):
    # POLY_TYPE W -> SIC 0 whatever CT says, and SIC 0 -> SOD 0, FLOE 0
    assert convert(NA, poly_type=poly_type) == (0, 0, 0)
    assert convert(92, [(92, 93, 8)], poly_type=poly_type) == (0, 0, 0)


@pytest.mark.parametrize("ct", [0, 1, 2, 55])
def test_sic_zero_gives_open_water_sod_and_floe(ct):
    # CT -> class 0 -> SOD 0, FLOE 0, even with partials that would give 255 (stage 99, fast ice)
    assert convert(ct, [(ct, 99, 8)]) == (0, 0, 0)


# --- parsing --------------------------------------------------------------------------------------

def test_parse_keeps_integer_columns_and_poly_type():
    rows = [POLYGON_CODES_HEADER,
            "3;92;60;87;4;30;81;2;-9;-9;-9;-9;-9;-9;I",
            b"8;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;W"]
    table = parse_polygon_codes(rows)
    assert table.codes.shape == (2, 13) and table.codes.dtype == np.int64
    assert table.poly_ids.tolist() == [3, 8]
    assert table.column("CT").tolist() == [92, -9]
    assert table.column("FB").tolist() == [2, -9]
    assert table.poly_type.tolist() == ["I", "W"]


def test_parse_header_only_gives_empty_table():
    table = parse_polygon_codes(np.array([POLYGON_CODES_HEADER]))
    assert table.codes.shape == (0, 13) and table.poly_type.shape == (0,)
    assert all(len(polygon_classes(table)[c][1]) == 0 for c in CHARTS)


@pytest.mark.parametrize("rows, message", [
    ([], "empty"),
    (["poly_id;CT;CA"], "row 0: header"),
    (["3;92;60;87;4;30;81;2;-9;-9;-9;-9;-9;-9;I"], "row 0: header"),
    ([POLYGON_CODES_HEADER, "3;92;60;87;4;30;81;2;-9;-9;-9;-9;-9;I"], "row 1: 14 fields"),
    ([POLYGON_CODES_HEADER, egg_code_row(1, 92), "2;92;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;I;x"],
     "row 2: 16 fields"),
    ([POLYGON_CODES_HEADER, "3;9x;60;87;4;30;81;2;-9;-9;-9;-9;-9;-9;I"], "row 1: CT = '9x'"),
    ([POLYGON_CODES_HEADER, egg_code_row(4, 92), egg_code_row(4, 10)], "duplicate poly_id \\[4\\]"),
])
def test_parse_errors_name_the_row(rows, message):
    with pytest.raises(ValueError, match=message):
        parse_polygon_codes(rows)


# --- egg-code rows and round trips ----------------------------------------------------------------

def test_egg_code_row_format():
    assert egg_code_row(7, 92, [(60, 87, 4), (30, 81, 2)]) == (
        "7;92;60;87;4;30;81;2;-9;-9;-9;-9;-9;-9;I")
    assert egg_code_row(2, NA, poly_type="W") == "2;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;W"
    assert format_polygon_codes(["a", "b"]) == [POLYGON_CODES_HEADER, "a", "b"]


@pytest.mark.parametrize("kwargs", [
    dict(partials=[(10, 81, 2)] * 4),
    dict(partials=[(10, 81)]),
    dict(poly_type=""),
    dict(poly_type="I;W"),
])
def test_egg_code_row_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        egg_code_row(1, 92, **kwargs)


@pytest.mark.parametrize("chart", CHARTS)
def test_canonical_code_tables_cover_every_class(chart):
    codes = CODE_FOR_CLASS[chart]
    assert len(codes) == N_CLASSES[chart]
    assert [CLASS_OF_CODE[chart][code] for code in codes] == list(range(N_CLASSES[chart]))


def test_round_trip_of_canonical_codes():
    rows = [egg_code_row(k, SIC_CODE_FOR_CLASS[k]) for k in range(N_CLASSES["SIC"])]
    # SOD / FLOE classes >= 1 on a full-ice polygon: one partial of CT 92 -> 10 / 10 = 1
    rows += [egg_code_row(100 + k, SIC_CODE_FOR_CLASS[10],
                          [(SIC_CODE_FOR_CLASS[10], SOD_CODE_FOR_CLASS[k], FLOE_CODE_FOR_CLASS[1])])
             for k in range(1, N_CLASSES["SOD"])]
    rows += [egg_code_row(200 + k, SIC_CODE_FOR_CLASS[10],
                          [(SIC_CODE_FOR_CLASS[10], SOD_CODE_FOR_CLASS[1], FLOE_CODE_FOR_CLASS[k])])
             for k in range(1, N_CLASSES["FLOE"])]
    # class 0 everywhere: an open-water polygon with the canonical class-0 codes
    water = (SIC_CODE_FOR_CLASS[0], SOD_CODE_FOR_CLASS[0], FLOE_CODE_FOR_CLASS[0])
    rows.append(egg_code_row(300, SIC_CODE_FOR_CLASS[0], [water]))
    out = polygon_classes(parse_polygon_codes(format_polygon_codes(rows)))
    ids = out["SIC"][0].tolist()
    got = {pid: tuple(int(out[c][1][ids.index(pid)]) for c in CHARTS) for pid in ids}
    assert all(got[k][0] == k for k in range(N_CLASSES["SIC"]))
    assert all(got[100 + k] == (10, k, 1) for k in range(1, N_CLASSES["SOD"]))
    assert all(got[200 + k] == (10, 1, k) for k in range(1, N_CLASSES["FLOE"]))
    assert got[300] == (0, 0, 0)


# --- rasterizing ----------------------------------------------------------------------------------

CODES = format_polygon_codes([
    egg_code_row(1, 92, [(92, 93, 6)]),                   # 10, 4, 5
    egg_code_row(2, NA, poly_type="W"),                    # 0, 0, 0
    egg_code_row(5, 90, [(60, 87, 4), (30, 81, 2)]),      # 9, 3, 3 (6 / 9 = 0.667)
    egg_code_row(9, 80, [(50, 87, 4), (30, 81, 8)]),      # 8, 255 (5 / 8 = 0.625), 255 (fast ice)
])
EXPECTED = {1: (10, 4, 5), 2: (0, 0, 0), 5: (9, 3, 3), 9: (8, FILL, FILL)}


def test_rasterize_maps_each_pixel_to_its_polygon():
    nan = np.nan
    image = np.array([[1, 1, 2, nan],
                      [5, 5, 2, nan],
                      [9, nan, 2, nan],
                      [nan, 9, 5, 1]], dtype=np.float32)
    charts = rasterize_charts(image, CODES)
    for i, chart in enumerate(CHARTS):
        expected = np.full(image.shape, FILL, np.uint8)
        for pid, classes in EXPECTED.items():
            expected[image == pid] = classes[i]
        assert charts[chart].dtype == np.uint8 and charts[chart].shape == image.shape
        np.testing.assert_array_equal(charts[chart], expected)
    assert charts["SIC"][1, 3] == charts["SIC"][0, 3] == charts["SIC"][2, 3] == FILL
    # ids the table lacks (7; 1.5, -1 and inf are no polygon ids) are a broken file, not "no label",
    # named as they are
    image[1, 3], image[2, 3], image[3, 0], image[0, 3] = 7, 1.5, -1, np.inf
    with pytest.raises(ValueError, match=r"4 pixels of polygon_icechart carry polygon ids that polygon_codes "
                                         r"lacks \(e.g. \[-1, 1.5, 7, inf\]\)"):
        rasterize_charts(image, CODES)


def test_rasterize_blocks_and_parsed_table_agree():
    rng = np.random.default_rng(0)
    image = rng.choice(np.array([1, 2, 5, 9, np.nan], np.float32), size=(300, 257))
    whole = rasterize_charts(image, CODES)
    blocked = rasterize_charts(image, parse_polygon_codes(CODES), block=1000)
    for chart in CHARTS:
        np.testing.assert_array_equal(whole[chart], blocked[chart])
    assert (whole["SIC"][np.isnan(image)] == FILL).all()
    image[150:, 200] = 4  # not in the table: counted over every block
    with pytest.raises(ValueError, match="150 pixels of polygon_icechart carry polygon ids"):
        rasterize_charts(image, parse_polygon_codes(CODES), block=1000)
    assert (whole["SOD"][image == 1] == 4).all()


def test_rasterize_without_polygons_is_all_no_label():
    charts = rasterize_charts(np.full((3, 4), np.nan, np.float32), [POLYGON_CODES_HEADER])
    assert all((charts[c] == FILL).all() for c in CHARTS)
    with pytest.raises(ValueError, match="12 pixels of polygon_icechart"):
        rasterize_charts(np.full((3, 4), 2.0, np.float32), [POLYGON_CODES_HEADER])
