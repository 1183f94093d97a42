"""Raw scenes to ready-to-train (RTT) scenes, the way the dataset's authors made them.

Steps: SIGRID-3 polygons -> SIC/SOD/FLOE at raw resolution; block-reduce by ``factor`` (2 gives the
80 m RTT grid from 40 m raw): mean for SAR, incidence angle and distance map, max for charts; align
masks (no chart label where SAR has no data); standard-scale every input with the toolbox statistics;
NaN -> 0 for SAR-grid inputs and 255 for charts. The 2 km AMSR2/ERA5 grid is kept as it is: its cells
stay aligned with pixel 0, so one cell covers ``2000 / (raw spacing * factor)`` RTT pixels.

CLI: ``seaice prepare --raw DIR --out DIR [--factor 2]``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__, logs, schema
from ..arguments import Parser
from ..atomic import REMOVED, atomic_path, folder_lock, move_aside, out_folder, write_text
from ..grid import block_reduce
from ..provenance import another_release, file_sha256, history_line, provenance, written_files
from ..stages import SCENES, other_stage
from .geo import TiePointGrid
from .scene import Scene, SceneError, scene_id_from_name, to_standard

log = logging.getLogger(__name__)
_SAR_ATTRS = {
    "nersc_sar_primary": {"polarisation": "HH", "description": "sigma0 HH, NERSC noise-corrected"},
    "nersc_sar_secondary": {"polarisation": "HV", "description": "sigma0 HV, NERSC noise-corrected"},
}
_CHART_POLYGON_ATTR = {"SIC": "CT", "SOD": "SA/SB/SC", "FLOE": "FA/FB/FC"}


def _rtt_tiepoints(raw_tp: TiePointGrid, factor: int, shape: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """21 x 21 lat/lon at regular RTT pixel positions, as (samples, lines) arrays (the RTT dims)."""
    n = schema.TIEPOINTS_PER_SIDE
    lines = np.linspace(0, shape[0] - 1, n)
    samples = np.linspace(0, shape[1] - 1, n)
    # RTT pixel i covers raw pixels [i*f, (i+1)*f): its centre is raw position i*f + (f-1)/2
    lon, lat = raw_tp.pixel_lonlat(lines * factor + (factor - 1) / 2,
                                   samples * factor + (factor - 1) / 2)
    return lat.T, lon.T


def rtt_from_raw(raw: Scene, factor: int = 2) -> xr.Dataset:
    """An in-memory RTT dataset from a raw scene, at ``raw.pixel_spacing * factor`` metres."""
    if factor < 1 or schema.GRID2KM_SPACING_M % (raw.pixel_spacing * factor):
        raise ValueError(f"factor {factor} does not divide a 2 km cell of "
                         f"{raw.pixel_spacing:g} m pixels into whole pixels")
    valid = raw.checked_sar_valid() & raw.sar_valid()  # no pixel whose incidence angle is missing
    sar = {}
    for name in schema.SAR_GRID_VARIABLES:
        physical = raw.read(name, units="physical")
        if name != "distance_map":
            physical = np.where(valid, physical, np.nan)
        elif (missing := ~np.isfinite(physical)).any():  # a zone everywhere: the format has no no-data value for it
            raise SceneError(raw.path, f"{int(missing.sum())} of {missing.size} values are not finite; the "
                                       "ready-to-train file would have to make them up", name)
        sar[name] = block_reduce(physical, factor, "mean")
    valid_rtt = np.isfinite(sar["nersc_sar_primary"]) & np.isfinite(sar["nersc_sar_secondary"])
    shape = valid_rtt.shape

    data: dict[str, xr.DataArray] = {}
    if raw.has_charts:
        for chart, labels in raw.charts().items():
            reduced = block_reduce(labels, factor, "max")
            reduced = np.where(valid_rtt, reduced, schema.CHART_FILL).astype(np.uint8)
            data[chart] = xr.DataArray(reduced, dims=schema.SAR_DIMS, attrs={
                "polygon": _CHART_POLYGON_ATTR[chart], "chart_fill_value": schema.CHART_FILL})
    for name, physical in sar.items():
        z = np.nan_to_num(to_standard(name, physical), nan=schema.SAR_FILL)
        attrs: dict[str, Any] = dict(_SAR_ATTRS.get(name, {}))
        if name in schema.SAR_VARIABLES:
            finite = physical[np.isfinite(physical)]
            attrs.update(upstream_id=raw.original_name, variable_fill_value=schema.SAR_FILL,
                         min=float(finite.min()) if finite.size else np.nan,
                         max=float(finite.max()) if finite.size else np.nan)
        attrs["units"] = schema.UNITS[name] + " (standard-scaled)"
        data[name] = xr.DataArray(z.astype(np.float32), dims=schema.SAR_DIMS, attrs=attrs)

    lat, lon = _rtt_tiepoints(raw.tiepoints, factor, shape)
    data["sar_grid2d_latitude"] = xr.DataArray(lat, dims=schema.TIEPOINT_DIMS)
    data["sar_grid2d_longitude"] = xr.DataArray(lon, dims=schema.TIEPOINT_DIMS)
    for name in schema.AMSR2_CHANNELS + schema.ERA5_VARIABLES:
        values = raw.values(name).astype(np.float32, copy=False)
        missing = ~np.isfinite(values)
        if missing.any():  # the ready-to-train format has no no-data value on the 2 km grid: never filled in
            raise SceneError(raw.path, f"{int(missing.sum())} of {missing.size} values are not finite; the "
                                       "ready-to-train file would have to make them up", name)
        data[name] = xr.DataArray(to_standard(name, values), dims=schema.GRID2KM_DIMS,
                                  attrs={"units": schema.UNITS[name] + " (standard-scaled)"})
    scene_id = raw.scene_id
    attrs = {"scene_id": scene_id, "original_id": raw.original_name, "ice_service": schema.service_of(scene_id),
             "flip": int(raw.ds.attrs.get("flip", 0)), "pixel_spacing": int(raw.pixel_spacing * factor)}
    return xr.Dataset(data, attrs=attrs)


def encoding_for(ds: xr.Dataset, complevel: int = 1) -> dict[Hashable, dict]:
    """netCDF encoding: zlib with shuffle, 2-D variables chunked in tiles for windowed reads."""
    enc: dict[Hashable, dict] = {}
    for name, var in ds.data_vars.items():
        e: dict = {"zlib": True, "complevel": complevel, "shuffle": True}
        if var.dtype.kind in "OUS":
            e = {}
        elif var.ndim == 2 and var.dims == schema.SAR_DIMS:
            e["chunksizes"] = tuple(min(256, n) for n in var.shape)
        enc[name] = e
    return enc


def write_scene(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a scene's netCDF file atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding_for(ds))
    return Path(path)


def rtt_path(raw_path: str | Path, out_dir: str | Path) -> Path:
    """``out_dir/<scene id>_prep.nc`` of a raw file; :class:`SceneError` naming the file when its
    name does not follow the dataset's pattern."""
    return Path(out_dir) / f"{scene_id_from_name(raw_path, 'raw')}_prep.nc"


