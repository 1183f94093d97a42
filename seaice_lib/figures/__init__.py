"""``seaice figures [RUNS_DIR] OUT_DIR``: every figure and table of a paper, from run folders,
experiments and benchmark JSON.

Figures as PDF (vector) and PNG (300 dpi), tables as LaTeX (booktabs) and CSV, under fixed names,
in one style (``figures/style.py``); ``OUT_DIR/figures.json`` records what made them (while a call
draws, a record saying ``drawing``: the folder is half-drawn until its final record), and a call
removes the files of the previous one that it no longer makes (the files of its names that it does
not make and no readable record lists it moves into ``OUT_DIR/unrecorded-N/``). Inputs, each optional but the first:

- ``RUNS_DIR``: training runs, one folder each with ``evaluation.json`` (per-class F1, class
  support, confusion matrices, the runs' scores);
- ``--bench DIR``: ``loader.json`` and ``train.json`` (throughput);
- ``--scenes DIR``: the scenes the runs were validated on; the scene panel charts one
  (``--scene``, default the first validation scene) with every run's model, a run that trained on
  it marked;
- ``--explain DIR`` (repeatable): outputs of ``notebooks/06_explain.ipynb``, each drawn only while
  it explains its run's ``model.pt`` (the run of that name in ``RUNS_DIR``, else the folder it
  records) and the scene files it records as they are now;
- ``--experiment FILE`` (repeatable): an experiment file (``experiments/*.yaml``) whose results are
  aggregated (:func:`seaice_lib.experiments.report.aggregate`): its learning curves, comparison,
  paired differences, tables and ``report_<name>.md``; and the history its networks are given
  (:mod:`.history`: every target's co-registered earlier steps checked, one drawn).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import stat
import sys
from pathlib import Path

from .. import logs, schema
from ..arguments import Parser
from ..atomic import FolderBusy, folder_lock, not_there, out_folder, write_text
from ..data.scene import find_scenes
from ..engine.evaluation import Evaluation, run_evaluations, runs_table, validation_sets
from ..engine.run import Run
from ..experiments import Experiment
from ..experiments import load as load_experiment
from ..experiments.report import aggregate
from ..explain.explanation import EXPLAIN_FOLDER, EXPLANATION_INFO, INFO_SHAPE
from ..jsondoc import check_shape, read_json
from ..provenance import file_sha256, provenance
from ..stages import FIGURES_RECORD, NOTEBOOK_RECORD, other_stage
from ..walk import Walk
from . import experiment, explained, history, scene_panels, scores, style, throughput

MANIFEST = FIGURES_RECORD  # in OUT_DIR: what made its figures (see _record)
OWN_NAMES = ("fig_*.pdf", "fig_*.png", "table_*.tex", "table_*.csv", "report_*.md")  # the files a call writes


def make_figures(runs_dir: str | Path | None, out_dir: str | Path, bench_dir: str | Path | None = None,
                 scenes_dir: str | Path | None = None, scene_id: str | None = None,
                 explain_dirs: tuple[str | Path, ...] = (), store: str | Path | None = None,
                 experiments: tuple[str | Path, ...] = (), walk: Walk | None = None) -> list[Path]:
    """Every figure and table the inputs allow (see the module docstring); the written paths.

    A run, benchmark JSON, explain folder or experiment that cannot be read or drawn is named in
    ``walk`` and left out, the others drawn (:mod:`seaice_lib.walk`); without a ``walk`` it raises."""
    walk = walk or Walk("inputs", stop_on_failure=True)
    out_dir = Path(out_dir)
    bench_dir = Path(bench_dir) if bench_dir else None
    runs = Run.runs_in(runs_dir) if runs_dir else []  # those without evaluation.json too: named as left out
    bench = [p for p in (bench_dir / f"{name}.json" for name in throughput.SHAPES) if p.is_file()] if bench_dir else []
    if not runs and not bench and not explain_dirs and not experiments:
        looked = [f"no run folder with evaluation.json in {runs_dir}" if runs_dir else "no RUNS_DIR",
                  f"no loader.json or train.json in {bench_dir}" if bench_dir else "no --bench",
                  "no --explain", "no --experiment"]
        raise ValueError("nothing to draw: " + ", ".join(looked))
    _one_input_per_name(explain_dirs, experiments)
    scenes = {schema.scene_key(p): p for p in find_scenes(scenes_dir)} if scenes_dir else {}
    if scene_id is not None and scenes_dir and scene_id not in scenes:
        raise ValueError(f"scene {scene_id!r} is not in scenes_dir {scenes_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {"runs_dir": runs_dir, "bench": bench_dir, "scenes": scenes_dir, "scene": scene_id, "store": store,
              "explain": list(explain_dirs), "experiments": list(experiments)}
    before = _begin(out_dir, inputs, walk)  # the folder reads as half-drawn until _record
    written: list[Path] = []
    trained_on: dict[str, list[str]] = {"scene_panel": [], "explain": []}  # runs and explain folders marked so
    evaluations = run_evaluations(runs, walk)  # those that score their run's model.pt; the others named
    drawn_from: dict[str, dict] = {"runs": {  # what the figures were drawn from, beyond the paths given
        run.folder.name: {"folder": str(run.folder), "weights_sha256": evaluations[run.folder.name].info["weights_sha256"],
                          "evaluation_sha256": file_sha256(run.evaluation_file)}
        for run in runs if run.folder.name in evaluations}, "bench": {}, "explain": {}, "experiments": {}}
    for name, evaluation in evaluations.items():
        written += scores.confusion_figure(name, evaluation, out_dir)
    if evaluations:
        table, caption = runs_table(evaluations), "Official scores (%) on the whole validation scenes at 80 m."
        set_of = validation_sets(evaluations)  # each run's set label, where the runs were validated on several sets
        if set_of:  # scores of other scenes are not comparable: the table's column says which run saw which
            caption += (f" The runs were validated on {len(set(set_of.values()))} different scene sets (other scenes, "
                        "or other versions of their files; column 'validation scenes', with their number): compare "
                        "scores within one set only.")
            walk.report(f"note: the runs were validated on {len(set(set_of.values()))} different scene sets: "
                        + "; ".join(f"{label}: {run}" for run, label in set_of.items()) + " (table_runs says so)")
        unusable = {name: list(ev.info.get("unusable_inputs") or {}) for name, ev in evaluations.items()}
        if any(unusable.values()):  # scores of charts made from unusable inputs: never tabled as clean
            table["unusable inputs"] = [", ".join(unusable[run]) for run in table["run"]]
            caption += (" Some scores count scenes whose inputs were unusable (column 'unusable inputs': masked "
                        "as not finite or out of range, or an earlier acquisition that could not be read; "
                        "unusable_inputs in the run's evaluation.json): repair or leave out those scenes.")
            walk.report("note: " + "; ".join(f"{run}: scored with unusable inputs of {', '.join(scenes)}"
                                             for run, scenes in unusable.items() if scenes) + " (table_runs says so)")
        written += style.table(table, out_dir, "table_runs", caption)
        written += scores.per_class_f1_figure(evaluations, out_dir, set_of)
        written += scores.class_support_figure(evaluations, out_dir, set_of)
        if scenes_dir:
            drawn = [run for run in runs if run.folder.name in evaluations]
            panel = walk.attempt(f"scene panel ({scenes_dir})", lambda: _scene_panel(
                drawn, evaluations, Path(scenes_dir), scenes, scene_id, out_dir, store, walk))
            if panel is not None:
                written += panel[0]
                trained_on["scene_panel"] = panel[1]
                drawn_from["scene_panel_uncharted"], drawn_from["scene_panel_files"] = panel[2], panel[3]
    docs = {path.stem: walk.attempt(str(path), functools.partial(throughput.read_benchmark, path)) for path in bench}
    if any(docs.values()):
        written += throughput.throughput_outputs(docs.get("loader"), docs.get("train"), out_dir)
        drawn_from["bench"] = {f"{stem}.json": doc["content_sha256"] for stem, doc in docs.items() if doc}
    named = {run.folder.name: run.folder for run in runs}  # an explanation is checked against the run drawn
    for folder in explain_dirs:
        if (explain := walk.attempt(str(folder), lambda: explained.explanation_figures(Path(folder), out_dir,
                                                                                       named))) is not None:
            written += explain[1]
            drawn_from["explain"][str(folder)] = explain[0].get("content_sha256")
            if explain[0].get("trained_on"):  # as evaluate marks scores of training scenes
                trained_on["explain"].append(str(folder))
                walk.report(f"note: {folder}: explains {explain[0]['scene']}, a scene run {explain[0]['run']} trained "
                            "on: its figures show how the model fits its training data (their titles say so)")
    for path in experiments:
        def draw(path=path):
            exp = load_experiment(path)
            doc = aggregate(exp)
            return doc["missing"], len(exp.jobs()), experiment.experiment_figures(doc, out_dir, exp.name) + \
                history.experiment_history(exp, out_dir), _experiment_record(exp)
        if (drawn_exp := walk.attempt(str(path), draw)) is not None:
            missing, n_jobs, files, drawn_from["experiments"][str(path)] = drawn_exp
            written += files
            if missing:  # drawn without them: its tables average fewer cells than the experiment has
                walk.fail(str(path), f"{len(missing)} of {n_jobs} jobs have no current result, left out of its "
                          f"figures and tables (`seaice experiment run {path}` runs them): " + ", ".join(missing))
    _record(out_dir, written, inputs | {"scene_panel_trained_on": trained_on["scene_panel"],
                                         "explain_trained_on": trained_on["explain"]}, drawn_from, walk, *before)
    return written


def _one_input_per_name(explain_dirs: tuple[str | Path, ...], experiments: tuple[str | Path, ...]) -> None:
    """ValueError naming both when two explain folders explain one run, or two experiment files
    have one ``name:``: their outputs are named after it, and the second would overwrite the first.
    An input that does not read is left to the drawing, which names it."""
    for option, paths, owner, outputs in (
            ("--explain", explain_dirs, lambda p: read_json(Path(p) / EXPLANATION_INFO, INFO_SHAPE)["run"],
             "both explain run {!r}: their figures (fig_explain_*_{} ...)"),
            ("--experiment", experiments, lambda p: load_experiment(p).name,
             "are both named {!r}: their figures, tables and report (*_{})")):
        owners: dict[str, str | Path] = {}
        for path in paths:
            try:
                name = owner(path)
            except (ValueError, OSError):
                continue
            if name in owners:
                raise ValueError(f"{option} {owners[name]} and {option} {path} {outputs.format(name, name)} "
                                 "would overwrite each other; draw them into separate OUT_DIRs")
            owners[name] = path


def _begin(out_dir: Path, inputs: dict, walk: Walk) -> tuple[dict, str]:
    """The files the last finished call's ``OUT_DIR/figures.json`` lists (name -> SHA-256; {} where no
    readable record says) and why others of :data:`OWN_NAMES` are not its (for :func:`_record`'s note),
    after replacing that record by one of this call in progress: ``drawing`` (no ``files``), this
    call's inputs and provenance, and the last finished call's files (``last_files``). A folder whose
    record says ``drawing`` is half-drawn (a call is drawing it, or was stopped midway) until the call's
    final record replaces it."""
    manifest = out_dir / MANIFEST
    try:
        doc = read_json(manifest) if manifest.exists() else None
        if doc is not None:
            check_shape(doc, {"drawing": str, "last_files": (dict, None)} if "drawing" in doc else {"files": dict},
                        str(manifest))
    except ValueError as err:
        walk.report(f"note: {err}")
        doc = None
    drawing = None if doc is None else doc.get("drawing")  # a record in progress: its call never finished
    files = None if doc is None else doc.get("last_files") if drawing is not None else doc["files"]
    if files is None:
        because = f"no readable {manifest} says which call made the"
    elif drawing is not None:
        because = f"{manifest} records a call stopped before it finished ({drawing}); it does not list the"
    else:
        because = f"{manifest} does not list the"
    made_by = provenance()
    write_text(manifest, json.dumps({
        "drawing": f"since {made_by['time']}: half-drawn until this call writes its record (with files) here",
        "made_by": made_by, "inputs": _as_json(inputs), "last_files": files}, indent=1))
    return files or {}, because


def _experiment_record(exp: Experiment) -> dict:
    """What an experiment's figures were drawn from: the SHA-256 of its file and of each job result
    and history probe in its results folder as read, and its store's identity (read once, by the
    report's own :class:`Experiment`)."""
    return {"file_sha256": file_sha256(exp.path), "store_content": exp.store_groups(),
            **{part: {p.name: file_sha256(p) for p in sorted((exp.results / part).glob("*.json"))}
               for part in ("jobs", "probes")}}


def _as_json(inputs: dict) -> dict:
    """``inputs`` (paths, lists of paths, None) as JSON-ready strings."""
    return {k: [str(v) for v in vs] if isinstance(vs, list) else (None if vs is None else str(vs))
            for k, vs in inputs.items()}


def _record(out_dir: Path, written: list[Path], inputs: dict, drawn: dict, walk: Walk, before: dict,
            because: str) -> None:
    """``OUT_DIR/figures.json``, written last: what made the folder's figures (inputs, provenance, each
    file's SHA-256, the items left out, and ``drawn``: each run drawn with the SHA-256 of its weights
    and of its ``evaluation.json``, each benchmark's and explanation's ``content_sha256``, each
    experiment's file, results and probes (:func:`_experiment_record`), what the scene panel's
    charts lack), in place of the record in progress (:func:`_begin`). Files the
    last finished call listed (``before``) that this one did not make are removed: they drew inputs
    that are gone or failed now, and would look current. Only plain files directly in ``out_dir`` of
    :data:`OWN_NAMES` with the recorded SHA-256 are removed; one edited since is set aside, anything
    else listed is named and left alone (:func:`_stale`). The files of :data:`OWN_NAMES` that this
    call did not make and ``before`` does not list (a call stopped before it wrote its record drew
    them) are set aside too, named with ``because``."""
    manifest = out_dir / MANIFEST
    names = {path.resolve().relative_to(out_dir.resolve()).as_posix(): path for path in written}
    unknown = {p.name for pattern in OWN_NAMES for p in out_dir.glob(pattern) if p.is_file()} - set(names) - set(before)
    _set_aside(out_dir, unknown, because, "files of its names this call did not make (a call stopped before "
               "its record drew them, or they were put there)", walk)
    stale, edited, refused = _stale(out_dir, {k: v for k, v in before.items() if k not in names})
    for name in stale:
        (out_dir / name).unlink()
    if stale:
        walk.report(f"removed {len(stale)} figure files of the last call that these inputs no longer make: "
                    + ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))
    _set_aside(out_dir, edited, f"{manifest} lists", "figure files changed since the last call wrote them that "
               "these inputs no longer make", walk)
    if refused:
        walk.report(f"note: {manifest} lists {len(refused)} names that are not figure files of this folder: "
                    "left alone: " + "; ".join(refused))
    write_text(manifest, json.dumps({
        "made_by": provenance(), "inputs": _as_json(inputs), "drawn": drawn,
        "left_out": list(walk.failed),
        "files": {name: file_sha256(path) for name, path in sorted(names.items())}}, indent=1))


