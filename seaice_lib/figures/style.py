"""One look for every paper figure: matplotlib settings, colour-blind-safe colours and the writers.

Charts keep the project's ice-chart colours (``schema.CLASSES[...].colours``; the dataset defines
none, docs/charts.md); everything else uses the Okabe-Ito palette (runs, methods, modalities) and
viridis / cividis for maps and matrices, which stay readable with the common colour-vision
deficiencies and in greyscale.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..plots import NO_LABEL_COLOUR, save_figure

FORMATS = ("pdf", "png")
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FLOOR_COLOUR = "#999999"  # per-pixel floors, drawn behind the networks
MAP_CMAP = "viridis"  # explanation maps (non-negative)
MATRIX_CMAP = "cividis"  # confusion matrices
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False,
      "image.interpolation": "nearest", "image.cmap": MAP_CMAP,
      "axes.facecolor": "white", "figure.constrained_layout.use": True,
      "pdf.fonttype": 42}  # TrueType in PDFs: text stays text


def pyplot():
    """matplotlib.pyplot on the Agg backend (headless). Its notices that a font family of its own
    defaults (STIX, DejaVu Sans Display: mathtext's) is not installed, and DejaVu Sans stands in, are
    not passed on: nothing of ours asks for them, and the stand-in draws every glyph we use."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def paper():
    """Every figure drawn inside uses :data:`RC` with the Okabe-Ito colour cycle."""
    import matplotlib
    from cycler import cycler

    with matplotlib.rc_context({**RC, "axes.prop_cycle": cycler(color=OKABE_ITO)}):
        yield


def colours(names) -> dict[str, str]:
    """A fixed Okabe-Ito colour per name in the given order (floors, ``floor_*``, in grey)."""
    own = [n for n in names if not str(n).startswith("floor_")]
    picked = {n: OKABE_ITO[i % len(OKABE_ITO)] for i, n in enumerate(own)}
    return {n: picked.get(n, FLOOR_COLOUR) for n in names}


def blank_axes(ax, facecolour: str = NO_LABEL_COLOUR) -> None:
    """An image axis: no ticks, no spines, ``facecolour`` where nothing is drawn (no label)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor(facecolour)
    for spine in ax.spines.values():
        spine.set_visible(False)


def output_path(out_dir: Path, name: str, suffix: str) -> Path:
    """``out_dir/name.suffix``; a ValueError when ``name`` (made from a run, scene or experiment name
    that an input records) would not name a file directly in ``out_dir``."""
    path = Path(out_dir) / f"{name}.{suffix}"
    if not name or any(ch in name for ch in "/\\\0") or name in (".", "..") or path.parent != Path(out_dir):
        raise ValueError(f"{name!r}: not a file name in {out_dir} (made from a run, scene or experiment name "
                         "an input records)")
    return path


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """``fig`` as ``name.pdf`` (vector) and ``name.png`` (300 dpi), then closed."""
    try:
        paths = [output_path(out_dir, name, fmt) for fmt in FORMATS]  # each checked before anything is written
    except ValueError:
        import matplotlib.pyplot as plt

        plt.close(fig)
        raise
    return [save_figure(fig, path, close=path.suffix == f".{FORMATS[-1]}") for path in paths]


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters (``\\ & % $ # _ { } ~ ^``) written as literals."""
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def table(frame: pd.DataFrame, out_dir: Path, name: str, caption: str, float_format: str = "%.1f"
          ) -> list[Path]:
    """``frame`` as ``name.tex`` (booktabs, label ``tab:name``; LaTeX's special characters in the
    caption, the headers and the cells escaped) and ``name.csv``."""
    tex = frame.to_latex(index=False, float_format=float_format, caption=latex_escape(caption),
                         label=f"tab:{name}", escape=True)
    tex_path, csv_path = output_path(out_dir, name, "tex"), output_path(out_dir, name, "csv")
    return [write_text(tex_path, tex), write_text(csv_path, frame.to_csv(index=False))]
