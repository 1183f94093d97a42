"""Notebooks: stored clean, parameterised with scalars, and runnable through papermill."""

import ast
import hashlib
import json
import shlex
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest

from seaice_lib import cli
from seaice_lib.atomic import LOCK_NAME
from seaice_lib.data import download
from seaice_lib.data.scene import find_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.evaluation import Evaluation
from seaice_lib.engine.run import Run
from seaice_lib.engine.training import train
from seaice_lib.explain import ablation, explanation
from seaice_lib.notebook import KERNEL, KERNEL_DISPLAY_NAME, RECORD
from tests.rendering import console_problems, drawn_share, screenshot
from tests.scene_edits import copy_scenes, edit_variable

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        assert path.name[:2].isdigit() and path.name[2] == "_", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_holds_scalar_parameters(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), path.name
    tree = ast.parse(first.source)
    assert tree.body, "the parameters cell is empty"
    for node in tree.body:  # a literal scalar (a negative number parses as minus a constant)
        value = node.value.operand if isinstance(getattr(node, "value", None), ast.UnaryOp) else \
            getattr(node, "value", None)
        # or None where a config gives the value unless the parameter does (annotated with its scalar type)
        typed_none = isinstance(node, ast.AnnAssign) and ast.unparse(node.annotation) in ("bool", "int", "float", "str") \
            and isinstance(value, ast.Constant) and value.value is None
        assert typed_none or isinstance(node, ast.Assign) and isinstance(value, ast.Constant) \
            and not isinstance(value.value, (tuple, frozenset)), \
            f"{path.name}: parameters must be scalar assignments, got {ast.unparse(node)}"


def _run(name: str, folder, **parameters):
    """Execute a notebook with papermill into ``folder`` (paths in parameters are absolute)."""
    path = NOTEBOOKS[[p.name for p in NOTEBOOKS].index(name)]
    papermill.execute_notebook(str(path), str(folder / name), parameters=parameters,
                               cwd=str(path.parent), progress_bar=False, kernel_name=KERNEL)


