"""The model comparison (``experiments/synthetic.yaml``) on generated scenes: a thin caller.

Generates the experiment's scenes (8 regions x 4 scenes of 480 x 480 pixels at 80 m, seed 1, with
truth files) and its store (patch 32 at 320 m, up to 3 acquisitions within 7 days) where they are
missing, then runs every job without a current result through ``seaice experiment run`` (two
executions side by side), and writes the report (``report.md``, ``summary.json``) into the results
folder and the figures and tables into OUT (``runs/bench``). The per-job results under
``benchmarks/results/synthetic/`` are committed, so a run on a new machine carries on with the jobs
that are missing. Everything at every budget: many CPU hours; ``seaice experiment run
experiments/synthetic.yaml --folds 0 --seeds 1`` runs a part.
"""

import json
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "synthetic.yaml"
DATA = {"regions": 8, "scenes_per_region": 4, "size": [480, 480], "seed": 1, "truth": True}
STORE = {"patch": 32, "downsample": 4, "max_steps": 3, "window_days": 7.0}
MARKER = "generated.json"  # in the scenes folder: what generated it


def prepare(exp) -> None:
    """The experiment's scenes and store, generated when missing; an error when what is there was
    generated otherwise (never overwritten)."""
    from seaice_lib import synthetic
    from seaice_lib.atomic import write_text
    from seaice_lib.data import patches

    marker = exp.scenes / MARKER
    if exp.scenes.exists():
        found = json.loads(marker.read_text()) if marker.is_file() else None
        if found != DATA:
            raise SystemExit(f"{exp.scenes}: holds scenes generated with {found}, not {DATA}: move it away")
    else:
        synthetic.generate(exp.scenes, regions=DATA["regions"], scenes_per_region=DATA["scenes_per_region"],
                           size=tuple(DATA["size"]), seed=DATA["seed"], truth=DATA["truth"], progress=False)
        write_text(marker, json.dumps(DATA))
    if not exp.store.exists():
        patches.extract_store(exp.scenes, exp.store, patches.PatchConfig(**STORE), progress=False)


def main(out: Path) -> None:
    from seaice_lib import experiments
    from seaice_lib.experiments import cli
    from seaice_lib.experiments.report import markdown
    from seaice_lib.figures import experiment as figures

    exp = experiments.load(EXPERIMENT)
    prepare(exp)
    code = cli.run(exp, Path("runs").resolve(), jobs=2, slurm=False)
    doc = cli.write_report(exp)
    figures.experiment_figures(doc, out, exp.name)
    print(markdown(doc))
    if code:
        print(f"{len(doc['missing'])} jobs without a result (see above); run again to retry them")
