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
import dataclasses
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import logs, schema
from ..arguments import Parser
from ..atomic import folder_lock, not_there, out_file
from ..data.patches import PatchConfig
from ..data.scene import find_scenes
from ..data.tiles import chart_inputs, target_scenes
from ..engine.evaluation import Evaluation, EvaluationEdited
from ..engine.run import Run
from ..engine.whole_scenes import evaluate_scenes, scene_files
from ..models import reads_history
from ..provenance import file_sha256
from ..stages import CHARTS, is_run_folder, other_stage
from ..stages import RUN as RUN_STAGE
from ..stopping import STOPPED_EXIT_CODE, Stopped, abandon_on_stop
from ..walk import Walk
from . import cf, follow, maps, options
from .inference import chart_scene, charted_by, check_package, made_by, predict_scenes

log = logging.getLogger(__name__)

REFERENCE_PATTERN = "*_prep_reference.nc"  # the test set's labels, one file per scene


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder of `seaice train` (or a model.pt)")
    parser.add_argument("--store", type=Path, default=None,
                        help="patch store whose settings cut the tiles (default: the run's)")
    options.add_tiling(parser)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def _check_common(parser: argparse.ArgumentParser, args: argparse.Namespace, out_is: str = "a folder of charts") -> None:
    """Usage errors in the options of :func:`_common` and :mod:`.options`, before anything is read."""
    options.check(parser, args, out_is)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device}: {err}")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: charts are made on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")


def _load(args: argparse.Namespace) -> tuple[Run, nn.Module, PatchConfig]:
    run = Run.open(args.run)
    return run, run.load_model(args.device), run.patch_config(args.store)


def reference_files(folder: Path) -> dict[str, Path]:
    """Scene id -> its ``<scene id>_prep_reference.nc`` in ``folder``; ValueError naming the folder
    when it holds none. Every other entry (hidden ones aside) is left out and named in one warning
    line: a reference file named otherwise (``_reference.nc``, ``copy of ...``) would otherwise drop
    its scene from the test set's score unsaid."""
    references = {}
    for path in find_scenes(folder, REFERENCE_PATTERN):
        key = schema.scene_key(path)
        if schema.SCENE_ID.fullmatch(key) and path.name == f"{key}{REFERENCE_PATTERN.removeprefix('*')}":
            references[key] = path
    named = {p.name for p in references.values()} | {p.name for p in folder.glob(REFERENCE_PATTERN) if not p.is_file()}
    if others := sorted(p.name for p in folder.iterdir() if p.name not in named and not p.name.startswith(".")):
        log.warning(f"--references {folder}: {len(others)} files not named <scene id>{REFERENCE_PATTERN.removeprefix('*')}, "
                    f"left out: {', '.join(others)}")
    if not references:
        raise ValueError(f"--references {folder}: no {REFERENCE_PATTERN} files")
    return references


