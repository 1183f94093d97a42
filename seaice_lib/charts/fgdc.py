"""FGDC CSDGM metadata (FGDC-STD-001-1998) of a SIGRID-3 shapefile set: ``NAME.shp.xml`` beside
``NAME.shp``, as SIGRID-3 ships each chart. Built with :mod:`xml.etree.ElementTree`, torch-free.

What it holds and where each value comes from: docs/charts.md ("Maps and SIGRID-3"). The
bounding coordinates are those of the polygons themselves, their edges densified to 1 km first (a
straight edge in the map's plane bends in latitude and longitude, and between its ends can reach
further north than either), rounded outwards to 1e-6 degree.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer

from ..atomic import atomic_path
from ..data import icechart

STANDARD_NAME = "FGDC Content Standard for Digital Geospatial Metadata"
STANDARD_VERSION = "FGDC-STD-001-1998"
SIGRID3 = "SIGRID-3: a vector archive format for sea ice charts (JCOMM Technical Report No. 23, WMO/IOC)"
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # characters XML 1.0 cannot hold
_DENSIFY_M = 1000.0  # edge densification before the bounds (the bend of a 1 km chord: well under a millimetre)

# field -> (definition, unit or None); the egg-code fields after SIGRID-3's own definitions
FIELD_DEFINITIONS: dict[str, tuple[str, str | None]] = {
    "AREA": ("Area of the polygon, geodesic on the WGS 84 ellipsoid", "square kilometres"),
    "PERIMETER": ("Perimeter of the polygon, geodesic on the WGS 84 ellipsoid", "kilometres"),
    "CT": ("Total concentration of ice in the polygon", None),
    "CA": ("Partial concentration of the thickest ice", None),
    "SA": ("Stage of development of the thickest ice", None),
    "FA": ("Form of the thickest ice (floe size)", None),
    "CB": ("Partial concentration of the second thickest ice", None),
    "SB": ("Stage of development of the second thickest ice", None),
    "FB": ("Form of the second thickest ice (floe size)", None),
    "CC": ("Partial concentration of the third thickest ice", None),
    "SC": ("Stage of development of the third thickest ice", None),
    "FC": ("Form of the third thickest ice (floe size)", None),
    "CN": ("Stage of development of ice thinner than SC (a fourth stage)", None),
    "CD": ("Stage of development of any remaining class of ice", None),
    "CF": ("Predominant and secondary forms of ice", None),
    "POLY_TYPE": ("Type of the polygon", None),
}
POLY_TYPES = {icechart.POLY_ICE: "ice", icechart.POLY_WATER: "water", icechart.POLY_LAND: "land",
              icechart.POLY_NO_DATA: "no data"}


def _add(parent: ET.Element, tag: str, text: object | None = None, **children: object) -> ET.Element:
    """A child ``tag`` of ``parent`` with ``text``, and text-only children in keyword order."""
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
        if bad := NOT_XML.search(element.text):
            raise ValueError(f"FGDC metadata <{tag}>: {element.text!r} holds the character {bad.group()!r}, "
                             "which XML cannot hold")
    for name, value in children.items():
        _add(element, name, value)
    return element


def _longitude_range(lon: np.ndarray) -> tuple[float, float]:
    """(west, east) of the shortest arc of longitude holding every ``lon`` (degrees, -180..180):
    west > east when it crosses the antimeridian, as FGDC bounding coordinates write that."""
    lon = np.sort(np.unique((np.asarray(lon, float) + 180) % 360 - 180))
    gaps = np.diff(np.append(lon, lon[0] + 360))  # the gap after each longitude, around the circle
    widest = int(np.argmax(gaps))
    return float(lon[(widest + 1) % len(lon)]), float(lon[widest])


def bounding(polygons: Sequence | np.ndarray, crs: CRS) -> dict[str, float]:
    """``westbc``, ``eastbc``, ``northbc``, ``southbc`` (decimal degrees, WGS 84) holding every
    polygon, edges densified to 1 km and rounded outwards to 1e-6 degree; a polygon holding the
    North or South Pole spans every longitude."""
    dense = shapely.segmentize(np.asarray(polygons, dtype=object), _DENSIFY_M)
    xy = shapely.get_coordinates(dense)
    if not len(xy):
        raise ValueError("no polygons to bound")
    lon, lat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True).transform(xy[:, 0], xy[:, 1])
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError("polygons with corners outside the area where the map projection gives back "
                         "latitude and longitude")
    west, east = _longitude_range(lon)
    south, north = float(lat.min()), float(lat.max())
    to_map = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
    for pole in (90.0, -90.0):
        px, py = to_map.transform(0.0, pole)
        if np.isfinite([px, py]).all() and shapely.contains_xy(polygons, px, py).any():
            west, east = -180.0, 180.0
            north, south = max(north, pole), min(south, pole)

    def out(value: float, up: bool) -> float:
        return float((np.ceil if up else np.floor)(round(value * 1e6, 3)) / 1e6)

    return {"westbc": out(west, False), "eastbc": out(east, True), "northbc": min(out(north, True), 90.0),
            "southbc": max(out(south, False), -90.0)}


def _projection(planar: ET.Element, crs: CRS) -> None:
    """``mapproj`` of ``crs``: FGDC's own parameters for a polar stereographic map (the default
    EPSG:3413) and a Lambert azimuthal equal-area one, else the CRS's WKT as the definition of
    another projection."""
    cf = crs.to_cf()
    mapproj = _add(planar, "mapproj", mapprojn=crs.name)
    name = cf.get("grid_mapping_name")
    if name == "polar_stereographic":
        params = _add(mapproj, "polarst", svlong=cf["straight_vertical_longitude_from_pole"])
        if "standard_parallel" in cf:
            _add(params, "stdparll", cf["standard_parallel"])
        else:
            _add(params, "sfprjorg", cf["scale_factor_at_projection_origin"])
    elif name == "lambert_azimuthal_equal_area":
        params = _add(mapproj, "lamberta", longpc=cf["longitude_of_projection_origin"],
                      latprjc=cf["latitude_of_projection_origin"])
    else:
        _add(_add(mapproj, "mapprojp"), "otherprj", crs.to_wkt())
        params = None
    if params is not None:
        _add(params, "feast", cf.get("false_easting", 0.0))
        _add(params, "fnorth", cf.get("false_northing", 0.0))


def _known(value: object) -> str | None:
    """A producer attribute of a chart file, or None where it is the writer's "unknown" placeholder."""
    text = str(value or "").strip()
    return text if text and not text.startswith("unknown") else None


