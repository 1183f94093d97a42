"""engine.run.Run: a run folder of `seaice train` as its readers see it, checked against what the
folder's files hold when read directly (torch.load, json, yaml, hashlib), and on hand-made broken
folders: each problem a one-line error naming the folder or the file."""

import hashlib
import json
import shutil

import pytest
import torch
import yaml

from seaice_lib.data.store import check_store
from seaice_lib.engine.config import TrainConfig
from seaice_lib.engine.evaluation import Evaluation
from seaice_lib.engine.run import Run


def _raises(kind, call, *named):
    with pytest.raises(kind) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and all(n in message for n in named), message
    return message


def test_a_trained_run_is_read_as_its_files_hold(run_dir, patch_store):
    run = Run(run_dir)
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    weights = torch.load(run_dir / "model.pt", weights_only=True)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert run.folder == run_dir and run.config_file == run_dir / "config.yaml"
    assert isinstance(run.config, TrainConfig)
    assert (run.config.store, run.config.model, run.config.model_size, run.config.steps) == \
        (str(patch_store), "unet", "tiny", 2) == (written["store"], written["model"], written["model_size"], written["steps"])
    assert run.store == patch_store
    assert run.weights == run_dir / "model.pt" and run.has_weights and run.final_weights
    assert run.spec == weights["spec"] and run.spec["tiles"]["patch"] == weights["spec"]["tiles"]["patch"]
    model = run.load_model()
    assert not model.training and model.state_dict().keys() == weights["model"].keys()
    assert all(torch.equal(v, weights["model"][k]) for k, v in model.state_dict().items())
    tiles = run.patch_config().tile_settings()
    assert tiles == run.patch_config(patch_store).tile_settings() == weights["spec"]["tiles"]
    assert run.val_scenes == evaluation["info"]["val_scenes"] and run.val_scenes
    assert isinstance(run.evaluation, Evaluation) and run.evaluation.info["val_scenes"] == run.val_scenes
    assert run.evaluation.info["modalities"] == written["modalities"] == ["sar", "amsr2", "era5"]  # what it read
    assert run.export_dir == run_dir / "export" and run.curve_weights(7) == run_dir / "curve" / "step_000007.pt"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert run.provenance == provenance
    assert run.provenance["model"]["sha256"] == hashlib.sha256((run_dir / "model.pt").read_bytes()).hexdigest()
    invocations = run.provenance["invocations"]
    assert invocations and all({"version", "commit", "command"} <= set(i) for i in invocations)


def test_the_training_scenes_are_the_recorded_split_less_the_validation(run_dir, patch_store):
    run = Run(run_dir)
    record = torch.load(run_dir / "model.pt", weights_only=True).get("data")
    train = run.train_scenes(patch_store)
    assert train and not set(train) & set(run.val_scenes) and set(train) <= set(check_store(patch_store))
    if record is not None:
        assert train == [s for s in record["train_scenes"] if s in set(check_store(patch_store))]


def test_a_weights_file_opens_the_run_it_lies_in(run_dir, tmp_path):
    run = Run.open(run_dir / "model.pt")
    assert run.folder == run_dir and run.weights == run_dir / "model.pt"
    assert Run.open(run_dir).weights == run_dir / "model.pt"
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(run_dir / "model.pt", tmp_path / "checkpoints" / "last.pt")
    other = Run(tmp_path)
    assert other.weights == tmp_path / "checkpoints" / "last.pt" and not other.final_weights
    assert other.spec == Run(run_dir).spec
    # no config.yaml beside them: the tile settings the weights record
    assert other.patch_config().tile_settings() == Run(run_dir).spec["tiles"]
    assert [r.folder for r in Run.evaluated_in(run_dir.parent)] == [run_dir]


def test_what_is_not_a_run_folder_is_named(tmp_path):
    _raises(ValueError, lambda: Run(tmp_path / "missing"), f"{tmp_path / 'missing'}: not a run folder")
    run = Run(tmp_path)
    assert (run.config, run.config_file, run.evaluation, run.provenance, run.has_weights) == (None, None, None, None, False)
    _raises(FileNotFoundError, lambda: run.weights, f"{tmp_path / 'checkpoints' / 'last.pt'}: no model.pt or checkpoints/last.pt")
    _raises(FileNotFoundError, run.load_model, "no model.pt or checkpoints/last.pt")
    _raises(ValueError, run.patch_config, f"{tmp_path}: no config.yaml (is it a run folder of `seaice train`?)")
    _raises(ValueError, lambda: run.val_scenes, f"{tmp_path}: no evaluation.json to read validation scenes from")
    _raises(FileNotFoundError, lambda: Run.open(tmp_path / "model.pt").load_model(), f"{tmp_path / 'model.pt'}: no model.pt")