def opens_cleanly_in_chromium(executed, work) -> None:
    """The executed notebook as HTML (nbconvert) opens in headless Chromium, offline, without a
    console error or warning, and draws something."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(executed))
    page = work / f"{executed.stem}.html"
    page.write_text(html)
    assert console_problems(page, work) == [], executed.name
    assert drawn_share(screenshot(page, work / f"{executed.stem}.png")) > 0.01, executed.name


def test_the_chromium_check_fails_on_a_notebook_whose_plots_load_bokehjs_from_a_cdn(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('import holoviews as hv\nhv.extension("bokeh")'),
                nbformat.v4.new_code_cell("hv.Curve([1, 3, 2])")]
    nbformat.write(nb, tmp_path / "cdn.ipynb")
    papermill.execute_notebook(str(tmp_path / "cdn.ipynb"), str(tmp_path / "cdn_run.ipynb"), progress_bar=False,
                               kernel_name=KERNEL)
    with pytest.raises(AssertionError):
        opens_cleanly_in_chromium(tmp_path / "cdn_run.ipynb", tmp_path)


def test_chromium_refuses_the_network_even_where_there_is_one(tmp_path):
    """A page that loads a script from a server on this machine: with the checks' settings the load
    fails and the server sees no request; without them (the control) it loads."""
    (tmp_path / "probe.js").write_text('console.log("probe loaded");')
    requests = []

    class Recorded(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Recorded, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = tmp_path / "page.html"
        page.write_text(f'<html><head></head><body><script src="http://127.0.0.1:{server.server_port}/probe.js" '
                        'onerror="console.error(\'no network\')"></script>drawn</body></html>')
        assert any("no network" in p for p in console_problems(page, tmp_path)) and requests == []
        assert console_problems(page, tmp_path, offline=False) == [] and requests == ["/probe.js"]
    finally:
        server.shutdown()


def test_download_notebook_runs_against_the_local_portal(tmp_path):
    _run("01_download.ipynb", tmp_path, dest=str(tmp_path / "download"))
    manifest = download.read_manifest(tmp_path / "download")
    assert manifest and all(entry["verified"] for entry in manifest.values())
    opens_cleanly_in_chromium(tmp_path / "01_download.ipynb", tmp_path)
    # RT18-R23: a dry run of another article into that folder showed its manifest as this article's
    (tmp_path / "dry").mkdir()
    _run("01_download.ipynb", tmp_path / "dry", dest=str(tmp_path / "download"), article="rtt-test", dry_run=True)
    cells = nbformat.read(tmp_path / "dry" / "01_download.ipynb", as_version=4).cells
    shown = next(c for c in cells if c.cell_type == "code" and "ours = {f.path" in c.source)
    text = "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in shown.outputs)
    assert "0 of the article's 6 files in the manifest of" in text and "(a dry run: nothing was downloaded)" in text
    assert not any(path in text for path in manifest)  # none of rtt-train's entries
    assert download.read_manifest(tmp_path / "download") == manifest
    # RT19-R8: in a dry run a verified entry whose file is gone is shown as the dry run finds it
    gone = sorted(manifest)[0]
    (tmp_path / "download" / gone).unlink()
    _run("01_download.ipynb", tmp_path / "dry", dest=str(tmp_path / "download"), dry_run=True)
    cells = nbformat.read(tmp_path / "dry" / "01_download.ipynb", as_version=4).cells
    shown = next(c for c in cells if c.cell_type == "code" and "ours = {f.path" in c.source)
    table = next(o["data"]["text/plain"] for o in shown.outputs if "data" in o)
    assert "on disk now" in table and any(gone in line and "pending" in line for line in table.splitlines())


def test_explore_notebook_runs_with_parameters(synthetic_dir, tmp_path):
    out = tmp_path / "explore"
    shown = find_scenes(synthetic_dir)[-1].name[:19]  # by scene id; not the first scene
    _run("02_explore.ipynb", tmp_path, data_dir=str(synthetic_dir), out_dir=str(out), downsample=2, scene=shown)
    written = {p.name for p in out.iterdir()}
    assert {"footprints.html", "class_shares.html", "class_shares.csv"} <= written
    assert [n for n in written if n.endswith("_overview.png")] == [f"{shown}_overview.png"]
    page = (out / "footprints.html").read_text()
    assert "cdn.bokeh.org" not in page and "Bokeh" in page  # BokehJS inlined: works offline
    assert console_problems(out / "footprints.html", tmp_path) == []
    opens_cleanly_in_chromium(tmp_path / "02_explore.ipynb", tmp_path)
    record = json.loads((out / "notebook_outputs.json").read_text())  # RT17-R4: what made the folder
    assert record["finished"] and record["parameters"]["scene"] == shown
    assert set(record["files"]) == written - {"notebook_outputs.json", ".seaice.lock"}
    assert record["inputs"]["scenes"].keys() == {p.name for p in find_scenes(synthetic_dir)}
    first = find_scenes(synthetic_dir)[0].name[:19]  # again into the folder, another scene: the first's overview goes
    _run("02_explore.ipynb", tmp_path, data_dir=str(synthetic_dir), out_dir=str(out), downsample=2, scene=first)
    assert sorted(p.name for p in out.glob("*_overview.*")) == [f"{first}_overview.html", f"{first}_overview.png"]


def test_evaluate_notebook_leaves_out_by_name_a_run_whose_evaluation_does_not_score_its_model(
        run_dir, synthetic_dir, tmp_path):
    """RT13-R1: 05 tabled an evaluation.json edited (perfect matrices, its content_sha256 dropped) as
    the run's scores; now it compares the other runs (table, per-class F1) and ends failed naming it."""
    import shutil

    runs = tmp_path / "train"
    for name in ("a", "b"):
        shutil.copytree(run_dir, runs / name)
    path = runs / "b" / "evaluation.json"
    doc = json.loads(path.read_text())
    del doc["content_sha256"]
    doc["confusion"] = {c: np.diag(np.asarray(m).sum(1)).tolist() for c, m in doc["confusion"].items()}
    path.write_text(json.dumps(doc))
    with pytest.raises(papermill.PapermillExecutionError,
                       match=f"runs_dir {runs}: left out of the comparison: {path}: records no content_sha256"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(runs), scenes_dir=str(synthetic_dir),
             out_dir=str(tmp_path / "evaluate"))
    assert list(pd.read_csv(tmp_path / "evaluate" / "comparison.csv")["run"]) == ["a"]
    assert set(pd.read_csv(tmp_path / "evaluate" / "per_class_f1.csv")["run"]) == {"a"}
    assert (tmp_path / "evaluate" / "upload_package.nc").exists()  # the other runs' outputs are all there


