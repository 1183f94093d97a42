"""`seaice figures`: every paper figure as PDF and PNG, LaTeX tables, from run folders, benchmark JSON,
scenes and explain folders; each PDF rendered with pdftoppm and checked not blank."""

import hashlib
import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from seaice_lib import cli, experiments, figures, jsondoc, schema
from seaice_lib.data.scene import find_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.evaluation import Evaluation
from seaice_lib.engine.run import Run, load_model
from seaice_lib.engine.training import train
from seaice_lib.explain import ablation, explanation
from seaice_lib.figures import throughput
from seaice_lib.walk import Walk
from tests.experiment_files import write_experiment, write_results
from tests.rendering import drawn_share, pdf_pages, pdf_text
from tests.scene_edits import unreadable_twin

RUNS = ("unet", "tsvit_v3")


@pytest.fixture(scope="module")
def inputs(patch_store, synthetic_dir, four_regions, tmp_path_factory):
    """Two tiny trained runs, an experiment with made-up results, benchmark JSON in the benchmarks'
    formats and one explain folder written by the explain code itself."""
    root = tmp_path_factory.mktemp("paper")
    torch.set_num_threads(1)
    for model in RUNS:
        train(TrainConfig(store=str(patch_store), out_dir=str(root / "runs" / model), model=model,
                          model_size="tiny", batch_size=4, steps=2, steps_per_epoch=2, warmup_steps=1,
                          checkpoint_every=0, val_fraction=0.3, device="cpu", progress=False))
    bench = root / "bench"
    bench.mkdir()
    experiment = write_experiment(root / "tiny.yaml", *four_regions)
    write_results(experiments.load(experiment))
    # the keys benchmarks/bench_loader.py and bench_train.py write, written as they write them
    throughput.write_benchmark(bench / "loader.json", {
        "patch": 256, "batch": 8, "downsample": 1, "toolbox_samples_per_s": 15.7, "ours_samples_per_s": 88.2,
        "toolbox_peak_rss_mib": 900, "ours_peak_rss_mib": 700})
    throughput.write_benchmark(bench / "train.json", {
        "settings": {"size": "small", "patch": 32, "batch": 16, "steps": 5, "sequence_steps": 3,
                      "downsample": 4, "threads": 2},
         "baseline_peak_rss_mib": 400,
         "models": {m: {"samples_per_s": 10.0 + i, "ms_per_step": 100.0, "n_params": 1000,
                        "peak_rss_mib": 900.0, "above_baseline_mib": 500.0 + 100 * i}
                    for i, m in enumerate(["unet", "tsvit_v1", "tsvit_v3"])}})
    run = root / "runs" / "tsvit_v3"
    model = load_model(run)
    scenes = find_scenes(synthetic_dir)
    tile = explanation.scene_tile(scenes[1], scenes, patch_store, 0)
    batch = tile.batch
    result = explanation.explain_tile(model, batch, "SOD", 4, ig_steps=4)
    explain = root / "explain"
    explain.mkdir()
    ablation.ablation_table(model, scenes[1:2], scenes, patch_store,
                            ablations=("none", "no_amsr2")).to_csv(explain / "ablation.csv", index=False)
    pd.DataFrame(explanation.randomisation_check(model, batch, "SOD", 4, ig_steps=2),
                 columns=["randomised up to", "rank correlation"]).to_csv(explain / "sanity.csv", index=False)
    explanation.save_explanation(result, tile, explain, Run(run), {"scene": scenes[1].name[:19], "tile": 0,
                                                                   "chart": "SOD", "class": "Thick first-year ice",
                                                                   "trained_on": False},
                                 explanation.files_read(scenes[1:2], scenes, patch_store))  # last, as the notebook
    return {"runs": root / "runs", "bench": bench, "explain": explain, "scenes": synthetic_dir, "experiment": experiment,
            "store": patch_store, "scene": scenes[1].name[:19]}


def _sealed(doc: dict) -> dict:
    """A record (an evaluation, an explanation.json) edited by a test, with the SHA-256 of its new
    content (as if written so)."""
    return doc | {"content_sha256": jsondoc.content_sha256(doc)}


def _benchmark(path: Path) -> dict:
    """A benchmark JSON's measurements, without what write_benchmark adds (to be written again changed)."""
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in throughput.RECORDS}


def _args(inputs, out):
    return ["figures", str(inputs["runs"]), str(out), "--bench", str(inputs["bench"]),
            "--scenes", str(inputs["scenes"]), "--scene", inputs["scene"], "--store", str(inputs["store"]),
            "--explain", str(inputs["explain"]), "--experiment", str(inputs["experiment"])]