def evaluate(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Score a trained run with the official AutoICE metric on whole "
                               "labelled scenes at 80 m (every labelled pixel, once).", epilog=logs.EPILOG)
    _common(parser)
    parser.add_argument("--scenes", type=Path, required=True,
                        help="folder of *_prep.nc scenes: the targets and their earlier acquisitions")
    parser.add_argument("--targets", nargs="+", action="extend", default=None, metavar="SCENE_ID",
                        help="scene ids to score (default: the run's validation scenes; with "
                             "--references, the scene of every reference file)")
    parser.add_argument("--references", type=Path, default=None, metavar="DIR",
                        help="folder of <scene>_prep_reference.nc files (SIC, SOD, FLOE): score "
                             "against these charts instead of the scenes' own (the test set)")
    parser.add_argument("--out", type=out_file, default=None,
                        help="Evaluation JSON (default: RUN/evaluation_scenes.json)")
    logs.add_quiet(parser)
    args = parser.parse_args(argv)
    _check_common(parser, args, out_is="a place for an evaluation")
    if args.out is not None and (args.out.suffix != ".json" or args.out.is_dir()):
        parser.error(f"--out {args.out}: name a .json file (the evaluation is JSON)")
    if args.out is not None and (owner := Run.of_record(args.out)) is not None:
        parser.error(f"--out {args.out}: the run's own record of its validation scenes (run folder {owner.folder}, written by "
                     "`seaice train`); name another file (default: RUN/evaluation_scenes.json)")
    if args.out is not None:  # its folder and every folder above it, there or to be made
        for folder in (args.out.parent, *args.out.parent.resolve().parents):
            if other := other_stage(folder, own=(RUN_STAGE, CHARTS)):  # no file beside scenes or an export
                parser.error(f"--out {args.out}: {'its folder is' if folder == args.out.parent else f'{folder} is'} "
                             f"{other}, not a place for an evaluation: give another file")
            if is_run_folder(folder) and folder.resolve() != args.run.resolve():
                parser.error(f"--out {args.out}: in the folder of another run than {args.run}, where it would pass for "
                             "that run's evaluation: give another file (default: RUN/evaluation_scenes.json)")
    out = args.out or args.run / "evaluation_scenes.json"
    named = f"--out {out}" if args.out is not None else f"{out} (the default --out)"
    earlier = None
    if out.exists():  # replaced only when it is an earlier evaluation of RUN (the default file too)
        try:
            earlier = Evaluation.from_json(out)
        except EvaluationEdited:
            parser.error(f"{named}: an evaluation edited since it was written (its content_sha256 is not "
                         "that of its content): what it scored cannot be told; name another file, or delete it first")
        except ValueError:
            parser.error(f"{named}: an existing file that is not an evaluation (a run's, store's or "
                         "export's record?); name a new file or an earlier evaluation")
    for option, folder in (("--scenes", args.scenes), ("--references", args.references)):
        if folder is not None and not folder.is_dir():
            parser.error(f"{option} {folder}: {not_there(folder, folder=True)}")
    try:
        run, model, cfg = _load(args)
        weights = file_sha256(run.weights)
        if earlier is not None:
            _check_replaceable(out, named, earlier, run, weights)
        references = None
        if args.references is not None:
            references = reference_files(args.references)
        if args.targets:
            wanted = args.targets
            if odd := [t for t in wanted if not schema.SCENE_ID.fullmatch(t)]:
                raise ValueError(f"--targets {odd[0]}: not a scene id (YYYYMMDDTHHMMSS_dmi or _cis, as in "
                                 "the scene's file name)")
        elif references is not None:  # a test set: each reference file is a scene to score
            wanted = sorted(references)
            held = {schema.scene_key(p) for p in find_scenes(args.scenes)}
            if unheld := [s for s in wanted if s not in held]:
                raise ValueError(f"--references {args.references}: reference files of scenes that --scenes "
                                 f"{args.scenes} lacks: {unheld}; add those scenes, or name the scenes to score "
                                 "with --targets")
        else:
            try:
                wanted = run.val_scenes
            except ValueError as err:
                raise ValueError(f"{err}; name the scenes with --targets") from None
        if not wanted:
            raise ValueError(f"no scenes to score in {args.scenes}")
        twice = sorted({s for s in wanted if wanted.count(s) > 1})
        if twice:
            raise ValueError(f"--targets names {', '.join(twice)} more than once: each scene counts once")
        lacking = [s for s in wanted if references is not None and schema.scene_key(s) not in references]
        if lacking:
            raise ValueError(f"--references {args.references}: no {REFERENCE_PATTERN} file for "
                             f"the scenes {lacking}")
        paths = scene_files(wanted, args.scenes)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    info: dict[str, Any] = {"run": run.folder.name, "weights_sha256": weights}
    if trained := sorted(set(map(schema.scene_key, wanted)) & set(run.recorded_train_scenes or [])):
        info["trained_on"] = trained  # their scores tell how the model fits its training data
        log.warning(f"{parser.prog}: warning: the run trained on {len(trained)} of the {len(wanted)} scenes scored "
                    f"({', '.join(trained[:3])}{' ...' if len(trained) > 3 else ''}): their scores say how it fits "
                    "its training data, not how it charts unseen scenes (the evaluation lists them as trained_on)")
    walk = Walk("scenes")
    # one writer per output folder, as predict: never into a run folder that its training writes
    with folder_lock(out.parent, "evaluating"):
        try:
            with abandon_on_stop():
                evaluation = evaluate_scenes(model, paths, args.scenes, cfg, args.batch_size, args.device,
                                             args.overlap, progress=not args.quiet, info=info, references=references,
                                             walk=walk)
                evaluation.to_json(out)
        except ValueError as err:  # the data, not the command line: no scene could be scored
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            return 1
        except Stopped as stop:  # the evaluation is written whole at the end, or not at all
            failed = f" ({len(walk.failed)} more failed, named above)" if walk.failed else ""
            print(f"stopped by {stop}: {len(walk.done)} of {len(paths)} scenes scored{failed}, no evaluation "
                  "written; run the same command again", file=sys.stderr)
            return STOPPED_EXIT_CODE
    scores = evaluation.scores()
    print(" ".join(f"{k} {v:.1f}" for k, v in scores.items()) + f"  ({out})")
    if walk.failed:  # the score is over the scenes that could be scored; the file lists the others
        print(walk.summary("scored") + f"\nthe scores leave out {len(walk.failed)} scenes", file=sys.stderr)
    if unusable := evaluation.info.get("unusable_inputs"):  # each named in a warning above
        masked = [sid for sid, u in unusable.items() if "labelled_pixels" in u]
        left_out = [sid for sid, u in unusable.items() if "left_out" in u]
        said = [f"count labelled pixels of {len(masked)} scenes wrong, their inputs not finite or out of range "
                f"({', '.join(masked)})"] if masked else []
        said += [f"are of {len(left_out)} scenes charted without earlier acquisitions that could not be read "
                 f"({', '.join(left_out)})"] if left_out else []
        print(f"the scores {' and '.join(said)} (unusable_inputs in {out}): repair or leave out those scenes",
              file=sys.stderr)
        return 1
    return walk.exit_code


