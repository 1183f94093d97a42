"""History probes: the earlier acquisitions altered as each probe says, worked by hand, and a
single-date model untouched by any of them."""

import json

import pytest
import torch
import yaml

from seaice_lib import cli, experiments
from seaice_lib.engine.run import load_model
from seaice_lib.engine.training import train
from seaice_lib.engine.whole_scenes import evaluate_scenes, scene_files
from seaice_lib.experiments import probes, report
from seaice_lib.experiments.probes import HISTORY_PROBES, AlteredHistory, alter_history
from seaice_lib.models import create_model
from seaice_lib.provenance import file_sha256
from tests.experiment_files import edit_results, write_experiment, write_job_result, write_probe, write_results


def _batch() -> dict:
    """Two samples of 3 steps, 1 channel, 2 x 2 pixels: sample 0 has all three steps (value = 10 x
    step + 1), sample 1 only two (its target at step 1, step 2 padding); step 0 of sample 0 covers
    only its first row."""
    sar = torch.zeros(2, 3, 1, 2, 2)
    for t in range(3):
        sar[0, t] = 10 * t + 1
    sar[1, 0], sar[1, 1] = 5.0, 7.0
    mask = torch.ones(2, 3, 2, 2, dtype=torch.bool)
    mask[0, 0, 1] = False
    sar[0, 0, :, 1] = 0.0  # not covered: 0, as stored
    mask[1, 2] = False
    return {"sar": sar, "sar_mask": mask, "step_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}


def test_each_probe_changes_only_the_steps_before_the_target_as_worked_by_hand():
    batch = _batch()
    assert alter_history(batch, "as given") is batch
    none = alter_history(batch, "none")
    assert none["sar"][0, :2].eq(0).all() and none["sar"][0, 2].eq(21).all() and not none["sar_mask"][0, :2].any()
    assert none["sar"][1, 0].eq(0).all() and none["sar"][1, 1].eq(7).all() and none["sar_mask"][1, 1].all()
    repeated = alter_history(batch, "target repeated")
    assert repeated["sar"][0].eq(21).all() and repeated["sar_mask"][0].all()
    assert repeated["sar"][1, :2].eq(7).all() and repeated["sar"][1, 2].eq(0).all()  # padding untouched
    assert not repeated["sar_mask"][1, 2].any()
    reversed_ = alter_history(batch, "reversed")  # sample 0: steps 1, 0, 2; sample 1: one earlier step, as is
    assert reversed_["sar"][0, 0].eq(11).all() and torch.equal(reversed_["sar"][0, 1], batch["sar"][0, 0])
    assert torch.equal(reversed_["sar_mask"][0, 1], batch["sar_mask"][0, 0]) and reversed_["sar"][0, 2].eq(21).all()
    assert torch.equal(reversed_["sar"][1], batch["sar"][1])
    noise = alter_history(batch, "noise", torch.Generator().manual_seed(0))
    covered = batch["sar_mask"] & torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)[:, :, None, None]
    changed = noise["sar"][:, :, 0] != batch["sar"][:, :, 0]
    assert torch.equal(changed, covered)  # every covered earlier pixel, nothing else
    assert torch.equal(noise["sar_mask"], batch["sar_mask"])
    with pytest.raises(ValueError, match="probe must be one of"):
        alter_history(batch, "shuffled")


def test_a_single_date_model_gives_the_same_outputs_under_every_probe():
    torch.manual_seed(0)
    model = create_model("unet", size="tiny", downsample=2, grid2km=False, sar_channels=1).eval()
    batch = _batch() | {"sar": torch.randn(2, 3, 1, 16, 16), "sar_mask": torch.ones(2, 3, 16, 16, dtype=torch.bool)}
    with torch.no_grad():
        outputs = {p: AlteredHistory(model, p)(batch) for p in HISTORY_PROBES}
    for probe in HISTORY_PROBES:
        for chart, values in outputs["as given"].items():
            assert torch.equal(outputs[probe][chart], values), (probe, chart)
    stacked = create_model("unet", size="tiny", downsample=2, grid2km=False, sar_channels=1, steps=3).eval()
    with torch.no_grad():
        given, none = (AlteredHistory(stacked, p)(batch)["SOD"] for p in ("as given", "none"))
    assert not torch.equal(given, none)  # a model of three steps sees the change