def test_every_figure_as_pdf_and_png_and_tables_in_booktabs(inputs, tmp_path):
    out = tmp_path / "figures"
    assert cli.main(_args(inputs, out)) == 0
    names = {p.name for p in out.iterdir()}
    stems = ["fig_per_class_f1", "fig_class_support", "fig_comparison_tiny", "fig_learning_curves_tiny", "fig_history_tiny",
             "fig_throughput",
             f"fig_scene_{inputs['scene']}", *(f"fig_confusion_{r}" for r in RUNS),
             *(f"fig_{kind}_tsvit_v3" for kind in ("explain_dates", "explain_maps", "modality_share",
                                                   "ablation", "sanity"))]
    assert {f"{s}.{fmt}" for s in stems for fmt in ("pdf", "png")} <= names
    assert sorted(n for n in names if n.endswith(".pdf")) == sorted(f"{s}.pdf" for s in stems)  # nothing unchecked
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for stem in stems:
        pages = pdf_pages(out / f"{stem}.pdf", rendered)
        assert len(pages) == 1, stem
        assert drawn_share(pages[0]) > 0.03, f"{stem}.pdf renders blank"
        png = Image.open(out / f"{stem}.png")
        assert png.info["dpi"] == pytest.approx((300, 300), abs=0.5), stem
        # the PNG shows the same figure as the PDF: same aspect ratio
        assert png.width / png.height == pytest.approx(pages[0].shape[1] / pages[0].shape[0], rel=0.05), stem
    for stem in ("table_runs", "table_model_comparison_tiny", "table_paired_differences_tiny", "table_throughput",
                 "table_ablation_tsvit_v3"):
        tex = (out / f"{stem}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex and f"tab:{stem}" in tex
    assert "tsvit_v1 - unet_sar" in (out / "table_paired_differences_tiny.csv").read_text()
    assert "| unet_sar" in (out / "report_tiny.md").read_text()
    assert set(pd.read_csv(out / "table_ablation_tsvit_v3.csv")["ablation"]) == {"no_amsr2"}


def test_the_same_inputs_give_the_same_files(inputs, tmp_path):
    """Deterministic names and contents: two runs write byte-identical PDFs and tables."""
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        figures.make_figures(inputs["runs"], out, inputs["bench"], explain_dirs=(inputs["explain"],),
                             experiments=(inputs["experiment"],))
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    compared = [p for p in first.iterdir() if p.suffix in (".pdf", ".tex", ".csv")]
    assert {p.suffix for p in compared} == {".pdf", ".tex", ".csv"}  # files of each kind to compare
    for path in compared:
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    drawn = json.loads((first / figures.MANIFEST).read_text())["drawn"]  # the benchmark and explanation records
    assert drawn["bench"] == {name: json.loads((inputs["bench"] / name).read_text())["content_sha256"]
                              for name in ("loader.json", "train.json")}
    assert drawn["explain"] == {str(inputs["explain"]):
                                json.loads((inputs["explain"] / "explanation.json").read_text())["content_sha256"]}
    record = drawn["experiments"][str(inputs["experiment"])]  # RT15-R18: the results its tables were drawn from
    results = experiments.load(inputs["experiment"]).results
    assert record["file_sha256"] == hashlib.sha256(inputs["experiment"].read_bytes()).hexdigest()
    assert record["jobs"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                              for p in (results / "jobs").glob("*.json")} and record["jobs"]


def test_figures_of_inputs_gone_since_the_last_call_are_removed_and_each_file_is_recorded(inputs, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(inputs["runs"], runs)
    figures.make_figures(runs, out)
    assert (out / "fig_confusion_tsvit_v3.pdf").is_file()
    (out / "notes.txt").write_text("mine")  # a file no call of figures made
    shutil.rmtree(runs / "tsvit_v3")
    walk = Walk("inputs")
    written = figures.make_figures(runs, out, walk=walk)
    assert not list(out.glob("fig_confusion_tsvit_v3.*"))  # it would look current
    assert (out / "fig_confusion_unet.pdf").is_file() and (out / "notes.txt").read_text() == "mine"
    doc = json.loads((out / figures.MANIFEST).read_text())
    assert sorted(doc["files"]) == sorted(p.name for p in written) == \
        sorted(p.name for p in out.iterdir() if p.name not in ("notes.txt", figures.MANIFEST))
    assert all(doc["files"][p.name] == hashlib.sha256(p.read_bytes()).hexdigest() for p in written)
    assert doc["inputs"]["runs_dir"] == str(runs) and doc["made_by"]["package"] == "seaice_lib"
    # each run drawn by its weights and its evaluation file, as they were read: a retrained run is told apart
    remaining = sorted(p.name for p in runs.iterdir() if (p / "evaluation.json").is_file())
    assert sorted(doc["drawn"]["runs"]) == remaining and remaining
    for name in remaining:
        assert doc["drawn"]["runs"][name] == {
            "folder": str(runs / name),
            "weights_sha256": hashlib.sha256((runs / name / "model.pt").read_bytes()).hexdigest(),
            "evaluation_sha256": hashlib.sha256((runs / name / "evaluation.json").read_bytes()).hexdigest()}
    assert doc["drawn"]["bench"] == {} and doc["drawn"]["explain"] == {} and doc["drawn"]["experiments"] == {}


@pytest.mark.parametrize("record", ["gone", "damaged"])
def test_figures_of_an_unrecorded_call_are_set_aside_not_left_looking_current(inputs, tmp_path, record):
    """Without a readable figures.json nothing says which files of the folder the last call made:
    the files of this command's names (fig_*, table_*, report_*) that this call does not make are
    moved into unrecorded-1/ (named), other files stay, and the record lists only this call's."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(inputs["runs"], runs)
    figures.make_figures(runs, out)
    old = (out / "fig_confusion_tsvit_v3.pdf").read_bytes()
    (out / "notes.txt").write_text("mine")
    if record == "gone":
        (out / figures.MANIFEST).unlink()
    else:
        (out / figures.MANIFEST).write_text("{")
    shutil.rmtree(runs / "tsvit_v3")
    notes = []
    written = figures.make_figures(runs, out, walk=Walk("inputs", report=notes.append))
    assert not list(out.glob("fig_confusion_tsvit_v3.*"))
    assert (out / "unrecorded-1" / "fig_confusion_tsvit_v3.pdf").read_bytes() == old
    assert sorted(p.name for p in (out / "unrecorded-1").iterdir()) == ["fig_confusion_tsvit_v3.pdf",
                                                                       "fig_confusion_tsvit_v3.png"]
    assert any(f"{out / 'unrecorded-1'}" in n and "2 files" in n for n in notes)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(json.loads((out / figures.MANIFEST).read_text())["files"]) == sorted(p.name for p in written)


def test_figures_a_killed_call_left_unrecorded_are_set_aside_though_a_record_is_there(inputs, tmp_path):
    """A call killed after drawing some figures, before its record (kill -9, out of memory), leaves
    them listed nowhere; the record of the call before is still readable. The next call sets them
    aside into unrecorded-1/ (named) like files of an unrecorded call; the recorded ones it removes
    or makes as before, and other files stay."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(inputs["runs"], runs)
    shutil.rmtree(runs / "tsvit_v3")
    figures.make_figures(runs, out)  # records the unet run's files
    recorded = json.loads((out / figures.MANIFEST).read_text())["files"]
    left = {name: (out / "fig_confusion_unet.pdf").read_bytes() for name in ("fig_confusion_gone.pdf",
                                                                            "table_gone.csv")}
    for name, data in left.items():  # drawn by the killed call for a run that is gone since
        (out / name).write_bytes(data)
    (out / "notes.txt").write_text("mine")
    notes = []
    written = figures.make_figures(runs, out, walk=Walk("inputs", report=notes.append))
    assert {(out / "unrecorded-1" / name).read_bytes() for name in left} == set(left.values())
    assert sorted(p.name for p in (out / "unrecorded-1").iterdir()) == sorted(left)
    assert any(f"{figures.MANIFEST} does not list the 2 files" in n and f"{out / 'unrecorded-1'}" in n for n in notes)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(
        [p.name for p in written] + [figures.MANIFEST, "notes.txt"]) and sorted(recorded) == sorted(
        p.name for p in written)


def test_a_record_naming_files_outside_the_folder_or_not_as_written_removes_none_of_them(inputs, tmp_path):
    """An edited or foreign figures.json: names outside OUT_DIR (absolute, ``..``, through a link),
    a link and a folder of the command's names, and a figure edited since it was recorded are
    never removed; the edited figure is set aside into unrecorded-1/; each is named in a note."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    victims = {name: outside / f"{name}.txt" for name in ("parent", "absolute", "linked", "target")}
    for path in victims.values():
        path.write_text("keep")
    figures.make_figures(inputs["runs"], out, explain_dirs=(inputs["explain"],))
    (out / "fig_link.pdf").symlink_to(victims["target"])
    (out / "linkdir").symlink_to(outside, target_is_directory=True)
    (out / "fig_folder.pdf").mkdir()
    (out / "fig_explain_dates_tsvit_v3.pdf").write_bytes(b"my own edit")
    doc = json.loads((out / figures.MANIFEST).read_text())
    doc["files"] |= {"../outside/parent.txt": "x", str(victims["absolute"]): "x", "linkdir/linked.txt": "x",
                     "fig_link.pdf": "x", "fig_folder.pdf": "x"}
    (out / figures.MANIFEST).write_text(json.dumps(doc))
    notes = []
    figures.make_figures(inputs["runs"], out, walk=Walk("inputs", report=notes.append))  # no explain folder now
    assert all(path.read_text() == "keep" for path in victims.values())
    assert (out / "fig_link.pdf").is_symlink() and (out / "fig_folder.pdf").is_dir()
    assert (out / "unrecorded-1" / "fig_explain_dates_tsvit_v3.pdf").read_bytes() == b"my own edit"
    assert not list(out.glob("fig_explain_*"))  # the unedited ones removed as before
    text = "\n".join(notes)
    for name in ("../outside/parent.txt", str(victims["absolute"]), "linkdir/linked.txt", "fig_link.pdf",
                 "fig_folder.pdf"):
        assert name in text, name
    assert any("changed since" in n and "fig_explain_dates_tsvit_v3.pdf" in n and "unrecorded-1" in n for n in notes)


def test_the_scene_panel_draws_each_map_as_stored_at_its_aspect(inputs):
    """A 'run' whose charts are the ice chart upside down: its axes hold the flipped chart, drawn
    with the origin at the top (lines down) and equal aspect, so nothing is turned or stretched."""
    from seaice_lib.data.scene import Scene
    from seaice_lib.figures import scene_panels

    path = next(p for p in find_scenes(inputs["scenes"]) if p.name.startswith(inputs["scene"]))
    with Scene(path) as s:
        truth = s.charts()
        sar = {"HH": s.read("nersc_sar_primary", units="physical")}
    flipped = {c: v[::-1] for c, v in truth.items()}
    fig = scene_panels.panel_figure(sar, truth, {"same": truth, "flipped": flipped}, "test")
    axes = np.array(fig.axes).reshape(1 + len(schema.CHARTS), 3)
    for row, chart in enumerate(schema.CHARTS, start=1):
        for col, expected in enumerate([truth[chart], truth[chart], flipped[chart]]):
            image = axes[row, col].images[0]
            drawn = image.get_array()
            assert np.array_equal(drawn.filled(255), expected), (chart, col)  # step 1: every pixel
            assert np.array_equal(drawn.mask, expected == schema.CHART_FILL)
            assert image.origin == "upper" and axes[row, col].get_aspect() == 1.0
            x0, x1, y0, y1 = image.get_extent()
            assert (abs(x1 - x0), abs(y1 - y0)) == (expected.shape[1], expected.shape[0])
    assert axes[0, 0].images[0].get_array().shape == truth["SOD"].shape
    figures.style.pyplot().close(fig)


def test_a_bad_input_is_named_and_left_out_and_the_others_drawn(inputs, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs)
    good = sorted(p.parent.name for p in runs.glob("*/evaluation.json"))
    (runs / "truncated").mkdir()
    (runs / "truncated" / "evaluation.json").write_text((runs / good[0] / "evaluation.json").read_text()[:200])
    (runs / "no_confusion").mkdir()
    doc = json.loads((runs / good[0] / "evaluation.json").read_text())
    (runs / "no_confusion" / "evaluation.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "confusion"}))
    (tmp_path / "empty").mkdir()
    code = cli.main(["figures", str(runs), str(tmp_path / "out"), "--explain", str(tmp_path / "empty"),
                     "--experiment", str(inputs["experiment"])])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{len(good) + 1} inputs drawn, 3 failed" in err  # the good runs and the experiment
    assert f"failed: {runs / 'truncated'}/evaluation.json: not JSON" in err
    assert f"failed: {runs / 'no_confusion'}/evaluation.json: holds no confusion matrices" in err
    assert f"failed: {tmp_path / 'empty'}/explanation.json: missing" in err
    table = (tmp_path / "out" / "table_runs.csv").read_text()
    assert all(run in table for run in good) and "truncated" not in table and "no_confusion" not in table
    assert list((tmp_path / "out").glob("fig_learning_curves_*.pdf"))  # the experiment still drawn


def test_a_json_of_another_shape_is_named_and_left_out_and_the_others_drawn(inputs, tmp_path, capsys):
    """Each JSON the figures read (a run's evaluation.json, the benchmarks', an explain folder's) with
    a key of another type: the file and the key named, that input left out, the rest drawn."""
    runs, bench, explain = tmp_path / "runs", tmp_path / "bench", tmp_path / "explain"
    for source, copy in ((inputs["runs"], runs), (inputs["bench"], bench), (inputs["explain"], explain)):
        shutil.copytree(source, copy)
    good = sorted(p.parent.name for p in runs.glob("*/evaluation.json"))
    doc = json.loads((runs / good[0] / "evaluation.json").read_text())
    (runs / "listed_info").mkdir()
    (runs / "listed_info" / "evaluation.json").write_text(json.dumps(doc | {"info": ["unet", "tiny"]}))
    loader = _benchmark(bench / "loader.json")
    throughput.write_benchmark(bench / "loader.json", loader | {"ours_samples_per_s": "88.2"})
    info = json.loads((explain / "explanation.json").read_text())
    (explain / "explanation.json").write_text(json.dumps([info]))
    out = tmp_path / "out"
    code = cli.main(["figures", str(runs), str(out), "--bench", str(bench), "--explain", str(explain),
                     "--explain", str(inputs["explain"])])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"failed: {runs / 'listed_info' / 'evaluation.json'}: info must be a mapping or null, not a list" in err
    assert f"failed: {bench / 'loader.json'}: ours_samples_per_s must be a finite number above 0, not a string" in err
    assert f"failed: {explain / 'explanation.json'}: holds a list, not a mapping" in err
    assert f"{len(good) + 2} inputs drawn, 3 failed" in err  # the good runs, train.json, the other explain folder
    table = pd.read_csv(out / "table_runs.csv")
    assert sorted(table.run) == good
    assert list(pd.read_csv(out / "table_throughput.csv").stage.unique()) == ["training step"]  # no loader row
    assert (out / "fig_explain_dates_tsvit_v3.pdf").is_file()


def test_usage_errors_exit_2_with_one_line(inputs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    cases = [
        (["figures", str(inputs["runs"]), str(tmp_path / "dangling")],  # RT20-R10
         f"OUT_DIR {tmp_path / 'dangling'}: a symbolic link to nothing, not a folder to write into"),
        (["figures", str(tmp_path / "empty"), str(tmp_path / "out"), "--bench", str(tmp_path)],
         f"nothing to draw: no run folder with evaluation.json in {tmp_path / 'empty'}, no loader.json or train.json "
         f"in {tmp_path}, no --explain, no --experiment"),
        (["figures", str(tmp_path / "out"), "--bench", str(tmp_path)], "nothing to draw: no RUNS_DIR, no loader.json"),
        (["figures", str(tmp_path / "nope"), str(tmp_path / "out")], "runs_dir"),
        (["figures", str(inputs["runs"]), str(tmp_path / "out"), "--explain", str(tmp_path / "nope")], "--explain"),
        (["figures", str(inputs["runs"]), str(tmp_path / "out"), "--scenes", str(inputs["scenes"]),
          "--scene", "20990101T000000_dmi", "--store", str(inputs["store"])], "20990101T000000_dmi"),
        (["figures", str(tmp_path / "out"), "--experiment", str(tmp_path / "nope.yaml")], "--experiment"),
        (["figures", "a", "b", str(tmp_path / "out")], "expected [RUNS_DIR] OUT_DIR"),
        (["figures", str(inputs["runs"]), str(tmp_path / "out"), "--bench", str(tmp_path / "typo")], "--bench"),
        (["figures", str(inputs["runs"]), str(tmp_path / "out"), "--scene", "20181113T190544_dmi"], "needs --scenes"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and expected in err and "Traceback" not in err, argv


def test_the_history_of_a_target_is_checked_and_drawn(synthetic_dir, patch_store, tmp_path):
    """Days before from the scene ids, the target's own HH correlating exactly with itself, and
    land zones that agree for every earlier step the sequence kept."""
    import datetime as dt

    from seaice_lib.data.patches import config_from_store
    from seaice_lib.figures import history

    cfg = config_from_store(patch_store)
    paths = find_scenes(synthetic_dir)
    checks = {p.name[:19]: history.history_checks(p, synthetic_dir, cfg) for p in paths}
    target, rows = max(checks.items(), key=lambda item: len(item[1]))
    assert len(rows) > 1 and rows[-1]["scene"] == target and rows[-1]["hh_correlation"] == 1.0
    assert rows[-1]["zone_kappa"] is None and rows[-1]["days_before"] == 0
    when = {sid: dt.datetime.strptime(sid[:15], "%Y%m%dT%H%M%S") for sid in checks}
    for row in rows[:-1]:
        assert row["days_before"] == pytest.approx((when[target] - when[row["scene"]]).total_seconds() / 86400, abs=0.01)
        assert row["zone_kappa"] > 0.5 and 0 < row["coverage"] <= 1 and -1 <= row["hh_correlation"] <= 1
    written = history.history_figure(next(p for p in paths if p.name[:19] == target), synthetic_dir, cfg,
                                     tmp_path, "fig_history_tiny")
    png = next(p for p in written if p.suffix == ".png")
    assert drawn_share(np.asarray(Image.open(png).convert("RGB")) / 255) > 0.2


def test_the_history_names_an_earlier_acquisition_that_cannot_be_read_once(synthetic_dir, patch_store, tmp_path,
                                                                           caplog):
    """A truncated copy of a target one second earlier: no row of it, one warning naming it per
    check or figure, and the figure drawn with the target alone."""
    import logging

    from seaice_lib.data.patches import config_from_store
    from seaice_lib.figures import history

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    target, earlier = unreadable_twin(synthetic_dir, scenes)
    cfg = config_from_store(patch_store)
    said = f"{target.name}: history checked without earlier acquisitions that could not be read: {earlier.name}: " \
           "not a readable netCDF file"
    with caplog.at_level(logging.WARNING):
        rows = history.history_checks(target, scenes, cfg)
    assert [row["scene"] for row in rows] == [target.name[:19]]
    assert [r.getMessage()[:len(said)] for r in caplog.records if earlier.name in r.getMessage()] == [said]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        written = history.history_figure(target, scenes, cfg, tmp_path / "out", "fig_history_left_out")
    assert [r.getMessage()[:len(said)] for r in caplog.records if earlier.name in r.getMessage()] == [said]
    assert {p.suffix for p in written} == {".pdf", ".png"}


def test_a_number_no_benchmark_or_run_writes_is_named_and_left_out_and_the_others_drawn(inputs, tmp_path, capsys):
    """NaN, infinite, negative speeds and memory, negative steps, NaN seconds, no parameters: each file
    named with its key and left out of the tables and figures, the others drawn, exit 1."""
    runs, bench = tmp_path / "runs", tmp_path / "bench"
    shutil.copytree(inputs["runs"], runs)
    bench.mkdir()
    throughput.write_benchmark(bench / "loader.json", _benchmark(inputs["bench"] / "loader.json")
                               | {"toolbox_samples_per_s": float("nan")})
    train = _benchmark(inputs["bench"] / "train.json")
    train["models"]["unet"]["above_baseline_mib"] = -1e9
    throughput.write_benchmark(bench / "train.json", train)
    for name, info in (("steps", {"steps": -7}), ("seconds", {"train_seconds": float("nan")}),
                       ("params", {"n_params": 0})):
        shutil.copytree(inputs["runs"] / "unet", runs / name)
        doc = json.loads((runs / name / "evaluation.json").read_text())
        (runs / name / "evaluation.json").write_text(json.dumps(_sealed(doc | {"info": doc["info"] | info})))
    out = tmp_path / "out"
    code = cli.main(["figures", str(runs), str(out), "--bench", str(bench)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    for problem in (f"{bench / 'loader.json'}: toolbox_samples_per_s must be a finite number above 0, not nan",
                    f"{bench / 'train.json'}: models.unet.above_baseline_mib must be a finite number of at least 0, "
                    "not -1000000000.0",
                    f"{runs / 'steps' / 'evaluation.json'}: info.steps must be an integer of at least 0 or null, not -7",
                    f"{runs / 'seconds' / 'evaluation.json'}: info.train_seconds must be a finite number of at "
                    "least 0 or null, not nan",
                    f"{runs / 'params' / 'evaluation.json'}: info.n_params must be an integer of at least 1 or null, not 0"):
        assert f"failed: {problem}" in err
    assert sorted(pd.read_csv(out / "table_runs.csv").run) == sorted(RUNS)
    assert not (out / "table_throughput.csv").exists()


def test_runs_validated_on_other_scenes_are_marked_as_not_comparable(inputs, tmp_path, capsys):
    source = next(inputs["runs"].glob("*/evaluation.json"))
    doc = json.loads(source.read_text())
    runs = tmp_path / "runs"
    for name, scenes in (("a", ["20180101T000000_dmi"]), ("b", ["20180101T000000_dmi"]),
                         ("c", ["20190101T000000_cis", "20190102T000000_cis"])):
        shutil.copytree(source.parent, runs / name)  # the same model.pt: the evaluation is its
        (runs / name / "evaluation.json").write_text(json.dumps(_sealed(doc | {"info": {**doc["info"], "val_scenes": scenes}})))
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "table_runs.csv").set_index("run")
    assert dict(table["validation scenes"]) == {"a": "A (1)", "b": "A (1)", "c": "B (2)"}
    assert "compare scores within one set only" in (tmp_path / "out" / "table_runs.tex").read_text()
    assert "note: the runs were validated on 2 different scene sets: A: a; A: b; B: c" in capsys.readouterr().err


def test_runs_scored_on_other_versions_of_the_same_scenes_are_marked_as_not_comparable(inputs, tmp_path, capsys):
    """R13: runs validated on the same scene ids, one of them against another version of a scene's
    file (other labels: another SHA-256 in its input_files), are two sets, labelled apart with the
    note; a run whose evaluation also read other files (earlier acquisitions) is in its scenes' set."""
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        shutil.copytree(inputs["runs"] / "unet", runs / name)
    doc = json.loads((runs / "a" / "evaluation.json").read_text())
    val = doc["info"]["val_scenes"]
    entries = doc["info"]["input_files"]
    scored = next(i for i, e in enumerate(entries) if Path(e["file"]).name[:19] in val)
    relabelled = Path(shutil.copy(entries[scored]["file"], tmp_path / Path(entries[scored]["file"]).name))
    with netCDF4.Dataset(relabelled, "a") as nc:
        sod = nc["SOD"][:]
        nc["SOD"][:] = np.where(np.ma.getmaskarray(sod), 255, (sod + 1) % 6).astype(np.uint8)

    def record(path: Path) -> dict:
        return {"file": str(path), "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    other_files = [*entries[:scored], record(relabelled), *entries[scored + 1:]]
    earlier = next(p for p in sorted(inputs["scenes"].glob("*_prep.nc")) if p.name[:19] not in val)
    for name, files in (("b", other_files), ("c", [record(earlier), *entries])):
        (runs / name / "evaluation.json").write_text(
            json.dumps(_sealed(doc | {"info": {**doc["info"], "input_files": files}})))
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "table_runs.csv").set_index("run")
    n = len(val)
    assert dict(table["validation scenes"]) == {"a": f"A ({n})", "b": f"B ({n})", "c": f"A ({n})"}
    assert "other versions of their files" in (tmp_path / "out" / "table_runs.tex").read_text()
    assert "note: the runs were validated on 2 different scene sets: A: a; B: b; A: c" in capsys.readouterr().err


def test_an_evaluation_edited_since_it_was_written_is_named_and_left_out(inputs, tmp_path, capsys):
    """R2: a run's evaluation.json whose matrices were edited (every pixel right) is not tabled nor
    drawn as its scores: named with what to run, exit 1; one that records no content_sha256
    (written before evaluations did) likewise; one only reformatted (as `jq .` does) is tabled."""
    runs = tmp_path / "runs"
    for name in ("a", "edited", "unrecorded", "reformatted"):
        shutil.copytree(inputs["runs"] / "unet", runs / name)
    doc = json.loads((runs / "a" / "evaluation.json").read_text())
    right = {c: np.diag(np.asarray(m).sum(1)).tolist() for c, m in doc["confusion"].items()}
    (runs / "edited" / "evaluation.json").write_text(json.dumps(doc | {"confusion": right}, indent=1))
    (runs / "unrecorded" / "evaluation.json").write_text(
        json.dumps({k: v for k, v in doc.items() if k != "content_sha256"}, indent=1))
    (runs / "reformatted" / "evaluation.json").write_text(json.dumps(doc, indent=4, sort_keys=True))
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"failed: {runs / 'edited' / 'evaluation.json'}: edited since it was written" in err
    assert (f"failed: {runs / 'unrecorded' / 'evaluation.json'}: records no content_sha256 (written before "
            "evaluations recorded it)") in err
    assert f"seaice train --config {runs / 'unrecorded' / 'config.yaml'}` again" in err
    table = pd.read_csv(tmp_path / "out" / "table_runs.csv").set_index("run")
    assert sorted(table.index) == ["a", "reformatted"]
    assert table.loc["reformatted", "combined"] == table.loc["a", "combined"] < 100
    assert not list((tmp_path / "out").glob("*edited*")) and not list((tmp_path / "out").glob("*unrecorded*"))


def test_runs_scored_with_unusable_inputs_are_marked_in_the_runs_table(inputs, tmp_path, capsys):
    """An evaluation whose info records unusable_inputs (masked values, an earlier acquisition left
    out unread): its run's row names those scenes, the caption says why; a clean run's is empty."""
    source = next(inputs["runs"].glob("*/evaluation.json"))
    doc = json.loads(source.read_text())
    runs = tmp_path / "runs"
    unusable = {"20180101T000000_dmi": {"left_out": ["20180101T000000_dmi_prep.nc: not a readable netCDF file"]},
                "20180102T000000_dmi": {"labelled_pixels": {"SIC": 3, "SOD": 3, "FLOE": 3},
                                        "values": {"nersc_sar_primary": 5}}}
    for name, info in (("clean", {}), ("marked", {"unusable_inputs": unusable})):
        shutil.copytree(source.parent, runs / name)
        (runs / name / "evaluation.json").write_text(json.dumps(_sealed(doc | {"info": {**doc["info"], **info}})))
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "table_runs.csv", keep_default_na=False).set_index("run")
    assert dict(table["unusable inputs"]) == {"clean": "", "marked": "20180101T000000_dmi, 20180102T000000_dmi"}
    assert "whose inputs were unusable" in (tmp_path / "out" / "table_runs.tex").read_text()
    assert ("note: marked: scored with unusable inputs of 20180101T000000_dmi, 20180102T000000_dmi"
            in capsys.readouterr().err)


def test_an_evaluation_of_other_weights_than_the_run_s_model_is_named_and_left_out(inputs, tmp_path, capsys):
    """A run's evaluation.json records the SHA-256 of the weights it scored: one copied from
    another run, or one without the record, is not tabled as the run's; the others are, exit 1."""
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        shutil.copytree(inputs["runs"] / "unet", runs / name)
    shutil.copy(inputs["runs"] / "tsvit_v3" / "evaluation.json", runs / "b" / "evaluation.json")
    doc = json.loads((runs / "c" / "evaluation.json").read_text())
    del doc["info"]["weights_sha256"]
    (runs / "c" / "evaluation.json").write_text(json.dumps(_sealed(doc)))
    unet, tsvit = (hashlib.sha256((inputs["runs"] / m / "model.pt").read_bytes()).hexdigest()[:12]
                   for m in ("unet", "tsvit_v3"))
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"failed: {runs / 'b' / 'evaluation.json'}: scores weights {tsvit}, not the run's model.pt ({unet})" in err
    assert f"{runs / 'c' / 'evaluation.json'}: records no weights_sha256" in err
    assert list(pd.read_csv(tmp_path / "out" / "table_runs.csv").run) == ["a"]


def test_an_evaluation_of_scenes_changed_since_is_named_and_left_out(inputs, tmp_path, capsys):
    """A run's evaluation.json records the files it scored (path, size, modification time, SHA-256):
    a copy of them that lost its times still counts (the same SHA-256); scenes relabelled since, or
    an evaluation that records no files (written before they were recorded), are named with what
    to run, and not tabled; the others are, exit 1."""
    runs = tmp_path / "runs"
    for name in ("a", "b", "c"):
        shutil.copytree(inputs["runs"] / "unet", runs / name)
    scenes = tmp_path / "scenes"  # the files run a scored, copied without their times
    scenes.mkdir()
    doc = json.loads((runs / "a" / "evaluation.json").read_text())
    for entry in doc["info"]["input_files"]:
        entry["file"] = str(shutil.copy(entry["file"], scenes))
    for name in ("a", "b"):
        (runs / name / "evaluation.json").write_text(json.dumps(_sealed(doc)))
    assert cli.main(["figures", str(runs), str(tmp_path / "out0")]) == 0  # c records the originals
    assert list(pd.read_csv(tmp_path / "out0" / "table_runs.csv").run) == ["a", "b", "c"]
    relabelled = doc["info"]["input_files"][-1]["file"]  # a validation scene
    with netCDF4.Dataset(relabelled, "a") as nc:
        sod = nc["SOD"][:]
        nc["SOD"][:] = np.where(np.ma.getmaskarray(sod), 255, (sod + 1) % 6).astype(np.uint8)
    legacy = json.loads((runs / "c" / "evaluation.json").read_text())
    del legacy["info"]["input_files"]
    (runs / "c" / "evaluation.json").write_text(json.dumps(_sealed(legacy)))
    capsys.readouterr()
    assert cli.main(["figures", str(runs), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    digest = hashlib.sha256((inputs["scenes"] / Path(relabelled).name).read_bytes()).hexdigest()[:12]
    for name in ("a", "b"):
        assert (f"failed: {runs / name / 'evaluation.json'}: scored against {relabelled} (sha256 {digest}), changed "
                f"since: its scores are not those of the files now; run `seaice train --config "
                f"{runs / name / 'config.yaml'}` again") in err
    assert (f"failed: {runs / 'c' / 'evaluation.json'}: records no input files (written before evaluations recorded "
            "them)") in err
    assert not (tmp_path / "out" / "table_runs.csv").exists()


def test_two_explanations_of_one_run_are_refused_before_anything_is_drawn(inputs, tmp_path, capsys):
    """Two explain folders of the same run would draw the same fig_explain_*_<run>: one usage error
    naming both folders and the run, exit 2, nothing drawn."""
    other = tmp_path / "other_tile"
    shutil.copytree(inputs["explain"], other)
    info = json.loads((other / "explanation.json").read_text())
    (other / "explanation.json").write_text(json.dumps(info | {"tile": 7}))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", str(out), "--explain", str(inputs["explain"]), "--explain", str(other)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert str(inputs["explain"]) in err and str(other) in err and "tsvit_v3" in err
    assert not list(out.glob("fig_*"))


def test_two_experiments_of_one_name_are_refused_before_anything_is_drawn(inputs, tmp_path, capsys):
    """Two experiment files with the same ``name:`` would write the same outputs: one usage error
    naming both files, exit 2, nothing drawn."""
    copy = tmp_path / "variant" / "tiny.yaml"
    copy.parent.mkdir()
    shutil.copy(inputs["experiment"], copy)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", str(out), "--experiment", str(inputs["experiment"]), "--experiment", str(copy)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert str(inputs["experiment"]) in err and str(copy) in err and "'tiny'" in err
    assert not list(out.glob("*_tiny.*"))


def test_a_run_folder_without_evaluation_json_is_named_and_left_out(inputs, tmp_path, capsys):
    """A run whose training stopped before its evaluation (config.yaml and weights, no
    evaluation.json) is named as left out, in figures.json too, exit 1; a folder that is no run is
    not named."""
    runs = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs)
    (runs / "tsvit_v3" / "evaluation.json").unlink()
    (runs / "notes").mkdir()
    out = tmp_path / "out"
    assert cli.main(["figures", str(runs), str(out)]) == 1
    err = capsys.readouterr().err
    assert f"failed: {runs / 'tsvit_v3'}: no evaluation.json" in err and "notes" not in err
    assert list(pd.read_csv(out / "table_runs.csv").run) == ["unet"]
    left_out = json.loads((out / figures.MANIFEST).read_text())["left_out"]
    assert len(left_out) == 1 and left_out[0].startswith(f"{runs / 'tsvit_v3'}: no evaluation.json")


def test_an_unfinished_experiment_is_drawn_and_its_missing_jobs_named_as_left_out(four_regions, tmp_path, capsys):
    """Jobs of an experiment without a result: the figures of the others are drawn, the missing
    jobs named on stderr and in figures.json's left_out, exit 1."""
    (tmp_path / "e").mkdir()
    path = write_experiment(tmp_path / "e" / "tiny.yaml", *four_regions)
    exp = experiments.load(path)
    write_results(exp)
    gone = [job.name for job in exp.jobs() if job.kind != "floors"][:2]
    for job in exp.jobs():
        if job.name in gone:
            exp.result_path(job).unlink()
    out = tmp_path / "out"
    assert cli.main(["figures", str(out), "--experiment", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"failed: {path}: " in err and all(name in err for name in gone) and "Traceback" not in err
    assert (out / "table_model_comparison_tiny.csv").is_file()
    left_out = json.loads((out / figures.MANIFEST).read_text())["left_out"]
    assert len(left_out) == 1 and all(name in left_out[0] for name in gone)


def test_an_explanation_whose_maps_are_not_those_its_json_describes_is_named_and_left_out(inputs, tmp_path, capsys):
    """explanation.npz rewritten after explanation.json (a notebook killed between the two, or a
    file swapped in from another tile), or a json that records no maps: the folder named, not drawn."""
    swapped, unrecorded = tmp_path / "swapped", tmp_path / "unrecorded"
    for folder in (swapped, unrecorded):
        shutil.copytree(inputs["explain"], folder)
    with np.load(swapped / "explanation.npz") as npz:
        maps = dict(npz)
    maps["days_before"] = maps["days_before"] + 1.0  # another tile's maps
    with open(swapped / "explanation.npz", "wb") as f:
        np.savez_compressed(f, **maps)
    info = json.loads((unrecorded / "explanation.json").read_text())
    (unrecorded / "explanation.json").write_text(json.dumps({k: v for k, v in info.items() if k != "maps_sha256"}
                                                                | {"run": "another_run"}))
    out = tmp_path / "out"
    assert cli.main(["figures", str(out), "--explain", str(swapped), "--explain", str(unrecorded)]) == 1
    err = capsys.readouterr().err
    assert f"failed: {swapped}: explanation.npz is not the maps explanation.json describes" in err
    assert f"failed: {unrecorded}: explanation.json records no SHA-256 of explanation.npz" in err
    assert not list(out.glob("fig_*"))
    info, _ = explanation.load_explanation(inputs["explain"])  # the pair as written reads
    assert info["run"] == "tsvit_v3"


@pytest.mark.parametrize("change", ["ablation edited", "sanity edited", "sanity removed", "sanity put there",
                                    "record edited", "record of an older release"])
def test_an_explain_folder_whose_tables_or_record_changed_since_is_named_and_left_out(change, inputs, tmp_path,
                                                                                      capsys):
    """explanation.json binds ablation.csv and sanity.csv by their SHA-256, and its own content by
    content_sha256: an edited or removed table, a table where the explanation wrote none, an edited
    record (another scene and class), or one written before explanations recorded those hashes, is
    named and not drawn, exit 1: its tables and titles would pass for the run's explanation."""
    folder, out = tmp_path / "explain", tmp_path / "out"
    shutil.copytree(inputs["explain"], folder)
    info = folder / "explanation.json"
    record = json.loads(info.read_text())
    again = "run notebooks/06_explain.ipynb again"
    if change == "ablation edited":  # "history matters by 12.5 points"
        table = pd.read_csv(folder / "ablation.csv")
        table.loc[table["ablation"] == "no_amsr2", "change"] = -12.5
        table.to_csv(folder / "ablation.csv", index=False)
        said = f"{folder / 'ablation.csv'}: not the table explanation.json records (edited or copied in since; it " \
               f"records sha256 {hashlib.sha256((inputs['explain'] / 'ablation.csv').read_bytes()).hexdigest()[:12]})"
    elif change == "sanity edited":  # the check flipped from passed to failed
        table = pd.read_csv(folder / "sanity.csv")
        table["rank correlation"] = 0.05
        table.to_csv(folder / "sanity.csv", index=False)
        said = f"{folder / 'sanity.csv'}: not the table explanation.json records"
    elif change == "sanity removed":
        (folder / "sanity.csv").unlink()
        said = f"{folder / 'sanity.csv'}: missing (explanation.json records it)"
    elif change == "sanity put there":  # an explanation written without one, and one copied in beside it
        info.write_text(json.dumps(_sealed(record | {"tables_sha256": record["tables_sha256"] | {"sanity.csv": None}})))
        said = f"{folder / 'sanity.csv'}: not written with the explanation (explanation.json records none)"
    elif change == "record edited":
        info.write_text(json.dumps(record | {"class": "Old ice", "scene": "20181113T190544_dmi"}, indent=1))
        said = f"{info}: edited since it was written (its content_sha256 is not that of its content)"
    else:
        info.write_text(json.dumps({k: v for k, v in record.items() if k not in ("content_sha256", "tables_sha256")}))
        said = f"{folder}: explanation.json records no content_sha256 and tables_sha256 (written before " \
               "explanations recorded them)"
    assert cli.main(["figures", str(out), "--explain", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"failed: {said}" in err and again in err.split(said)[1].splitlines()[0] and "Traceback" not in err
    assert not list(out.glob("fig_*")) and not list(out.glob("table_*"))
    assert json.loads((out / figures.MANIFEST).read_text())["files"] == {}


def test_an_explanation_records_the_sha256_of_its_tables_and_content_and_reads_as_written(inputs):
    record = json.loads((inputs["explain"] / "explanation.json").read_text())
    assert record["tables_sha256"] == {name: hashlib.sha256((inputs["explain"] / name).read_bytes()).hexdigest()
                                       for name in ("ablation.csv", "sanity.csv")} | {"sanity_labels.csv": None}
    content = {k: v for k, v in record.items() if k != "content_sha256"}
    as_floats = json.dumps(json.loads(json.dumps(content), parse_int=float), sort_keys=True)  # every number a float
    assert record["content_sha256"] == hashlib.sha256(as_floats.encode()).hexdigest()
    assert explanation.load_explanation(inputs["explain"])[0] == record


def _trained_and_validated(runs: Path, synthetic_dir: Path) -> tuple[list[str], list[str]]:
    """(scene ids both runs trained on, scene ids both validated on): the same store, split and seed;
    every synthetic scene is in the store, and the evaluations name the validation ones."""
    validated = [set(Evaluation.from_json(runs / run / "evaluation.json").info["val_scenes"]) for run in RUNS]
    assert validated[0] == validated[1]
    ids = [p.name[:19] for p in find_scenes(synthetic_dir)]
    return [s for s in ids if s not in validated[0]], [s for s in ids if s in validated[0]]


def test_the_scene_panel_of_a_scene_the_runs_trained_on_says_so(inputs, tmp_path, capsys):
    """As `seaice evaluate` marks scores of training scenes: the panel of a scene the drawn runs
    trained on marks each run's column, a note names them and figures.json records them; the panel
    of a validation scene is unmarked."""
    trained, validated = _trained_and_validated(inputs["runs"], inputs["scenes"])
    for scene, marked in ((trained[0], ["tsvit_v3", "unet"]), (validated[0], [])):
        out = tmp_path / scene
        assert cli.main(["figures", str(inputs["runs"]), str(out), "--scenes", str(inputs["scenes"]),
                         "--scene", scene, "--store", str(inputs["store"])]) == 0
        err = capsys.readouterr().err
        text = pdf_text(out / f"fig_scene_{scene}.pdf")
        assert text.count("(trained on it)") == len(marked)
        assert (f"note: fig_scene_{scene}: drawn with runs that trained on {scene} (tsvit_v3, unet): their charts of "
                "it show how the models fit their training data" in err) == bool(marked)
        assert json.loads((out / figures.MANIFEST).read_text())["inputs"]["scene_panel_trained_on"] == marked


def test_the_scene_panel_says_where_its_charts_have_no_class_for_masked_inputs(inputs, tmp_path, capsys):
    """As `seaice predict` warns: a scene with non-finite HH in a block is charted with no class
    there (grey), and a note and figures.json say so for each run; a clean scene, nothing."""
    _, validated = _trained_and_validated(inputs["runs"], inputs["scenes"])
    scenes = tmp_path / "scenes"
    shutil.copytree(inputs["scenes"], scenes)
    with netCDF4.Dataset(next(scenes.glob(f"{validated[0]}*_prep.nc")), "r+") as nc:
        hh = nc["nersc_sar_primary"][:]
        hh[10:20, 10:20] = np.inf
        nc["nersc_sar_primary"][:] = hh
    for folder, masked in ((scenes, True), (inputs["scenes"], False)):
        out = tmp_path / f"out_{masked}"
        assert cli.main(["figures", str(inputs["runs"]), str(out), "--scenes", str(folder), "--scene", validated[0],
                         "--store", str(inputs["store"])]) == 0
        err = capsys.readouterr().err
        drawn = json.loads((out / figures.MANIFEST).read_text())["drawn"]
        assert sorted(drawn["scene_panel_uncharted"]) == (sorted(RUNS) if masked else [])
        target = next(folder.glob(f"{validated[0]}*_prep.nc"))  # RT15-R6: the panel's scene file, by its hash
        assert drawn["scene_panel_files"][target.name] == hashlib.sha256(target.read_bytes()).hexdigest()
        assert all((folder / name).is_file() for name in drawn["scene_panel_files"])
        for run in RUNS:
            assert (f"note: fig_scene_{validated[0]}: {run}'s charts have no class (grey) at 100 pixels of inputs "
                    f"masked as not finite or out of range ({validated[0]}" in err) == masked


def test_an_explanation_of_a_scene_its_run_trained_on_is_drawn_marked(inputs, tmp_path, capsys):
    """An explanation whose record says trained_on: its figures' titles say so, a note names the folder
    and figures.json records it; one of a validation scene is drawn unmarked."""
    folder = tmp_path / "explain"
    shutil.copytree(inputs["explain"], folder)
    record = json.loads((folder / "explanation.json").read_text())
    assert record["trained_on"] is False
    (folder / "explanation.json").write_text(json.dumps(_sealed(record | {"trained_on": True})))
    for explained, marked in ((folder, True), (inputs["explain"], False)):
        out = tmp_path / f"out_{marked}"
        assert cli.main(["figures", str(out), "--explain", str(explained)]) == 0
        err = capsys.readouterr().err
        for kind in ("explain_dates", "explain_maps", "modality_share"):
            text = pdf_text(out / f"fig_{kind}_tsvit_v3.pdf")
            assert (f"{record['scene']} (a scene the run trained on), tile 0" in text) == marked, kind
        assert ("(a tile of a scene the run trained on)" in pdf_text(out / "fig_sanity_tsvit_v3.pdf")) == marked
        assert (f"note: {explained}: explains {record['scene']}, a scene run tsvit_v3 trained on" in err) == marked
        assert json.loads((out / figures.MANIFEST).read_text())["inputs"]["explain_trained_on"] == \
            ([str(explained)] if marked else [])


def test_an_explanation_of_other_weights_or_changed_scenes_is_named_and_left_out(inputs, tmp_path, capsys):
    """After its run is trained again (another model.pt: in RUNS_DIR, or in the folder it records
    when no run of its name is drawn), or a scene file it read is delivered again, an explain folder
    is named and not drawn: its figures would pass for the run's. As it is, it is drawn."""
    runs = tmp_path / "runs"
    shutil.copytree(inputs["runs"], runs)
    explained = hashlib.sha256((runs / "tsvit_v3" / "model.pt").read_bytes()).hexdigest()
    shutil.copy(runs / "unet" / "model.pt", runs / "tsvit_v3" / "model.pt")  # trained again: other weights
    now = hashlib.sha256((runs / "tsvit_v3" / "model.pt").read_bytes()).hexdigest()
    assert cli.main(["figures", str(runs), str(tmp_path / "a"), "--explain", str(inputs["explain"])]) == 1
    err = capsys.readouterr().err
    assert f"failed: {inputs['explain'] / 'explanation.json'}: explains the weights " \
           f"{explained[:12]}, not the run's model.pt now ({runs / 'tsvit_v3' / 'model.pt'}: {now[:12]}" in err
    assert not list((tmp_path / "a").glob("fig_*_tsvit_v3.*")) and (tmp_path / "a" / "fig_confusion_unet.pdf").is_file()
    # no run of its name drawn: the run folder it records, moved here and trained again
    record = json.loads((inputs["explain"] / "explanation.json").read_text())
    moved, scenes = tmp_path / "explain", tmp_path / "scenes"
    shutil.copytree(inputs["explain"], moved)
    scenes.mkdir()
    files = [scenes / Path(entry["file"]).name for entry in record["input_files"]]
    for entry, copy in zip(record["input_files"], files):
        shutil.copy2(entry["file"], copy)  # the same bytes and times: the same files
    (moved / "explanation.json").write_text(json.dumps(_sealed(record | {
        "run_dir": str(runs / "tsvit_v3"), "input_files": [e | {"file": str(f)} for e, f in zip(record["input_files"], files)]})))
    assert cli.main(["figures", str(tmp_path / "b"), "--explain", str(moved)]) == 1
    assert f"explains the weights {explained[:12]}, not the run's model.pt now" in capsys.readouterr().err
    shutil.copy(inputs["runs"] / "tsvit_v3" / "model.pt", runs / "tsvit_v3" / "model.pt")  # the weights explained
    assert cli.main(["figures", str(tmp_path / "b"), "--explain", str(moved)]) == 0  # drawn as it is
    assert (tmp_path / "b" / "fig_explain_maps_tsvit_v3.pdf").is_file()
    with open(files[-1], "ab") as f:  # a scene it read, delivered again
        f.write(b"\0")
    assert cli.main(["figures", str(tmp_path / "c"), "--explain", str(moved)]) == 1
    assert f"explanation.json: explains {files[-1]} (sha256 {record['input_files'][-1]['sha256'][:12]}), changed " \
           "since: not the scene files now; run notebooks/06_explain.ipynb again" in capsys.readouterr().err
    (runs / "tsvit_v3" / "model.pt").unlink()  # the run trains again from step 0
    assert cli.main(["figures", str(tmp_path / "d"), "--explain", str(moved)]) == 1
    assert f"{runs / 'tsvit_v3'} holds no final model.pt now" in capsys.readouterr().err
    assert not list(tmp_path.glob("[cd]/fig_*"))


@pytest.mark.parametrize("run", ["../../escaped", "sub/dir", "/abs/x"])
def test_a_name_an_input_records_that_is_not_a_file_name_writes_nothing_anywhere(run, inputs, tmp_path, capsys):
    """An explanation whose recorded run is a path: the input fails by name, no figure is written,
    inside OUT_DIR or outside it."""
    folder = tmp_path / "explain"
    shutil.copytree(inputs["explain"], folder)
    info = json.loads((folder / "explanation.json").read_text())
    (folder / "explanation.json").write_text(json.dumps(_sealed(info | {"run": run})))
    out = tmp_path / "a" / "b" / "out"
    assert cli.main(["figures", str(out), "--explain", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"failed: {folder}" in err and "not a file name in" in err
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pdf", ".png")]


def test_per_class_figures_of_runs_validated_on_other_scenes_carry_their_set(inputs, tmp_path):
    """R13: runs validated on other scene sets: the per-class F1 legend names each run with its set
    as table_runs labels it ("a (A)"), its title says to compare within one set, and the class
    support has a bar group per set ("scored scenes A", "scored scenes B"), not the first run's
    alone; runs of one set keep their plain labels."""
    source = next(inputs["runs"].glob("*/evaluation.json"))
    doc = json.loads(source.read_text())
    for folder, scenes in (("mixed", {"a": ["20180101T000000_dmi"], "b": ["20180101T000000_dmi"],
                                      "c": ["20190101T000000_cis", "20190102T000000_cis"]}),
                           ("one", {"a": ["20180101T000000_dmi"], "b": ["20180101T000000_dmi"]})):
        for name, val in scenes.items():
            shutil.copytree(source.parent, tmp_path / folder / name)
            (tmp_path / folder / name / "evaluation.json").write_text(
                json.dumps(_sealed(doc | {"info": {**doc["info"], "val_scenes": val}})))
        assert cli.main(["figures", str(tmp_path / folder), str(tmp_path / f"out_{folder}")]) == 0
    f1, support = (pdf_text(tmp_path / "out_mixed" / f"{stem}.pdf") for stem in ("fig_per_class_f1",
                                                                                   "fig_class_support"))
    assert all(label in f1 for label in ("a (A)", "b (A)", "c (B)", "compare bars within one set only")), f1
    assert "scored scenes A" in support and "scored scenes B" in support, support
    f1, support = (pdf_text(tmp_path / "out_one" / f"{stem}.pdf") for stem in ("fig_per_class_f1",
                                                                                 "fig_class_support"))
    assert "(A)" not in f1 and "one set" not in f1 and "scored scenes" in support and "scenes A" not in support


def test_a_call_stopped_midway_leaves_a_record_that_says_so_and_the_next_sets_its_files_aside(
        inputs, tmp_path, monkeypatch):
    """R15: from before its first file, a call's figures.json says it is drawing (its inputs, no files),
    so a call stopped midway (killed, out of memory) never leaves the last call's record over a
    folder that mixes both calls' files; the next call sets the stopped call's files aside (named as
    such) and its own record, written last, lists what it made."""
    runs_x, runs_m, out = tmp_path / "x", tmp_path / "m", tmp_path / "out"
    shutil.copytree(inputs["runs"], runs_m)
    shutil.copytree(inputs["runs"] / "unet", runs_x / "unet")
    figures.make_figures(runs_x, out)
    recorded = json.loads((out / figures.MANIFEST).read_text())["files"]
    seen = {}

    def stopped(*args, **kwargs):  # the call dies once it has drawn the confusions and the runs' table
        seen.update(json.loads((out / figures.MANIFEST).read_text()))
        raise MemoryError("stopped here")

    with monkeypatch.context() as patched:
        patched.setattr(figures.scores, "per_class_f1_figure", stopped)
        with pytest.raises(MemoryError):
            figures.make_figures(runs_m, out)
    assert "tsvit_v3" in (out / "table_runs.csv").read_text()  # the stopped call's table is there ...
    left = json.loads((out / figures.MANIFEST).read_text())
    assert left == seen  # ... and the record it wrote before drawing, never the last call's
    assert "drawing" in left and "files" not in left and left["inputs"]["runs_dir"] == str(runs_m)
    assert left["last_files"] == recorded
    notes = []
    written = figures.make_figures(runs_x, out, walk=Walk("inputs", report=notes.append))
    assert sorted(p.name for p in (out / "unrecorded-1").iterdir()) == ["fig_confusion_tsvit_v3.pdf",
                                                                       "fig_confusion_tsvit_v3.png"]
    assert any("records a call stopped before it finished" in n and "unrecorded-1" in n for n in notes), notes
    final = json.loads((out / figures.MANIFEST).read_text())
    assert "drawing" not in final and final["inputs"]["runs_dir"] == str(runs_x)
    assert sorted(final["files"]) == sorted(recorded) == sorted(p.name for p in written)
    assert "tsvit_v3" not in (out / "table_runs.csv").read_text()


def test_a_benchmark_json_not_as_its_benchmark_wrote_it_is_named_and_left_out(inputs, tmp_path, capsys):
    """R9: a benchmark JSON of the right shape that records no made_by or content_sha256 (hand-made, or
    written before benchmarks recorded them) or was edited since (a number changed, its hash kept)
    is named and left out of the throughput figure and table, exit 1; one reformatted (the same
    values) is drawn."""
    loader, train = (_benchmark(inputs["bench"] / f"{name}.json") for name in ("loader", "train"))
    cases = {"handmade": (json.dumps(loader | {"ours_samples_per_s": 99999.0}), "records no made_by or content_sha256"),
             "edited": (json.dumps(json.loads((inputs["bench"] / "loader.json").read_text())
                                   | {"ours_samples_per_s": 99999.0}), "edited since it was written"),
             "no hash": (json.dumps({k: v for k, v in json.loads((inputs["bench"] / "loader.json").read_text()).items()
                                     if k != "content_sha256"} | {"ours_samples_per_s": 99999.0}),
                         "records no content_sha256")}
    for case, (text, problem) in cases.items():
        bench, out = tmp_path / case / "bench", tmp_path / case / "out"
        bench.mkdir(parents=True)
        (bench / "loader.json").write_text(text)
        throughput.write_benchmark(bench / "train.json", train)
        assert cli.main(["figures", str(out), "--bench", str(bench)]) == 1, case
        err = capsys.readouterr().err
        assert f"failed: {bench / 'loader.json'}: {problem}" in err and "Traceback" not in err, err
        table = (out / "table_throughput.csv").read_text()
        assert "99999" not in table and "loader" not in table and "training step" in table
    bench = tmp_path / "reformatted"
    shutil.copytree(inputs["bench"], bench)
    (bench / "loader.json").write_text(json.dumps(json.loads((bench / "loader.json").read_text()), indent=4))
    assert cli.main(["figures", str(tmp_path / "out"), "--bench", str(bench)]) == 0
    assert "patch store,88.2" in (tmp_path / "out" / "table_throughput.csv").read_text()


def test_comparison_tables_without_rows_keep_their_columns(tmp_path):
    """RT15-R10: an experiment with no pair formed yet wrote a one-byte CSV that pandas cannot read;
    the tables are written with their header and read back empty."""
    from seaice_lib.figures import scores

    written = scores.comparison_tables({"summary": {"runs": {}, "differences": []}}, tmp_path, "tiny")
    tables = {p.stem: pd.read_csv(p) for p in written if p.suffix == ".csv"}
    assert list(tables["table_paired_differences_tiny"].columns) == ["question", "difference", "mean", "sd", "a > b"]
    assert list(tables["table_model_comparison_tiny"].columns) == ["run", "combined", "SIC", "SOD", "FLOE", "sd", "n"]
    assert all(table.empty for table in tables.values())


def test_matplotlib_s_missing_default_font_notices_are_not_passed_on(caplog):
    """RT16-R13: `seaice figures` printed matplotlib's raw "findfont: Font family ['STIXGeneral'] not
    found" lines (mathtext's own defaults, not installed here; DejaVu Sans stands in)."""
    import logging
    import uuid

    from seaice_lib.figures import style

    style.pyplot()
    from matplotlib import font_manager

    with caplog.at_level(logging.DEBUG, logger="root"):  # a family no earlier lookup cached
        found = font_manager.findfont(font_manager.FontProperties(family=f"STIX {uuid.uuid4().hex}"))
    assert "DejaVuSans" in found and "findfont" not in caplog.text
