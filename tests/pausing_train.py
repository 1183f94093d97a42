"""`seaice train` that pauses after one optimizer step, for preemption tests to signal it there.

As a script (what torchrun starts): ``pausing_train.py STEP GO_FILE --config ... [--set ...]``;
after step STEP each rank prints ``paused RANK`` and waits until GO_FILE exists, and at the end
prints ``exit RANK STATUS`` and exits with `seaice train`'s status.
"""

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from seaice_lib.engine import training


def main_paused(argv: list[str], step: int, pause: Callable[[], None]) -> int:
    """``training.main(argv)`` (the `seaice train` command) calling ``pause()`` after step ``step``."""
    def on_step(done: int, model) -> None:
        if done == step:
            pause()
    real = training.train
    training.train = functools.partial(real, on_step=on_step)
    try:
        return training.main(argv)
    finally:
        training.train = real


if __name__ == "__main__":
    rank, go = os.environ.get("RANK", "0"), Path(sys.argv[2])

    def wait_for_go() -> None:
        print(f"paused {rank}", flush=True)
        while not go.exists():
            time.sleep(0.01)
    status = main_paused(sys.argv[3:], int(sys.argv[1]), wait_for_go)
    print(f"exit {rank} {status}", flush=True)
    sys.exit(status)
