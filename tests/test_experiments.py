"""Experiments: the file and the jobs it expands to, region folds, learning curves and the stopping
rule, skip-finished and retry-failed through `seaice batch`, the aggregation worked by hand."""

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib.image
import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
import yaml
import zarr

from seaice_lib import batch, cli, experiments, jsondoc, synthetic
from seaice_lib.atomic import folder_lock
from seaice_lib.data import splits
from seaice_lib.data.scene import find_scenes
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.curves import convergence, curve_scores
from seaice_lib.engine.run import load_model
from seaice_lib.engine.training import lr_factor, train
from seaice_lib.engine.whole_scenes import evaluate_scenes
from seaice_lib.experiments import report
from seaice_lib.experiments.cli import REPORT_LOCK
from seaice_lib.figures import experiment as experiment_figures
from tests.experiment_files import (
    curve_point,
    edit_results,
    job_result,
    list_unhashed,
    write_experiment,
    write_job_result,
    write_probe,
    write_results,
)
from tests.scene_edits import copy_scenes, edit_variable

# ---- folds ---------------------------------------------------------------------------------------

def test_folds_deal_regions_in_a_serpentine_ordered_by_new_and_young_ice(monkeypatch):
    # per region: pixels of SOD new (1) and young (2) ice, one scene each but E (two scenes)
    rare = {"A": 50, "B": 40, "C": 30, "D": 20, "E": 0, "F": 0, "G": 10}
    table = {}
    for k, (region, n) in enumerate(rare.items()):
        for extra in range(2 if region == "E" else 1):
            table[f"2019010{k}T00000{extra}_dmi"] = {"region": region, "service": "dmi",
                                                    "sod": [100, n // 2, n - n // 2, 0, 0, 0]}
    monkeypatch.setattr(splits, "scene_table", lambda store: table)
    folds = splits.region_folds("store", k=3, require=[1, 2])
    # order A B C D G E F (E before F: more scenes); dealt 0 1 2 2 1 0 0
    assert [f.held_out for f in folds] == [("A", "E", "F"), ("B", "G"), ("C", "D")]
    # inner: the first of each fold's training regions in that order ([B C D G], [A C D E F],
    # [A B G E F]), or with "median" the middle one (index len // 2)
    assert [f.inner for f in folds] == ["B", "A", "A"]
    median = splits.region_folds("store", k=3, require=[1, 2], inner="median")
    assert [f.inner for f in median] == ["D", "D", "G"]
    assert sorted(folds[0].val) == sorted(s for s, r in table.items() if r["region"] in "AEF")
    assert not set(folds[1].train) & set(folds[1].val + folds[1].inner_scenes)


def test_folds_name_what_is_wrong(monkeypatch):
    table = {"20190101T000000_dmi": {"region": "A", "service": "dmi", "sod": [1, 5, 0, 0, 0, 0]},
             "20190102T000000_cis": {"region": "B", "service": "cis", "sod": [1, 0, 0, 0, 0, 0]},
             "20190103T000000_cis": {"region": "C", "service": "cis", "sod": [1, 0, 0, 0, 0, 0]}}
    monkeypatch.setattr(splits, "scene_table", lambda store: table)
    with pytest.raises(ValueError, match=r"fold 0: the held-out regions \['B'\] hold no labelled pixel of SOD class 1"):
        splits.region_folds("s", held_out=[["B"]], require=[1])
    with pytest.raises(ValueError, match=r"fold 0: the store has no region \['Z'\]"):
        splits.region_folds("s", held_out=[["Z"]])
    with pytest.raises(ValueError, match="inner validation region 'A' is not one of its training regions"):
        splits.region_folds("s", held_out=[["A"]], inner=["A"])
    with pytest.raises(ValueError, match="fewer than two regions"):
        splits.region_folds("s", held_out=[["A", "B"]])
    with pytest.raises(ValueError, match="folds.k must be in 2..3"):
        splits.region_folds("s", k=4)
    # by service: the held-out service's scenes, the inner a region of the other
    folds = splits.region_folds("s", held_out=[["dmi"]], by="service", inner=["B"])
    assert folds[0].val == ["20190101T000000_dmi"] and folds[0].inner_scenes == ["20190102T000000_cis"]
    assert folds[0].train == ["20190103T000000_cis"]


def test_regions_come_from_original_id_and_services_from_scene_ids(four_regions):
    scenes, store = four_regions
    table = splits.scene_table(store)
    for path in find_scenes(scenes):
        with xr.open_dataset(path) as ds:
            original, service = ds.attrs["original_id"], ds.attrs["ice_service"]
        row = table[path.name[:19]]
        # the raw name's region: DMI ..._icechart_dmi_<time>_<Region>_..., CIS ..._icechart_cis_<Region>_...
        after = original.split("_icechart_")[1].split("_")
        assert row["region"] == (after[2] if after[0] == "dmi" else after[1])
        assert row["service"] == service
    assert sorted({r["region"] for r in table.values()}) == sorted(s.name for s in synthetic.REGION_CATALOGUE[:4])


# ---- the file and its jobs -------------------------------------------------------------------------

def test_the_file_expands_to_floors_then_runs_over_folds_and_seeds(four_regions, tmp_path):
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    jobs = exp.jobs()
    assert [j.name for j in jobs] == (
        ["floors_fold0_seed1", "floors_fold0_seed2", "floors_fold1_seed1", "floors_fold1_seed2"]
        + [f"{run}_fold{f}_seed{s}" for run in ("unet_sar", "tsvit_v1") for f in (0, 1) for s in (1, 2)])
    assert [j.name for j in exp.jobs(["tsvit_v1", "floors"], folds=[1], seeds=[2])] == ["floors_fold1_seed2",
                                                                                         "tsvit_v1_fold1_seed2"]
    assert [j.name for j in exp.jobs(["tsvit_v1"], seeds=[2])] == ["tsvit_v1_fold0_seed2", "tsvit_v1_fold1_seed2"]
    assert [j.name for j in exp.jobs(["floors"], folds=[0])] == ["floors_fold0_seed1", "floors_fold0_seed2"]
    assert exp.curve_steps("unet_sar") == [2, 4, 6] and exp.curve_steps("tsvit_v1") == [2, 4]
    cfg = exp.train_config(jobs[-1], tmp_path / "out")
    fold = exp.fold(1)
    assert (cfg.model, cfg.steps, cfg.seed, cfg.curve_steps) == ("tsvit_v1", 4, 2, [2, 4])
    assert fold.held_out == ("SGRDINFLD",) and cfg.val_scenes == fold.val
    assert cfg.inner_scenes == fold.inner_scenes and cfg.train_scenes == fold.train
    assert cfg.converge_min_gain == 0.5 and cfg.schedule == "constant" and cfg.scenes_dir == str(four_regions[0])
    # a key per definition: another seed, another run, another training entry -> another key
    keys = {exp.key(j) for j in jobs}
    assert len(keys) == len(jobs)
    changed = experiments.load(write_experiment(tmp_path / "f.yaml", *four_regions,
                                                training={**yaml.safe_load((tmp_path / "e.yaml").read_text())
                                                          ["training"], "lr": 3e-3}))
    assert changed.key(jobs[-1]) != exp.key(jobs[-1]) and changed.key(jobs[0]) == exp.key(jobs[0])


@pytest.mark.parametrize("change, message", [
    ({"typo": 1}, r"unknown entries \['typo'\]"),
    ({"seeds": [1, 1]}, "seeds must be a non-empty list of distinct integers"),
    ({"training": {"steps": 5}}, r"training: \['steps'\] are set per job"),
    ({"runs": {"x": {"model": "resnet", "steps": 4}}}, r"runs.x: model 'resnet' is not one of"),
    ({"runs": {"x": {"model": "unet", "steps": 4, "floor": "amsr2"}}}, "floor 'amsr2' is not one of floors.sets"),
    ({"runs": {"x": {"model": "unet", "steps": 4, "training": {"lr": -1}}}}, r"\(run x\): lr must be in \(0, 10\]"),
    ({"compare": [["q", "tsvit_v9", "unet_sar"]]}, r"compare 'q': no run \['tsvit_v9'\]"),
    ({"compare": [["q", "unet_sar", "unet_sar"]]}, "unet_sar minus itself"),
    ({"compare": [["q", "unet_sar", "tsvit_v1"], ["q", "tsvit_v1", "unet_sar"]]}, "the question 'q' is asked twice"),
    ({"curve": {"first": 0}}, "curve.first must be a step >= 1"),
    ({"floors": {"sets": {"radar": "x"}}}, r"floors.sets: no feature set \['radar'\]"),
    ({"runs": {"x": {"model": "unet", "steps": 2}}}, "steps 2 leave one curve point"),
    ({"runs": {"x": {"model": "unet", "steps": 4, "model_kwargs": {"nonsense": 1}}}}, "runs.x: model_kwargs .* refuses"),
    ({"runs": {"x": {"model": "unet", "steps": 4, "model_kwargs": {"grid2km": "no"}}}}, "grid2km must be true or false"),
    ({"curve": {"first": 2, "patience": 0}}, "curve.patience must be a whole number of curve points >= 1"),
    ({"curve": {"first": 2, "min_gain": -1}}, "curve.min_gain must be a number of points >= 0"),
    ({"floors": {"sets": {"sar": "SAR"}, "settings": {"nonsense": 1}}}, r"floors.settings: unknown entries \['nonsense'\]"),
    ({"floors": {"sets": {"sar": "SAR"}, "settings": {"max_iter": -1}}}, "floors.settings.max_iter must be a whole number >= 1"),
    # RT19-R13, RT21-R8: the report's inputs column is the label: it says what the model reads, in fixed words
    ({"runs": {"x": {"model": "unet", "model_kwargs": {"grid2km": False}, "inputs": "SAR + AMSR2", "steps": 4}}},
     r"runs.x: inputs 'SAR \+ AMSR2': the model reads 'SAR'; write that, or leave inputs out$"),
    ({"runs": {"x": {"model": "unet", "model_kwargs": {"steps": 3}, "inputs": "SAR", "steps": 4}}},
     r"inputs 'SAR': the model reads 'SAR sequence \+ AMSR2/ERA5'"),
    ({"runs": {"x": {"model": "tsvit_v1", "inputs": "SAR sequence", "steps": 4}}},
     "inputs 'SAR sequence': the model reads 'SAR'"),
    ({"runs": {"x": {"model": "tsvit_v3", "inputs": "SAR sequence + AMSR2/ERA5", "steps": 4,
                     "training": {"modalities": ["sar", "amsr2"]}}}},
     r"inputs 'SAR sequence \+ AMSR2/ERA5': the model reads 'SAR sequence \+ AMSR2'"),
    ({"runs": {"x": {"model": "unet", "inputs": "multi-temporal SAR + AMSR2/ERA5", "steps": 4}}},
     r"the model reads 'SAR \+ AMSR2/ERA5'"),
    ({"runs": {"x": {"model": "unet", "model_kwargs": {"grid2km": False}, "inputs": "SAR + passive microwave",
                     "steps": 4}}}, "the model reads 'SAR'"),
])
def test_mistakes_in_the_file_name_the_entry(four_regions, tmp_path, change, message):
    path = write_experiment(tmp_path / "e.yaml", *four_regions, **change)
    with pytest.raises(ValueError, match=message) as err:
        experiments.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_shipped_experiment_files_are_valid(path):
    exp = experiments.load(path)
    assert exp.runs and exp.seeds
    # a comparison names its floors and says what it compares; a study of levers (no floors) need not
    assert all(run.floor in exp.floor_sets for run in exp.runs.values()) if exp.floor_sets else exp.compare == []
    assert exp.compare or not exp.floor_sets


def test_a_run_without_inputs_is_labelled_by_what_its_model_reads(four_regions, tmp_path):
    """RT21-R8: the label is derived where the file leaves it out (and checked where it gives it)."""
    path = write_experiment(tmp_path / "e.yaml", *four_regions, runs={
        "fusion": {"model": "unet", "steps": 4}, "sar": {"model": "unet", "model_kwargs": {"grid2km": False}, "steps": 4},
        "stacked": {"model": "unet", "model_kwargs": {"steps": 3}, "steps": 4},
        "v2": {"model": "tsvit_v2", "steps": 4}, "v3_amsr2": {"model": "tsvit_v3", "steps": 4,
                                                            "training": {"modalities": ["sar", "amsr2"]}}}, compare=[])
    assert {name: run.inputs for name, run in experiments.load(path).runs.items()} == {
        "fusion": "SAR + AMSR2/ERA5", "sar": "SAR", "stacked": "SAR sequence + AMSR2/ERA5", "v2": "SAR sequence",
        "v3_amsr2": "SAR sequence + AMSR2"}


def test_the_command_line_refuses_a_missing_store_or_run_in_one_line(four_regions, tmp_path, capsys):
    scenes, _ = four_regions
    path = write_experiment(tmp_path / "e.yaml", scenes, tmp_path / "nowhere.zarr")
    assert _exit_code(["experiment", "folds", str(path)]) == 2
    assert "no such patch store" in capsys.readouterr().err
    store = four_regions[1]
    path = write_experiment(tmp_path / "e.yaml", tmp_path / "nope", store)  # RT17-R5: results would count as its
    for command in ("folds", "status", "report"):                             # scenes' without a word
        assert _exit_code(["experiment", command, str(path)]) == 2
        assert f"scenes {tmp_path / 'nope'}: no such folder of scenes" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    for scenes in (tmp_path / "empty", store):  # RT18-R16: an empty folder, the store itself
        path = write_experiment(tmp_path / "e.yaml", scenes, store)
        for command in ("folds", "status", "report"):
            assert _exit_code(["experiment", command, str(path)]) == 2
            assert f"scenes {scenes}: no *_prep.nc scenes there" in capsys.readouterr().err
    path = write_experiment(tmp_path / "e.yaml", *four_regions)
    assert _exit_code(["experiment", "run", str(path), "--only", "tsvit_v9"]) == 2
    assert "no run ['tsvit_v9']" in capsys.readouterr().err
    assert _exit_code(["experiment", "run", str(tmp_path / "missing.yaml")]) == 2
    assert _exit_code(["experiment", "run", str(path), "--folds", "0", "--folds", "9"]) == 2  # repeated: adds up
    assert "no fold [9]" in capsys.readouterr().err
    folds = yaml.safe_load(path.read_text())["folds"]
    for use in ([0, 0], []):
        path = write_experiment(tmp_path / "e.yaml", *four_regions, folds={**folds, "use": use})
        assert _exit_code(["experiment", "status", str(path)]) == 2
        assert "folds.use must be a non-empty list of distinct folds" in capsys.readouterr().err


def test_a_job_is_started_only_in_a_folder_of_its_own(four_regions, tmp_path):
    """RT18-R14: notebook 04 wrote job.json into a folder of scenes (or another job's run) before the
    training refused it; start_job refuses first and writes nothing."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    first, second = [j for j in exp.jobs() if j.kind == "train"][:2]
    scenes = four_regions[0]
    with pytest.raises(ValueError, match=f"out_dir {scenes}: a folder of scenes, not a folder of job {first.name}"):
        experiments.start_job(exp, first, scenes)
    assert not (scenes / experiments.JOB_FILE).exists()
    experiments.start_job(exp, first, tmp_path / "a")
    experiments.start_job(exp, first, tmp_path / "a")  # its own folder, again
    with pytest.raises(ValueError, match=f"the folder of job {first.name} .*, not of {second.name}"):
        experiments.start_job(exp, second, tmp_path / "a")
    assert json.loads((tmp_path / "a" / experiments.JOB_FILE).read_text())["job"] == first.name


def _exit_code(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


# ---- learning curves and the stopping rule -----------------------------------------------------------

def test_lr_schedules_by_hand():
    # warmup 4 steps: 0.25, 0.5, 0.75, 1; then inverse_sqrt(4 / step), floored at min_lr_ratio
    assert [lr_factor(s, 4, 100, 0.3, "inverse_sqrt") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(16, 4, 100, 0.3, "inverse_sqrt") == pytest.approx(0.5)
    assert lr_factor(100, 4, 100, 0.3, "inverse_sqrt") == pytest.approx(0.3)  # sqrt(4/100) = 0.2 < 0.3
    assert lr_factor(99, 4, 100, 0.01, "constant") == 1.0
    assert lr_factor(52, 4, 100, 0.0, "cosine") == pytest.approx(0.5)  # half way through the cosine


def test_the_stopping_rule_reads_only_the_inner_scores_by_hand():
    def rows(inner, val=None):
        return [{"step": 100 * 2 ** k, "inner_combined": s, "val_combined": (val or inner)[k]}
                for k, s in enumerate(inner)]

    # 60 at 200; then 60.4 (+0.4 < 0.5) and 59 -> two points without a 0.5 rise: converged; the budget is
    # the last step within 0.5 of the best (60.4): 400 (60.4), not 800 (59)
    assert convergence(rows([50, 60, 60.4, 59]), 0.5, 2) == (400, True)
    assert convergence(rows([50, 60, 60.4]), 0.5, 2) == (400, False)  # one point only
    assert convergence(rows([50, 60, 60.4, 61.0]), 0.5, 2) == (800, False)  # 61 >= 60 + 0.5 resets
    assert convergence(rows([50, 60, 59.8, 59.6]), 0.5, 2) == (800, True)  # a plateau within 0.5: its end
    assert convergence(rows([50, 60, 60.4, 59], val=[0, 0, 0, 99]), 0.5, 2) == (400, True)  # val never read
    assert convergence([], 0.5, 2) == (None, False)
    assert convergence(rows([50, 60, 60.4, 59, 70]), 0.5, 2) == (400, True)  # it ended at 800: 70 is not read
    # a deep dip is not a plateau: 73.4, then 48.4 and 66.1 (the SAR-sequence U-Net, fold 0, seed 2) stopped
    # the run without max_dip; with max_dip 3 it goes on until its last two points lie within 3 of the best
    dip = [58.7, 67.2, 73.4, 48.4, 66.1]
    assert convergence(rows(dip), 0.5, 2) == (400, True)
    assert convergence(rows(dip), 0.5, 2, max_dip=3) == (400, False)
    assert convergence(rows(dip + [73.0]), 0.5, 2, max_dip=3) == (3200, False)  # 66.1 is 7.3 under 73.4
    assert convergence(rows(dip + [73.0, 72.0]), 0.5, 2, max_dip=3) == (3200, True)  # budget: 73.0 within 0.5
    assert convergence(rows(dip + [73.0, 70.0]), 0.5, 2, max_dip=3) == (3200, False)  # 70.0 is 3.4 under


@pytest.fixture(scope="module")
def split(four_regions):
    folds = splits.region_folds(four_regions[1], held_out=[["SouthEast"]])
    return folds[0]


def _curve_cfg(four_regions, split, out_dir, **extra):
    scenes, store = four_regions
    base = dict(store=str(store), out_dir=str(out_dir), model="unet", model_size="tiny", batch_size=4,
                steps=6, steps_per_epoch=3, warmup_steps=2, lr=1e-2, checkpoint_every=0, augment=False,
                balance_power=0.0, eval_batch_size=64, device="cpu", progress=False, schedule="constant",
                train_scenes=split.train, val_scenes=split.val, inner_scenes=split.inner_scenes,
                curve_steps=[2, 4, 6])
    return TrainConfig(**(base | extra))


def _curve(run_dir):
    with (run_dir / "curve.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_curve_scores_each_step_s_weights_on_the_whole_held_out_and_inner_scenes(four_regions, split, tmp_path):
    scenes, store = four_regions
    summary = train(_curve_cfg(four_regions, split, tmp_path / "run"))
    rows = _curve(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    cpu = [float(r["train_cpu_s"]) for r in rows]
    assert 0 < cpu[0] < cpu[1] < cpu[2] and summary["train_cpu_seconds"] == pytest.approx(cpu[2], abs=1e-3)
    for row in rows:  # the row is that step's model on those scenes: scored again from its saved weights
        model = load_model(tmp_path / "run" / "curve" / f"step_{int(row['step']):06d}.pt")
        for prefix, ids in (("val", split.val), ("inner", split.inner_scenes)):
            paths = [p for p in find_scenes(scenes) if p.name[:19] in ids]
            again = curve_scores(evaluate_scenes(model, paths, scenes, store, batch_size=64))
            assert {k: float(row[f"{prefix}_{k}"]) for k in again} == pytest.approx(again, nan_ok=True)
    # the final evaluation is the last curve point's, not a second scoring
    final = json.loads((tmp_path / "run" / "evaluation.json").read_text())["scores"]
    assert final["combined"] == pytest.approx(float(rows[-1]["val_combined"]))


def test_a_resumed_run_has_the_uninterrupted_curve(four_regions, split, tmp_path):
    train(_curve_cfg(four_regions, split, tmp_path / "whole"))
    stopped = train(_curve_cfg(four_regions, split, tmp_path / "resumed", time_budget_s=1e-9, checkpoint_every=1))
    assert stopped["status"] == "time_budget" and stopped["steps"] == 1
    train(_curve_cfg(four_regions, split, tmp_path / "resumed", checkpoint_every=1))
    scores = [{k: v for k, v in r.items() if not k.startswith("train_")} for r in _curve(tmp_path / "whole")]
    assert [{k: v for k, v in r.items() if not k.startswith("train_")} for r in _curve(tmp_path / "resumed")] == scores


def test_a_run_does_not_resume_after_an_inner_scene_changed_but_a_checkpoint_from_before_inner_hashes_does(
        four_regions, split, tmp_path):
    """The inner scenes' scores decide where a run stops and are kept in its curve: a checkpoint
    covers their scene groups too, so a resume after one was delivered again and cut again is
    refused. A checkpoint written before it recorded ``inner_scenes`` (its hash of the split's
    groups only) still resumes on the same store."""
    from seaice_lib.data import patches
    from seaice_lib.data.store import store_groups_sha256
    from seaice_lib.engine import checkpoints

    scenes, store = tmp_path / "scenes", tmp_path / "patches.zarr"
    shutil.copytree(four_regions[0], scenes)
    shutil.copytree(four_regions[1], store)
    cfg = _curve_cfg((scenes, store), split, tmp_path / "run", checkpoint_every=1, scenes_dir=str(scenes))
    assert train(dataclasses.replace(cfg, time_budget_s=1e-9))["steps"] == 1
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    doc = torch.load(last, weights_only=False)
    assert doc["data"]["inner_scenes"] == split.inner_scenes
    older = doc | {"data": {k: v for k, v in doc["data"].items() if k != "inner_scenes"}
                   | {"groups_sha256": store_groups_sha256(store, split.train + split.val)}}
    checkpoints.save(older, last)
    assert train(dataclasses.replace(cfg, time_budget_s=1e-9, steps=6))["steps"] == 2  # resumed: one step more
    checkpoints.save(doc, tmp_path / "run" / "checkpoints" / "last.pt")
    edit_variable(scenes / f"{split.inner_scenes[0]}_prep.nc", "nersc_sar_primary", lambda v: v.__iadd__(0.01))
    assert split.inner_scenes[0] in patches.extract_store(scenes, store, patches.config_from_store(store),
                                                          progress=False)["again"]
    with pytest.raises(ValueError, match="cannot resume, the store .* changed since the checkpoint \\(scene groups "
                                         "cut again from changed input files\\)"):
        train(cfg)


def test_a_larger_budget_continues_a_finished_run_as_if_it_had_it_from_the_start(four_regions, split, tmp_path):
    whole = train(_curve_cfg(four_regions, split, tmp_path / "whole"))
    short = train(_curve_cfg(four_regions, split, tmp_path / "grown", steps=4, curve_steps=[2, 4]))
    assert short["status"] == "completed" and short["steps"] == 4
    grown = train(_curve_cfg(four_regions, split, tmp_path / "grown"))
    assert grown["steps"] == 6
    scores = [{k: v for k, v in r.items() if not k.startswith("train_")} for r in _curve(tmp_path / "whole")]
    assert [{k: v for k, v in r.items() if not k.startswith("train_")} for r in _curve(tmp_path / "grown")] == scores
    a, b = (torch.load(run / "model.pt", weights_only=True)["model"] for run in (tmp_path / "whole", tmp_path / "grown"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert grown["scores"] == whole["scores"]


@pytest.mark.parametrize("first, then, message", [
    ({"schedule": "cosine"}, {"schedule": "cosine"}, "differs from the checkpoint's in steps"),  # its LR depends on steps
    ({}, {"curve_steps": [3, 6]}, "differs from the checkpoint's in steps: 4 -> 6; curve_steps"),  # the curve so far differs
    ({}, {"lr": 5e-3}, "lr: 0.01 -> 0.005"),
])
def test_only_a_larger_budget_under_a_length_free_schedule_continues(four_regions, split, tmp_path, first, then,
                                                                      message):
    train(_curve_cfg(four_regions, split, tmp_path / "run", steps=4, curve_steps=[2, 4], **first))
    with pytest.raises(ValueError, match=message):
        train(_curve_cfg(four_regions, split, tmp_path / "run", **(first | then)))


def test_a_run_stops_when_the_inner_score_stops_rising(four_regions, split, tmp_path):
    # a gain of 1000 points is never reached: after `patience` = 1 point past the first, converged
    cfg = _curve_cfg(four_regions, split, tmp_path / "run", converge_min_gain=1000.0, converge_patience=1)
    summary = train(cfg)
    rows = _curve(tmp_path / "run")
    assert summary["status"] == "converged" and summary["steps"] == 4 and [int(r["step"]) for r in rows] == [2, 4]
    # within 1000 points of the best, every step is: the budget is the last one
    assert summary["converged_step"] == 4
    assert (tmp_path / "run" / "model.pt").exists()
    assert train(cfg)["status"] == "converged" and len(_curve(tmp_path / "run")) == 2  # asked again: ends at once
    # the rule decides where a run ends, not its steps: under a more patient one the same run continues
    # from its checkpoint, its curve so far kept
    rows = _curve(tmp_path / "run")
    summary = train(dataclasses.replace(cfg, converge_patience=2))
    again = _curve(tmp_path / "run")
    assert [int(r["step"]) for r in again] == [2, 4, 6] and again[:2] == rows
    assert summary["status"] == "converged" and summary["steps"] == 6


@pytest.mark.parametrize("extra, message", [
    ({"curve_steps": [4, 2]}, "curve_steps must be increasing"),
    ({"curve_steps": [7]}, r"curve_steps must be increasing steps in 1..steps \(6\)"),
    ({"converge_min_gain": 0.5, "inner_scenes": None, "curve_steps": [2, 4]}, "converge_min_gain reads the inner"),
])
def test_curve_settings_are_checked(four_regions, split, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        _curve_cfg(four_regions, split, tmp_path, **extra)
    with pytest.raises(ValueError, match="inner_scenes and val_scenes share"):
        _curve_cfg(four_regions, split, tmp_path, inner_scenes=split.val[:1])


# ---- the aggregation, worked by hand ------------------------------------------------------------------

def test_the_table_differences_and_cpu_to_the_floor_worked_by_hand(four_regions, tmp_path):
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    floor = {(0, 1): 50.0, (0, 2): 52.0, (1, 1): 40.0, (1, 2): 44.0}
    unet = {(0, 1): (60.0, 2), (0, 2): (55.0, 4), (1, 1): (50.0, 6), (1, 2): (42.0, 4)}  # (score at budget, budget)
    v1 = {(0, 1): 61.0, (0, 2): 50.0, (1, 1): 54.0, (1, 2): 45.0}
    for job in exp.jobs():
        cell = (job.fold, job.seed)
        if job.kind == "floors":
            doc = job_result(exp, job, floors={"floor_sar": {"val": {m: floor[cell] for m in report.METRICS},
                                                          "inner": {m: 30.0 for m in report.METRICS},
                                                          "fit_cpu_s": 1.0}})
        elif job.run == "unet_sar":
            score, budget = unet[cell]
            # inner 40 at the budget and 30 elsewhere, so the rule picks it; held-out 10 below the
            # budget's score elsewhere; CPU 10 s per curve point
            curve = [curve_point(s, 10.0 * k, score if s == budget else score - 10, 40.0 if s == budget else 30.0)
                     for k, s in enumerate((2, 4, 6), 1)]
            doc = job_result(exp, job, curve)
        else:
            curve = [curve_point(2, 5.0, v1[cell] - 1, 20.0), curve_point(4, 9.0, v1[cell], 31.0)]
            doc = job_result(exp, job, curve)
        write_job_result(exp, job, doc)
    doc = report.aggregate(exp)
    assert doc["missing"] == []
    runs = doc["summary"]["runs"]
    # U-Net at its budgets: 60, 55, 50, 42 -> mean 51.75, sd sqrt(((8.25)^2 + 3.25^2 + 1.75^2 + 9.75^2) / 3)
    assert runs["unet_sar"]["combined"]["mean"] == 51.75
    assert runs["unet_sar"]["combined"]["std"] == pytest.approx(math.sqrt((8.25**2 + 3.25**2 + 1.75**2 + 9.75**2) / 3),
                                                                abs=0.005)
    assert (runs["unet_sar"]["combined"]["min"], runs["unet_sar"]["combined"]["max"]) == (42.0, 60.0)
    # converged: only where the budget is step 2 (two points without a rise after it)
    assert runs["unet_sar"]["steps"] == [2, 4, 6] and runs["unet_sar"]["converged"] == 1
    # CPU s at the budget: 10, 20, 30, 20 -> mean 20
    assert runs["unet_sar"]["train_cpu_s"]["mean"] == 20.0
    # first point above the floor: (0,1) 60 > 50 at step 2 (10 s); (0,2) 45, 55 -> 20 s; (1,1) 40, 40, 50 -> 30 s;
    # (1,2) 32, 42, 32: 42 <= 44 never
    assert runs["unet_sar"]["passed_floor"] == 3 and runs["unet_sar"]["cpu_s_to_floor"]["mean"] == 20.0
    (v1_vs_unet, unet_floor) = doc["summary"]["differences"]
    # v1 - U-Net per cell (fold, seed) in order (0,1) (0,2) (1,1) (1,2): 1, -5, 4, 3
    assert v1_vs_unet["combined"]["values"] == [1.0, -5.0, 4.0, 3.0] and v1_vs_unet["combined"]["positive"] == 3
    assert v1_vs_unet["combined"]["mean"] == 0.75
    assert unet_floor["combined"]["values"] == [10.0, 3.0, 10.0, -2.0]
    assert runs["floor_sar"]["combined"]["mean"] == 46.5
    text = report.markdown(doc)
    assert "| unet_sar" in text and "+0.8 ± 4.0" in text and "3/4" in text
    # the learning-curve table: fold 0, seed 1 of the U-Net is 60, 50, 50 held-out and 40, 30, 30
    # inner at steps 2, 4, 6, 30 CPU s at step 6; falls 10 and 10
    curves = [[c.strip() for c in line.strip("|").split("|")] for line in report.curve_table(doc["results"]).splitlines()]
    assert curves[0][3:] == ["CPU s / step", "largest fall", "2", "4", "6"]
    assert ["unet_sar", "0", "1", "5.00", "10.0 / 10.0", "60.0 / 40.0", "50.0 / 30.0", "50.0 / 30.0"] in curves
    # tsvit_v1 (1, 2): 44 / 20 at step 2, 45 / 31 at step 4 (9 s): it never falls, and has no step 6
    assert ["tsvit_v1", "1", "2", "2.25", "0.0 / 0.0", "44.0 / 20.0", "45.0 / 31.0", ""] in curves
    # the figures of the same document
    written = experiment_figures.experiment_figures(doc, tmp_path / "figures", "tiny")
    png = tmp_path / "figures" / "fig_learning_curves_tiny.png"
    assert png in written and (tmp_path / "figures" / "fig_comparison_tiny.png") in written
    image = matplotlib.image.imread(png)
    assert image[..., :3].std() > 0.05
    # a stale result (another definition) is not read: change the U-Net's steps
    stale = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, runs={
        **yaml.safe_load((tmp_path / "e.yaml").read_text())["runs"],
        "unet_sar": {"model": "unet", "model_kwargs": {"grid2km": False}, "inputs": "SAR", "floor": "sar", "steps": 8}}))
    again = report.aggregate(stale)
    assert sorted(again["missing"]) == sorted(f"unet_sar_fold{f}_seed{s}" for f in (0, 1) for s in (1, 2))


def test_the_report_names_every_nan_cell_it_leaves_out_of_a_mean(four_regions, tmp_path):
    """NaN is a score (an F1 of a class the scenes lack), but a mean over the finite cells says over
    which: one cell's combined score NaN, and the F1 of new ice NaN in every cell of a run."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)

    def no_new_ice(doc):
        for point in doc["curve"]:
            point.update(val_f1_new=math.nan)

    edits = {"unet_sar_fold0_seed2": lambda d: d["curve"][-1].update(val_combined=math.nan),
             **{f"tsvit_v1_fold{f}_seed{s}": no_new_ice for f in (0, 1) for s in (1, 2)}}
    edit_results(exp, edits)
    doc = report.aggregate(exp)
    assert doc["missing"] == []
    # U-Net at its last step: 60 + seed held-out: 61, NaN, 61, 62
    assert doc["summary"]["runs"]["unet_sar"]["combined"] == {"mean": 61.33, "std": 0.58, "min": 61.0,
                                                              "max": 62.0, "n": 3}
    text = report.markdown(doc)
    left_out = text.split("Left out of the means")[1]
    assert "- unet_sar, combined: NaN in fold 0 seed 2; the mean is over the other 3 of 4" in left_out
    assert "- tsvit_v1 − unet_sar, combined: NaN in fold 0 seed 2; the mean is over the other 3 of 4" in left_out
    assert ("- tsvit_v1, f1_new: NaN in fold 0 seed 1, fold 0 seed 2, fold 1 seed 1, fold 1 seed 2; no mean"
            in left_out)


def test_spread_of_one_value_and_of_none():
    assert report.spread([3.0]) == {"mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0, "n": 1}
    assert report.spread([float("nan")])["n"] == 0


def test_slurm_training_tasks_are_sized_for_the_largest_training_config(four_regions, tmp_path, monkeypatch):
    """With --slurm the training array asks a CPU for the trainer and each loader worker and the
    largest job_mem of its jobs, as train.sbatch is sized; the floors array keeps batch's default."""
    scenes, store = four_regions
    base = yaml.safe_load(write_experiment(tmp_path / "e.yaml", scenes, store).read_text())
    runs = {"unet_sar": {**base["runs"]["unet_sar"], "training": {"num_workers": 3, "job_mem": "900M"}},
            "tsvit_v1": {**base["runs"]["tsvit_v1"], "training": {"num_workers": 1, "job_mem": "2G"}}}
    path = write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], runs=runs, compare=[],
                            folds={"held_out": [["SouthEast"]]})
    calls = []
    monkeypatch.setattr(batch, "main", lambda argv, prog=None: calls.append(argv) or 0)
    assert cli.main(["experiment", "run", str(path), "--runs", str(tmp_path / "runs"), "--slurm"]) == 0
    floors, train = calls
    assert "--cpus-per-task" not in floors and "--mem" not in floors
    assert train[train.index("--cpus-per-task") + 1] == "4" and train[train.index("--mem") + 1] == "2G"


def test_a_submission_sbatch_refuses_is_one_error_line_exit_1(four_regions, tmp_path, monkeypatch, capsys):
    """A fake sbatch (first on PATH, no cluster) refuses the floors' job array: one line, no traceback."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "sbatch: error: Batch job submission failed: Invalid account" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    path = write_experiment(tmp_path / "e.yaml", *four_regions, seeds=[1], folds={"held_out": [["SouthEast"]]},
                            compare=[])
    assert cli.main(["experiment", "run", str(path), "--runs", str(tmp_path / "runs"), "--slurm"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "seaice experiment: error: sbatch refused the job array: sbatch: error: Batch job submission failed: "
        "Invalid account"]


def test_run_moves_aside_a_job_folder_whose_job_json_is_damaged_and_says_so(four_regions, tmp_path, monkeypatch,
                                                                             capsys):
    path = write_experiment(tmp_path / "e.yaml", *four_regions, seeds=[1], folds={"held_out": [["SouthEast"]]},
                            compare=[])
    folder = tmp_path / "runs" / "experiments" / "tiny" / "train" / "unet_sar_fold0_seed1"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text('{"key": ')  # cut short
    monkeypatch.setattr(batch, "main", lambda argv, prog=None: 0)
    cli.main(["experiment", "run", str(path), "--runs", str(tmp_path / "runs"), "--only", "unet_sar"])
    out = capsys.readouterr().out
    assert "unet_sar_fold0_seed1: its folder held a damaged job.json, moved to unet_sar_fold0_seed1.replaced-" in out
    assert not folder.exists()


@pytest.mark.parametrize("part", ["train", "inner_scenes"])
def test_run_moves_aside_a_job_folder_whose_checkpoint_is_of_scene_groups_cut_again_not_of_the_former_identity(
        four_regions, tmp_path, monkeypatch, capsys, part):
    """A training scene, or one of the inner validation whose scores decide where the run stops,
    delivered again and the store cut again (same class totals, so the same job key): the job's
    folder, whose checkpoint training would refuse ("of other data"), is moved aside so that the job
    runs again from step 0, never resumed with the curve's scores of the earlier file. A checkpoint
    of the store's identity now, or of its former one (groups cut before they were hashed, cut again
    into the same patches), stays to resume."""
    from seaice_lib.data import patches
    from seaice_lib.data.store import store_groups_sha256
    from seaice_lib.engine import checkpoints

    scenes, store = tmp_path / "scenes", tmp_path / "patches.zarr"
    shutil.copytree(four_regions[0], scenes)
    shutil.copytree(four_regions[1], store)
    path = write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], folds={"held_out": [["SouthEast"]]},
                            compare=[])
    exp, job = experiments.load(path), experiments.Job("train", "unet_sar", 0, 1)
    fold = exp.fold(0)
    ids = fold.train + fold.val + fold.inner_scenes
    assert fold.inner_scenes
    runs = tmp_path / "runs"
    folder = runs / "experiments" / "tiny" / "train" / job.name
    monkeypatch.setattr(batch, "main", lambda argv, prog=None: 0)  # the job is not run: what is kept is looked at

    def run():
        assert cli.main(["experiment", "run", str(path), "--runs", str(runs), "--only", "unet_sar"]) == 1
        return capsys.readouterr().out

    def checkpointed(groups_sha256):  # the job's folder as a run checkpointed on that store identity left it
        experiments.start_job(exp, job, folder)
        checkpoints.save({"data": {"train_scenes": fold.train, "val_scenes": fold.val,
                                   "inner_scenes": fold.inner_scenes, "train_patches": 9,
                                   "groups_sha256": groups_sha256}}, folder / "checkpoints" / "last.pt")

    checkpointed(store_groups_sha256(store, ids))
    assert "moved" not in run() and folder.is_dir()
    scene = getattr(fold, part)[0]
    edit_variable(scenes / f"{scene}_prep.nc", "nersc_sar_primary", lambda v: v.__iadd__(0.01))  # delivered again
    assert scene in patches.extract_store(scenes, store, patches.config_from_store(store), progress=False)["again"]
    assert experiments.load(path).key(job) == exp.key(job)  # the same class totals: the same definition
    out = run()
    assert f"{job.name}: its folder held a checkpoint of other data (scene groups of {store} cut again since), " \
           f"moved to {job.name}.replaced-" in out
    assert not folder.exists() and len(list(folder.parent.glob(f"{job.name}.replaced-*/checkpoints/last.pt"))) == 1
    for group in (store / "scenes").glob("*/zarr.json"):  # the groups as earlier versions cut them
        meta = json.loads(group.read_text())
        meta["attributes"].pop("content_sha256"), meta["attributes"].pop("attrs_sha256")
        group.write_text(json.dumps(meta))
    then = store_groups_sha256(store, ids)
    assert patches.extract_store(scenes, store, patches.config_from_store(store), progress=False)["same_as_unhashed"]
    assert store_groups_sha256(store, ids) != then
    checkpointed(then)
    assert "moved" not in run() and folder.is_dir()
    checkpointed("0" * 64)
    assert "its folder held a checkpoint of other data" in run() and not folder.exists()


# ---- the whole loop through seaice batch -----------------------------------------------------------------

@pytest.mark.slow
def test_run_skips_finished_jobs_retries_failed_ones_and_reruns_a_changed_definition(four_regions, tmp_path, capsys):
    scenes, store = four_regions
    base = yaml.safe_load(write_experiment(tmp_path / "e.yaml", scenes, store).read_text())
    runs = {"unet_sar": {**base["runs"]["unet_sar"], "steps": 4},
            # valid when the file is read, refused by its store at training time
            "broken": {"model": "unet", "model_kwargs": {"downsample": 3, "grid2km": False}, "inputs": "SAR",
                       "steps": 4}}
    path = write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], runs=runs,
                            folds={"held_out": [["SouthEast"]]}, compare=[])
    exp = experiments.load(path)
    argv = ["experiment", "run", str(path), "--runs", str(tmp_path / "runs"), "--jobs", "2"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "broken_fold0_seed1: failed" in out and "1 jobs without a result: broken_fold0_seed1" in out
    done = {j.name: exp.result_path(j) for j in exp.jobs() if exp.finished(j)}
    assert sorted(done) == ["floors_fold0_seed1", "unet_sar_fold0_seed1"]
    result = json.loads(done["unet_sar_fold0_seed1"].read_text())
    assert [p["step"] for p in result["curve"]] == [2, 4] and result["provenance"]["version"]
    floors = json.loads(done["floors_fold0_seed1"].read_text())["floors"]["floor_sar"]
    assert set(floors) == {"val", "inner", "fit_cpu_s"} and math.isfinite(floors["val"]["combined"])
    stamps = {name: p.stat().st_mtime_ns for name, p in done.items()}
    # again: the finished jobs are skipped, the failed one is tried again (and fails again)
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "3 jobs, 2 finished, 1 to run" in out and "broken_fold0_seed1: failed" in out
    assert {name: p.stat().st_mtime_ns for name, p in done.items()} == stamps
    # the broken run repaired: only it runs; its old folder moved aside, not reused
    runs["broken"]["model_kwargs"] = {"grid2km": False}
    write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], runs=runs, folds={"held_out": [["SouthEast"]]},
                     compare=[])
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "3 jobs, 2 finished, 1 to run" in out and "moved to broken_fold0_seed1.replaced-" in out
    assert experiments.load(path).finished(experiments.Job("train", "broken", 0, 1))
    assert cli.main(argv) == 0 and "3 jobs, 3 finished, 0 to run" in capsys.readouterr().out
    # a larger budget for the U-Net: its finished run continues from its checkpoint, the curve so far kept
    runs["unet_sar"]["steps"] = 8
    write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], runs=runs, folds={"held_out": [["SouthEast"]]},
                     compare=[])
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "unet_sar_fold0_seed1: its budget rises from 4 to 8 steps, continues" in out and "replaced" not in out
    grown = json.loads(done["unet_sar_fold0_seed1"].read_text())
    assert [p["step"] for p in grown["curve"]] == [2, 4, 8] and grown["curve"][:2] == result["curve"]
    assert not list((tmp_path / "runs" / "experiments" / "tiny" / "train").glob("unet_sar*.replaced-*"))
    # another stopping rule: the same runs go on under it (here each is at its cap: it ends at once)
    write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], runs=runs, folds={"held_out": [["SouthEast"]]},
                     compare=[], curve={"first": 2, "min_gain": 0.5, "patience": 2, "max_dip": 3.0})
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "3 jobs, 1 finished, 2 to run" in out and "replaced" not in out
    assert ("unet_sar_fold0_seed1: its stopping rule changes from {'min_gain': 0.5, 'patience': 2} to "
            "{'min_gain': 0.5, 'patience': 2, 'max_dip': 3.0}, continues") in out
    assert json.loads(done["unet_sar_fold0_seed1"].read_text())["curve"] == grown["curve"]
    assert cli.main(["experiment", "report", str(path)]) == 0
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert {r["run"] for r in summary["results"]} == {"unet_sar", "broken", "floor_sar"}


def test_the_report_goes_between_its_markers_and_nowhere_else():
    doc = "# Results\n\nintro\n<!-- report tiny -->\nold table\n<!-- end report tiny -->\n\nafter\n"
    new = report.into_block(doc, "tiny", "| a |\n|---|\n")
    assert new == "# Results\n\nintro\n<!-- report tiny -->\n| a |\n|---|\n<!-- end report tiny -->\n\nafter\n"
    assert report.block_of(new, "tiny") == "| a |\n|---|"
    with pytest.raises(ValueError, match="docs/x.md: needs one <!-- report other -->"):
        report.into_block(doc, "other", "t", "docs/x.md")
    crossed = "<!-- report tiny -->\n<!-- report two -->\n<!-- end report tiny -->\n<!-- end report two -->\n"
    with pytest.raises(ValueError, match="another report's marker lies between <!-- report tiny -->"):  # RT18-R9
        report.into_block(crossed, "tiny", "t", "docs/x.md")


def test_status_names_results_written_under_another_experiment_name(four_regions, tmp_path, capsys):
    """RT17-R8: an experiment file renamed (or a copy) sharing `results:` counted the other's results
    as its own without a word; they count (by their job's definition), and status says whose they are."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    job = next(j for j in exp.jobs() if j.kind == "floors")
    scores = {m: 60.0 for m in report.METRICS}
    floors = {f"floor_{s}": {"val": scores, "inner": scores, "fit_cpu_s": 1.0} for s in exp.floor_sets}
    write_job_result(exp, job, job_result(exp, job, floors=floors) | {"experiment": "tiny"})
    renamed = write_experiment(tmp_path / "e2.yaml", *four_regions, name="tinyt")
    assert _exit_code(["experiment", "status", str(renamed)]) == 1
    out = capsys.readouterr().out
    assert "tinyt: 1 of " in out and "written by an experiment of another name" in out and "1 by tiny" in out
    assert _exit_code(["experiment", "status", str(tmp_path / "e.yaml")]) == 1
    assert "another name" not in capsys.readouterr().out
    assert _exit_code(["experiment", "report", str(tmp_path / "e.yaml")]) == 0
    summary = (tmp_path / "results" / "summary.json").read_text()
    capsys.readouterr()
    assert _exit_code(["experiment", "report", str(renamed)]) == 2  # RT18-R8: it replaced tiny's report
    assert "holds the report of experiment 'tiny' (summary.json), which a report of 'tinyt' would replace" in \
        capsys.readouterr().err
    assert (tmp_path / "results" / "summary.json").read_text() == summary
    # RT19-R4: the report (`figures --experiment` writes it as report_NAME.md) says so too
    text = report.markdown(report.aggregate(experiments.load(renamed)))
    assert "Written by an experiment of another name (results count by their job's definition, not the name): " \
           "1 by tiny." in text
    assert "another name" not in report.markdown(report.aggregate(exp))


def test_report_into_a_document_without_markers_is_a_usage_error_and_a_writer_of_it_holds_it(four_regions, tmp_path,
                                                                                               capsys):
    """RT17-R8: a DOC without the markers exited 1 (a usage problem: 2); two reports into one DOC at once
    would each read it, add its block and write it: one block lost."""
    path = write_experiment(tmp_path / "e.yaml", *four_regions)
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# Results\n")
    assert _exit_code(["experiment", "report", str(path), "--into", str(doc)]) == 2
    assert f"{doc}: needs one <!-- report tiny --> line" in capsys.readouterr().err
    assert doc.read_text() == "# Results\n" and not (tmp_path / "results" / "summary.json").exists()
    doc.write_text("# Results\n<!-- report tiny -->\n<!-- end report tiny -->\n")
    with folder_lock(doc.parent, "writing another report", REPORT_LOCK):  # another experiment's report writes it
        assert _exit_code(["experiment", "report", str(path), "--into", str(doc)]) == 1
        assert f"{doc.parent}: another process is writing another report here" in capsys.readouterr().err
    assert _exit_code(["experiment", "report", str(path), "--into", str(doc)]) == 0
    assert "Not finished yet" in report.block_of(doc.read_text(), "tiny")
    link = tmp_path / "elsewhere" / "link.md"  # RT18-R17: the link was replaced by a file, the document left as it was
    link.parent.mkdir()
    link.symlink_to(doc)
    doc.write_text("# Results\n<!-- report tiny -->\n<!-- end report tiny -->\n")
    assert _exit_code(["experiment", "report", str(path), "--into", str(link)]) == 0
    assert link.is_symlink() and "Not finished yet" in report.block_of(doc.read_text(), "tiny")


def test_docs_results_quote_the_committed_report_as_it_is():
    """The tables in docs/results.md are the committed report's (`seaice experiment report ... --into`)."""
    root = Path(__file__).resolve().parents[1]
    committed = (root / "benchmarks" / "results" / "synthetic" / "report.md").read_text()
    assert report.block_of((root / "docs" / "results.md").read_text(), "synthetic") == committed.rstrip()


def test_a_result_that_is_not_its_job_s_or_lacks_its_numbers_is_damaged_not_reported(four_regions, tmp_path, capsys):
    """A result file of the right key edited by hand (or merged wrongly): without its curve, filed
    under another fold, with an empty curve or a score that is no number, it is not finished: status
    names it and why, the report lists it as not finished instead of leaving it out or misfiling it."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    edits = {"unet_sar_fold0_seed1": lambda d: d.pop("curve"),
             "unet_sar_fold0_seed2": lambda d: d["job"].update(fold=1),
             "tsvit_v1_fold0_seed1": lambda d: d.update(curve=[]),
             "tsvit_v1_fold1_seed1": lambda d: d["curve"][0].update(val_combined="x"),
             "floors_fold0_seed1": lambda d: d["floors"]["floor_sar"]["val"].pop("SOD")}
    edit_results(exp, edits)
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "7 of 12 jobs finished" in out and all(name in out.split("unreadable results")[1] for name in edits)
    assert "no curve (must be a list)" in out and "an empty curve" in out and "not unet_sar_fold0_seed2" in out
    assert cli.main(["experiment", "report", str(exp.path)]) == 1  # R5: left out, named with why, exit 1
    captured = capsys.readouterr()
    report_md = captured.out
    assert "Not finished yet" not in report_md and "Left out as damaged (5 jobs;" in report_md
    assert f"- unet_sar_fold0_seed1: {exp.result_path(experiments.Job('train', 'unet_sar', 0, 1))}: no curve " \
        "(must be a list)" in report_md
    assert "- unet_sar_fold0_seed2: " in report_md and "not unet_sar_fold0_seed2" in report_md
    assert captured.err.splitlines() == [f"tiny: 5 damaged job results left out of the report (named in it): "
                                         f"{', '.join(j.name for j in exp.jobs() if j.name in edits)}"]
    assert "| unet_sar  | SAR      | 6                | 0/2 " in report_md  # the two intact cells only


def test_the_report_names_unfinished_jobs_exit_0_and_damaged_ones_with_why_exit_1(four_regions, tmp_path, capsys):
    """R5: a job without a result and one whose result is of another definition are not finished yet
    (the report names them, exit 0); a result edited into one no job writes is named as damaged with
    the reason `status` gives, and the report exits 1."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    exp.result_path(experiments.Job("train", "tsvit_v1", 1, 2)).unlink()
    edit_results(exp, {"tsvit_v1_fold0_seed2": lambda d: d.update(key="another")})
    assert cli.main(["experiment", "report", str(exp.path)]) == 0
    out = capsys.readouterr().out
    assert "Not finished yet (1 jobs): tsvit_v1_fold1_seed2\n" in out
    assert "Stale (1 jobs: results of another definition or of scene groups cut again since, `seaice experiment run` " \
        "runs them again): tsvit_v1_fold0_seed2\n" in out
    assert "damaged" not in out
    summary = json.loads((exp.results / "summary.json").read_text())
    assert summary["missing"] == ["tsvit_v1_fold0_seed2", "tsvit_v1_fold1_seed2"]
    assert summary["not_current"] == {"tsvit_v1_fold0_seed2": "stale"}
    edit_results(exp, {"unet_sar_fold1_seed1": lambda d: d["curve"][-1].update(val_combined=555.0)})
    assert cli.main(["experiment", "report", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "Left out as damaged (1 jobs; `seaice experiment run` runs them again):\n\n- unet_sar_fold1_seed1: " \
        f"{exp.result_path(experiments.Job('train', 'unet_sar', 1, 1))}: step 6 val_combined is 555.0, not a score" \
        in out
    assert "Not finished yet (1 jobs): tsvit_v1_fold1_seed2\n" in out


def test_a_result_with_impossible_numbers_is_damaged(four_regions, tmp_path, capsys):
    """Scores over 100 %, curve steps out of order or cut short of steps_run: never averaged into
    the report as if a job had made them."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    edits = {"unet_sar_fold1_seed1": lambda d: d["curve"][-1].update(val_SOD=1e9),
             "unet_sar_fold1_seed2": lambda d: d.update(curve=[d["curve"][-1], d["curve"][0], d["curve"][-1]]),
             "tsvit_v1_fold1_seed2": lambda d: d.update(curve=d["curve"][:1]),
             "floors_fold1_seed1": lambda d: d["floors"]["floor_sar"]["val"].update(combined=101.0)}
    edit_results(exp, edits)
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "8 of 12 jobs finished" in out and all(name in out.split("unreadable results")[1] for name in edits)
    assert "step 6 val_SOD is 1000000000.0, not a score" in out
    assert "curve steps [6, 2, 6], not the run's curve steps up to steps_run 6: [2, 4, 6]" in out
    assert "curve steps [2], not the run's curve steps up to steps_run 4: [2, 4]" in out
    assert "floor_sar val combined is 101.0, not a score" in out


def test_a_result_no_finished_job_writes_is_damaged(four_regions, tmp_path, capsys):
    """A failed run, negative or NaN CPU seconds, steps_run off the curve, a curve with a step left
    out: each job runs again, named with why."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    edits = {"unet_sar_fold0_seed1": lambda d: d.update(status="failed"),
             "unet_sar_fold1_seed1": lambda d: d.update(curve=[d["curve"][0], d["curve"][2]]),
             "tsvit_v1_fold0_seed1": lambda d: d["curve"][0].update(train_cpu_s=-5.0),
             "tsvit_v1_fold0_seed2": lambda d: d.update(steps_run=2),
             "tsvit_v1_fold1_seed2": lambda d: d["curve"][0].update(train_cpu_s=None),  # null is NaN for scores only
             "floors_fold0_seed1": lambda d: d["floors"]["floor_sar"].update(fit_cpu_s=math.nan)}
    edit_results(exp, edits)
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "6 of 12 jobs finished" in out and all(name in out.split("unreadable results")[1] for name in edits)
    for why in ("status 'failed', not a finished run (completed or converged)",
                "curve[0].train_cpu_s must be a number, not null",
                "curve steps [2, 6], not the run's curve steps up to steps_run 6: [2, 4, 6]",
                "step 2 train_cpu_s is -5.0, not a number of seconds",
                "curve steps [2, 4], not the run's curve steps up to steps_run 2: [2]",
                "floor_sar fit_cpu_s is nan, not a number of seconds"):
        assert why in out


def test_a_run_is_compared_with_the_floor_the_experiment_file_names_now(four_regions, tmp_path):
    """A result records the floor of its run when it ran; the report compares with the file's floor
    (which no training depends on), so a floor named in the file later counts without a rerun."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp, level=60.0)
    edit_results(exp, {"unet_sar_fold0_seed1": lambda d: d.update(floor=None)})
    row = next(r for r in report.rows(exp, report.read_results(exp)) if (r["run"], r["fold"], r["seed"]) == ("unet_sar", 0, 1))
    assert exp.runs["unet_sar"].floor == "sar" and row["floor"] == "sar"
    curve = json.loads(exp.result_path(experiments.Job("train", "unet_sar", 0, 1)).read_text())["curve"]
    first_over = next(p["train_cpu_s"] for p in curve if p["val_combined"] > 60.0)  # floors written at 60
    assert row["cpu_s_to_floor"] == first_over


def test_status_tells_finished_stale_damaged_and_missing_results_apart(four_regions, tmp_path, capsys):
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    done, stale = (experiments.Job("train", "unet_sar", 0, s) for s in (1, 2))
    damaged = experiments.Job("train", "tsvit_v1", 1, 1)
    for job in (done, stale, damaged):
        exp.result_path(job).parent.mkdir(parents=True, exist_ok=True)
    write_job_result(exp, done, job_result(exp, done, [curve_point(2, 1.0, 50.0, 50.0)]))
    write_job_result(exp, stale, {**job_result(exp, stale, [curve_point(2, 1.0, 50.0, 50.0)]), "key": "another"})
    exp.result_path(damaged).write_text('{"key": ')  # cut short: never written by a job (atomic)
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "1 of 12 jobs finished" in out
    assert "stale (results of another definition or of scene groups cut again since, will run again): unet_sar_fold0_seed2" in out
    assert "unreadable results (damaged, will run again): tsvit_v1_fold1_seed1" in out
    to_run = out.split("to run: ")[1].split(", ")
    assert len(to_run) == 9 and not {"unet_sar_fold0_seed1", "unet_sar_fold0_seed2", "tsvit_v1_fold1_seed1"} & set(to_run)


def test_a_scene_changed_since_the_store_was_cut_from_it_stops_the_experiment_until_cut_again(four_regions,
                                                                                               tmp_path, capsys):
    """The scores are of the whole scenes: a scene file relabelled since the store was cut makes every
    result of the store questionable, so the experiment says so (naming the file and the command)
    instead of reporting them as finished; a copy of the same bytes (another modification time) is
    the same scene."""
    import shutil

    scenes, store = four_regions
    copies, copy = tmp_path / "scenes", tmp_path / "p.zarr"
    shutil.copytree(scenes, copies, copy_function=shutil.copy2)  # the times the store recorded
    shutil.copytree(store, copy)
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", copies, copy))
    write_results(exp)
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    assert exp.finished(job)
    scene = sorted(copies.glob("*_prep.nc"))[1]
    stamp = scene.stat()
    os.utime(scene, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # touched, the same bytes
    assert experiments.load(exp.path).finished(job)
    with netCDF4.Dataset(scene, "r+") as nc:  # relabelled
        sod = nc["SOD"][:]
        nc["SOD"][:] = np.where(np.ma.getdata(sod) == 255, 255, 0).astype(np.uint8)
    with pytest.raises(ValueError, match=rf"{copy}: out of date with {copies}: scene group {scene.name[:19]}: their "
                                         rf"input files changed \({scene.name} changed since.* "
                                         rf"`seaice patches --scenes {copies} --out {copy}`"):
        experiments.load(exp.path).finished(job)
    for command in ("status", "report"):  # a data problem, not a usage error: one line, exit 1
        assert cli.main(["experiment", command, str(exp.path)]) == 1
        err = capsys.readouterr().err
        assert f"out of date with {copies}: scene group {scene.name[:19]}" in err and "usage:" not in err


def test_an_experiment_counts_results_on_a_store_cut_before_hashes_and_refuses_another_release(four_regions, tmp_path,
                                                                                             caplog):
    """A store whose groups record no content or attrs hash (cut before groups did, as the store of
    the committed results): its results still count, its groups named in a warning (``seaice
    train`` refuses them); RT12 R9: groups another release cut make the experiment refuse the
    store, naming the release and the command, as ``seaice patches`` cuts them again."""
    import logging
    import shutil

    scenes, store = four_regions
    copy = tmp_path / "p.zarr"
    shutil.copytree(store, copy)
    groups = sorted((copy / "scenes").glob("*/zarr.json"))

    def edit(change):
        for group in groups:
            meta = json.loads(group.read_text())
            change(meta["attributes"])
            group.write_text(json.dumps(meta))

    edit(lambda attrs: (attrs.pop("content_sha256"), attrs.pop("attrs_sha256")))
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", scenes, copy))
    write_results(exp)
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    doc = json.loads(exp.result_path(job).read_text())
    exp.result_path(job).write_text(json.dumps(doc | {"store_content": exp.store_groups()}))
    with caplog.at_level(logging.WARNING, logger="seaice_lib"):
        assert experiments.load(exp.path).finished(job)
    assert f"{copy}: {len(groups)} scene groups record no content_sha256 or attrs_sha256" in caplog.text
    edit(lambda attrs: attrs.update(made_by={**attrs["made_by"], "version": "0.0.9"}))
    with pytest.raises(ValueError, match=rf"{copy}: out of date with {scenes}: scene groups .*: made by seaice_lib "
                                         rf"0\.0\.9; cut it again with `seaice patches --scenes {scenes} --out {copy}`"):
        experiments.load(exp.path).finished(job)


def _edit_groups(store, change, only=None):
    """Apply ``change`` to the attrs of every scene group of ``store`` (or the group ``only``)."""
    for group in sorted((store / "scenes").glob(f"{only or '*'}/zarr.json")):
        meta = json.loads(group.read_text())
        change(meta["attributes"])
        group.write_text(json.dumps(meta))


def _drop_hashes(attrs):
    attrs.pop("content_sha256"), attrs.pop("attrs_sha256")


def _edit_labels(store, sid):
    labels = zarr.open_array(store / "scenes" / sid / "labels", mode="r+")
    labels[0, 0, 0, 0] = 1 - labels[0, 0, 0, 0] if labels[0, 0, 0, 0] < 2 else 0


MIGRATION_ATTACKS = ["none", "days_before edited before", "labels edited before", "scene changed before",
                     "former identity added by hand"]


@pytest.mark.parametrize("attack", MIGRATION_ATTACKS)
def test_results_on_a_store_cut_before_hashes_stay_current_when_it_is_cut_again_into_the_same_patches(
        four_regions, tmp_path, capsys, attack):
    """A store whose groups record no content or attrs hash, and a result made on it (recording
    the store's identity then): ``seaice patches`` cuts the groups again (training refused them
    before, accepts them after) and the result still counts, as the groups hold the same patches.
    Each attack leaves the result stale: a group's days_before or labels edited before the cut
    (what it held is not what the new cut holds), its scene changed, or the record of the group
    it replaced added by hand to a group cut differently (refused, then cut again without it)."""
    from seaice_lib.data import patches
    from seaice_lib.data.store import check_store

    scenes, store = four_regions
    copy = tmp_path / "p.zarr"
    shutil.copytree(store, copy)
    _edit_groups(copy, _drop_hashes)
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", scenes, copy))
    write_results(exp)
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    ids = check_store(copy)
    files = {s: [i["file"] for i in json.loads((copy / "scenes" / s / "zarr.json").read_text())["attributes"]["inputs"]]
             for s in ids}
    sid = next(s for s in ids if not any(files[s][-1] in files[o] for o in ids if o != s))  # no other group's step
    with pytest.raises(ValueError, match="it records no content_sha256"):  # as training checks the store
        patches.check_up_to_date(copy, scenes, ids, read_arrays=True)
    old = json.loads((copy / "scenes" / sid / "zarr.json").read_text())["attributes"]
    if attack in ("days_before edited before", "former identity added by hand"):
        _edit_groups(copy, lambda a: a.update(days_before=[d + 0.5 for d in a["days_before"]]), sid)
    elif attack == "labels edited before":
        _edit_labels(copy, sid)
    elif attack == "scene changed before":
        scenes = copy_scenes(sorted(scenes.glob("*_prep.nc")), tmp_path / "scenes")
        edit_variable(scenes / old["inputs"][-1]["file"], "nersc_sar_primary",
                      lambda v: v.__setitem__((0, 0), v[0, 0] + 0.5))
    assert patches.main(["--scenes", str(scenes), "--out", str(copy), "--quiet"]) == 0
    same = len(ids) - (attack != "none")
    assert f"{same} cut again with the same patches as before: the store's earlier identity kept" in capsys.readouterr().out
    patches.check_up_to_date(copy, scenes, ids, read_arrays=True)
    if attack == "former identity added by hand":
        _edit_groups(copy, lambda a: a.update(same_as_unhashed={"written": old["written"], "inputs": old["inputs"]}),
                     sid)
        with pytest.raises(ValueError, match=f"scene group (scenes/)?{sid}: its attribute same_as_unhashed changed since"):
            experiments.load(exp.path).finished(job)
        assert patches.main(["--scenes", str(scenes), "--out", str(copy), "--quiet"]) == 0
    again = experiments.load(write_experiment(tmp_path / "e.yaml", scenes, copy))
    assert again.result_problem(job) == (None if attack == "none" else "stale")


def test_a_result_made_before_the_store_was_cut_again_is_not_reused(four_regions, tmp_path):
    import shutil

    scenes, store = four_regions
    copy = tmp_path / "p.zarr"
    shutil.copytree(store, copy)
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", scenes, copy))
    write_results(exp)
    job, unhashed = exp.jobs(["unet_sar"], [0], [1])[0], exp.jobs(["unet_sar"], [0], [2])[0]
    list_unhashed(exp, [unhashed])
    assert exp.finished(job)
    group = next((copy / "scenes").iterdir()) / "zarr.json"  # one scene group cut again: its inputs changed
    meta = json.loads(group.read_text())  # (as recorded: the folder's file keeps the size and time the group records)
    meta["attributes"]["inputs"][-1]["sha256"] = hashlib.sha256(b"another file").hexdigest()
    group.write_text(json.dumps(meta))
    again = experiments.load(exp.path)
    assert not again.finished(job)
    assert again.finished(unhashed)  # a result from before groups were recorded


def test_a_result_edited_since_it_was_written_is_damaged_not_averaged(four_regions, tmp_path, capsys):
    """R12: a result as record_training and run_floors write it counts; the same file with a score
    edited to another possible value (99 where the job measured 50) is damaged ("edited since it
    was written"), runs again, and the report leaves it out of the means; the file rewritten
    with other indentation (the same content) still counts."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    job, floors_job = exp.jobs(["unet_sar"], [0], [1])[0], exp.jobs(["floors"], [0], [1])[0]
    folder = tmp_path / "job"
    folder.mkdir()
    lines = ["step,train_s,train_cpu_s," + ",".join(f"{p}_{m}" for p in ("val", "inner") for m in report.METRICS)]
    lines += [f"{s},1.0,1.0," + ",".join(["50.0"] * 2 * len(report.METRICS)) for s in (2, 4, 6)]
    (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    experiments.record_training(exp, job, folder, {"status": "completed", "n_params": 1, "steps": 6})
    experiments.run_floors(exp, floors_job, tmp_path / "floors")
    assert exp.result_problem(job) is None and exp.result_problem(floors_job) is None
    for one in (job, floors_job):  # RT12-R4: what makes an unlisted result without them damaged
        assert {"content_sha256", "store_content"} <= set(json.loads(exp.result_path(one).read_text()))
    path = exp.result_path(job)
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # formatting only
    assert exp.result_problem(job) is None
    assert report.aggregate(exp)["summary"]["runs"]["unet_sar"]["combined"]["mean"] == 50.0
    doc = json.loads(path.read_text())
    for point in doc["curve"]:
        point["val_combined"] = 99.0
    path.write_text(json.dumps(doc))
    floors_doc = json.loads(exp.result_path(floors_job).read_text())
    floors_doc["floors"]["floor_sar"]["val"]["SOD"] = 99.0
    exp.result_path(floors_job).write_text(json.dumps(floors_doc))
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "0 of 12 jobs finished" in out
    for edited in (path, exp.result_path(floors_job)):
        assert f"{edited}: edited since it was written (its content_sha256 is not that of its content)" in out
    summary = report.aggregate(exp)
    assert "unet_sar" not in summary["summary"]["runs"] and job.name in summary["missing"]


def _jq_16(text: str) -> str:
    """``text`` (JSON) as jq 1.6 prints it: indented by 2, a whole float without its ``.0``, the others
    with 17 significant digits (``0.1`` as ``0.10000000000000001``), NaN as null, key order kept."""
    def dump(value, depth=0):
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(value, float):
            return "null" if math.isnan(value) else str(int(value)) if value.is_integer() else f"{value:.17g}"
        if isinstance(value, dict) and value:
            return "{\n" + ",\n".join(f"{inner}{json.dumps(k)}: {dump(v, depth + 1)}" for k, v in value.items()) \
                + f"\n{pad}}}"
        if isinstance(value, list) and value:
            return "[\n" + ",\n".join(f"{inner}{dump(v, depth + 1)}" for v in value) + f"\n{pad}]"
        return json.dumps(value)
    return dump(json.loads(text)) + "\n"


def _real_jq(text: str) -> str:
    return subprocess.run(["jq", "."], input=text, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("reformat", ["jq", "jq 1.6 spelling"])
def test_a_result_reformatted_with_jq_counts_and_an_edit_still_does_not(four_regions, tmp_path, reformat):
    """R26: jq 1.6 writes the float 50.0 as 50 (and may print more digits of a number): the same
    numbers, so the result (training and floors) still counts; a score changed and then reformatted
    is still found as edited."""
    if reformat == "jq" and shutil.which("jq") is None:
        pytest.skip("jq is not on PATH here; the 'jq 1.6 spelling' case writes what it writes")
    formatted = _real_jq if reformat == "jq" else _jq_16
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    job, floors_job = exp.jobs(["unet_sar"], [0], [1])[0], exp.jobs(["floors"], [0], [1])[0]
    folder = tmp_path / "job"
    folder.mkdir()
    lines = ["step,train_s,train_cpu_s," + ",".join(f"{p}_{m}" for p in ("val", "inner") for m in report.METRICS)]
    scores = ["50.0", "61.23456789012345", "", "0.0", "12.5", "7.0"]  # SOD "": NaN, which Python writes as NaN
    lines += [f"{s},1.0,0.1," + ",".join(scores * 2) for s in (2, 4, 6)]
    (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    experiments.record_training(exp, job, folder, {"status": "completed", "n_params": 1, "steps": 6})
    experiments.run_floors(exp, floors_job, tmp_path / "floors")
    written = {one: exp.result_path(one).read_text() for one in (job, floors_job)}
    for one in (job, floors_job):
        exp.result_path(one).write_text(formatted(written[one]))
        assert exp.result_problem(one) is None
    text = exp.result_path(job).read_text()
    assert '"val_combined": 50.0,' in written[job] and '"val_combined": 50,' in text
    assert '"val_SOD": NaN,' in written[job] and '"val_SOD": null,' in text  # JSON has no NaN
    assert math.isnan(exp.read_result(job)["curve"][0]["val_SOD"])
    assert report.aggregate(exp)["summary"]["runs"]["unet_sar"]["SOD"]["n"] == 0  # NaN: left out of the mean
    doc = json.loads(written[floors_job])
    doc["floors"]["floor_sar"]["val"]["SOD"] = 99.0
    exp.result_path(floors_job).write_text(formatted(json.dumps(doc, indent=1)))
    assert exp.result_problem(floors_job) == (f"damaged: {exp.result_path(floors_job)}: edited since it was written "
                                              "(its content_sha256 is not that of its content)")


def test_a_result_recording_the_earlier_content_hash_counts_and_committed_ones_verify(four_regions, tmp_path):
    """Results written before the hash read numbers as floats record the SHA-256 of their entries as
    sorted JSON (some under benchmarks/results/): still not edited, and an edit to one still found.
    RT12-R4: every committed result and probe counts as written, those without the hashes through
    their folder's unhashed_results.json (the 50 written before results recorded them)."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    doc = job_result(exp, job, [curve_point(s, 1.0, 50.0, 50.0) for s in (2, 4, 6)]) | {"store_content": exp.store_groups()}
    doc["content_sha256"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()  # the earlier form
    exp.result_path(job).parent.mkdir(parents=True)
    exp.result_path(job).write_text(json.dumps(doc, indent=1))
    assert exp.result_problem(job) is None
    doc["curve"][0]["val_combined"] = 51.0
    exp.result_path(job).write_text(json.dumps(doc, indent=1))
    assert "edited since it was written" in exp.result_problem(job)
    root = Path(__file__).parents[1]
    unhashed = 0
    for name in ("synthetic", "tsvit_levers", "tsvit_cost"):
        committed = experiments.load(root / "experiments" / f"{name}.yaml")
        for part, records in (("jobs", experiments.spec.RESULT_RECORDS), ("probes", experiments.spec.PROBE_RECORDS)):
            for path in sorted((committed.results / part).glob("*.json")):
                doc = json.loads(path.read_text())
                assert committed.content_problem(path, doc, records) is None, path
                unhashed += any(k not in doc for k in records)
    assert unhashed == 50


@pytest.mark.parametrize("drop", [("content_sha256",), ("store_content",), ("content_sha256", "store_content")])
def test_a_result_without_its_content_hash_or_store_content_is_damaged_not_reported(four_regions, tmp_path, capsys, drop):
    """RT12-R4: a result (training or floors) that lost its content_sha256 or store_content line (a bad
    merge; without store_content, its content_sha256 taken again) and is not listed in
    unhashed_results.json is damaged, with its numbers edited as well (95.5 where the job measured 61):
    status names it, the report leaves the 95.5 out and exits 1."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    job, floors_job = exp.jobs(["unet_sar"], [0], [1])[0], exp.jobs(["floors"], [0], [1])[0]
    for one in (job, floors_job):
        doc = {k: v for k, v in json.loads(exp.result_path(one).read_text()).items() if k not in drop}
        for point in doc.get("curve", []):
            point["val_combined"] = 95.5
        if "content_sha256" not in drop:
            doc["content_sha256"] = jsondoc.content_sha256(doc)
        exp.result_path(one).write_text(json.dumps(doc, indent=1))
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "10 of 12 jobs finished" in out
    for one in (job, floors_job):
        assert (f"{exp.result_path(one)}: it records no {' or '.join(drop)}, and {exp.results}/unhashed_results.json "
                "does not list it among the results written before they were recorded") in out
    assert cli.main(["experiment", "report", str(exp.path)]) == 1
    assert "95.5" not in capsys.readouterr().out.split("Left out as damaged")[0]


def test_a_probe_without_its_content_hash_is_left_out(four_regions, tmp_path):
    """RT12-R4: a history probe that lost its content_sha256 (here with a score edited as well) and is
    not listed in unhashed_results.json is left out of the report and named."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)  # the budget of every job is its last step, 6, its held-out score 60 - 10 + 2 * 5 + seed
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    probe = {"job": job.name, "run": job.run, "fold": 0, "seed": 1, "step": 6, "weights_key": exp.weights_key(job),
             "scores": {"as given": {"val": {"combined": 61.0}}, "none": {"val": {"combined": 22.2}}}}
    write_probe(exp, job, probe)
    assert [d["job"] for d in report.read_probes(exp)[0]] == [job.name]
    probe["scores"]["none"]["val"]["combined"] = 88.8
    exp.probe_path(job).write_text(json.dumps(probe))
    assert report.read_probes(exp) == ([], [{"job": job.name, "why": (
        f"it records no content_sha256, and {exp.results}/unhashed_results.json does not list it among the results "
        "written before they were recorded")}])
    assert "88.8" not in report.markdown(report.aggregate(exp)).split("History probes left out")[0]


def test_a_result_listed_as_unhashed_counts_and_one_edited_since_is_damaged(four_regions, tmp_path, capsys):
    """RT12-R4: results and a probe written before results recorded their hashes count while their
    content is the one unhashed_results.json lists (reformatted as jq 1.6 does: the same numbers), and
    the report says how many were read so; one edited since (a training result, a floors result, the
    probe) is damaged, or left out, and named; an unreadable list is an error naming it."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    job, floors_job = exp.jobs(["unet_sar"], [0], [1])[0], exp.jobs(["floors"], [0], [1])[0]
    write_probe(exp, job, {"job": job.name, "run": job.run, "fold": 0, "seed": 1, "step": 6,
                           "weights_key": exp.weights_key(job), "scores": {"as given": {"val": {"combined": 61.0}}}})
    list_unhashed(exp, [job, floors_job, exp.jobs(["tsvit_v1"], [1], [2])[0]])
    for one in (job, floors_job):
        assert exp.result_problem(one) is None
        exp.result_path(one).write_text(_jq_16(exp.result_path(one).read_text()))
        assert exp.result_problem(one) is None
    doc = report.aggregate(exp)
    assert doc["missing"] == [] and [p["job"] for p in doc["probes"]] == [job.name]
    assert doc["unhashed"] == {"results": 3, "probes": 1}
    assert ("Checked against `unhashed_results.json` (written before results recorded their content hash): 3 job "
            "results, 1 history probes.") in report.markdown(doc)
    for path, edit in ((exp.result_path(job), lambda d: d["curve"][-1].update(val_combined=95.5)),
                       (exp.result_path(floors_job), lambda d: d["floors"]["floor_sar"]["val"].update(combined=9.5)),
                       (exp.probe_path(job), lambda d: d["scores"]["as given"]["val"].update(combined=61.01))):
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    edited = f"edited since it was written (its content is not the one {exp.results}/unhashed_results.json lists)"
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    out = capsys.readouterr().out
    assert "10 of 12 jobs finished" in out
    assert f"{exp.result_path(job)}: {edited}" in out and f"{exp.result_path(floors_job)}: {edited}" in out
    write_results(exp)
    assert report.read_probes(exp)[1] == [{"job": job.name, "why": edited}]
    (exp.results / "unhashed_results.json").write_text('{"results": ["jobs/x.json"]}')
    assert cli.main(["experiment", "status", str(exp.path)]) == 1
    assert f"{exp.results}/unhashed_results.json: results must be a mapping" in capsys.readouterr().err


def test_settings_that_cannot_change_a_result_keep_its_key(four_regions, tmp_path, capsys):
    """R17: job_mem (the SLURM memory) and checkpoint_every, added, changed or removed in `training`
    or a run's `training`, keep every job's key and its finished result; compile (float rounding)
    and lr change the training jobs' keys."""
    path = write_experiment(tmp_path / "e.yaml", *four_regions)
    exp = experiments.load(path)
    write_results(exp)
    keys = {j.name: exp.key(j) for j in exp.jobs()}
    base = yaml.safe_load(path.read_text())
    runs = {**base["runs"], "unet_sar": {**base["runs"]["unet_sar"], "training": {"job_mem": "8G"}}}
    without = {k: v for k, v in base["training"].items() if k != "checkpoint_every"}
    for training in ({**base["training"], "job_mem": "4G", "checkpoint_every": 2}, without):
        changed = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, training=training, runs=runs))
        assert {j.name: changed.key(j) for j in changed.jobs()} == keys
        assert cli.main(["experiment", "status", str(path)]) == 0
        assert "tiny: 12 of 12 jobs finished" in capsys.readouterr().out
    for setting in ({"compile": True}, {"lr": 5e-3}):
        other = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions,
                                                  training={**base["training"], **setting}))
        assert all((other.key(j) == keys[j.name]) == (j.kind == "floors") for j in other.jobs())


def test_a_number_spelled_otherwise_keeps_every_key(four_regions, tmp_path, capsys):
    """RT12-R11: the same value spelled otherwise (0 for 0.0, 6.0 for 6, the text 1e-2 that YAML 1.1
    reads for 0.01) in `training`, a run's `training` and `loss`, a run's `steps`, `curve`, `seeds` or
    `floors.settings` keeps every job's key and its finished result; another value changes the
    training jobs' keys; a number that is not whole where a whole one is asked is refused by name."""
    path = write_experiment(tmp_path / "e.yaml", *four_regions)
    base = yaml.safe_load(path.read_text())
    base["training"]["loss"] = {"task_weights": {"SIC": 1.0, "SOD": 3.0, "FLOE": 3.0}}
    exp = experiments.load(write_experiment(path, *four_regions, training=base["training"]))
    write_results(exp)
    keys = {j.name: exp.key(j) for j in exp.jobs()}
    runs = base["runs"]
    for changes in ({"training": base["training"] | {"balance_power": 0, "warmup_steps": 2.0, "lr": "1e-2",
                                                     "loss": {"task_weights": {"SIC": 1, "SOD": 3, "FLOE": 3}}}},
                    {"runs": runs | {"unet_sar": runs["unet_sar"] | {"steps": 6.0, "training": {"balance_power": 0}}}},
                    {"curve": {"first": 2.0, "min_gain": 0.5, "patience": 2.0}, "seeds": [1.0, 2.0]},
                    {"floors": {"sets": {"sar": "SAR"}, "settings": {"max_pixels": 2000.0, "max_iter": 5.0}}}):
        respelled = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, **{"training": base["training"],
                                                                                              **changes}))
        assert {j.name: respelled.key(j) for j in respelled.jobs()} == keys, changes
        assert cli.main(["experiment", "status", str(path)]) == 0
        assert "tiny: 12 of 12 jobs finished" in capsys.readouterr().out
    other = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions,
                                              training=base["training"] | {"balance_power": 0.5}))
    assert all((other.key(j) == keys[j.name]) == (j.kind == "floors") for j in other.jobs())
    for changes, why in (({"runs": runs | {"unet_sar": runs["unet_sar"] | {"steps": 6.5}}},
                          "runs.unet_sar: 'steps' must be a whole number, not 6.5"),
                         ({"curve": {"first": 2.5}}, "curve.first must be a step >= 1, not 2.5"),
                         ({"seeds": [1, 2.5]}, "seeds must be a non-empty list of distinct integers in [0, 2**32), not "
                                               "[1, 2.5]")):
        with pytest.raises(ValueError, match=re.escape(why)):
            experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, **changes))


