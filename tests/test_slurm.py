"""The SLURM jobs on a real single-node SLURM that the tests bring up (slurm/local_cluster.sh):
the demo pipeline, a failing stage, DDP through srun + torchrun, preemption and requeue.

Needs root and the Debian packages slurm-wlm and munge (`make slurm-deps`); run with
`make test-slurm` (part of `make test`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from seaice_lib.data.download.client import ARTICLES
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.training import train
from seaice_lib.synthetic import generate
from seaice_lib.testing.portal_server import PortalFile, PortalServer
from tests.experiment_files import write_experiment
from tests.lab_client import NOTEBOOK_CELLS, api, run_cells, run_download_notebook, wait_ready
from tests.notebook_files import code_notebook, write_grid, write_notebook
from tests.training_runs import free_port, one_process_on_the_global_batch, train_config

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).parents[1]
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED")
# slurm/config.sh's settings as a site would set them (local_cluster.sh has partitions debug and long)
SETTINGS = {"SEAICE_ACCOUNT": "polar", "SEAICE_PARTITION": "long", "SEAICE_GPU_PARTITION": "debug"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node SLURM; the environment its client commands and our scripts need."""
    missing = [c for c in ("slurmctld", "slurmd", "munged") if shutil.which(c) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"a local SLURM needs root and {missing or 'slurm-wlm, munge'}: run `make slurm-deps` as root")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"),
           "SEAICE_ENV": str(Path(sys.prefix) / "bin" / "activate"), "SEAICE_RUNS": str(state / "runs"),
           "SEAICE_POLL_S": "2", "SEAICE_SLURMCTLD_PORT": str(free_port()), "SEAICE_SLURMD_PORT": str(free_port())}
    subprocess.run([ROOT / "slurm" / "local_cluster.sh", "start", state], env=env, check=True, timeout=120)
    yield env
    subprocess.run(["scancel", "--user=root"], env=env)
    started_munged = (state / "munged.pid").read_text().strip() if (state / "munged.pid").is_file() else None
    subprocess.run([ROOT / "slurm" / "local_cluster.sh", "stop", state], env=env, timeout=60)
    if started_munged:  # RT16-R13: the munged the script started stops with the cluster (a zombie at most)
        stat = Path(f"/proc/{started_munged}/stat")

        def ended() -> bool:
            try:
                return stat.read_text().split(")")[-1].split()[0] == "Z"
            except OSError:
                return True

        deadline = time.monotonic() + 30
        while not ended() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ended(), f"munged {started_munged} still runs after local_cluster.sh stop"


def run(cluster, *args, check=True, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=cluster, cwd=ROOT, capture_output=True, text=True,
                          check=check, timeout=timeout)


def job(cluster, job_id) -> dict:
    """``scontrol show job`` of one job as a dict (the first task of an array)."""
    line = run(cluster, "scontrol", "show", "job", "-o", job_id).stdout.splitlines()[0]
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


def wait_for(cluster, job_id, timeout=900) -> dict:
    end = time.monotonic() + timeout
    while (info := job(cluster, job_id))["JobState"] in ACTIVE:
        assert time.monotonic() < end, f"job {job_id} still {info['JobState']} after {timeout} s"
        time.sleep(1)
    return info


def _combined(scores: dict) -> float:
    """The challenge's score from its parts (%): (2 R²(SIC) + 2 F1(SOD) + F1(FLOE)) / 5."""
    return (2 * scores["SIC"] + 2 * scores["SOD"] + scores["FLOE"]) / 5


