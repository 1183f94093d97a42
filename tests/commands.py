"""The `seaice` command run in the test process: the one line of a usage error, and a run trained
by `seaice train`."""

from pathlib import Path

import pytest
import yaml

from seaice_lib.cli import main


def usage_error(args, capsys) -> str:
    """The one error line of ``seaice ARGS``, which must stop with a usage error (exit 2)."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    return errors[0]


def train_run(store, out: Path, **settings) -> Path:
    """A run trained by ``seaice train`` into ``out``: a tiny U-Net for two steps unless ``settings``
    say otherwise."""
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump({
        "store": str(store), "out_dir": str(out), "model": "unet", "model_size": "tiny", "steps": 2,
        "steps_per_epoch": 2, "warmup_steps": 1, "batch_size": 4, "device": "cpu", "val_fraction": 0.3,
        "progress": False, "checkpoint_every": 0, **settings}))
    assert main(["train", "--config", str(config)]) == 0
    return out