def test_evaluate_notebook_charts_record_the_run_s_weights_and_another_run_s_are_not_reused(
        run_dir, patch_store, synthetic_dir, tmp_path):
    """RT15-R3: 05's charts recorded no weights, so run again into the same out_dir with another
    best run it kept and packaged the first run's charts; now they record the run's weights as
    `seaice predict` does, and another run's charts there are refused, naming them."""
    import shutil

    import netCDF4

    from seaice_lib.provenance import file_sha256

    shutil.copytree(run_dir, tmp_path / "a" / "unet")
    other = tmp_path / "b" / "unet"
    train(TrainConfig(store=str(patch_store), out_dir=str(other), model="unet", model_size="tiny", batch_size=4,
                      steps=2, steps_per_epoch=2, warmup_steps=1, checkpoint_every=0, val_fraction=0.3,
                      device="cpu", progress=False, seed=7))
    out = tmp_path / "evaluate"
    _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "a"), scenes_dir=str(synthetic_dir), out_dir=str(out))
    charts = sorted((out / "charts").glob("*_charts.nc"))
    assert charts
    for chart in charts:
        with netCDF4.Dataset(chart) as nc:
            assert nc.getncattr("model_weights_sha256") == file_sha256(run_dir / "model.pt")
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    # RT16-R4: refused before the tables and pictures of the new best run are written beside the old charts
    weights = file_sha256(run_dir / "model.pt")[:12]
    refused = f"holds charts made with other weights than run unet's: {charts[0].name} \\(weights {weights}\\)"
    with pytest.raises(papermill.PapermillExecutionError, match=refused):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "b"), scenes_dir=str(synthetic_dir),
             out_dir=str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == written
    (out / "charts" / "20190101T000000_dmi_charts.nc").write_bytes(charts[0].read_bytes())  # a scene b charts not
    _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "b"), scenes_dir=str(synthetic_dir),
         out_dir=str(out), overwrite=True)
    left = sorted((out / "charts").glob("*_charts.nc"))
    assert left and "20190101T000000_dmi_charts.nc" not in [p.name for p in left]  # RT17-R1: b's charts alone
    for chart in left:
        with netCDF4.Dataset(chart) as nc:
            assert nc.getncattr("model_weights_sha256") == file_sha256(other / "model.pt")