def metadata(name: str, polygons: Sequence | np.ndarray, columns: Mapping[str, np.ndarray], crs: CRS, *, centre: str,
             region: str, time: dt.datetime, attrs: Mapping[str, object], scene_id: str, history: str,
             tolerance_m: float, now: dt.datetime | None = None) -> ET.ElementTree:
    """The FGDC CSDGM record of the shapefile ``name`` holding ``polygons`` (in ``crs``) with the
    SIGRID-3 ``columns``: ``attrs`` are the source chart file's global attributes (institution,
    creator, license), ``time`` the acquisition (UTC), ``now`` the publication time (default now)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    time = time.astimezone(dt.timezone.utc)
    institution, creator = _known(attrs.get("institution")), _known(attrs.get("creator_name"))
    email, licence = _known(attrs.get("creator_email")), _known(attrs.get("license"))
    title = (f"Sea ice chart of {region}, {time:%Y-%m-%d %H:%M} UTC: SIGRID-3 polygons of a model's chart "
             f"of the Sentinel-1 scene {scene_id}")
    root = ET.Element("metadata")

    idinfo = _add(root, "idinfo")
    citeinfo = _add(_add(idinfo, "citation"), "citeinfo")
    _add(citeinfo, "origin", institution or centre)
    _add(citeinfo, "pubdate", f"{now:%Y%m%d}")
    _add(citeinfo, "pubtime", f"{now:%H%M%S}Z")
    _add(citeinfo, "title", title)
    _add(citeinfo, "geoform", "vector digital data")
    _add(idinfo, "descript",
         abstract=f"Ice regimes charted by a deep-learning model (seaice_lib) from the Sentinel-1 SAR scene {scene_id} "
                  "(with AMSR2 and ERA5) in the AI4Arctic format: sea ice concentration, stage of development and "
                  "floe size classes combined into polygons of one regime each, coded as SIGRID-3 egg codes. Not an "
                  "ice service's chart.",
         purpose="Exchange and archive of a predicted ice chart in the WMO ice-chart format (SIGRID-3), for ice "
                 "services and GIS.",
         supplinf=f"Region {region} (the ice service's chart area of the scene). Polygons simplified as a coverage "
                  f"with a tolerance of {tolerance_m:g} m. Format: {SIGRID3}.")
    timeperd = _add(idinfo, "timeperd")
    _add(_add(timeperd, "timeinfo"), "sngdate", caldate=f"{time:%Y%m%d}", time=f"{time:%H%M%S}Z")
    _add(timeperd, "current", "ground condition (SAR acquisition start)")
    _add(idinfo, "status", progress="Complete", update="None planned")
    _add(_add(idinfo, "spdom"), "bounding", **{k: f"{v:.6f}" for k, v in bounding(polygons, crs).items()})
    keywords = _add(idinfo, "keywords")
    theme = _add(keywords, "theme", themekt="None", themekey="sea ice")
    for word in ("ice chart", "sea ice concentration", "stage of development", "floe size", "SIGRID-3",
                 "Sentinel-1", "SAR"):
        _add(theme, "themekey", word)
    place = _add(keywords, "place", placekt="None", placekey=region)
    _add(place, "placekey", "Arctic")
    _add(idinfo, "accconst", licence or "None")
    _add(idinfo, "useconst", licence or "None given by the producer")
    if institution or creator or email:
        _add(_add(idinfo, "ptcontac"), "cntinfo").extend(_contact(institution or centre, creator, email))

    dataqual = _add(root, "dataqual")
    _add(dataqual, "logic", "The polygons cover the charted swath without gaps or overlaps (simplified together as "
                            "a coverage); each carries one ice regime.")
    _add(dataqual, "complete", "Every pixel of the swath grid is in one polygon: ice, water, land (where the "
                               "scene's land is known) or no data (no SAR data, or no class).")
    lineage = _add(dataqual, "lineage")
    for line in [*filter(None, history.splitlines())] or ["polygons of a chart file (no history recorded)"]:
        _add(lineage, "procstep", procdesc=line, procdate=_history_date(line))

    spdoinfo = _add(root, "spdoinfo", direct="Vector")
    _add(_add(spdoinfo, "ptvctinf"), "sdtsterm", sdtstype="G-polygon", ptvctcnt=len(polygons))

    horizsys = _add(_add(root, "spref"), "horizsys")
    planar = _add(horizsys, "planar")
    _projection(planar, crs)
    planci = _add(planar, "planci", plance="coordinate pair")
    _add(planci, "coordrep", absres="0.001", ordres="0.001")
    _add(planci, "plandu", "meters")
    ellipsoid, datum = crs.ellipsoid, crs.datum
    if ellipsoid is None or datum is None:
        raise ValueError(f"{crs.name}: a CRS without a datum and ellipsoid cannot be described in FGDC metadata")
    _add(horizsys, "geodetic", horizdn=datum.name.removesuffix(" ensemble"), ellips=ellipsoid.name,
         semiaxis=ellipsoid.semi_major_metre, denflat=ellipsoid.inverse_flattening)

    detailed = _add(_add(root, "eainfo"), "detailed")
    _add(detailed, "enttyp", enttypl=name, enttypd="Polygons of one ice regime each, with their SIGRID-3 egg codes",
         enttypds=SIGRID3)
    for field in columns:
        definition, unit = FIELD_DEFINITIONS[field]
        attr = _add(detailed, "attr", attrlabl=field, attrdef=definition,
                    attrdefs="seaice_lib" if field in ("AREA", "PERIMETER") else SIGRID3)
        values = np.asarray(columns[field])
        if unit is not None:
            _add(_add(attr, "attrdomv"), "rdom", rdommin=f"{values.min():.6f}" if len(values) else "0",
                 rdommax=f"{values.max():.6f}" if len(values) else "0", attrunit=unit)
        elif field == "POLY_TYPE":
            for code, meaning in POLY_TYPES.items():
                _add(_add(attr, "attrdomv"), "edom", edomv=code, edomvd=meaning, edomvds=SIGRID3)
        else:
            _add(_add(attr, "attrdomv"), "udom", "Two-character SIGRID-3 code (the ice services' egg code); "
                                                 "-9: not filled")

    metainfo = _add(root, "metainfo", metd=f"{now:%Y%m%d}")
    _add(_add(metainfo, "metc"), "cntinfo").extend(_contact(institution or centre, creator, email))
    _add(metainfo, "metstdn", STANDARD_NAME)
    _add(metainfo, "metstdv", STANDARD_VERSION)
    ET.indent(root, space=" ")
    return ET.ElementTree(root)


def _contact(organisation: str, person: str | None, email: str | None) -> list[ET.Element]:
    """``cntorgp`` (organisation, person) and ``cntemail`` where known: the contact the producer
    gave (the project knows no address or telephone to write)."""
    holder = ET.Element("holder")
    _add(holder, "cntorgp", cntorg=organisation, **({"cntper": person} if person else {}))
    if email:
        _add(holder, "cntemail", email)
    return list(holder)


def _history_date(line: str | None) -> str:
    """YYYYMMDD of a history line (``2026-12-05T19:11:40+00:00 ...``), "Unknown" without one."""
    try:
        return dt.datetime.fromisoformat((line or "").split()[0]).strftime("%Y%m%d")
    except (ValueError, IndexError):
        return "Unknown"


def write(path: str | Path, tree: ET.ElementTree) -> Path:
    """Write ``tree`` to ``path`` (UTF-8, with its XML declaration) under a temporary name, renamed
    when whole (:mod:`seaice_lib.atomic`)."""
    with atomic_path(path) as tmp:
        tree.write(tmp, encoding="UTF-8", xml_declaration=True)
    return Path(path)


def scene_of(path: str | Path) -> str | None:
    """The scene id a record of :func:`metadata` names in its title, None where it names none;
    ValueError or OSError where it cannot be read as XML."""
    try:
        title = ET.parse(path).findtext("idinfo/citation/citeinfo/title") or ""
    except ET.ParseError as err:
        raise ValueError(f"{path}: not XML ({err})") from None
    found = re.search(r"of the Sentinel-1 scene (\S+)$", title)
    return found.group(1) if found else None
