"""Pictures of scenes: interactive holoviews/bokeh maps for notebooks, matplotlib PNGs for papers.

Charts are drawn with their class colours and names from :mod:`seaice_lib.schema`; images are
shown on the SAR grid (lines down, samples across) after down-sampling by an integer ``step``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd

from . import schema
from .atomic import atomic_path
from .data.geo import xy_to_lonlat
from .data.scene import Scene
from .grid import block_reduce

PANEL = 300  # default panel width and height in screen pixels
NO_LABEL_COLOUR = "#c8c8c8"  # unlabelled (255) and no-data pixels in every picture


def notebook_extension() -> None:
    """Load holoviews' bokeh extension in a notebook with BokehJS inside the notebook (once), so
    the notebook's HTML draws offline; hvplot is imported first, as its import loads the extension."""
    hv.extension.inline = True
    import hvplot.pandas  # noqa: F401

    hv.extension("bokeh")


def shrink(values: np.ndarray, step: int, categorical: bool = False) -> np.ndarray:
    """Shrink (h, w) by ``step`` for display: block mean for measurements (NaN-aware), each block's
    centre pixel for classes (:func:`seaice_lib.grid.block_reduce`)."""
    return block_reduce(values, max(step, 1), "centre" if categorical else "nanmean")


def map_frame(h: int, w: int) -> dict:
    """Plot options that draw (h, w) data with square pixels: the frame (the data area, without
    colour bar, legend or title) is :data:`PANEL` screen pixels on its longer side."""
    scale = PANEL / max(h, w)
    return {"frame_width": max(1, round(w * scale)), "frame_height": max(1, round(h * scale)), "data_aspect": 1}


def _image(values: np.ndarray, title: str, label: str, **style) -> hv.Image:
    """(h, w) ``values`` as stored, line 0 at the top (hv.Image reads an array's first row as its
    top), with square pixels whatever the colour bar (:func:`map_frame`)."""
    h, w = values.shape
    img = hv.Image(values, bounds=(0, 0, w, h), kdims=["sample", "line"], vdims=[label])
    return img.opts(title=title, xaxis=None, yaxis=None, colorbar=True, tools=["hover"], **map_frame(h, w), **style)


def chart_image(labels: np.ndarray, chart: str, title: str | None = None) -> hv.Image:
    """A uint8 chart with its class colours and a legend of class names (255 left blank)."""
    from bokeh.models import FixedTicker

    classes = schema.CLASSES[chart]
    n = classes.n_classes
    values = np.where(labels == schema.CHART_FILL, np.nan, labels).astype(float)
    return _image(values, title or chart, chart, cmap=list(classes.colours), clim=(-0.5, n - 0.5),
                  color_levels=n, clipping_colors={"NaN": NO_LABEL_COLOUR},
                  colorbar_opts={"ticker": FixedTicker(ticks=list(range(n))),
                                 "major_label_overrides": dict(enumerate(classes.names))})


def measurement_image(values: np.ndarray, title: str, label: str, cmap: str = "gray",
                      robust: bool = True) -> hv.Image:
    """A continuous field; colour limits at the 2nd and 98th percentiles when ``robust``."""
    finite = values[np.isfinite(values)]
    clim = tuple(np.percentile(finite, [2, 98])) if robust and finite.size else (None, None)
    return _image(values, title, label, cmap=cmap, clim=clim,
                  clipping_colors={"NaN": NO_LABEL_COLOUR})


def map_over_image(image: np.ndarray, values: np.ndarray, title: str, label: str, cmap: str = "viridis",
                   alpha: float = 0.55, robust: bool = False) -> hv.Overlay:
    """``values`` (h, w), e.g. an explanation map, drawn with ``alpha`` over ``image`` (h, w) in grey
    (2-98th percentiles, NaN in :data:`NO_LABEL_COLOUR`): the same bounds, lines down as stored,
    one data unit as wide as it is tall; the colour bar is ``values``'."""
    if image.shape != values.shape:
        raise ValueError(f"{title}: a map of shape {values.shape} over an image of shape {image.shape}")
    h, w = image.shape
    base = measurement_image(image, title, "image").opts(colorbar=False)
    top = measurement_image(values, title, label, cmap=cmap, robust=robust).opts(alpha=alpha)
    return (base * top).opts(title=title, **map_frame(h, w))