def _stale(out_dir: Path, listed: dict) -> tuple[list[str], set[str], list[str]]:
    """Of the files a previous record ``listed`` (name -> SHA-256) that this call did not make: those
    to remove (plain files in ``out_dir`` of :data:`OWN_NAMES` with the recorded SHA-256), those
    edited since (set aside), and ``"NAME (why)"`` for every other name, never touched. A name
    already gone is none of them."""
    stale, edited, refused = [], set(), []
    for name, sha256 in listed.items():
        path = out_dir / name
        if Path(name).name != name or not any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_NAMES):
            refused.append(f"{name} (not a name this command writes in {out_dir})")
        elif not path.is_symlink() and not path.exists():
            continue
        elif path.is_symlink() or not stat.S_ISREG(path.lstat().st_mode):
            refused.append(f"{name} (not a plain file)")
        elif file_sha256(path) != sha256:
            edited.add(name)
        else:
            stale.append(name)
    return stale, edited, refused


def _set_aside(out_dir: Path, names: set[str], because: str, what: str, walk: Walk) -> None:
    """Move the files ``names`` of ``out_dir`` into ``out_dir/unrecorded-N/`` (N the first free),
    named in a note "``because`` K ``what``: moved into ...": left there they would look current."""
    if not names:
        return
    n = 1
    while (aside := out_dir / f"unrecorded-{n}").exists() or aside.is_symlink():
        n += 1
    aside.mkdir()
    for name in sorted(names):
        (out_dir / name).rename(aside / name)
    listed = sorted(names)
    walk.report(f"note: {because} {len(names)} {what}: moved into {aside} (" + ", ".join(listed[:5])
                + (" ...)" if len(names) > 5 else ")"))