class KeptError(SceneError):
    """An RTT file already there that the options refuse to replace (another raw file's, another
    spacing): left where it is, never set aside."""


def prepare_scene(raw_path: str | Path, out_dir: str | Path, factor: int = 2,
                  overwrite: bool = False) -> Path:
    """Prepare one raw file into ``out_dir/<RTT name>``, recording the raw file's size, modification
    time and SHA-256 and what made it (``made_by``; the output's SHA-256 in
    ``out_dir/prepared_files.json``). An existing output prepared from this raw file (its
    ``original_id``) at the same spacing is kept unless ``overwrite``, the raw file changed since,
    another release of seaice_lib made it (or one from before ``made_by`` was recorded), or the
    output is no longer as written (each prepared again, the last two said in a warning); one of
    another raw file or spacing is a :class:`KeptError` naming it."""
    raw_path = Path(raw_path)
    out = rtt_path(raw_path, out_dir)
    written = _prepared(Path(out_dir))
    if out.exists() and not overwrite:
        with Scene(out, validate=False) as kept:
            attrs = dict(kept.ds.attrs)
        spacing, source = attrs.get("pixel_spacing"), attrs.get("original_id")
        if source != raw_path.name:
            raise KeptError(out, f"already there, prepared from {source!r}, not from {raw_path.name}: "
                                 "--overwrite replaces it")
        if spacing != schema.RAW_PIXEL_SPACING_M * factor:
            raise KeptError(out, f"already there with pixel_spacing {spacing}, not the "
                                 f"{schema.RAW_PIXEL_SPACING_M * factor} m of --factor {factor}: --overwrite replaces it")
        if _same_source(attrs, raw_path):
            if (other := another_release(_made_by(attrs))) is not None:
                log.warning("%s: made by %s, not by the seaice_lib %s running now: prepared again", out, other,
                            __version__)
            elif written.get(out.name) == file_sha256(out):
                return out
            else:
                log.warning("%s: not as prepared (changed since, or %s has no record of it): prepared again",
                            out, PREPARED)
    with Scene(raw_path, kind="raw") as raw:
        ds = rtt_from_raw(raw, factor)
    st = raw_path.stat()
    ds.attrs |= {"original_bytes": st.st_size, "original_mtime_ns": str(st.st_mtime_ns),
                 "original_sha256": file_sha256(raw_path), "made_by": json.dumps(provenance(), sort_keys=True),
                 "history": "\n".join(h for h in (str(ds.attrs.get("history", "")),
                                                  history_line(f"prepared from {raw_path.name} at factor {factor}")) if h)}
    write_scene(ds, out)
    write_text(Path(out_dir) / PREPARED, json.dumps(_prepared(Path(out_dir)) | {out.name: file_sha256(out)},
                                                    indent=1, sort_keys=True))
    return out


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` as the file system tells it apart (inode, modification time), None when
    there is none: a file written again is renamed into place, so it has another."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


PREPARED = "prepared_files.json"  # beside the prepared scenes: the SHA-256 of each as prepare wrote it


def _prepared(out_dir: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files prepare wrote into ``out_dir``; {} without a readable
    record (every file there is then prepared again, named)."""
    try:
        return written_files(out_dir / PREPARED)
    except ValueError:
        return {}


def _made_by(attrs: dict) -> dict | None:
    """An RTT file's ``made_by`` record (:func:`~seaice_lib.provenance.provenance`, stored as JSON);
    None for a file without a readable one (prepared before it was recorded)."""
    try:
        made_by = json.loads(attrs["made_by"])
    except (KeyError, TypeError, ValueError):
        return None
    return made_by if isinstance(made_by, dict) else None


def _same_source(attrs: dict, raw_path: Path) -> bool:
    """Whether an RTT file's recorded source (``original_bytes``, ``original_mtime_ns``,
    ``original_sha256``) is ``raw_path`` as it is now: the same size, and the same modification
    time or SHA-256. A file without the record (written before it was kept) counts as stale."""
    st = raw_path.stat()
    if attrs.get("original_bytes") != st.st_size or "original_sha256" not in attrs:
        return False
    return attrs.get("original_mtime_ns") == str(st.st_mtime_ns) or attrs["original_sha256"] == file_sha256(raw_path)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description="Prepare raw AI4Arctic scenes into RTT files.", epilog=logs.EPILOG)
    parser.add_argument("--raw", type=Path, required=True, help="directory of raw scene .nc files")
    parser.add_argument("--out", type=out_folder, required=True, help="output directory for *_prep.nc")
    parser.add_argument("--factor", type=int, default=2,
                        help="block size: 2 = 80 m from 40 m raw (default), 1 = native 40 m")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.factor < 1 or schema.CELL_40M % args.factor:
        divisors = [d for d in range(1, schema.CELL_40M + 1) if schema.CELL_40M % d == 0]
        parser.error(f"--factor must divide the {schema.CELL_40M} raw pixels of a 2 km cell "
                     f"({', '.join(map(str, divisors))}), not {args.factor}")
    if not args.raw.is_dir():
        parser.error(f"--raw {args.raw}: no such folder")
    if args.out.resolve() == args.raw.resolve():
        parser.error(f"--out {args.out} is the --raw folder: give the prepared scenes a folder of their own")
    files = sorted(p for p in args.raw.glob("*.nc") if not p.name.endswith("_prep.nc"))
    if not files:
        parser.error(f"no raw .nc files in {args.raw}")
    if other := other_stage(args.out, own=(SCENES,)):
        parser.error(f"--out {args.out}: {other}, not a folder of scenes: give another folder")
    with folder_lock(args.out, "preparing"):  # one writer per output folder
        return _prepare_all(files, args)


def _prepare_all(files: list[Path], args: argparse.Namespace) -> int:
    """Prepare ``files`` into ``args.out``, skipping (and naming) the bad ones; the exit status."""
    refused = refused_names(files, args.out)
    failed = list(refused.values())
    for problem in failed:
        log.warning("skipped: %s", problem)
    gone = set_aside_gone(files, args.out)  # first: a raw file re-issued under a new name takes its place
    kept = 0
    for path in logs.progress_bar([p for p in files if p not in refused], desc="prepare", unit="scene"):
        try:
            before = _identity(rtt_path(path, args.out))
            kept += _identity(prepare_scene(path, args.out, args.factor, args.overwrite)) == before
        except (SceneError, ValueError) as err:
            failed.append(str(err))
            log.warning("skipped: %s", err)
            if not isinstance(err, KeptError) and (aside := set_aside(path, args.out)):
                log.warning("%s: prepared earlier from %s, which fails now: moved to %s", aside.name, path.name, aside)
    print(f"prepared {len(files) - len(failed) - kept} of {len(files)} scenes into {args.out}"
          + (f"; {kept} already there as prepared, kept" if kept else ""))
    if gone:
        print(f"{len(gone)} scenes set aside (prepared from raw files no longer in {args.raw}; kept in "
              f"{args.out / REMOVED}, never read by later stages): {', '.join(p.name for p in gone)}")
    return 1 if failed else 0


def set_aside(raw_path: Path, out_dir: Path) -> Path | None:
    """Move the RTT file prepared earlier from ``raw_path`` (its ``original_id``) out of ``out_dir``'s
    scenes, to ``out_dir/.removed/`` (:func:`~seaice_lib.atomic.move_aside`), when that raw file
    fails now: left in place it would look valid to every later stage. Returns where it went, or None when there was none."""
    try:
        out = rtt_path(raw_path, out_dir)
    except SceneError:
        return None
    if not out.is_file() or _source(out) != raw_path.name:
        return None  # none, or another raw file's: not ours to move
    return move_aside(out)


def set_aside_gone(files: list[Path], out_dir: Path) -> list[Path]:
    """Move every RTT file that prepare wrote into ``out_dir`` (listed in its ``prepared_files.json``
    with the SHA-256 it still has) whose raw file (its ``original_id``) is not among ``files``
    (withdrawn from --raw, or re-issued under another name) to ``out_dir/.removed/`` as
    :func:`set_aside` does: left in place, every later stage would read it as one of the folder's
    scenes. Files prepare did not write (synthetic or downloaded RTT files, which carry an
    ``original_id`` too) stay. Returns where each went."""
    names, written = {p.name for p in files}, _prepared(out_dir)
    return [move_aside(out) for out in sorted(out_dir.glob("*_prep.nc"))
            if out.name in written and out.is_file() and (source := _source(out)) is not None
            and source not in names and file_sha256(out) == written[out.name]]


def _source(out: Path) -> str | None:
    """The raw file an RTT file was prepared from (its ``original_id``); None when unreadable."""
    try:
        with Scene(out, validate=False) as kept:
            source = kept.ds.attrs.get("original_id")
    except (SceneError, ValueError, OSError):
        return None
    return source if isinstance(source, str) else None


def refused_names(files: list[Path], out_dir: Path) -> dict[Path, str]:
    """Raw files that cannot be prepared for their name, and why: a name without the dataset's
    pattern, or an RTT name shared with another file of the batch (one would overwrite the other)."""
    refused: dict[Path, str] = {}
    by_output: dict[Path, list[Path]] = {}
    for path in files:
        try:
            by_output.setdefault(rtt_path(path, out_dir), []).append(path)
        except SceneError as err:
            refused[path] = str(err)
    for out, paths in by_output.items():
        if len(paths) > 1:
            for path in paths:
                others = ", ".join(p.name for p in paths if p != path)
                refused[path] = str(SceneError(path, f"would be prepared into {out.name}, as would "
                                                     f"{others}: keep one of them"))
    return refused