def wind_arrows(u: np.ndarray, v: np.ndarray, cell: int, step: int, every: int = 2) -> hv.VectorField:
    """ERA5 wind on the 2 km grid as arrows over a SAR image down-sampled by ``step``.

    ``u`` runs along samples and ``v`` along lines (the dataset's rotated winds).
    """
    rows, cols = np.mgrid[0:u.shape[0]:every, 0:u.shape[1]:every]
    h_px = u.shape[0] * cell / step
    x = (cols + 0.5) * cell / step
    y = h_px - (rows + 0.5) * cell / step
    uu, vv = u[rows, cols], -v[rows, cols]  # image y runs up
    mag = np.hypot(uu, vv)
    field = hv.VectorField((x.ravel(), y.ravel(), np.arctan2(vv, uu).ravel(), mag.ravel()),
                           vdims=["angle", "speed (m/s)"])
    return field.opts(magnitude="speed (m/s)", color="speed (m/s)", cmap="plasma", pivot="tail",
                      colorbar=True)


def scene_overview(scene: Scene, step: int = 4, amsr2_channel: str = "btemp_36_5h") -> hv.Layout:
    """HH, HV, incidence, SIC/SOD/FLOE, an AMSR2 channel and ERA5 wind of one scene."""
    hh = shrink(scene.read("nersc_sar_primary", units="physical"), step)
    hv_ = shrink(scene.read("nersc_sar_secondary", units="physical"), step)
    inc = shrink(scene.read("sar_incidenceangle", units="physical"), step)
    panels = [measurement_image(hh, "HH (dB)", "HH"), measurement_image(hv_, "HV (dB)", "HV"),
              measurement_image(inc, "incidence angle (deg)", "incidence", cmap="viridis", robust=False)]
    if scene.has_charts:
        panels += [chart_image(shrink(lab, step, True), chart)
                   for chart, lab in scene.charts().items()]
    tb, win = scene.read_grid2km([amsr2_channel], units="physical", upsample=True)
    panels.append(measurement_image(shrink(tb[0], step), f"{amsr2_channel} (K)", "TB",
                                    cmap="magma"))
    wind, _ = scene.read_grid2km(["u10m_rotated", "v10m_rotated"], units="physical")
    speed = shrink(np.hypot(*win.upsample(wind)), step)
    panels.append(measurement_image(speed, "ERA5 10 m wind (m/s)", "wind", cmap="Blues", robust=False)
                  * wind_arrows(wind[0], wind[1], scene.cell, step))
    return hv.Layout(panels).cols(3).opts(title=f"{scene.scene_id} ({scene.region})")


def footprints_table(scenes: Iterable[Scene]) -> pd.DataFrame:
    """One row per scene: id, region, service, time, size, and its outline (closed ring) both in
    lon/lat (degrees) and in polar-stereographic x/y (km)."""
    rows = []
    for s in scenes:
        ring = s.tiepoints.footprint_xy()
        lon, lat = xy_to_lonlat(ring[:, 0], ring[:, 1])
        rows.append({"scene": s.scene_id, "region": s.region, "service": s.ice_service,
                     "time": s.time, "lines": s.shape[0], "samples": s.shape[1],
                     "lon": lon, "lat": lat, "x_km": ring[:, 0] / 1000, "y_km": ring[:, 1] / 1000})
    return pd.DataFrame(rows)