def test_budget_weights_of_an_empty_curve_raise(tmp_path):
    """A result whose learning curve is empty has no budget step under a stopping rule
    (:func:`report.budget_of` gives None, found by mypy): a ValueError naming the folder, not a
    TypeError from formatting None into the weights' name."""
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"curve": []}))

    class Exp:  # what budget_weights reads of an experiment
        def result_path(self, job):
            return result

        def read_result(self, job):
            return json.loads(result.read_text())

        def stopping_rule(self):
            return {"min_gain": 0.5, "patience": 2}

    assert report.budget_of(Exp(), []) == (None, False)
    with pytest.raises(ValueError, match="learning curve is empty"):
        probes.budget_weights(Exp(), None, tmp_path)


def test_a_finished_job_is_probed_at_its_budget_reused_and_reported(four_regions, tmp_path):
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)  # made-up curves that rise to the last step: the budget is step 6
    job = next(j for j in exp.jobs(["unet_sar"], [0], [1]) if j.kind == "train")
    folder = tmp_path / "runs" / "experiments" / exp.name / "train" / job.name
    experiments.start_job(exp, job, folder)  # as notebooks/04_train.ipynb does
    train(exp.train_config(job, folder))
    doc = probes.probe_history(exp, job, folder, ("as given", "none"))
    assert doc["step"] == 6 and doc["weights_sha256"] == file_sha256(folder / "curve" / "step_000006.pt")
    assert "content_sha256" in doc  # R4: a probe records its content hash when written

    def as_probed(result):  # the made-up result's held-out score at the budget: the one its weights score
        result["curve"][-1]["val_combined"] = doc["scores"]["as given"]["val"]["combined"]
    edit_results(exp, {job.name: as_probed})
    # the budget weights on the held-out scenes, scored directly: the "as given" probe
    fold = exp.fold(0)
    direct = evaluate_scenes(load_model(folder / "curve" / "step_000006.pt"), scene_files(fold.val, exp.scenes),
                             exp.scenes, exp.store, 32).scores()
    assert doc["scores"]["as given"]["val"] == pytest.approx(direct, nan_ok=True)
    assert doc["scores"]["none"] == doc["scores"]["as given"]  # a single-date model
    written = exp.probe_path(job).stat().st_mtime_ns
    assert probes.probe_history(exp, job, folder, ("as given", "none")) == doc
    assert exp.probe_path(job).stat().st_mtime_ns == written  # the same weights and probes: reused
    assert doc["store_content"] == exp.store_groups()  # RT15-R2: and the same scenes, which it records
    write_probe(exp, job, {k: v for k, v in doc.items() if k != "content_sha256"} | {"store_content": "0" * 64})
    again = probes.probe_history(exp, job, folder, ("as given", "none"))  # of other scenes: made again
    assert again["scores"] == doc["scores"] and again["provenance"]["time"] >= doc["provenance"]["time"]
    assert json.loads(exp.probe_path(job).read_text())["store_content"] == exp.store_groups()
    assert exp.probe_path(job).stat().st_mtime_ns != written
    doc = again
    edited = json.loads(exp.probe_path(job).read_text())  # a score changed by hand: left out, computed again
    edited["scores"]["none"]["val"]["combined"] = 88.8
    exp.probe_path(job).write_text(json.dumps(edited))
    assert report.read_probes(exp)[0] == []
    assert "edited since it was written" in report.markdown(report.aggregate(exp))
    assert probes.probe_history(exp, job, folder, ("as given", "none"))["scores"] == doc["scores"]
    assert json.loads(exp.probe_path(job).read_text())["scores"] == doc["scores"]  # written again
    damaged = {k: v for k, v in doc.items() if k != "content_sha256"} | {"scores": {"as given": {}, "none": {}}}
    exp.probe_path(job).write_text(json.dumps(damaged))  # R4: the same weights and probes, no scores: made again
    assert probes.probe_history(exp, job, folder, ("as given", "none"))["scores"] == doc["scores"]
    assert json.loads(exp.probe_path(job).read_text())["scores"] == doc["scores"]
    text = report.markdown(report.aggregate(exp))
    assert "History probes" in text and "| unet_sar" in text.split("History probes")[1]
    # another stopping rule that keeps the budget: the same weights, the probe still reported; one that
    # moves the budget (a run at its first firing, step 4 of the made-up curve): the probe is stale
    for curve, reported in (({"first": 2, "min_gain": 0.5, "patience": 2, "max_dip": 3.0}, True),
                            ({"first": 2, "min_gain": 1000.0, "patience": 1}, False)):
        again = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions, curve=curve))
        write_results(again)
        edit_results(again, {job.name: as_probed})
        assert [d["job"] for d in report.read_probes(again)[0]] == ([job.name] if reported else [])


