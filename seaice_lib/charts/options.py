"""The command-line options that ``predict``, ``edge-predict`` and ``evaluate`` share, declared and
checked once, with the same names for the same things (docs/charts.md, "Options"). Torch-free: the
edge runtime uses it.

- ``--batch-size``, ``--overlap``: how whole scenes are tiled (every command that charts);
- ``--history DIR``: the folder of the earlier acquisitions a target's sequence draws on (default:
  each target's own folder); ``--scenes`` is its older name in ``edge-predict``;
- ``--out``, ``--probabilities``, ``--quiet``: where the chart files go, whether they carry the
  class probabilities, and warnings only, no progress bars (:func:`seaice_lib.logs.add_quiet`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import logs
from ..atomic import not_there, out_folder
from ..stages import CHARTS, other_stage


def add_tiling(parser: argparse.ArgumentParser) -> None:
    """``--batch-size`` (tiles per forward pass) and ``--overlap`` (share of a tile's side)."""
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass (default 8)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap, share of a side (default 0.25)")


def add_charting(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--history`` (with the older names ``aliases``), ``--out``, ``--probabilities``, ``--quiet``."""
    parser.add_argument("--history", *aliases, dest="history", type=Path, default=None, metavar="DIR",
                        help="folder of earlier acquisitions (default: each target's own folder)"
                             + (f"; {', '.join(aliases)} is its older name" if aliases else ""))
    parser.add_argument("--out", type=out_folder, required=True, help="folder of the chart files")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write each class's probability (uint8 percent) on the model's grid")
    logs.add_quiet(parser)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace, out_is: str = "a folder of charts") -> None:
    """Usage errors in the shared options that ``args`` holds, before anything is read; ``out_is``:
    what ``--out`` names, for the error when it is another stage's output."""
    if getattr(args, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be >= 1, not {args.batch_size}")
    if not 0 <= getattr(args, "overlap", 0) < 1:
        parser.error(f"--overlap must be in [0, 1), not {args.overlap}")
    history = getattr(args, "history", None)
    if history is not None and not history.is_dir():
        parser.error(f"--history {history}: {not_there(history, folder=True)}")
    if (out := getattr(args, "out", None)) is not None and (other := other_stage(out, own=(CHARTS,))):
        parser.error(f"--out {out}: {other}, not {out_is}: give another {'folder' if 'folder' in out_is else 'file'}")