def test_figures_notebook_ends_failed_naming_what_it_left_out(four_regions, tmp_path):
    """RT15-R9: 07 drew an experiment with jobs missing and ended 0 where `seaice figures` exits 1;
    now it draws the rest and its last cell raises naming them. Left at its default, bench_dir is no
    input (RT15-R6); a mistyped one is an error naming it (RT15-R16)."""
    from seaice_lib import experiments
    from tests.experiment_files import write_experiment, write_results

    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    missing = exp.jobs(["unet_sar"], [0], [1])[0]
    exp.result_path(missing).unlink()
    out = tmp_path / "figures"
    with pytest.raises(papermill.PapermillExecutionError, match=f"{out}: drawn without what could not be: .*"
                                                                f"jobs have no current result.*{missing.name}"):
        _run("07_paper_figures.ipynb", tmp_path, runs_dir="", scenes_dir="", explain_dirs="",
             experiments=str(exp.path), out_dir=str(out))
    record = json.loads((out / "figures.json").read_text())
    assert record["inputs"]["bench"] is None and any(missing.name in line for line in record["left_out"])
    assert pd.read_csv(out / f"table_paired_differences_{exp.name}.csv").shape[1] == 5
    with pytest.raises(papermill.PapermillExecutionError, match=f"bench_dir {tmp_path / 'no_bench'}: no such file"):
        _run("07_paper_figures.ipynb", tmp_path, runs_dir="", scenes_dir="", explain_dirs="",
             experiments=str(exp.path), bench_dir=str(tmp_path / "no_bench"), out_dir=str(out))


def test_evaluate_notebook_refuses_a_mistyped_scenes_dir_before_writing(run_dir, tmp_path):
    """RT15-R7: a mistyped scenes_dir was named as lacking the validation scenes after half the
    outputs were written; now it is named as missing first."""
    import shutil

    shutil.copytree(run_dir, tmp_path / "train" / "unet")
    out = tmp_path / "evaluate"
    with pytest.raises(papermill.PapermillExecutionError, match=f"scenes_dir {tmp_path / 'typo'}: no such folder"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "train"), scenes_dir=str(tmp_path / "typo"),
             out_dir=str(out))
    assert not list(out.glob("*.csv")) and not list(out.glob("**/*.nc"))


def test_explain_notebook_checks_its_inputs_first_and_removes_only_an_explanation_s_files(run_dir, synthetic_dir,
                                                                                          tmp_path):
    """RT16-R10: 06 removed files of its output names from any out_dir before it looked at its inputs;
    now a mistyped run_dir or scenes_dir is named first, and a folder that is no explanation's keeps
    its files: refused, naming them."""
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("sanity.csv", "dates.csv", "readme.txt"):
        (out / name).write_text("the user's")
    for parameters, refused in (({"run_dir": str(tmp_path / "typo")}, f"run_dir {tmp_path / 'typo'}: no such folder"),
                                ({"scenes_dir": str(tmp_path / "typo")}, f"scenes_dir {tmp_path / 'typo'}: no such folder"),
                                ({}, f"out_dir {out}: holds dates.csv, sanity.csv but no explanation")):
        with pytest.raises(papermill.PapermillExecutionError, match=refused):
            _run("06_explain.ipynb", tmp_path, **{"run_dir": str(run_dir), "scenes_dir": str(synthetic_dir),
                                                   "out_dir": str(out), **parameters})
        assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == ["dates.csv", "readme.txt", "sanity.csv"]
    (out / "explanation.json").write_text("{}")  # RT17-R6: an earlier explanation stays when a tile is refused
    with pytest.raises(papermill.PapermillExecutionError, match="tile"):
        _run("06_explain.ipynb", tmp_path, run_dir=str(run_dir), scenes_dir=str(synthetic_dir), out_dir=str(out),
             tile=99999)
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == ["dates.csv", "explanation.json",
                                                                            "readme.txt", "sanity.csv"]


def test_evaluate_notebook_names_no_best_run_across_validation_sets(run_dir, synthetic_dir, tmp_path):
    """RT16-R14: 05 ranked runs validated on other scenes as comparable and packaged the charts of
    the "best"; now it refuses before writing anything, naming each run's set, as figures marks them."""
    import shutil

    from seaice_lib import jsondoc

    runs = tmp_path / "train"
    for name, scenes in (("a", None), ("b", ["20190101T000000_cis"])):
        shutil.copytree(run_dir, runs / name)
        if scenes:
            doc = json.loads((runs / name / "evaluation.json").read_text())
            doc = {**doc, "info": {**doc["info"], "val_scenes": scenes}}
            (runs / name / "evaluation.json").write_text(json.dumps(doc | {"content_sha256": jsondoc.content_sha256(doc)}))
    out = tmp_path / "evaluate"
    with pytest.raises(papermill.PapermillExecutionError, match="validated on 2 different scene sets \\(A: a; B: b\\)"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(runs), scenes_dir=str(synthetic_dir), out_dir=str(out))
    assert not [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]  # its kernel's locks alone