def _scene_panel(runs: list[Run], evaluations: dict[str, Evaluation], scenes_dir: Path, paths: dict[str, Path],
                 scene_id: str | None, out_dir: Path, store: str | Path | None,
                 walk: Walk) -> tuple[list[Path], list[str], dict[str, str], dict[str, str]]:
    """(files written, the runs that trained on its scene, run -> what its charts lack beyond the
    swath, scene file name -> SHA-256 of each file the runs charted it from: the scene and its earlier
    acquisitions): ``fig_scene_<scene>`` charted by every run. A run that trained on the scene
    (:attr:`Run.recorded_train_scenes`, as ``seaice evaluate`` reads them) is marked in its panel's
    title and named in a note of ``walk``; so are charts with pixels of no class for masked inputs
    or non-finite outputs (:func:`~.scene_panels.uncharted`), as ``seaice predict`` says of them."""
    if scene_id is None:
        validation = [s for ev in evaluations.values() for s in ev.info.get("val_scenes") or []]
        scene_id = next((s for s in validation if s in paths), None)
        if scene_id is None:
            raise ValueError(f"scenes_dir {scenes_dir}: none of the runs' validation scenes is there "
                             "(name one with --scene)")
    predictions = scene_panels.predicted_charts({run.folder.name: run for run in runs}, paths[scene_id], scenes_dir,
                                         Path(store) if store else None)
    trained = [run.folder.name for run in runs if scene_id in (run.recorded_train_scenes or [])]
    written = scene_panels.scene_panel(paths[scene_id], {run: p.charts for run, p in predictions.items()}, out_dir,
                                       trained)
    if trained:
        walk.report(f"note: fig_scene_{scene_id}: drawn with runs that trained on {scene_id} ({', '.join(trained)}): "
                    "their charts of it show how the models fit their training data, not how they chart unseen "
                    f"scenes (their columns are marked \"{scene_panels.TRAINED_ON}\")")
    lacking = {run: said for run, p in predictions.items() if (said := scene_panels.uncharted(p))}
    for run, said in lacking.items():
        walk.report(f"note: fig_scene_{scene_id}: {run}'s charts have no class (grey) at {said}")
    read = sorted({path for p in predictions.values() for path in p.inputs}, key=lambda path: path.name)
    return written, trained, lacking, {path.name: file_sha256(path) for path in read}  # each file hashed once


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = Parser(prog=prog, description=__doc__.splitlines()[0],
                    usage="%(prog)s [-h] [options] [RUNS_DIR] OUT_DIR", epilog=logs.EPILOG)
    parser.add_argument("folders", type=Path, nargs="+", metavar="[RUNS_DIR] OUT_DIR",
                        help="folder of training runs (each with evaluation.json; may be left out), "
                             "and where the figures and tables go")
    parser.add_argument("--bench", type=Path, default=None,
                        help="folder of benchmark JSON (loader, train); default runs/bench where it exists")
    parser.add_argument("--scenes", type=Path, default=None,
                        help="scenes folder: draw the scene panel with every run's charts")
    parser.add_argument("--scene", default=None, help="scene id of the panel (default: first validation scene)")
    parser.add_argument("--store", type=Path, default=None,
                        help="patch store whose settings cut the tiles (default: each run's)")
    parser.add_argument("--explain", type=Path, action="append", default=[],
                        help="an explain folder of notebooks/06_explain (repeatable)")
    parser.add_argument("--experiment", type=Path, action="append", default=[],
                        help="an experiment file (experiments/*.yaml): its curves, comparison and tables (repeatable)")
    args = parser.parse_args(argv)
    if len(args.folders) > 2:
        parser.error(f"expected [RUNS_DIR] OUT_DIR, got {len(args.folders)} folders")
    args.runs_dir, args.out_dir = args.folders if len(args.folders) == 2 else (None, args.folders[0])
    if args.scene is not None and args.scenes is None:
        parser.error("--scene draws the scene panel, which needs --scenes (the scenes folder)")
    named = [("runs_dir", args.runs_dir), ("--bench", args.bench), ("--scenes", args.scenes), ("--store", args.store),
             *(("--explain", path) for path in args.explain), *(("--experiment", path) for path in args.experiment)]
    for name, path in named:
        if path is not None and not (path.is_file() if name == "--experiment" else path.is_dir()):
            parser.error(f"{name} {path}: {not_there(path, folder=name != '--experiment')}")
    if other := other_stage(args.out_dir):
        parser.error(f"OUT_DIR {args.out_dir}: {other}, not a folder of figures: give another folder")
    if held := [n for n in (EXPLANATION_INFO, EXPLAIN_FOLDER, NOTEBOOK_RECORD) if (args.out_dir / n).exists()]:
        parser.error(f"OUT_DIR {args.out_dir}: a notebook's output folder (it holds {held[0]}), not a folder of "
                     "figures: give another folder")
    try:  # a file there, or a link to nothing
        out_folder(str(args.out_dir))
    except argparse.ArgumentTypeError as err:
        parser.error(f"OUT_DIR {err}")
    walk = Walk("inputs")
    try:
        with folder_lock(args.out_dir, "drawing figures"):  # one writer per output folder
            default_bench = Path("runs/bench") if Path("runs/bench").is_dir() else None
            written = make_figures(args.runs_dir, args.out_dir, args.bench or default_bench, args.scenes,
                                   args.scene, tuple(args.explain), args.store, tuple(args.experiment), walk)
    except FolderBusy:
        raise  # not a usage error: exit status 1
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"{len(written)} files under {args.out_dir}")
    if walk.failed:
        print(walk.summary("drawn"), file=sys.stderr)
    return walk.exit_code