def test_the_demo_pipeline_runs_every_stage_to_completed(cluster):
    name = "demo"
    cluster = {**cluster, **SETTINGS}
    submitted = run(cluster, "slurm/pipeline.sh", "submit", name, "--synthetic", "2 2 200",
                    "--models", "unet tsvit_v3", "--set", "steps=4", "--set", "steps_per_epoch=2",
                    "--set", "batch_size=4", "--set", "model_size=tiny", "--patch-args", "--patch 32 --downsample 4")
    assert "submitted pipeline demo" in submitted.stdout
    waited = run(cluster, "slurm/pipeline.sh", "wait", name, check=False)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    out = Path(cluster["SEAICE_RUNS"]) / name
    stages = [line.split("\t")[0] for line in (out / "jobs.tsv").read_text().splitlines()]
    assert stages == ["data", "prepare", "patches", "consolidate", "train-unet", "train-tsvit_v3", "evaluate",
                      "explain-unet", "explain-tsvit_v3", "figures"]
    table = waited.stdout.splitlines()[1:-1]
    assert len(table) == len(stages) + 3 and all(" COMPLETED " in row for row in table)  # 4 array tasks
    logs = sorted((out / "logs").iterdir())  # bytes: read_text would turn a carriage return into a newline
    assert logs and [p.name for p in logs if b"\r" in p.read_bytes()] == []  # no progress bar in a job's log
    ids = [line.split("\t")[1] for line in (out / "jobs.tsv").read_text().splitlines()]
    for stage, job_id in zip(stages, ids):  # slurm/config.sh's settings reached every job
        info = job(cluster, job_id)
        partition = "debug" if stage.startswith("train") else "long"
        assert (info["Account"], info["Partition"]) == ("polar", partition), (stage, info["Partition"])
    for model in ("unet", "tsvit_v3"):
        scores = json.loads((out / "train" / model / "evaluation.json").read_text())["scores"]
        assert set(scores) == {"SIC", "SOD", "FLOE", "combined"}
        assert scores["combined"] == pytest.approx(_combined(scores), abs=0.01) and scores["SOD"] <= 100  # 2 decimals
    executed = {p.name for p in (out / "notebooks").rglob("*.ipynb")}
    assert executed == {"05_evaluate.ipynb", "06_explain.ipynb", "07_paper_figures.ipynb"}
    assert list((out / "evaluate" / "charts").glob("*.nc")) and (out / "evaluate" / "upload_package.nc").exists()
    assert {"fig_per_class_f1.pdf", "fig_modality_share_tsvit_v3.pdf"} <= {p.name for p in (out / "figures").iterdir()}


def test_a_failing_stage_stops_the_chain_and_says_where_its_log_is(cluster):
    refused = run(cluster, "slurm/pipeline.sh", "submit", "nothing", "--synthetic", "0 2 200", check=False)
    assert refused.returncode == 2 and "--synthetic" in refused.stderr  # caught before anything is submitted
    assert not (Path(cluster["SEAICE_RUNS"]) / "nothing" / "jobs.tsv").exists()
    # 13 regions: submitted, and the data job fails when it runs (the generator knows 12)
    run(cluster, "slurm/pipeline.sh", "submit", "broken", "--synthetic", "13 1 200", "--models", "unet")
    waited = run(cluster, "slurm/pipeline.sh", "wait", "broken", check=False)
    assert waited.returncode == 1
    out = Path(cluster["SEAICE_RUNS"]) / "broken"
    failed = [line for line in waited.stdout.splitlines() if line.startswith("FAILED")]
    ids = [line.split("\t")[1] for line in (out / "jobs.tsv").read_text().splitlines()]
    assert len(failed) == 1 and f"stage data, job {ids[0]} (FAILED" in failed[0], waited.stdout
    log = Path(failed[0].rsplit("its log: ", 1)[1])
    assert log.parent == out / "logs" and "regions" in log.read_text()  # the error is in that log
    for later in ids[1:]:
        info = job(cluster, later)
        assert (info["JobState"], info["Reason"]) == ("CANCELLED", "DependencyNeverSatisfied"), later
    # a job slurmctld has forgotten (and no accounting to ask) is reported, never taken as completed
    with (out / "jobs.tsv").open("a") as jobs:
        jobs.write("ghost\t999999\n")
    status = run(cluster, "slurm/pipeline.sh", "status", "broken", check=False)
    assert status.returncode == 1 and "UNKNOWN: stage ghost, job 999999" in status.stdout


def _batch(cluster, tmp_path, name: str, grid: dict) -> tuple[list[dict], dict]:
    """``seaice batch --slurm`` of the ratio notebook over ``grid``: (the array's tasks, the summary job)."""
    notebook = write_notebook(tmp_path / "ratio.ipynb")
    grid = write_grid(tmp_path / f"{name}.yaml", grid)
    submitted = run(cluster, sys.executable, "-m", "seaice_lib", "batch", notebook, grid, "--name", name, "--runs",
                    tmp_path / "runs", "--slurm").stdout
    array, summary = re.search(r"job array (\d+), summary job (\d+)", submitted).groups()
    summary_job = wait_for(cluster, summary)
    tasks = run(cluster, "scontrol", "show", "job", "-o", array).stdout.splitlines()
    return [dict(f.split("=", 1) for f in t.split() if "=" in f) for t in tasks], summary_job


