"""Stopping on a signal (seaice_lib.stopping): what a stop that abandons work leaves on stderr."""

import subprocess
import sys
import textwrap

from seaice_lib.stopping import STOPPED_EXIT_CODE

# an object whose finalizer needs what the rest of its __init__ sets (as xarray's file managers do);
# the child is stopped halfway through building one, then builds one that fails on its own after the stop
CHILD = textwrap.dedent("""
    import os, signal, sys
    from seaice_lib import logs
    from seaice_lib.stopping import Stopped, abandon_on_stop
    logs.configure(verbose=True)

    class Opened:
        def __init__(self, stop_midway):
            if stop_midway:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise OSError("cannot open")
            self.handle = 1
        def __del__(self):
            self.handle

    hook = sys.unraisablehook
    try:
        with abandon_on_stop():
            Opened(stop_midway=True)
    except Stopped as stop:
        print("stopped by", stop)
    print("hook restored:", sys.unraisablehook is hook, flush=True)
    try:
        Opened(stop_midway=False)
    except OSError:
        pass
    sys.exit({code})
""")


def test_a_finalizer_the_stop_cut_short_fails_quietly_and_later_ones_are_still_shown():
    """ci20: a SIGTERM that abandoned a scene while xarray built a file manager left its failing
    ``__del__``'s traceback on stderr. While stopping such an error is one debug line; afterwards
    Python shows them again (the control: the second object, which fails without a stop)."""
    proc = subprocess.run([sys.executable, "-c", CHILD.format(code=STOPPED_EXIT_CODE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == STOPPED_EXIT_CODE, proc.stderr
    assert proc.stdout.splitlines() == ["stopped by SIGTERM", "hook restored: True"]
    quiet = [line for line in proc.stderr.splitlines() if line.startswith("after the stop:")]
    assert len(quiet) == 1 and quiet[0].endswith("AttributeError: 'Opened' object has no attribute 'handle'"), quiet
    assert proc.stderr.count("Exception ignored") == 1 and proc.stderr.count("Traceback") == 1, proc.stderr