def test_a_config_that_does_not_parse_is_named(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    run = Run(tmp_path / "run")
    (run.folder / "config.yaml").write_text("store: [unclosed\n")
    path = run.folder / "config.yaml"
    _raises(ValueError, lambda: run.config, f"{path}: cannot read the training config")
    _raises(ValueError, run.patch_config, f"{path}: cannot read the training config", "(or name the store with --store)")
    (run.folder / "config.yaml").write_text("lr: 0.1\n")
    _raises(ValueError, lambda: Run(run.folder).config, f"{path}: missing keys ['store', 'out_dir']")


def test_a_moved_store_takes_the_recorded_settings_and_an_unknown_one_is_named(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    config.store = str(tmp_path / "moved.zarr")
    config.to_yaml(tmp_path / "run" / "config.yaml")
    assert Run(tmp_path / "run").patch_config().tile_settings() == Run(run_dir).spec["tiles"]
    (tmp_path / "run" / "model.pt").unlink()  # no weights: no recorded settings either
    shutil.rmtree(tmp_path / "run" / "checkpoints", ignore_errors=True)
    _raises(ValueError, Run(tmp_path / "run").patch_config, f"its store {tmp_path / 'moved.zarr'} is not there",
            "(name the store with --store)")


@pytest.mark.parametrize("content, scenes, named", [
    ('{"info": {"n_scenes": 2}}', [], None),  # no val_scenes: none recorded
    ('{"info": {"val_scenes": null}}', [], None),
    ("[1, 2]", None, "evaluation.json: records no validation scenes"),
    ('{"scores": {}}', None, "evaluation.json: records no validation scenes"),
    ('{"info": ', None, "evaluation.json: not JSON"),
    ('{"info": {"val_scenes": ["20180101T000000_dmi"]}, "content_sha256": "00"}', None,  # R2: edited since
     "evaluation.json: edited since it was written"),
])
def test_the_validation_scenes_of_a_hand_made_evaluation(content, scenes, named, tmp_path):
    (tmp_path / "evaluation.json").write_text(content)
    run = Run(tmp_path)
    if named is None:
        assert run.val_scenes == scenes
    else:
        _raises(ValueError, lambda: run.val_scenes, str(tmp_path / "evaluation.json"), named)


def test_a_damaged_provenance_record_is_named(tmp_path):
    (tmp_path / "provenance.json").write_text("[1]")
    _raises(ValueError, lambda: Run(tmp_path).provenance, f"{tmp_path / 'provenance.json'}: not a provenance record")
    (tmp_path / "provenance.json").write_text("{")
    _raises(ValueError, lambda: Run(tmp_path).provenance, f"{tmp_path / 'provenance.json'}: not JSON")


def test_a_spec_from_before_specs_recorded_modalities_takes_its_run_s_config(patch_store, tmp_path):
    """RT21-R4: a model.pt whose spec records no modalities (before specs did) of a run trained on
    SAR and AMSR2 was taken as reading all three: export.json said so, and predict refused a scene
    for an ERA5 value the model never had. Its config.yaml says what it was trained on."""
    from seaice_lib.data.dataset import PatchDataset
    from seaice_lib.engine.run import model_spec
    from seaice_lib.models import create_model

    cfg = TrainConfig(store=str(patch_store), out_dir=str(tmp_path / "run"), model="tsvit_v3", model_size="tiny",
                      modalities=["sar", "amsr2"])
    spec = model_spec(cfg, PatchDataset(patch_store).settings, patch_store)
    model = create_model(spec["name"], spec["size"], **spec["kwargs"])
    (tmp_path / "run").mkdir()
    torch.save({"spec": {k: v for k, v in spec.items() if k != "modalities"}, "model": model.state_dict()},
               tmp_path / "run" / "model.pt")
    assert Run(tmp_path / "run").modalities == ("sar", "amsr2", "era5")  # no config: all, as before
    cfg.to_yaml(tmp_path / "run" / "config.yaml")
    run = Run(tmp_path / "run")
    assert run.modalities == ("sar", "amsr2") and run.load_model().modalities == ("sar", "amsr2")
