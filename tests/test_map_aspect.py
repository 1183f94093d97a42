"""Maps keep the data's aspect and orientation whatever their colour bar or legend: the box a chart
is drawn in is measured in the page headless Chromium draws (and in a saved PNG), not taken from
the plotting options."""

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (options need a loaded backend)
import matplotlib
import numpy as np
import pytest
from scipy import ndimage

from seaice_lib import plots, schema
from tests.rendering import screenshot

matplotlib.use("Agg")


def _has(image: np.ndarray, colour: str) -> bool:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return bool((np.abs(image - rgb).max(axis=-1) < 2 / 255).any())


def _box(image: np.ndarray, colour: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the largest connected patch of ``colour`` (a hex RGB) in
    ``image`` (H, W, 3): on a whole page the map, not the colour bar's swatch of the same class."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    patches, n = ndimage.label(np.abs(image - rgb).max(axis=-1) < 2 / 255)
    assert n, f"no pixel of {colour}"
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(patches), patches, range(1, n + 1))))
    rows, cols = np.nonzero(patches == largest)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


@pytest.mark.parametrize("shape, chart", [((30, 60), "SOD"), ((60, 30), "FLOE"), ((32, 32), "SIC")])
def test_a_chart_is_drawn_with_square_pixels_and_line_0_on_top(shape, chart, tmp_path):
    h, w = shape
    labels = np.zeros(shape, np.uint8)  # class 0 everywhere but a marker in the top-left eighth
    labels[: h // 8, : w // 8] = 1
    page = plots.save(hv.Layout([plots.chart_image(labels, chart)]).cols(1), tmp_path / "chart.html")
    image = screenshot(page, tmp_path / "chart.png")
    colours = schema.CLASSES[chart].colours
    top, bottom, left, right = _box(image, colours[0])
    assert (right - left) / (bottom - top) == pytest.approx(w / h, abs=0.03)  # the data's aspect
    mark = _box(image[top:bottom, left:right], colours[1])  # within the map
    assert mark[0] == 0 and mark[2] == 0  # line 0, sample 0 at the top left, as stored
    assert (mark[1] - mark[0]) == pytest.approx((bottom - top) * (h // 8) / h, abs=2)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(40, 80), (80, 40)])
def test_the_paper_figure_draws_charts_with_square_pixels_in_its_png_and_pdf(shape, tmp_path):
    from seaice_lib.figures import scene_panels, style
    from tests.rendering import pdf_pages

    h, w = shape
    truth = {c: np.zeros(shape, np.uint8) for c in schema.CHARTS}
    for labels in truth.values():
        labels[: h // 8, : w // 8] = 1
    sar = {"HH (dB)": np.zeros(shape), "HV (dB)": np.ones(shape)}
    png, pdf = None, None
    for path in style.save(scene_panels.panel_figure(sar, truth, {"run": truth}, "t"), tmp_path, "fig"):
        png, pdf = (path, pdf) if path.suffix == ".png" else (png, path)
    for image in (matplotlib.image.imread(png)[..., :3], pdf_pages(pdf, tmp_path, dpi=150)[0]):
        for chart in schema.CHARTS:  # each chart's largest class-0 patch: a map of that class's colour
            colours = schema.CLASSES[chart].colours
            top, bottom, left, right = _box(image, colours[0])
            assert (right - left) / (bottom - top) == pytest.approx(w / h, rel=0.05), chart
            inside = image[top:bottom, left:right]
            marks = [_box(inside, c) for c in {k.colours[1] for k in schema.CLASSES.values()} if _has(inside, c)]
            assert any(m[0] <= 1 and m[2] <= 1 for m in marks), chart  # line 0, sample 0 at the top left