def test_evaluate_notebook_names_a_scenes_dir_without_the_best_run_s_validation_scenes(run_dir, synthetic_dir, tmp_path):
    """05's whole validation scene: a scenes_dir that holds none of them is named (it was a bare StopIteration)."""
    import shutil

    shutil.copytree(run_dir, tmp_path / "train" / "unet")
    validation = Run(run_dir).val_scenes
    scenes = copy_scenes([p for p in find_scenes(synthetic_dir) if p.name[:19] not in validation], tmp_path / "scenes")
    with pytest.raises(papermill.PapermillExecutionError,
                       match=f"scenes_dir {scenes}: none of the validation scenes of run unet"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "train"), scenes_dir=str(scenes),
             out_dir=str(tmp_path / "evaluate"))


def test_explore_notebook_refuses_a_scene_that_is_none_of_data_dir(synthetic_dir, tmp_path):
    """RT13-R12: a mistyped scene showed the first scene instead; now an error naming the parameter
    and the folder, before anything is drawn."""
    typo = find_scenes(synthetic_dir)[-1].name.replace("_prep", "_prpe")
    with pytest.raises(papermill.PapermillExecutionError,
                       match=f"scene '{typo}': not among the scenes of data_dir {synthetic_dir}"):
        _run("02_explore.ipynb", tmp_path, data_dir=str(synthetic_dir), out_dir=str(tmp_path / "out"), scene=typo)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [LOCK_NAME]  # nothing drawn: the kernel's lock alone


@pytest.mark.parametrize("name, parameter, said", [("02_explore.ipynb", "data_dir", ": no such folder"),
                                                   ("03_patches.ipynb", "scenes_dir", ": no such folder"),
                                                   ("04_train.ipynb", "store", ": no patch store")])
def test_a_mistyped_data_path_is_an_error_not_fabricated_data(name, parameter, said, tmp_path):
    """A mistyped folder is named as missing (RT16-R13: 02 and 03 advised generating data into it)."""
    typo = tmp_path / "TYPO_DIR"
    with pytest.raises(papermill.PapermillExecutionError, match=f"{parameter} {typo}{said}"):
        _run(name, tmp_path, **{parameter: str(typo), "out_dir": str(tmp_path / "out")})
    assert not typo.exists()


def test_notebooks_refuse_a_typo_or_another_stage_s_folder_before_removing_or_writing_anything(
        run_dir, synthetic_dir, tmp_path):
    """RT18-R2: 05 refused a mistyped test scene only after its first write had removed the last
    execution's upload package; R1: generate_if_missing wrote scenes into a run folder; R3: 03 built
    its store in its own out_dir."""
    package = b"the last execution's package"  # its record as an execution of 05 leaves it (not held by this process)
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "upload_package.nc").write_bytes(package)
    (tmp_path / "evaluate" / RECORD).write_text(json.dumps({
        "notebook": "05_evaluate", "finished": True, "files": {"upload_package.nc": hashlib.sha256(package).hexdigest()}}))
    runs = tmp_path / "train"
    shutil.copytree(run_dir, runs / "a")
    typo = find_scenes(synthetic_dir)[0].name[:19].replace("_", "-")
    with pytest.raises(papermill.PapermillExecutionError, match=f"test_scenes: {typo} not among the scenes"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(runs), scenes_dir=str(synthetic_dir),
             out_dir=str(tmp_path / "evaluate"), test_scenes=typo)
    assert (tmp_path / "evaluate" / "upload_package.nc").read_bytes() == package
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(papermill.PapermillExecutionError, match=f"data_dir {run_dir}: a run folder, not a folder for"):
        _run("02_explore.ipynb", tmp_path, data_dir=str(run_dir), out_dir=str(tmp_path / "explore"),
             generate_if_missing=True)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    store = tmp_path / "p.zarr"
    with pytest.raises(papermill.PapermillExecutionError, match=f"out_dir {store}: the store {store}, which"):
        _run("03_patches.ipynb", tmp_path, scenes_dir=str(synthetic_dir), store=str(store), out_dir=str(store))
    assert not store.exists()