def test_probe_refuses_a_job_folder_without_the_job_s_job_json(four_regions, tmp_path, capsys):
    """Weights in a job's folder are probed only when its job.json holds the job's current key: a
    folder of another definition (here the file's U-Net with 4 steps) or without job.json is named
    with both keys, the other jobs go on, and the command exits 1."""
    (tmp_path / "other").mkdir()
    base = write_experiment(tmp_path / "other" / "e.yaml", *four_regions)
    runs = yaml.safe_load(base.read_text())["runs"]
    other = experiments.load(write_experiment(base, *four_regions, runs={**runs, "unet_sar": {**runs["unet_sar"],
                                                                                             "steps": 4}}))
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    jobs = [j for j in exp.jobs(["unet_sar"], [0]) if j.kind == "train"]
    folders = {j.name: tmp_path / "runs" / "experiments" / exp.name / "train" / j.name for j in jobs}
    experiments.start_job(other, jobs[0], folders[jobs[0].name])  # seed 1: another definition's folder
    folders[jobs[1].name].mkdir(parents=True)  # seed 2: no job.json
    argv = ["experiment", "probe", str(exp.path), "--only", "unet_sar", "--folds", "0", "--runs", str(tmp_path / "runs")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert (f"{folders[jobs[0].name]}: its job.json holds key {other.key(jobs[0])}, not unet_sar_fold0_seed1's key "
            f"{exp.key(jobs[0])}") in err
    assert f"{folders[jobs[1].name]}: no job.json, not unet_sar_fold0_seed2's key {exp.key(jobs[1])}" in err
    assert not exp.probe_path(jobs[0]).exists() and not exp.probe_path(jobs[1]).exists()


def test_probe_exits_1_naming_the_jobs_asked_for_that_are_not_finished_or_did_not_run_in_runs(four_regions,
                                                                                                tmp_path, capsys):
    """RT13-R14, R16: a job asked for that is not finished is not probed: named, exit 1 (as ``experiment
    status``), also where every other job was probed or none was asked for; a finished job with no
    folder in the runs folder given is named as one that did not run there, not as weights of another job."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = ["experiment", "probe", str(exp.path), "--only", "unet_sar", "--folds", "0", "--runs", str(runs)]
    assert cli.main(argv) == 1  # nothing finished: nothing probed
    captured = capsys.readouterr()
    assert "0 jobs probed, 0 failed" in captured.out
    assert captured.err.splitlines() == ["2 jobs not finished yet, not probed: unet_sar_fold0_seed1, unet_sar_fold0_seed2"]
    write_results(exp)
    exp.result_path(exp.jobs(["unet_sar"], [0], [2])[0]).unlink()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    folder = runs / "experiments" / exp.name / "train" / "unet_sar_fold0_seed1"
    assert (f"not probed: unet_sar_fold0_seed1: {folder}: no such folder, unet_sar_fold0_seed1 has not run in {runs}: "
            f"give the runs folder it ran in as --runs, or run it there (`seaice experiment run {exp.path} --runs {runs}`") \
        in err
    assert "weights" not in err
    assert err.splitlines()[-1] == "1 jobs not finished yet, not probed: unet_sar_fold0_seed2"
    # RT20-R10: a job run by notebook 04_train into its own out_dir is probed there, as its result records
    elsewhere = tmp_path / "mine" / "job"
    edit_results(exp, {"unet_sar_fold0_seed1": lambda doc: doc.update(run_dir=str(elsewhere))})
    assert cli.main(argv) == 1
    assert f"has not run in {runs} nor in the run folder its result records ({elsewhere})" in capsys.readouterr().err
    elsewhere.mkdir(parents=True)  # there now: its weights are looked for there (this one holds no job.json)
    assert cli.main(argv) == 1
    assert f"not probed: unet_sar_fold0_seed1: {elsewhere}: no job.json" in capsys.readouterr().err


@pytest.mark.parametrize("runs", ["nonexist", "afile"])
def test_probe_with_runs_not_a_folder_is_a_usage_error(four_regions, tmp_path, capsys, runs):
    """RT13-R16: a mistyped --runs is one usage line, exit 2, as other stages say of a folder they read."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as stop:
        cli.main(["experiment", "probe", str(exp.path), "--runs", str(tmp_path / runs)])
    assert stop.value.code == 2
    why = "no such folder" if runs == "nonexist" else "a file, not a folder"
    assert capsys.readouterr().err.splitlines()[-1] == f"seaice experiment: error: --runs {tmp_path / runs}: {why}"


def test_probe_only_floors_is_a_usage_error(four_regions, tmp_path, capsys):
    """RT15-R12: `--only floors` selected nothing to probe and ended 0."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    with pytest.raises(SystemExit) as stop:
        cli.main(["experiment", "probe", str(exp.path), "--runs", str(tmp_path), "--only", "floors"])
    assert stop.value.code == 2 and "--only floors: the floors are not probed" in capsys.readouterr().err


def test_a_probe_of_the_job_s_earlier_weights_is_left_out_and_named(four_regions, tmp_path):
    """A job that ran again (its store groups cut again) has new budget weights, whose SHA-256 its
    new result records: a probe file of the earlier weights, at the same step and of the same
    definition, is not reported beside the new scores; the report names it and says to probe again.
    A probe of the weights the result records is reported."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)  # the budget of every job is its last step, 6, its held-out score 60 - 10 + 2 * 5 + seed
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    result = json.loads(exp.result_path(job).read_text())
    write_job_result(exp, job, result | {"weights_sha256": {"2": "a" * 64, "4": "b" * 64, "6": "c" * 64}})
    probe = {"job": job.name, "run": job.run, "fold": 0, "seed": 1, "step": 6, "weights_sha256": "0" * 64,
             "weights_key": exp.weights_key(job), "scores": {"as given": {"val": {"combined": 61.0}},
                                                             "none": {"val": {"combined": 11.1}}}}
    write_probe(exp, job, probe)
    text = report.markdown(report.aggregate(exp))
    assert "11.1" not in text and "History probes (" not in text
    assert f"- {job.name}: made from other weights than those the result records for step 6" in text
    assert "run `seaice experiment probe` again" in text
    write_probe(exp, job, probe | {"weights_sha256": "c" * 64})
    text = report.markdown(report.aggregate(exp))
    assert "History probes (" in text and "| 11.1" in text and "left out" not in text.split("History probes")[1]
    # RT15-R2: the same weights on scenes changed since (the job ran again to the same weights)
    write_probe(exp, job, probe | {"weights_sha256": "c" * 64, "store_content": "0" * 64})
    text = report.markdown(report.aggregate(exp))
    assert f"- {job.name}: made on scene groups of the store other than its groups now (scenes changed since)" in text
    write_probe(exp, job, probe | {"weights_sha256": "c" * 64, "store_content": exp.store_groups()})
    assert "| 11.1" in report.markdown(report.aggregate(exp))


def test_a_probe_scoring_the_held_out_scenes_otherwise_than_its_result_is_left_out(four_regions, tmp_path):
    """RT12-R4: a probe's held-out score "as given" is the result's own at the budget step (the same
    weights on the same scenes): a probe of the right step, definition and weights that says
    otherwise (88.8 where the result says 61) is left out and named; 0.04 apart (float rounding) it
    is reported."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)  # the budget of every job is its last step, 6, its held-out score 60 - 10 + 2 * 5 + seed
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    probe = {"job": job.name, "run": job.run, "fold": 0, "seed": 1, "step": 6, "weights_key": exp.weights_key(job),
             "scores": {"as given": {"val": {"combined": 88.8}}, "none": {"val": {"combined": 22.2}}}}
    write_probe(exp, job, probe)
    assert report.read_probes(exp) == ([], [{"job": job.name, "why": "its held-out combined score as given, 88.8, is not "
                                             "the result's at step 6, 61.0 (the same weights on the same scenes)"}])
    write_probe(exp, job, probe | {"scores": {"as given": {"val": {"combined": 61.04}}, "none": {"val": {"combined": 22.2}}}})
    assert [d["job"] for d in report.read_probes(exp)[0]] == [job.name]


def test_a_result_records_its_curve_weights_and_probing_refuses_other_weights(four_regions, tmp_path):
    """record_training writes the SHA-256 of each curve step's weights file (hashed here with
    hashlib); probing a folder whose budget weights are not those bytes fails naming the file."""
    import hashlib

    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    folder = tmp_path / "job"
    (folder / "curve").mkdir(parents=True)
    lines = ["step,train_s,train_cpu_s," + ",".join(f"{p}_{m}" for p in ("val", "inner") for m in report.METRICS)]
    lines += [f"{s},1.0,1.0," + ",".join(["50.0"] * 2 * len(report.METRICS)) for s in (2, 4, 6)]
    (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    for step in (2, 4, 6):
        (folder / "curve" / f"step_{step:06d}.pt").write_bytes(f"weights {step}".encode())
    experiments.record_training(exp, job, folder, {"status": "completed", "n_params": 1, "steps": 6})
    recorded = json.loads(exp.result_path(job).read_text())["weights_sha256"]
    assert recorded == {str(s): hashlib.sha256(f"weights {s}".encode()).hexdigest() for s in (2, 4, 6)}
    assert probes.budget_weights(exp, job, folder)[1] == folder / "curve" / "step_000006.pt"
    (folder / "curve" / "step_000006.pt").write_bytes(b"trained again")
    with pytest.raises(ValueError, match=r"step_000006.pt: not the weights .*unet_sar_fold0_seed1.json records"):
        probes.budget_weights(exp, job, folder)


@pytest.mark.parametrize("damage, why", [
    (lambda d: d["scores"].update(none={}), "scores must give each probe the same scene parts, not "
                                            "{'as given': ['val'], 'none': []}"),
    (lambda d: d["scores"].update(none={"val": {"combined": "x"}}), "scores.none.val.combined must be a number, "
                                                                    "not a string"),
    (lambda d: d["scores"]["none"].update(val={}), "no scores.none.val.combined (must be a number)"),
    (lambda d: d.update(scores=[]), "scores must be a mapping, not a list"),
    (lambda d: d.pop("step"), "no step (must be an integer)"),
    (lambda d: d.update(scores={}), "scores must give each probe the same scene parts, not {}"),
])
def test_a_damaged_probe_file_is_left_out_of_the_report_named_with_the_key(four_regions, tmp_path, capsys, damage,
                                                                          why):
    """R4: a probe file with a part or a score missing or not a number is listed under "History
    probes left out" naming the file and the key; the report is written (exit 0), no traceback."""
    exp = experiments.load(write_experiment(tmp_path / "e.yaml", *four_regions))
    write_results(exp)  # the budget of every job is its last step, 6
    job = exp.jobs(["unet_sar"], [0], [1])[0]
    probe = {"job": job.name, "run": job.run, "fold": 0, "seed": 1, "step": 6, "weights_key": exp.weights_key(job),
             "scores": {"as given": {"val": {"combined": 61.0}}, "none": {"val": {"combined": 22.2}}}}
    write_probe(exp, job, probe)
    assert [d["job"] for d in report.read_probes(exp)[0]] == [job.name]
    damage(probe)
    write_probe(exp, job, probe)
    assert cli.main(["experiment", "report", str(exp.path)]) == 0
    out = capsys.readouterr().out
    assert f"- {job.name}: damaged: {exp.probe_path(job)}: {why}\n" in out and "| 22.2" not in out