def _check_replaceable(path: Path, named: str, earlier: Evaluation, run: Run, weights: str) -> None:
    """ValueError naming ``path`` (as ``named``) unless the evaluation there is one of ``run``: of its name
    (``info.run``) and, outside the run's folder, of its weights (``info.weights_sha256``: the
    run's ``model.pt``, SHA-256 ``weights``); one in the run's folder may score its earlier weights
    (a training resumed since). Where it records neither, it is replaced."""
    recorded_run, recorded_weights = earlier.info.get("run"), earlier.info.get("weights_sha256")
    inside = path.resolve().is_relative_to(run.folder.resolve())
    if (recorded_run is not None and recorded_run != run.folder.name) or \
            (recorded_weights is not None and recorded_weights != weights and not inside):
        raise ValueError(f"{named}: an evaluation of run {recorded_run} (weights {str(recorded_weights)[:12]}), "
                         f"not of {run.folder} (weights {weights[:12]}); name another file, or delete it first")


@contextmanager
def timed_batches(model: nn.Module, times: follow.BatchTimes,
                  device: torch.device | str = "cpu") -> Iterator[follow.BatchTimes]:
    """Time each forward pass of ``model`` into ``times`` (its tiles: the batch's ``sar`` rows)
    while the block runs; on CUDA the device is synchronised before each reading."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None

    def before(module, args):
        sync()
        times.start()

    def after(module, args, outputs):
        sync()
        times.stop(len(args[0]["sar"]))

    hooks = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        yield times
    finally:
        for hook in hooks:
            hook.remove()


def predict(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(
        prog=prog, description="Chart whole scenes at 80 m with a trained run: one CF chart file "
                               "per scene (docs/charts.md), and the official upload_package.nc for "
                               "the set; or, with --follow, each scene that lands in a folder "
                               "(no upload package).", epilog=logs.EPILOG)
    _common(parser)
    parser.add_argument("targets", type=Path, nargs="*", metavar="SCENE",
                        help="target scenes (*_prep.nc files, or folders of them); none with --follow")
    options.add_charting(parser)
    follow.add_options(parser)
    maps.add_options(parser)
    args = parser.parse_args(argv)
    _check_common(parser, args)
    follow.check_options(parser, args, args.targets)
    maps.check_options(parser, args)
    try:
        args.targets = target_scenes(args.targets, args.history)
    except ValueError as err:
        parser.error(str(err))
    try:
        run, model, cfg = _load(args)
        chart_options = dict(batch_size=args.batch_size, device=args.device, overlap=args.overlap,
                             probabilities=args.probabilities, producer=args.producer, **charted_by(run))
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    with folder_lock(args.out, "charting"):  # one writer per output folder
        if args.follow is not None:
            def chart_timed(path: Path) -> follow.Charted:
                maps.check_scenes_maps(args, [path])  # a --crs of another region, a twin's polygons there: nothing written
                with timed_batches(model, follow.BatchTimes(), args.device) as times:
                    charted = chart_scene(model, path, args.history or args.follow, cfg, args.out,
                                          **chart_options)
                maps.convert_for(args, charted.path, path)
                return dataclasses.replace(charted, batches=tuple(times.batches))

            return follow.follow_command(args, chart_timed, lambda path: made_by(
                chart_options["weights_sha256"], cfg, args.overlap, args.probabilities,
                chart_inputs(path, args.history or args.follow, cfg, reads_history(model)), args.producer), cfg.sar_variables,
                kept=lambda chart, path: maps.convert_for(args, chart, path))
        maps.check_scenes_maps(args, args.targets)  # --crs, twins: refused before any chart file is written
        walk = Walk("scenes")
        package_file = args.out / cf.UPLOAD_PACKAGE
        earlier = cf.package_scenes(package_file)
        if package_file.exists() and not earlier:  # predict writes its package there: never over another file
            parser.error(f"--out {args.out}: holds {package_file.name}, which is no upload package (no scene's "
                         "charts in it): move it away")
        gone = []  # the earlier package, removed before the first chart this call writes or withdraws

        def before_change() -> None:  # made again from this call's charts, never left beside others
            if package_file.exists():
                package_file.unlink()
                gone.append(package_file.name)

        def settle_package() -> str:
            """A call that made no package: the earlier one goes where the folder's charts are no longer
            those it holds (edited, copied over); what became of it, for the message."""
            if gone:
                return f"; the earlier {package_file.name} removed (charts of the folder were replaced)"
            if not package_file.exists():
                return ""
            if cf.package_is_current(package_file):
                return f"; the earlier {package_file.name} kept (no chart replaced)"
            package_file.unlink()
            return f"; the earlier {package_file.name} removed (the folder's charts are no longer those it holds)"

        try:
            with abandon_on_stop():
                for folder in sorted({args.history or p.parent for p in args.targets}):
                    targets = [p for p in args.targets if (args.history or p.parent) == folder]
                    predict_scenes(model, targets, folder, cfg, args.out, progress=not args.quiet,
                                   overwrite=args.overwrite, walk=walk, before_change=before_change,
                                   **chart_options)
                # the other formats, made from each chart file
                maps.convert_all(args, walk, {schema.scene_key(p): p for p in args.targets})
                if walk.failed:  # a package without some of the scenes would pass for the whole set
                    print(walk.summary(f"charted into {args.out}")
                          + f"\nno upload package: it needs every scene{settle_package()}", file=sys.stderr)
                    return walk.exit_code
                try:  # charted, but without a class where the scorer has a label
                    check_package(args.targets, walk.done, cfg.sar_variables, package_file)
                except ValueError as err:
                    print(f"charted {len(walk.done)} scenes into {args.out}\n{err}", file=sys.stderr)
                    return 1
                package = cf.write_upload_package(walk.done, package_file)
        except Stopped as stop:
            print(cf.stopped_line(str(stop), args.targets, walk, args.out, f"no upload package{settle_package()}"),
                  file=sys.stderr)
            return STOPPED_EXIT_CODE
    kept = f", {walk.kept} already there (kept)" if walk.kept else ""
    print(f"charted {len(walk.done) - walk.kept} scenes into {args.out}{kept}; upload package {package}")
    if dropped := sorted(earlier - {schema.scene_key(p) for p in walk.done}):
        log.warning(f"note: the upload package holds this set's {len(walk.done)} scenes; the earlier one also held "
                    f"{len(dropped)} others ({', '.join(dropped[:3])}{' ...' if len(dropped) > 3 else ''}): chart "
                    "them together to package them together")
    return 0