def footprints_map(table: pd.DataFrame) -> hv.Layout:
    """Where the scenes are: region centres on a lon/lat map, then each region's footprints in
    polar-stereographic km from the region's centre, coloured by date (hover for scene ids)."""
    centres = pd.DataFrame({"lon": [r.lon.mean() for r in table.itertuples()],
                            "lat": [r.lat.mean() for r in table.itertuples()],
                            "region": table.region, "scenes": 1}).groupby("region").agg(
        lon=("lon", "mean"), lat=("lat", "mean"), scenes=("scenes", "sum")).reset_index()
    overview = hv.Points(centres, kdims=["lon", "lat"], vdims=["region", "scenes"]).opts(
        color="region", cmap="Category10", size=12, tools=["hover"], width=2 * PANEL,
        height=PANEL, title="regions (hover for the number of scenes)", show_legend=True,
        padding=0.2)
    panels = [overview]
    for region, part in table.groupby("region", sort=False):
        x0 = np.mean([r.x_km.mean() for r in part.itertuples()])
        y0 = np.mean([r.y_km.mean() for r in part.itertuples()])
        paths = [{"x (km)": r.x_km - x0, "y (km)": r.y_km - y0, "date": f"{r.time:%Y-%m-%d %H:%M}",
                  "scene": r.scene} for r in part.sort_values("time").itertuples()]
        polys = hv.Polygons(paths, kdims=["x (km)", "y (km)"], vdims=["date", "scene"])
        panels.append(polys.opts(color="date", cmap="Category10", fill_alpha=0.1, line_width=2,
                                 line_color="date", tools=["hover"], width=int(1.8 * PANEL), height=PANEL,
                                 show_legend=True, legend_position="right", data_aspect=1,
                                 title=f"{region}: footprints by date"))
    return hv.Layout(panels).cols(2).opts(shared_axes=False)


def class_counts(scenes: Iterable[Scene]) -> dict[str, np.ndarray]:
    """Pixel counts per class (index 0..n-1) and unlabelled (last entry), per chart."""
    counts = {c: np.zeros(schema.N_CLASSES[c] + 1, np.int64) for c in schema.CHARTS}
    for s in scenes:
        for chart, lab in s.charts().items():
            n = schema.N_CLASSES[chart]
            bins = np.bincount(lab.ravel(), minlength=256)
            counts[chart][:n] += bins[:n]
            counts[chart][n] += bins[schema.CHART_FILL]
    return counts