def test_the_evaluate_notebook_refuses_an_upload_package_as_predict_does(patch_store, synthetic_dir, tmp_path):
    """05 with a test scene whose HH is infinite on 10 x 15 pixels (charted 255 there): the error
    names the scene and its masked values, as `seaice predict` does, and no package is written."""
    run = tmp_path / "train" / "unet"
    train(TrainConfig(store=str(patch_store), out_dir=str(run), model="unet", model_size="tiny", batch_size=4, steps=2,
                      steps_per_epoch=2, warmup_steps=1, checkpoint_every=0, val_fraction=0.3, device="cpu",
                      progress=False))
    scenes = copy_scenes(find_scenes(synthetic_dir), tmp_path / "scenes")
    bad = next(p for p in find_scenes(scenes) if p.name[:19] not in Run(run).val_scenes)  # the other region's
    edit_variable(bad, "nersc_sar_primary", lambda v: v.__setitem__((slice(10, 20), slice(30, 45)), np.inf))
    with pytest.raises(papermill.PapermillExecutionError,
                       match=f"no upload package: {bad.name[:19]}: nersc_sar_primary 150 values masked"):
        _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "train"), scenes_dir=str(scenes),
             out_dir=str(tmp_path / "evaluate"), test_scenes=bad.name[:19])
    assert (tmp_path / "evaluate" / "charts" / f"{bad.name[:19]}_charts.nc").exists()
    assert not (tmp_path / "evaluate" / "upload_package.nc").exists()


def test_train_notebook_with_a_config_trains_what_it_says_but_for_the_parameters_given(patch_store, tmp_path):
    """RT13-R11: with `config`, every parameter default (tsvit_v2, inverse_sqrt, the store...) used to
    replace the file's entries; now only the parameters given do."""
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(patch_store), "out_dir": str(tmp_path / "run"), "model": "unet", "model_size": "tiny",
        "loss": {"kind": "ce", "class_weighting": "none"}, "lr": 0.002, "steps": 2, "steps_per_epoch": 2,
        "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 0, "val_fraction": 0.3, "device": "cpu",
        "progress": False, "seed": 5}))
    _run("04_train.ipynb", tmp_path, config=str(config), seed=3, class_weighting="inverse")
    ran = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert {k: ran[k] for k in ("store", "model", "model_size", "lr", "steps", "batch_size", "sic_mode")} == {
        "store": str(patch_store), "model": "unet", "model_size": "tiny", "lr": 0.002, "steps": 2, "batch_size": 4,
        "sic_mode": "classification"}  # the file's (sic_mode: TrainConfig's own default, as `seaice train` takes it)
    assert ran["seed"] == 3 and ran["loss"]["kind"] == "ce" and ran["loss"]["class_weighting"] == "inverse"


