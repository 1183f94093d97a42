"""``seaice predict`` and ``seaice evaluate``: a trained run charts or scores whole scenes at 80 m.

A run folder (``seaice train``) holds the model (``model.pt``, else the last checkpoint) and its
``config.yaml``, whose ``store`` gives the patch settings that tiles are cut with (``--store``
names another store built with the same settings, if the run's has moved).

The real test set: ``seaice evaluate RUN --scenes TEST_DIR --targets ... --references REF_DIR``
scores the test scenes against their separately released ``<scene>_prep_reference.nc`` charts,
and ``seaice predict RUN TEST_DIR/*_prep.nc --out DIR`` writes CF chart files
(:mod:`seaice_lib.charts.cf`) and the upload package; ``seaice predict RUN --follow DIR --out OUT``
charts each scene as it lands in DIR (:mod:`seaice_lib.charts.follow`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..data.scene import find_scenes
from ..engine.scenes import evaluate_scenes, scene_files
from ..engine.training import TrainConfig, load_model, run_patch_config
from . import cf
from .follow import follow
from .inference import chart_scene, predict_scenes

REFERENCE_PATTERN = "*_prep_reference.nc"  # the test set's labels, one file per scene
SCENE_PATTERN = "*_prep.nc"  # the scene files --follow charts


def _validation_scenes(run_dir: Path) -> list[str]:
    """The validation scene ids the run recorded in ``evaluation.json``."""
    path = run_dir / "evaluation.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no evaluation.json to read validation scenes from; "
                         "name the scenes with --targets")
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON ({err}); name the scenes with --targets") from None
    info = doc.get("info") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: records no validation scenes; name the scenes with --targets")
    return list(info.get("val_scenes") or [])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder of `seaice train` (or a model.pt)")
    parser.add_argument("--store", type=Path, default=None,
                        help="patch store whose settings cut the tiles (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap, share of a side")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true")


def _check_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors in the options of :func:`_common`, before anything is read."""
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, not {args.batch_size}")
    if not 0 <= args.overlap < 1:
        parser.error(f"--overlap must be in [0, 1), not {args.overlap}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")


def _load(args: argparse.Namespace) -> tuple:
    run_dir = args.run if args.run.is_dir() else args.run.parent
    return run_dir, load_model(args.run, args.device), run_patch_config(run_dir, args.store)


def evaluate(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Score a trained run with the official AutoICE metric on whole "
                               "labelled scenes at 80 m (every labelled pixel, once).")
    _common(parser)
    parser.add_argument("--scenes", type=Path, required=True,
                        help="folder of *_prep.nc scenes: the targets and their earlier acquisitions")
    parser.add_argument("--targets", nargs="+", default=None, metavar="SCENE_ID",
                        help="scene ids to score (default: the run's validation scenes; with "
                             "--references, every scene of --scenes that has a reference file)")
    parser.add_argument("--references", type=Path, default=None, metavar="DIR",
                        help="folder of <scene>_prep_reference.nc files (SIC, SOD, FLOE): score "
                             "against these charts instead of the scenes' own (the test set)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Evaluation JSON (default: RUN/evaluation_scenes.json)")
    args = parser.parse_args(argv)
    _check_common(parser, args)
    for option, folder in (("--scenes", args.scenes), ("--references", args.references)):
        if folder is not None and not folder.is_dir():
            parser.error(f"{option} {folder}: no such folder")
    try:
        run_dir, model, cfg = _load(args)
        references = None
        if args.references is not None:
            references = {p.name[:19]: p for p in find_scenes(args.references, REFERENCE_PATTERN)}
            if not references:
                raise ValueError(f"--references {args.references}: no {REFERENCE_PATTERN} files")
        if args.targets:
            wanted = args.targets
        elif references is not None:
            wanted = sorted(set(references) & {p.name[:19] for p in find_scenes(args.scenes)})
        else:
            wanted = _validation_scenes(run_dir)
        if not wanted:
            raise ValueError(f"no scenes to score in {args.scenes}")
        lacking = [s for s in wanted if references is not None and s[:19] not in references]
        if lacking:
            raise ValueError(f"--references {args.references}: no {REFERENCE_PATTERN} file for "
                             f"the scenes {lacking}")
        evaluation = evaluate_scenes(model, scene_files(wanted, args.scenes), args.scenes, cfg,
                                     args.batch_size, args.device, args.overlap,
                                     progress=not args.quiet, info={"run": run_dir.name},
                                     references=references)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    out = evaluation.to_json(args.out or run_dir / "evaluation_scenes.json")
    scores = evaluation.scores()
    print(" ".join(f"{k} {v:.1f}" for k, v in scores.items()) + f"  ({out})")
    return 0


