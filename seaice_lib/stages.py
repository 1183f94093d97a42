"""Which stage's output a folder is: each stage (scenes, patch store, run, charts, export) writes its
own folders, and a command refuses to write into another stage's (README, "Where outputs go")."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

SCENES = "a folder of scenes"
STORE = "a patch store"
RUN = "a run folder"
CHARTS = "a folder of charts"
EXPORT = "an export folder"
MARKERS = {STORE: ("zarr.json",), SCENES: ("*_prep.nc",), CHARTS: ("*_charts.nc",), EXPORT: ("export.json",)}
PROVENANCE_FILE = "provenance.json"  # in a run folder: who trained it and the final weights' hash
# notebook 04_train's run folder (relative to its kernel's folder) where neither out_dir nor a config names one
NOTEBOOK_RUN_FOLDER = "../runs/notebooks/train/{model}"
NOTEBOOK_MODEL = "tsvit_v2"  # the model notebooks/04_train trains where neither its parameters nor a config name one
WEIGHTS_SUBFOLDERS = ("checkpoints", "curve")  # in a run folder: the weights of steps before the final model.pt
# the records of folders that are no stage's but one writer's: a notebook's out_dir, `seaice figures`' OUT_DIR
NOTEBOOK_RECORD = "notebook_outputs.json"  # which notebook execution made the files listed there
FIGURES_RECORD = "figures.json"  # what made the folder's figures


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training's: it holds a checkpoint (``checkpoints/last.pt``), a
    ``config.yaml`` that names a model, a store and an out_dir, or a ``provenance.json`` with the
    invocations a training records."""
    folder = Path(folder)
    if (folder / WEIGHTS_SUBFOLDERS[0] / "last.pt").is_file():
        return True
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        if isinstance(config, dict) and {"model", "store", "out_dir"} <= set(config):
            return True
    except (OSError, ValueError, yaml.YAMLError):
        pass
    try:
        recorded = json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and isinstance(recorded.get("invocations"), list)


def stages_of(folder: Path) -> list[str]:
    """The stages whose output ``folder`` holds, by their files (:data:`MARKERS`, :func:`is_run_folder`);
    [] for a folder that is not there."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [stage for stage, patterns in MARKERS.items() if any(any(folder.glob(p)) for p in patterns)]
    return found + [RUN] * is_run_folder(folder)


def other_stage(folder: str | Path, own: tuple[str, ...] = ()) -> str:
    """Why ``folder`` is another stage's output than ``own``, for a one-line error ("a patch store",
    "inside the patch store S", "inside run R's checkpoints"); "" where a command may write there.
    Inside a store nothing else may write; inside a run, its weights folders are the training's. The
    path is resolved first: a link into a store or a run's weights is where it leads."""
    folder = Path(folder).resolve()
    if theirs := [stage for stage in stages_of(folder) if stage not in own]:
        return theirs[0]
    stores = [above for above in folder.parents if (above / MARKERS[STORE][0]).is_file()]  # its groups have one too
    if stores:
        return f"inside the patch store {stores[-1]}"
    for above in (folder, *folder.parents):
        if above.name in WEIGHTS_SUBFOLDERS and is_run_folder(above.parent):
            return f"inside run {above.parent}'s {above.name}"
    return ""