def class_shares_table(counts: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Shares (%) of labelled pixels per class, ours beside the real training set's."""
    rows = []
    for chart, c in counts.items():
        classes = schema.CLASSES[chart]
        labelled = c[:-1].sum()
        for k, name in enumerate(classes.names):
            rows.append({"chart": chart, "class": f"{k} {name}",
                         "these scenes": 100 * c[k] / max(labelled, 1),
                         "AI4Arctic train": classes.train_share[k]})
        rows.append({"chart": chart, "class": "unlabelled (% of all)",
                     "these scenes": 100 * c[-1] / max(c.sum(), 1),
                     "AI4Arctic train": schema.TRAIN_UNLABELLED_SHARE[chart]})
    return pd.DataFrame(rows)


def class_share_bars(table: pd.DataFrame) -> hv.Layout:
    """Grouped bars of class shares per chart: these scenes vs the real training set."""
    plots = [share_bars(table[table.chart == chart].set_index("class")[
        ["AI4Arctic train", "these scenes"]], chart) for chart in schema.CHARTS]
    return hv.Layout(plots).cols(1).opts(shared_axes=False)


def save(obj: hv.core.Dimensioned, path: str | Path) -> Path:
    """Save an interactive HTML page that works offline (BokehJS inlined)."""
    path = Path(path)
    page = io.BytesIO()  # holoviews names files by their suffix: render in memory, then write
    hv.save(obj, page, fmt="html", backend="bokeh", resources="inline")
    with atomic_path(path) as tmp:
        tmp.write_bytes(page.getvalue())
    return path


def save_figure(fig, path: str | Path, dpi: int = 300, close: bool = True) -> Path:
    """Lay out and write a matplotlib figure (format from the suffix: PNG, PDF), then close it
    unless ``close`` is False (to write it again in another format)."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:  # no creation date in PDFs: the same figure gives the same file
        fig.savefig(tmp, dpi=dpi, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None)
    if close:
        plt.close(fig)
    return path


def save_overview_png(scene: Scene, path: str | Path, step: int = 4, dpi: int = 150) -> Path:
    """A matplotlib figure of HH, HV and the three charts with legends (grey: no label), for papers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    charts = scene.charts() if scene.has_charts else {}
    fig, axes = plt.subplots(1, 2 + len(charts), figsize=(4 * (2 + len(charts)), 5.4))
    for ax, name, title in ((axes[0], "nersc_sar_primary", "HH (dB)"),
                            (axes[1], "nersc_sar_secondary", "HV (dB)")):
        v = shrink(scene.read(name, units="physical"), step)
        lo, hi = np.nanpercentile(v, [2, 98])
        ax.imshow(v, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
    for ax, (chart, lab) in zip(axes[2:], charts.items()):
        classes = schema.CLASSES[chart]
        n = classes.n_classes
        shown = np.ma.masked_equal(shrink(lab, step, True), schema.CHART_FILL)
        ax.imshow(shown, cmap=ListedColormap(classes.colours),
                  norm=BoundaryNorm(np.arange(-0.5, n), n), interpolation="nearest")
        ax.set_title(chart)
        ax.legend(handles=[Patch(color=c, label=nm) for c, nm in zip(classes.colours, classes.names)],
                  loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=7, frameon=False)
    for ax in axes:
        ax.set_facecolor(NO_LABEL_COLOUR)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{scene.scene_id} ({scene.region})")
    return save_figure(fig, path, dpi)


def patch_sequence(sample: Mapping, title: str = "") -> hv.Layout:
    """One patch sample: HH of every acquisition (oldest first, masked pixels grey), each step's
    coverage mask, and the SOD label of the target.

    ``sample`` holds ``sar`` (T, C, P, P), ``sar_mask`` (T, P, P), ``days_before`` (T,) and
    ``labels`` {chart: (P, P)}, as :class:`seaice_lib.data.dataset.PatchDataset` returns them.
    """
    sar, mask = np.asarray(sample["sar"], float), np.asarray(sample["sar_mask"], bool)
    days = np.asarray(sample["days_before"], float)
    mean, std = schema.NORM_STATS["nersc_sar_primary"]
    hh = np.where(mask, sar[:, 0] * std + mean, np.nan)
    finite = hh[np.isfinite(hh)]
    clim = tuple(np.percentile(finite, [2, 98])) if finite.size else (None, None)
    steps = [_image(hh[t], f"HH, {days[t]:.1f} days before" if days[t] else "HH, target",
                    "HH (dB)", cmap="gray", clim=clim, clipping_colors={"NaN": NO_LABEL_COLOUR})
             for t in range(len(hh))]
    masks = [_image(mask[t].astype(float), f"coverage, step {t + 1}", "mask", cmap="Greens",
                    clim=(0, 1)) for t in range(len(hh))]
    label = chart_image(np.asarray(sample["labels"]["SOD"]).astype(np.uint8), "SOD", "SOD (target)")
    return hv.Layout(steps + masks + [label]).cols(len(hh)).opts(title=title, shared_axes=False)


def share_bars(table: pd.DataFrame, title: str) -> hv.Element:
    """Bars of class shares (%), one group per class, one bar per column of ``table``."""
    import hvplot.pandas  # noqa: F401

    return table.hvplot.bar(rot=45, ylabel="share (%)", title=title, width=3 * PANEL,
                            height=PANEL, legend="top_right")


def date_share_bars(table: pd.DataFrame, title: str) -> hv.Bars:
    """Which dates mattered: one group of bars per acquisition (``table``'s ``date`` column, oldest
    first), one bar per explanation (its other ``<name> (%)`` columns: share of the tile's total),
    as ``explain.explanation.date_table`` writes them; ``days before`` shows on hover."""
    methods = [c for c in table.columns if c.endswith(" (%)")]
    long = table.melt(id_vars=["date", "days before"], value_vars=methods, var_name="explanation",
                      value_name="share (%)")
    long["explanation"] = long["explanation"].str.removesuffix(" (%)")
    order = [m.removesuffix(" (%)") for m in methods]
    bars = hv.Bars(long, kdims=[hv.Dimension("date", values=list(table["date"])),
                                hv.Dimension("explanation", values=order)],
                   vdims=["share (%)", "days before"])
    return bars.opts(multi_level=False, color="explanation", cmap="Colorblind", show_legend=True,
                     legend_position="right", tools=["hover"], ylim=(0, 100), width=3 * PANEL,
                     height=PANEL, xlabel="acquisition (date, UTC)", title=title)


def training_curves(metrics: pd.DataFrame, title: str = "") -> hv.Layout:
    """Training loss (total and per chart) and validation scores per epoch from a run's ``metrics.csv``."""
    import hvplot.pandas  # noqa: F401

    losses = [c for c in metrics.columns if c == "train_loss" or c.startswith("loss_")]
    scores = [c for c in metrics.columns if c.startswith("val_")]
    opts = {"x": "step", "width": int(1.5 * PANEL), "height": PANEL, "legend": "top_right"}
    figures = [metrics.hvplot.line(y=losses, ylabel="loss", title=f"{title} training loss", **opts)]
    if scores:
        figures.append(metrics.hvplot.line(y=scores, ylabel="score (%)",
                                           title=f"{title} validation", **opts))
    return hv.Layout(figures).cols(2).opts(shared_axes=False)


def learning_curve(curve: pd.DataFrame, title: str = "", budget: int | None = None) -> hv.Layout:
    """A run's ``curve.csv``: the combined score on the whole validation and inner-validation scenes
    against steps and against training CPU seconds (log axes), the chosen ``budget`` step marked."""
    import hvplot.pandas  # noqa: F401

    scores = [c for c in ("val_combined", "inner_combined") if c in curve and curve[c].notna().any()]
    figures = []
    for x, label in (("step", "steps"), ("train_cpu_s", "training CPU s")):
        plot = curve.hvplot.line(x=x, y=scores, logx=True, xlabel=label, ylabel="combined score (%)",
                                 title=f"{title} learning curve", width=int(1.5 * PANEL), height=PANEL,
                                 legend="bottom_right", line_width=2) * \
            curve.hvplot.scatter(x=x, y=scores, logx=True, size=30)
        if budget is not None and budget in set(curve["step"]):
            plot = plot * hv.VLine(float(curve.loc[curve["step"] == budget, x].iloc[0])).opts(
                color="grey", line_dash="dashed")
        figures.append(plot)
    return hv.Layout(figures).cols(2).opts(shared_axes=False)


def confusion_heatmap(cm: np.ndarray, chart: str, title: str | None = None) -> hv.HeatMap:
    """Row-normalised confusion matrix (% of each true class), true classes down, predicted across."""
    cm = np.asarray(cm, np.float64)
    rows = np.divide(cm, cm.sum(axis=1, keepdims=True), out=np.zeros_like(cm),
                     where=cm.sum(axis=1, keepdims=True) > 0)
    names = schema.CLASSES[chart].names
    cells = [(names[p], names[t], 100 * rows[t, p], int(cm[t, p]))
             for t in range(len(names)) for p in range(len(names))]
    heat = hv.HeatMap(cells, kdims=["predicted", "true"], vdims=["% of true class", "pixels"])
    return heat.opts(cmap="Blues", clim=(0, 100), colorbar=True, tools=["hover"], xrotation=45,
                     invert_yaxis=True, width=int(1.3 * PANEL), height=int(1.1 * PANEL),
                     title=title or f"{chart} confusion (row %)")


def confusion_matrices(confusion: Mapping[str, np.ndarray], title: str = "") -> hv.Layout:
    """:func:`confusion_heatmap` of each chart side by side, each with its own class axes."""
    heatmaps = [confusion_heatmap(cm, chart, f"{title}: {chart}" if title else None)
                for chart, cm in confusion.items()]
    return hv.Layout(heatmaps).cols(len(heatmaps)).opts(shared_axes=False)


def prediction_comparison(true: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray],
                          step: int = 1, title: str = "") -> hv.Layout:
    """True (top) and predicted (bottom) charts side by side, chart by chart, down-sampled by ``step``."""
    charts = [c for c in schema.CHARTS if c in pred]
    top = [chart_image(shrink(np.asarray(true[c], np.uint8), step, True), c, f"{c} chart")
           for c in charts]
    bottom = [chart_image(shrink(np.asarray(pred[c], np.uint8), step, True), c, f"{c} predicted")
              for c in charts]
    return hv.Layout(top + bottom).cols(len(charts)).opts(title=title, shared_axes=False)


def _graticule_steps(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float]:
    """Round latitude and longitude steps (degrees) giving a few lines across the area."""
    def step(span: float) -> float:
        return next((s for s in (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20) if span / s <= 6), 30)
    return step(float(np.ptp(lat))), step(float(np.ptp(lon)))


def save_chart_map_png(geotiff: str | Path, path: str | Path, dpi: int = 150) -> Path:
    """A chart GeoTIFF of :mod:`seaice_lib.charts.maps` as a map: its classes in its own colour
    table on its projection's metres, a latitude/longitude graticule (lines every round number of
    degrees, labelled), and the class legend from the file's tags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    from pyproj import Transformer

    with rasterio.open(geotiff) as ds:
        values, bounds, crs, tags = ds.read(1), ds.bounds, ds.crs, ds.tags()
        n = len(tags.get("flag_values", "").split())
        if not n or ds.count != 1:
            raise ValueError(f"{geotiff}: not a chart GeoTIFF of seaice_lib.charts.maps (one band of classes, "
                             "with flag_values)")
        table = ds.colormap(1)
    chart = tags.get("chart", "")
    colours = ["#%02x%02x%02x" % table[k][:3] for k in range(n)]
    names = [tags.get(f"class_{k}", str(k)) for k in range(n)]
    fig, ax = plt.subplots(figsize=(7, 7.6))
    ax.set_facecolor(NO_LABEL_COLOUR)
    extent = (bounds.left / 1e3, bounds.right / 1e3, bounds.bottom / 1e3, bounds.top / 1e3)
    ax.imshow(np.ma.masked_equal(values, schema.CHART_FILL), cmap=ListedColormap(colours),
              norm=BoundaryNorm(np.arange(-0.5, n), n), interpolation="nearest", extent=extent)
    # graticule: lines of constant latitude and longitude drawn through the map's projection
    to_map = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True)
    to_lonlat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(np.linspace(bounds.left, bounds.right, 50), np.linspace(bounds.bottom, bounds.top, 50))
    lon, lat = to_lonlat.transform(xx, yy)
    lat_step, lon_step = _graticule_steps(lat, lon)
    ticks = np.linspace(0, 1, 400)
    for value in np.arange(np.ceil(lat.min() / lat_step) * lat_step, lat.max(), lat_step):
        x, y = to_map.transform(lon.min() + ticks * np.ptp(lon), np.full(ticks.shape, value))
        ax.plot(x / 1e3, y / 1e3, color="black", linewidth=0.6, alpha=0.6)
        ax.annotate(f"{value:g}°N", (x[len(x) // 2] / 1e3, y[len(y) // 2] / 1e3), fontsize=7, alpha=0.8)
    for value in np.arange(np.ceil(lon.min() / lon_step) * lon_step, lon.max(), lon_step):
        x, y = to_map.transform(np.full(ticks.shape, value), lat.min() + ticks * np.ptp(lat))
        ax.plot(x / 1e3, y / 1e3, color="black", linewidth=0.6, alpha=0.6, linestyle="--")
        ax.annotate(f"{abs(value):g}°{'E' if value >= 0 else 'W'}", (x[len(x) // 2] / 1e3, y[len(y) // 2] / 1e3),
                    fontsize=7, alpha=0.8)
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_xlabel(f"x (km), {crs.to_string()}")
    ax.set_ylabel("y (km)")
    ax.set_title(f"{chart} of {tags.get('scene_id', Path(geotiff).stem)}", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=nm) for c, nm in zip(colours, names)] +
              [Patch(color=NO_LABEL_COLOUR, label="no data")], loc="upper center", bbox_to_anchor=(0.5, -0.08),
              ncol=4, fontsize=7, frameon=False)
    return save_figure(fig, path, dpi)