def _model_name(run_dir: Path, model) -> str:
    """``"unet (tiny), run NAME"`` from the run's config.yaml, else the model's class."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return type(model).__name__
    train = TrainConfig.from_yaml(config)
    return f"{train.model} ({train.model_size}), run {run_dir.name}"


def predict(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Chart whole scenes at 80 m with a trained run: one CF chart file "
                               "per scene (docs/charts.md), and the official upload_package.nc for "
                               "the set; or, with --follow, each scene that lands in a folder.")
    _common(parser)
    parser.add_argument("scenes", type=Path, nargs="*",
                        help="target scene files (*_prep.nc); none with --follow")
    parser.add_argument("--history", type=Path, default=None,
                        help="folder of earlier acquisitions (default: each target's own folder)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write each class's probability (uint8 percent) on the model's grid")
    parser.add_argument("--follow", type=Path, default=None, metavar="DIR",
                        help=f"watch DIR and chart each {SCENE_PATTERN} file once it has landed whole, "
                             "until SIGINT/SIGTERM (no upload package)")
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                        help="--follow: seconds between looks at DIR")
    parser.add_argument("--max-scenes", type=int, default=None, metavar="N",
                        help="--follow: stop after N scenes charted")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="--follow: stop when no file has landed or changed for SECONDS")
    args = parser.parse_args(argv)
    _check_common(parser, args)
    if args.follow is None:
        if not args.scenes:
            parser.error("name scene files, or a folder to watch with --follow DIR")
        for option, value in (("--max-scenes", args.max_scenes), ("--idle-exit", args.idle_exit)):
            if value is not None:
                parser.error(f"{option} needs --follow DIR")
        missing = [str(p) for p in args.scenes if not p.is_file()]
        if missing:
            parser.error(f"no such scene files: {missing}")
    else:
        if args.scenes:
            parser.error(f"--follow {args.follow} charts the scenes that land there: "
                         "name no scene files")
        if not args.follow.is_dir():
            parser.error(f"--follow {args.follow}: no such folder")
        for option, value in (("--poll", args.poll), ("--max-scenes", args.max_scenes),
                              ("--idle-exit", args.idle_exit)):
            if value is not None and not value > 0:
                parser.error(f"{option} must be > 0, not {value}")
    if args.history is not None and not args.history.is_dir():
        parser.error(f"--history {args.history}: no such folder")
    try:
        run_dir, model, cfg = _load(args)
        config = run_dir / "config.yaml"
        options = dict(batch_size=args.batch_size, device=args.device, overlap=args.overlap,
                       probabilities=args.probabilities, model_name=_model_name(run_dir, model),
                       config=config if config.is_file() else None)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.follow is not None:
        history = args.history or args.follow
        counts = follow(args.follow, lambda path: chart_scene(model, path, history, cfg, args.out,
                                                                **options),
                        done=lambda path: cf.charts_path(args.out, path.name[:19]).exists(),
                        pattern=SCENE_PATTERN, poll_s=args.poll, max_scenes=args.max_scenes,
                        idle_exit_s=args.idle_exit, report=lambda line: print(line, flush=True))
        print(f"charted {counts['charted']} scenes into {args.out}, skipped {counts['skipped']}; "
              f"stopped by {counts['stopped_by']}", flush=True)
        return 0
    try:
        charts = []
        for folder in sorted({args.history or p.parent for p in args.scenes}):
            targets = [p for p in args.scenes if (args.history or p.parent) == folder]
            charts += predict_scenes(model, targets, folder, cfg, args.out,
                                     progress=not args.quiet, **options)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    package = cf.write_upload_package(charts, args.out / "upload_package.nc")
    print(f"charted {len(charts)} scenes into {args.out}; upload package {package}")
    return 0