def test_a_second_slurm_submission_leaves_the_first_array_s_batch_file_alone(four_regions, tmp_path, monkeypatch):
    """R7: each submission's arrays read a batch file of their own, so a second submission (another
    part, while the first waits in the queue, even in the same second) rewrites nothing the first
    array and its summary job read when they start."""
    path = write_experiment(tmp_path / "e.yaml", *four_regions, seeds=[1], folds={"held_out": [["SouthEast"]]},
                            compare=[])
    submitted = []  # (the batch file, its sets when submitted)
    monkeypatch.setattr(batch, "main", lambda argv, prog=None: submitted.append(
        (Path(argv[1]), [name for name, _ in batch.read_sets(argv[1])])) or 0)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101T120000")
    runs = tmp_path / "runs"
    for only in ("unet_sar", "tsvit_v1"):
        assert cli.main(["experiment", "run", str(path), "--runs", str(runs), "--slurm", "--only", only]) == 0
    (first, first_sets), (second, second_sets) = submitted
    assert (first_sets, second_sets) == (["unet_sar_fold0_seed1"], ["tsvit_v1_fold0_seed1"])
    assert first != second and first.parent == second.parent == runs / "experiments" / "tiny"
    assert [name for name, _ in batch.read_sets(first)] == first_sets  # what the first array reads still