@pytest.mark.slow  # five notebooks, three trainings: about 200 s on an idle machine
def test_patches_train_and_evaluate_notebooks_run_on_their_own_folders(synthetic_dir, tmp_path):
    """03 builds a store, 04 trains on it, 05 compares the runs: nothing outside ``tmp_path``."""
    store = tmp_path / "patches.zarr"
    _run("03_patches.ipynb", tmp_path, scenes_dir=str(synthetic_dir), store=str(store),
         out_dir=str(tmp_path / "patches"), patch=16, downsample=2)
    assert (store / "index").exists()
    run = tmp_path / "train" / "unet"
    _run("04_train.ipynb", tmp_path, model="unet", store=str(store), scenes_dir=str(synthetic_dir),
         out_dir=str(run), steps=6, steps_per_epoch=3, batch_size=4)
    assert (run / "evaluation.json").exists() and (run / "model.pt").exists()
    _run("05_evaluate.ipynb", tmp_path, runs_dir=str(tmp_path / "train"), scenes_dir=str(synthetic_dir),
         out_dir=str(tmp_path / "evaluate"))
    assert (tmp_path / "evaluate" / "upload_package.nc").exists()
    # 06 explains the U-Net (Grad-CAM; labels randomised: the same run trained on shuffled labels by
    # the command 06 prints, 6 steps) and a v3 (attention, modality shares; it prints that command)
    v3 = tmp_path / "train" / "tsvit_v3"
    _run("04_train.ipynb", tmp_path, model="tsvit_v3", store=str(store), scenes_dir=str(synthetic_dir),
         out_dir=str(v3), steps=4, steps_per_epoch=4, batch_size=4)
    shuffled = tmp_path / "shuffled" / "unet"
    make_shuffled = shlex.split(explanation.label_randomisation_command(run, synthetic_dir))
    assert make_shuffled[-1] == f"out_dir={run}_labels_shuffled"
    assert cli.main(make_shuffled[1:-1] + [f"out_dir={shuffled}", "--set", "progress=false"]) == 0
    # a control that is not trained on shuffled labels (the run itself) stops 06 before it writes anything
    with pytest.raises(papermill.PapermillExecutionError, match="label_randomised_run: .* not trained with shuffle"):
        _run("06_explain.ipynb", tmp_path, run_dir=str(run), scenes_dir=str(synthetic_dir),
             out_dir=str(tmp_path / "explain" / "unet"), label_randomised_run=str(run))
    assert [p.name for p in (tmp_path / "explain" / "unet").iterdir()] == [LOCK_NAME]  # its kernel's lock alone
    scenes = find_scenes(synthetic_dir)
    for name, folder in (("unet", run), ("tsvit_v3", v3)):
        out = tmp_path / "explain" / name
        validation = [p for p in scenes if p.name[:19] in Evaluation.from_json(folder / "evaluation.json").info["val_scenes"]]
        # the v3 explains a scene it named, one it trained on (every scene of the store but its validation ones),
        # the one with the most acquisitions
        chosen = validation if name == "unet" else \
            [explanation.richest_tile([p for p in scenes if p not in validation], scenes, store)[0]]
        _run("06_explain.ipynb", tmp_path, run_dir=str(folder), scenes_dir=str(synthetic_dir), out_dir=str(out),
             ablation_scenes=1, label_randomised_run=str(shuffled) if name == "unet" else "",
             scene="" if name == "unet" else chosen[0].name[:19])
        page = (out / "explanations.html").read_text()
        assert "cdn.bokeh.org" not in page and ("Grad-CAM" in page) == (name == "unet")
        assert ("total share" in page) == (name == "tsvit_v3") and "over HH" in page
        ablations = pd.read_csv(out / "ablation.csv")
        # the single-date U-Net reads neither the earlier acquisitions nor the dates: those rows are left out;
        # RT22-R1: so are, with a warning, those that altered no tile (an ablation scene with nothing earlier)
        said = "".join("".join(o.get("text", "")) for c in json.loads((tmp_path / "06_explain.ipynb").read_text())["cells"]
                       for o in c.get("outputs", []))
        unaltered = {a for a in ablation.ABLATIONS if f"ablation {a} left out: it altered none" in said}
        timeless = {"no_history", "shuffled_dates"}
        ablated = json.loads((out / "explanation.json").read_text())["ablation_scenes"]
        nothing_earlier = len(explanation.files_read([p for p in scenes if p.name[:19] in ablated], scenes, store)) == 1
        assert unaltered == (timeless if name != "unet" and nothing_earlier else set()) or \
            (name != "unet" and not nothing_earlier and unaltered <= timeless), (said, unaltered)
        assert set(ablations.ablation) == set(ablation.ABLATIONS) - (timeless if name == "unet" else unaltered)
        assert len(pd.read_csv(out / "sanity.csv")) >= 4
        # the default tile: the one the most acquisitions cover among the run's validation scenes (or the scene named)
        info = json.loads((out / "explanation.json").read_text())
        assert (info["scene"], info["tile"]) == (lambda p, t: (p.name[:19], t))(
            *explanation.richest_tile(chosen, scenes, store, history=name != "unet"))  # the U-Net: one date
        assert info["trained_on"] is (name == "tsvit_v3")
        # written last: it binds the tables the figures read as the notebook left them
        assert info["tables_sha256"] == {table: hashlib.sha256((out / table).read_bytes()).hexdigest()
                                         if (out / table).exists() else None
                                         for table in ("ablation.csv", "sanity.csv", "sanity_labels.csv")}
        assert (info["tables_sha256"]["sanity_labels.csv"] is None) == (name != "unet")
        # RT20-R7: and the control the labels were randomised in
        control = (str(shuffled.resolve()), hashlib.sha256((shuffled / "model.pt").read_bytes()).hexdigest())
        assert (info["label_randomised_run"], info["label_randomised_weights_sha256"]) == \
            (control if name == "unet" else (None, None))
        dates = pd.read_csv(out / "dates.csv")
        shares = dates.filter(like="(%)")
        assert (len(dates) == 1 if name == "unet" else len(dates) >= 2) and list(dates["days before"])[-1] == 0
        assert set(shares.columns) == ({"ig_map (%)"} if name == "unet" else
                                       {f"{m} (%)" for m in ("ig_map", "attention", "rollout", "relevance")})
        assert shares.sum().tolist() == pytest.approx([100.0] * shares.shape[1])
    labels_check = pd.read_csv(tmp_path / "explain" / "unet" / "sanity_labels.csv")
    assert list(labels_check.explanation) == ["ig_map", "gradcam"]
    assert labels_check["rank correlation"].between(-1, 1).all()
    assert not (tmp_path / "explain" / "tsvit_v3" / "sanity_labels.csv").exists()
    printed = "".join(o.get("text", "") for c in nbformat.read(tmp_path / "06_explain.ipynb", as_version=4).cells
                      if c.cell_type == "code" for o in c.outputs)
    assert explanation.label_randomisation_command(v3, synthetic_dir) in printed  # the last 06 run: the v3
    assert f"{chosen[0].name[:19]}: a scene run tsvit_v3 trained on: its explanation shows how the model fits" in printed
    assert f"tsvit_v3: {chosen[0].name[:19]} (a scene the run trained on), tile" in printed
    # 07 draws every paper figure from those folders; every executed notebook opens in Chromium
    figures = tmp_path / "figures"
    _run("07_paper_figures.ipynb", tmp_path, runs_dir=str(tmp_path / "train"), scenes_dir=str(synthetic_dir),
         explain_dirs=f"{tmp_path / 'explain' / 'unet'},{tmp_path / 'explain' / 'tsvit_v3'}",
         out_dir=str(figures))
    drawn = {p.stem for p in figures.glob("*.pdf")}
    assert json.loads((figures / "figures.json").read_text())["inputs"]["explain_trained_on"] == \
        [str(tmp_path / "explain" / "tsvit_v3")]
    assert {"fig_per_class_f1", "fig_modality_share_tsvit_v3", "fig_explain_maps_unet"} <= drawn
    assert any(stem.startswith("fig_scene_") for stem in drawn)
    for executed in sorted(tmp_path.glob("0[3-7]_*.ipynb")):
        opens_cleanly_in_chromium(executed, tmp_path)
    for page in (tmp_path / "explain" / "tsvit_v3" / "explanations.html", tmp_path / "evaluate" / "confusion.html"):
        assert console_problems(page, tmp_path) == [], page.name
