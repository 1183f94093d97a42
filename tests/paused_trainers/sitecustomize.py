"""With this folder on PYTHONPATH and ``SEAICE_TEST_PAUSE="STEP GO_FILE"`` set, ``python -m
seaice_lib train`` (how torchrun starts the trainers of slurm/train.sbatch) pauses after optimizer
step STEP as tests/pausing_train.py's trainers do: it prints ``paused RANK PID``, waits for a stop
signal, prints ``signalled RANK SIGNAL`` and goes on once GO_FILE exists. Other Python processes
started with this environment (torchrun itself) are left alone. For tests only: Python imports a
``sitecustomize`` module at every start, from the first folder of sys.path that holds one.
"""

import os
import sys


def _pause_the_trainer() -> None:
    import importlib.util
    from pathlib import Path

    step, go = os.environ["SEAICE_TEST_PAUSE"].split(" ", 1)
    spec = importlib.util.spec_from_file_location("pausing_train", Path(__file__).parents[1] / "pausing_train.py")
    pausing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pausing)
    pausing.pause_after(int(step), pausing.signalled_pause(Path(go)))


_argv = sys.orig_argv  # sys.argv is not set yet
if os.environ.get("SEAICE_TEST_PAUSE") and "-m" in _argv \
        and _argv[_argv.index("-m") + 1:][:2] == ["seaice_lib", "train"]:
    _pause_the_trainer()
