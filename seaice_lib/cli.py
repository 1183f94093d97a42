"""The ``seaice`` command: one sub-command per pipeline stage, ``seaice <stage> --help`` for each.

Each stage is a ``main(argv, prog)`` function in its own module, imported only when it runs (so
``seaice download`` never loads torch; each builds its parser as an :class:`~seaice_lib.arguments.Parser`, which refuses
an option given twice). Usage errors (and a :class:`~seaice_lib.arguments.UsageError` a stage finds
once it runs) print one line and exit with status 2; bad
data a stage does not report itself (a ValueError or OSError: a file it cannot read or write, values
it cannot use) and running out of memory print one line ``seaice STAGE: error: ...`` and exit with
status 1, no traceback; ``seaice --debug STAGE ...`` shows the traceback instead. Ctrl-C exits with status 130.
``-q``, ``-v`` and ``--log-file`` (before the stage) set what the run logs (:mod:`seaice_lib.logs`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from . import __version__, logs
from .arguments import Parser, UsageError
from .stages import CHARTS, EXPORT, RUN, other_stage
from .walk import one_line

# stage -> (module:function, what it does); in pipeline order
STAGES = {
    "download": ("seaice_lib.data.download:main", "fetch AI4Arctic files from the DTU Data portal"),
    "synthetic": ("seaice_lib.synthetic:main", "write synthetic scenes in the AI4Arctic file schema"),
    "prepare": ("seaice_lib.data.prepare:main", "raw 40 m scenes -> ready-to-train scenes"),
    "patches": ("seaice_lib.data.patches:main", "co-registered spatio-temporal patches -> zarr store"),
    "train": ("seaice_lib.engine.training:main", "train a model (resumes; DDP under torchrun)"),
    "evaluate": ("seaice_lib.charts.commands:evaluate",
                 "official AutoICE score of a trained run on whole scenes at 80 m"),
    "predict": ("seaice_lib.charts.commands:predict",
                "chart whole scenes with a trained run; the upload package"),
    "charts": ("seaice_lib.charts.maps:main",
               "chart files -> maps (GeoTIFF, gridded netCDF) and SIGRID-3 polygons, without the model"),
    "export": ("seaice_lib.edge.export:main",
               "a trained run's model -> ONNX (dynamic batch and steps; --int8) for the edge runtime"),
    "edge-predict": ("seaice_lib.edge.runtime:main",
                     "chart whole scenes with an exported model on ONNX Runtime (no torch)"),
    "notebook": ("seaice_lib.notebook:main",
                 "run one notebook through papermill, its parameters checked by name and type"),
    "batch": ("seaice_lib.batch:main",
              "run a notebook over a grid of parameter sets, locally or as a SLURM job array"),
    "experiment": ("seaice_lib.experiments.cli:main",
                   "folds x seeds x models from an experiment file, as batch runs; its report"),
    "figures": ("seaice_lib.figures:main",
                "paper figures (PDF, PNG) and LaTeX tables from run folders and benchmark JSON"),
    "portal": ("seaice_lib.testing.portal_server:main",
               "serve a local fake data portal (tests, demos of `download`)"),
}


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, STAGES))
    stages = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in STAGES.items())
    parser = Parser(
        prog="seaice", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Arctic sea-ice charting from Sentinel-1 SAR, AMSR2 and ERA5 (AI4Arctic).",
        epilog=f"stages:\n{stages}\n\n`seaice STAGE --help` describes a stage's options. -q, -v and --log-file "
               "go before the stage. Log lines go to stderr, results to stdout; progress bars are drawn "
               "only when stderr is a terminal.")
    parser.add_argument("--version", action="version", version=f"seaice {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the whole traceback of any error")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings and errors only, and no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug lines too")
    parser.add_argument("--log-file", type=Path, metavar="PATH",
                        help="also append every log line, timestamped, to PATH")
    parser.add_argument("stage", choices=tuple(STAGES), metavar="STAGE", help="the stage to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the stage's own arguments")
    return parser


LOG_SUFFIXES = (".log", ".txt")  # a new --log-file's: never a name a stage reads as its input (x_prep.nc)
# the option naming the folder of the stages that refuse a file they did not write there (a log too)
OWN_FOLDER_OPTIONS = {"download": "--dest", "synthetic": "--out", "prepare": "--out", "patches": "--out"}


def log_file_problem(path: Path) -> str:
    """Why ``path`` may not take the log lines, for a one-line error; "" where it may: an earlier
    log (:func:`~seaice_lib.logs.is_log`), or a new ``.log``/``.txt`` file in a folder that is there,
    not a folder of scenes (``synthetic`` takes no other file there) and outside a patch store and a
    run's weights folders (:func:`~seaice_lib.stages.other_stage`)."""
    if path.is_dir():
        return "a folder; name the log file"
    if path.is_symlink() and not path.exists():
        return "a symbolic link to nothing; name the log file itself"
    if path.exists():
        return "" if logs.is_log(path) else ("an existing file that is not a log of seaice (its first line is not a "
                                            "log line), which appending would change; name a new file or an earlier log")
    if path.suffix not in LOG_SUFFIXES:
        return (f"a new log's name ends in {' or '.join(LOG_SUFFIXES)}, so that no stage takes it for its input "
                "(a scene, a chart, a record)")
    if not path.parent.is_dir():
        return f"its folder {path.parent} is not there (a log goes into an existing folder)"
    if other := other_stage(path.parent, own=(RUN, CHARTS, EXPORT)):
        return f"{other}, where only its own stage writes; put the log elsewhere"
    return ""


def log_in_output_problem(path: Path, stage: str, stage_args: list[str]) -> str:
    """Why the log ``path`` may not go where ``stage`` writes, "" where it may: inside the folder of
    a stage of :data:`OWN_FOLDER_OPTIONS`, which would then refuse its own folder for holding it."""
    if (option := OWN_FOLDER_OPTIONS.get(stage)) is None:
        return ""
    finder = argparse.ArgumentParser(add_help=False)  # that one option, however the stage's parser takes it
    finder.add_argument(option)
    try:
        folder = getattr(finder.parse_known_args(stage_args)[0], option.lstrip("-"))
    except SystemExit:  # the option without its value: the stage's own parser says so
        return ""
    if folder is None:
        return ""
    folder, parent = Path(folder).resolve(), path.parent.resolve()
    if folder == parent or folder in parent.parents:
        return f"inside {option} {folder} of seaice {stage}, which holds only what it writes; put the log elsewhere"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quiet and args.verbose:
        parser.error("-q and -v: choose one")
    if args.log_file is not None and (why := log_file_problem(args.log_file)
                                      or log_in_output_problem(args.log_file, args.stage, args.args)):
        parser.error(f"--log-file {args.log_file}: {why}")
    try:
        logs.configure(args.quiet, args.verbose, args.log_file)
    except OSError as err:
        parser.error(f"--log-file {args.log_file}: {one_line(err)}")
    logging.getLogger(__name__).debug("seaice %s: %s %s", __version__, args.stage, " ".join(args.args))
    module, function = STAGES[args.stage][0].split(":")
    stage_main = getattr(importlib.import_module(module), function)
    prog = f"seaice {args.stage}"
    if args.debug:  # every error with its traceback
        return stage_main(args.args, prog=prog)
    try:
        return stage_main(args.args, prog=prog)
    except UsageError as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and type(err).__name__ != "OutOfMemoryError":  # torch's
            raise
        print(f"{prog}: error: out of memory ({one_line(err) or type(err).__name__}): "
              "lower the batch size, or give the run more memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