def test_a_batch_runs_as_a_job_array_with_a_summary_after_it(cluster, tmp_path):
    cluster = {**cluster, **SETTINGS}
    tasks, summary = _batch(cluster, tmp_path, "grid", {"a": [3], "b": [2, 4]})
    assert [t["JobState"] for t in tasks + [summary]] == ["COMPLETED"] * 3
    assert {(t["Account"], t["Partition"]) for t in tasks + [summary]} == {("polar", "long")}  # slurm/config.sh
    out = tmp_path / "runs" / "grid"
    assert [float((out / s / "ratio.txt").read_text()) for s in ("a-3_b-2", "a-3_b-4")] == [1.5, 0.75]
    table = (out / "summary.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in table[1:]] == [["a-3_b-2", "completed"], ["a-3_b-4", "completed"]]


def test_a_failed_set_in_a_batch_array_is_reported_and_the_rest_go_on(cluster, tmp_path):
    tasks, summary = _batch(cluster, tmp_path, "grid", {"a": [3], "b": [0, 2]})
    assert summary["JobState"] == "FAILED"  # the summary exits 1: one set failed
    assert sorted(t["JobState"] for t in tasks) == ["COMPLETED", "FAILED"]
    table = (tmp_path / "runs" / "grid" / "summary.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in table[1:]] == [["a-3_b-0", "failed"], ["a-3_b-2", "completed"]]
    assert "ZeroDivisionError" in table[1]
    assert float((tmp_path / "runs" / "grid" / "a-3_b-2" / "ratio.txt").read_text()) == 1.5


def test_an_experiment_runs_as_job_arrays_and_a_second_submission_finds_nothing_to_run(cluster, four_regions,
                                                                                     tmp_path):
    scenes, store = four_regions
    path = write_experiment(tmp_path / "e.yaml", scenes, store, seeds=[1], folds={"held_out": [["SouthEast"]]},
                            compare=[["v1 vs U-Net", "tsvit_v1", "unet_sar"]])
    submit = [sys.executable, "-m", "seaice_lib", "experiment", "run", path, "--runs", tmp_path / "runs", "--slurm"]
    printed = run(cluster, *submit).stdout
    submitted = re.findall(r"submitted (\d+) executions as job array (\d+), summary job (\d+)", printed)
    assert [n for n, _, _ in submitted] == ["1", "2"]  # the floors, then the two training runs
    cpus = {}
    for _, array, summary in submitted:
        assert wait_for(cluster, summary)["JobState"] == "COMPLETED"
        tasks = run(cluster, "scontrol", "show", "job", "-o", array).stdout.splitlines()
        assert all("JobState=COMPLETED" in t for t in tasks)
        cpus[array] = {re.search(r"CPUs/Task=(\d+)", t).group(1) for t in tasks}
    # the floors keep batch.sbatch's 2 CPUs; training tasks are sized from their configs (no loader workers)
    assert [cpus[array] for _, array, _ in submitted] == [{"2"}, {"1"}]
    assert run(cluster, sys.executable, "-m", "seaice_lib", "experiment", "status", path).returncode == 0
    results = sorted(p.name for p in (tmp_path / "results" / "jobs").glob("*.json"))
    assert results == ["floors_fold0_seed1.json", "tsvit_v1_fold0_seed1.json", "unet_sar_fold0_seed1.json"]
    curve = json.loads((tmp_path / "results" / "jobs" / "unet_sar_fold0_seed1.json").read_text())["curve"]
    assert [p["step"] for p in curve] == [2, 4, 6]
    again = run(cluster, *submit).stdout
    assert "3 jobs, 3 finished, 0 to run" in again and "submitted" not in again


def test_settings_of_config_sh_reach_every_submission(cluster):
    """slurm/sbatch.sh: account and partition from the settings (the GPU partition for training),
    options given on the command line win, and the log goes to runs/slurm/ (created)."""
    env = {**cluster, **SETTINGS}
    submitted = {}
    for script, extra in (("jupyter.sbatch", []), ("train.sbatch", ["configs/demo.yaml"]),
                          ("notebook.sbatch", ["notebooks/02_explore.ipynb", "x"])):
        options = ["--partition=debug"] if script == "notebook.sbatch" else []
        submitted[script] = run(env, "slurm/sbatch.sh", "--parsable", "--hold", *options, f"slurm/{script}",
                                *extra).stdout.strip()
    try:
        infos = {script: job(env, job_id) for script, job_id in submitted.items()}
    finally:
        run(env, "scancel", *submitted.values())
    assert {s: (i["Account"], i["Partition"]) for s, i in infos.items()} == {
        "jupyter.sbatch": ("polar", "long"), "train.sbatch": ("polar", "debug"), "notebook.sbatch": ("polar", "debug")}
    logs = Path(env["SEAICE_RUNS"]) / "slurm"
    assert infos["jupyter.sbatch"]["StdOut"] == f"{logs}/seaice-jupyter-{submitted['jupyter.sbatch']}.out"


def test_a_notebook_job_takes_yaml_and_scalar_parameters_and_logs_its_cells(cluster, tmp_path):
    """notebook.sbatch NOTEBOOK NAME PARAMS.yaml -p KEY VALUE: lists through the YAML file, scalars
    with -p, the executed notebook in runs/NAME/JOBID/, cell output in the job log; submitted with
    a runs folder that does not exist yet."""
    env = {**cluster, "SEAICE_RUNS": str(tmp_path / "fresh" / "runs")}
    code_notebook(tmp_path / "sums.ipynb", "a = 1\nvalues = []", "print(f'ratio {a / sum(values)}')")
    (tmp_path / "params.yaml").write_text("values: [1, 1]\n")
    job_id = run(env, "slurm/sbatch.sh", "--parsable", "slurm/notebook.sbatch", tmp_path / "sums.ipynb", "sums",
                 tmp_path / "params.yaml", "-p", "a", "3").stdout.strip()
    info = wait_for(env, job_id)
    log = Path(env["SEAICE_RUNS"]) / "slurm" / f"seaice-notebook-{job_id}.out"
    assert info["JobState"] == "COMPLETED", log.read_text()
    executed = nbformat.read(Path(env["SEAICE_RUNS"]) / "sums" / job_id / "sums.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "a = 3" in injected.source and "values = [1, 1]" in injected.source
    assert executed.cells[-1].outputs[0]["text"] == "ratio 1.5\n"
    assert "ratio 1.5" in log.read_text()  # --log-output: the cells' output in the job log


def test_the_pipeline_downloads_from_a_portal_and_runs_on(cluster, tmp_path):
    """The data stage as a download: a local portal (the figshare API) serves raw scenes; the chain
    downloads, prepares and trains on them."""
    generate(tmp_path / "synthetic", regions=2, scenes_per_region=2, size=(200, 200), raw=True, progress=False)
    raw = tmp_path / "synthetic" / "raw"
    files = [PortalFile(100 + i, p.name, p.read_bytes()) for i, p in enumerate(sorted(raw.glob("*.nc")))]
    with PortalServer({ARTICLES["raw-train"]: files}) as portal:
        run(cluster, "slurm/pipeline.sh", "submit", "fetched", "--article", "raw-train", "--api-url", portal.url,
            "--max-scenes", "6", "--models", "unet", "--set", "steps=4", "--set", "steps_per_epoch=2",
            "--set", "batch_size=4", "--set", "model_size=tiny", "--patch-args", "--patch 32 --downsample 4")
        waited = run(cluster, "slurm/pipeline.sh", "wait", "fetched", check=False)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    out = Path(cluster["SEAICE_RUNS"]) / "fetched"
    for original in raw.glob("*.nc"):  # the downloaded files are the portal's, byte for byte
        assert (out / "raw" / original.name).read_bytes() == original.read_bytes()
    assert len(list((out / "scenes").glob("*_prep.nc"))) == 4
    assert json.loads((out / "train" / "unet" / "evaluation.json").read_text())["scores"]["combined"] is not None


def _config(cfg: TrainConfig, path: Path) -> Path:
    cfg.to_yaml(path)
    return path


def test_two_tasks_train_with_ddp_through_srun_and_torchrun(cluster, patch_store, tmp_path):
    """Two torchrun agents (one per srun task) on one node meet through the c10d rendezvous and
    train as one process on the global batch does."""
    cfg = train_config(patch_store, tmp_path / "ddp", steps=4, steps_per_epoch=2, batch_size=2, augment=True,
               balance_power=0.5, optimizer="sgd", lr=0.1, evaluate=False)
    config = _config(cfg, tmp_path / "ddp.yaml")
    one_thread = f"--export=ALL,MASTER_PORT={free_port()},OMP_NUM_THREADS=1"  # as the reference below
    submitted = run(cluster, "sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2",
                    f"--output={tmp_path}/ddp-%j.out", one_thread, "slurm/train.sbatch", config)
    info = wait_for(cluster, submitted.stdout.strip())
    log = (tmp_path / f"ddp-{submitted.stdout.strip()}.out").read_text()
    assert info["JobState"] == "COMPLETED", log
    assert "2 torchrun(s) x 1 cpu trainer(s)" in log
    ranks = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    assert ranks["world_size"] == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the ranks: thread counts change float sums
    try:
        model, losses = one_process_on_the_global_batch(cfg, world=2)
    finally:
        torch.set_num_threads(threads)
    weights = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)["model"]
    for name, param in model.named_parameters():  # not BN running statistics: DDP keeps rank 0's
        torch.testing.assert_close(weights[name], param.detach(), rtol=1e-5, atol=1e-6, msg=name)
    rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epoch_losses = [float(r.split(",")[header.index("train_loss")]) for r in rows[1:]]
    assert epoch_losses == pytest.approx([sum(losses[e:e + 2]) / 2 for e in (0, 2)], rel=1e-5)


def test_a_training_job_gets_cpus_for_its_loader_workers_and_trains_from_a_staged_store(cluster, patch_store,
                                                                                           tmp_path):
    """slurm/sbatch.sh sizes the job from the config (a CPU for the trainer and each loader worker,
    its job_mem), srun is given the same count, and SEAICE_STAGE_STORE trains from a node-local
    copy of the store, removed when the job ends."""
    cfg = train_config(patch_store, tmp_path / "run", steps=2, steps_per_epoch=2, batch_size=2, evaluate=False,
                       num_workers=1, job_mem="700M")
    config = _config(cfg, tmp_path / "staged.yaml")
    stage = tmp_path / "node-local"
    env = {**cluster, "SEAICE_STAGE_STORE": "1", "SEAICE_STAGE_DIR": str(stage)}
    job_id = run(env, "slurm/sbatch.sh", "--parsable", f"--output={tmp_path}/staged-%j.out",
                 "--export=ALL,OMP_NUM_THREADS=1", "slurm/train.sbatch", config).stdout.strip()
    info = wait_for(env, job_id)
    log = (tmp_path / f"staged-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log
    assert (info["CPUs/Task"], info["MinMemoryNode"]) == ("2", "700M")
    assert "1 torchrun(s) x 1 cpu trainer(s), 2 CPUs per task" in log
    staged = stage / f"seaice-{job_id}" / patch_store.name
    assert f"staged store {patch_store} to {staged} on every node" in log
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["store"] == str(staged)
    assert (tmp_path / "run" / "model.pt").is_file() and not staged.exists()


def _wait_for_line(log: Path, marker: str, cluster, job_id, timeout=300) -> None:
    """Until the job's log ``log`` has a line with ``marker``; fails if the job ends first."""
    end = time.monotonic() + timeout
    while not (log.exists() and any(marker in line for line in log.read_text().splitlines())):
        state = job(cluster, job_id)["JobState"]
        assert state in ACTIVE and time.monotonic() < end, f"no {marker!r} in {log} ({state})"
        time.sleep(0.2)


def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_weights(cluster, patch_store, tmp_path):
    """USR1 to the batch script, as Slurm sends it before the time limit, while the trainer waits
    after step 6 of 12 (tests/paused_trainers: the signal lands mid-run, never after the end): the
    trainer gets SIGTERM, checkpoints, the job requeues and the next start resumes to the weights of
    an uninterrupted run."""
    cfg = train_config(patch_store, tmp_path / "preempted", steps=12, steps_per_epoch=4, evaluate=False,
                       checkpoint_every=0)
    config = _config(cfg, tmp_path / "preempt.yaml")
    go = tmp_path / "go"
    pausing = f"PYTHONPATH={Path(__file__).parent / 'paused_trainers'},SEAICE_TEST_PAUSE=6 {go}"
    one_thread = f"--export=ALL,MASTER_PORT={free_port()},OMP_NUM_THREADS=1,{pausing}"  # as the reference below
    job_id = run(cluster, "sbatch", "--parsable", f"--output={tmp_path}/preempt-%j.out", one_thread,
                 "slurm/train.sbatch", config).stdout.strip()
    log = tmp_path / f"preempt-{job_id}.out"
    _wait_for_line(log, "paused 0 ", cluster, job_id)
    run(cluster, "scancel", "--batch", "--signal=USR1", job_id)
    _wait_for_line(log, "signalled 0 SIGTERM", cluster, job_id)  # the trap's TERM, through torchrun
    go.touch()
    end = time.monotonic() + 300
    while (info := job(cluster, job_id))["Restarts"] == "0" or info["Reason"] != "BeginTime":
        assert info["JobState"] in ACTIVE and time.monotonic() < end, info["JobState"]
        time.sleep(0.5)
    # shorten SLURM's requeue delay (2 min) to 10 s: slurmd refuses a start while it still cleans up the last
    run(cluster, "scontrol", "update", f"JobId={job_id}", "StartTime=now+10")
    info = wait_for(cluster, job_id)
    log = (tmp_path / f"preempt-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info["JobState"], info["Restarts"], log)
    assert '"status": "preempted"' in log and "requeueing" in log and '"status": "completed"' in log
    stopped, _ = json.JSONDecoder().raw_decode(log, log.index("{"))  # the first start's summary
    assert stopped["status"] == "preempted" and stopped["steps"] == 6  # stopped where it waited, resumed
    reference = TrainConfig.from_dict(cfg.to_dict() | {"out_dir": str(tmp_path / "uninterrupted")})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(reference)
    finally:
        torch.set_num_threads(threads)
    resumed = torch.load(tmp_path / "preempted" / "model.pt", weights_only=True)["model"]
    straight = torch.load(tmp_path / "uninterrupted" / "model.pt", weights_only=True)["model"]
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


def test_jupyterlab_runs_on_a_compute_node_with_a_token(cluster, tmp_path):
    env = {**cluster, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter")}  # where --user registers the kernel
    job_id = run(env, "slurm/sbatch.sh", "--parsable", "slurm/jupyter.sbatch").stdout.strip()
    connection = Path(cluster["SEAICE_RUNS"]) / "jupyter" / job_id / "connection.txt"
    end = time.monotonic() + 120
    while not connection.exists():
        assert job(cluster, job_id)["JobState"] in ACTIVE and time.monotonic() < end
        time.sleep(0.5)
    info = dict(line.split("=", 1) for line in connection.read_text().splitlines())
    assert oct(connection.stat().st_mode & 0o777) == "0o600"
    assert info["tunnel"].startswith(f"ssh -N -L {info['port']}:{info['node']}:{info['port']} ")
    try:
        url = f"http://127.0.0.1:{info['port']}"
        wait_ready(url, info["token"], alive=lambda: job(cluster, job_id)["JobState"] == "RUNNING")
        assert api(url, "wrong", "contents").status_code == 403
        specs = api(url, info["token"], "kernelspecs").json()["kernelspecs"]
        assert specs["seaice"]["spec"]["display_name"] == "Python (seaice)"  # registered by the job
        assert Path(specs["seaice"]["spec"]["argv"][0]).parent == Path(sys.prefix) / "bin"
        prefix, numbers = run_cells(url, info["token"], NOTEBOOK_CELLS, kernel_name="seaice")
        assert prefix.split()[-1] == sys.prefix and numbers.split()[-2:] == ["3", "6"], (prefix, numbers)
        run_download_notebook(url, info["token"], tmp_path / "download", kernel_name="seaice")
        log = Path(cluster["SEAICE_RUNS"]) / "slurm" / f"seaice-jupyter-{job_id}.out"
        assert "ssh -N -L" in log.read_text()
    finally:
        run(cluster, "scancel", job_id)
    assert wait_for(cluster, job_id)["JobState"] == "CANCELLED"

