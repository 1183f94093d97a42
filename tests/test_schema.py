import re

import numpy as np

from seaice_lib import schema

RAW_CIS = ("S1A_EW_GRDM_1SDH_20190430T101830_20190430T101930_027018_030AD3_9C47_icechart_cis_"
           "SGRDIEA_20190430T1020Z_pl_a.nc")
RAW_DMI = ("S1B_EW_GRDM_1SDH_20180124T194759_20180124T194859_009311_010B5C_1F8B_icechart_dmi_"
           "201801241950_SouthEast_RIC.nc")


def test_toolbox_inputs_are_the_24_in_order():
    assert len(schema.TOOLBOX_INPUTS) == 24
    assert schema.TOOLBOX_INPUTS[:4] == ("nersc_sar_primary", "nersc_sar_secondary",
                                         "sar_incidenceangle", "distance_map")
    assert schema.TOOLBOX_INPUTS[4:6] == ("btemp_6_9h", "btemp_6_9v")
    assert schema.TOOLBOX_INPUTS[17] == "btemp_89_0v"
    assert schema.TOOLBOX_INPUTS[18:] == schema.ERA5_VARIABLES
    assert set(schema.NORM_STATS) == set(schema.TOOLBOX_INPUTS)
    assert all(std > 0 for _, std in schema.NORM_STATS.values())


def test_rtt_schema_has_29_data_variables():
    assert len(schema.RTT_SCHEMA.variables) == 29
    assert schema.RTT_SCHEMA.variables["SIC"].dtype == "uint8"
    assert schema.RTT_SCHEMA.variables["btemp_36_5h"].dims == schema.GRID2KM_DIMS
    assert schema.RTT_SCHEMA.variables["sar_grid2d_latitude"].dims == schema.TIEPOINT_DIMS


def test_class_tables_are_consistent():
    assert schema.N_CLASSES == {"SIC": 11, "SOD": 6, "FLOE": 7}
    for chart, classes in schema.CLASSES.items():
        assert len(classes.names) == len(classes.colours) == len(classes.train_share)
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in classes.colours)
        assert len(set(classes.colours)) == classes.n_classes, f"{chart} colours must differ"
        assert abs(sum(classes.train_share) - 100) < 0.5


def test_names_from_raw_file_names():
    assert schema.rtt_name_from_raw(RAW_CIS) == "20190430T101830_cis_prep.nc"
    assert schema.rtt_name_from_raw(RAW_DMI) == "20180124T194759_dmi_prep.nc"
    assert schema.region_from_raw(RAW_CIS) == "SGRDIEA"
    assert schema.region_from_raw(RAW_DMI) == "SouthEast"


def test_distance_zones_cover_0_to_41():
    edges = schema.DISTANCE_ZONE_EDGES_KM
    assert len(edges) == 41 and edges[-1] == 300 and np.all(np.diff(edges) > 0)
    assert list(edges[:4]) == [0.0, 0.5, 1.0, 2.0]
