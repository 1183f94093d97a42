"""What the commands log (seaice_lib/logs.py): no carriage return without a terminal, ``-q`` keeps
warnings and results only, ``-v`` adds debug lines, ``--log-file`` gets timestamped lines, and every
stage's help ends with a whole sentence."""

import re
import shutil
import subprocess
import sys

import pytest

from seaice_lib import __version__, logs
from seaice_lib.cli import STAGES, main

STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) seaice_lib[.\w]*: ")


def seaice(log, *args) -> tuple[int, str]:
    """``python -m seaice_lib ARGS`` with stdout and stderr into the file ``log`` (as a SLURM job's
    log: no terminal); its exit status and the log, carriage returns kept."""
    with open(log, "wb") as out:
        code = subprocess.run([sys.executable, "-m", "seaice_lib", *map(str, args)], stdout=out,
                              stderr=subprocess.STDOUT, timeout=600).returncode
    return code, log.read_bytes().decode()


@pytest.fixture(scope="module")
def raw_dir(raw_paths, tmp_path_factory):
    """Two raw scenes and a broken file: ``prepare`` prepares two, skips one with a warning."""
    folder = tmp_path_factory.mktemp("raw")
    for path in raw_paths[:2]:
        shutil.copy(path, folder / path.name)
    (folder / (raw_paths[2].name[:-3] + "x.nc")).write_bytes(b"\x89HDF broken")
    return folder


def test_logs_without_a_terminal_hold_no_carriage_return(raw_dir, rtt_paths, tmp_path):
    code, log = seaice(tmp_path / "prepare.log", "prepare", "--raw", raw_dir, "--out", tmp_path / "rtt")
    assert code == 1 and "\r" not in log
    assert "prepare: 0/3 " in log and "prepare: 3/3 " in log  # the bar's plain lines: start and end
    assert "skipped: " in log and "prepared 2 of 3 scenes" in log
    code, log = seaice(tmp_path / "synthetic.log", "synthetic", "--out", tmp_path / "syn", "--regions", "1",
                       "--scenes-per-region", "2", "--size", "60", "60")
    assert code == 0 and "\r" not in log and "synthetic scenes: 2/2 " in log
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for path in rtt_paths[:3]:
        shutil.copy(path, scenes / path.name)
    code, log = seaice(tmp_path / "patches.log", "patches", "--scenes", scenes, "--out", tmp_path / "p.zarr",
                       "--patch", "16", "--downsample", "2")
    assert code == 0 and "\r" not in log and "patches: 3/3 " in log


def test_quiet_keeps_the_warnings_and_the_result_only(raw_dir, tmp_path):
    code, log = seaice(tmp_path / "prepare.log", "-q", "prepare", "--raw", raw_dir, "--out", tmp_path / "rtt")
    assert code == 1 and "prepare: " not in log
    assert [line.split(":")[0] for line in log.splitlines()] == ["skipped", "prepared 2 of 3 scenes into " +
                                                                 str(tmp_path / "rtt")]
    code, log = seaice(tmp_path / "synthetic.log", "synthetic", "--out", tmp_path / "syn", "--regions", "1",
                       "--scenes-per-region", "1", "--size", "60", "60", "--quiet")  # a stage's own --quiet
    assert code == 0 and log.startswith(f"1 scenes in {tmp_path / 'syn'} (1 written, 0 already there") \
        and len(log.splitlines()) == 1


def test_verbose_shows_debug_lines_and_the_log_file_gets_them_timestamped(raw_dir, tmp_path):
    code, log = seaice(tmp_path / "prepare.log", "-v", "--log-file", tmp_path / "seaice.log", "prepare",
                       "--raw", raw_dir, "--out", tmp_path / "rtt")
    assert code == 1 and f"seaice {__version__}: prepare --raw {raw_dir}" in log  # the debug line
    lines = (tmp_path / "seaice.log").read_text().splitlines()
    assert lines and all(STAMPED.match(line) for line in lines)
    assert {"DEBUG", "INFO", "WARNING"} <= {STAMPED.match(line).group(1) for line in lines}
    assert "prepared 2 of 3" not in "\n".join(lines)  # the result is no log line: stdout only
    # quiet on stderr, the info lines in the file all the same
    code, log = seaice(tmp_path / "quiet.log", "-q", "--log-file", tmp_path / "quiet-file.log", "prepare",
                       "--raw", raw_dir, "--out", tmp_path / "rtt")
    kept = (tmp_path / "quiet-file.log").read_text()
    assert "prepare: " not in log and " INFO seaice_lib.logs: prepare: 0/3 " in kept and "DEBUG" not in kept


def test_quiet_and_verbose_together_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["-q", "-v", "prepare", "--help"])
    assert stop.value.code == 2 and "-q and -v: choose one" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["", *STAGES])
def test_every_help_ends_with_a_whole_sentence_on_the_logging_flags(stage, capsys):
    with pytest.raises(SystemExit) as stop:
        main([stage, "--help"] if stage else ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert stop.value.code == 0 and text.endswith(".")
    if stage:
        assert text.endswith(" ".join(logs.EPILOG.split()))


@pytest.mark.parametrize("host_setup, shown", [
    ("", "hello from the library\n"),  # no logging set up: the package's own stderr line
    ("logging.basicConfig(level=logging.INFO)", "INFO:seaice_lib.probe:hello from the library\n"),  # the host's only
    ("logging.basicConfig(filename='host.log', level=logging.INFO)", "hello from the library\n"),  # host logs to a file
])
def test_a_library_line_shows_once_whatever_the_host_set_up(tmp_path, host_setup, shown):
    """Imported by a program that set up logging on the terminal itself, the package's lines go
    through the host's root handler only; else through the package's own stderr line."""
    code = (f"import logging\n{host_setup}\nimport seaice_lib\n"
            "logging.getLogger('seaice_lib.probe').info('hello from the library')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stderr == shown


def test_the_log_file_is_never_a_file_that_is_not_a_log(raw_dir, tmp_path, capsys):
    """Appending to a scene or a JSON record would change it during the run that reads it: refused
    (exit 2, one line, the file unchanged); a new file, an empty one and an earlier log are taken."""
    scene = next(raw_dir.glob("*.nc"))
    record = tmp_path / "provenance.json"
    record.write_text('{"run": "x"}')
    for path in (scene, record):
        before = path.read_bytes()
        with pytest.raises(SystemExit) as stop:
            main(["--log-file", str(path), "prepare", "--raw", str(raw_dir), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "is not a log of seaice" in err and "Traceback" not in err
        assert path.read_bytes() == before and not (tmp_path / "out").exists()
    log = tmp_path / "run.log"
    for _ in range(2):  # a new file, then the same log again
        main(["--log-file", str(log), "prepare", "--raw", str(raw_dir), "--out", str(tmp_path / "out")])
    assert len(re.findall(r"^\d{4}-\d\d-\d\d .* INFO ", log.read_text(), re.M)) >= 2


def test_a_new_log_file_is_never_named_or_placed_where_a_stage_reads_its_input(raw_dir, patch_store, tmp_path, capsys):
    """RT18-R24: a new ``x_prep.nc`` log among scenes was read as a scene by the next stage; a log in
    a store or beside a run's checkpoints changes another stage's output. Refused, exit 2, nothing made."""
    run_weights = tmp_path / "run" / "checkpoints"
    run_weights.mkdir(parents=True)
    (run_weights / "last.pt").write_bytes(b"weights")
    (tmp_path / "scenes").mkdir()
    (tmp_path / "dangling.log").symlink_to(tmp_path / "gone" / "x.log")
    (tmp_path / "scenes" / "a_prep.nc").write_bytes(b"a scene")
    for path, why in ((tmp_path / "scenes" / "x_prep.nc", "a new log's name ends in .log or .txt"),
                      (tmp_path / "scenes" / "x.log", "a folder of scenes, where only its own stage writes"),  # RT19-R2
                      (tmp_path / "new" / "x.log", f"its folder {tmp_path / 'new'} is not there"),
                      (tmp_path / "scenes", "a folder; name the log file"),
                      (tmp_path / "dangling.log", "a symbolic link to nothing; name the log file itself"),  # RT20-R10
                      (tmp_path / "record.json", "a new log's name ends in .log or .txt"),
                      (patch_store / "seaice.log", "a patch store, where only its own stage writes"),
                      (next(p for p in patch_store.iterdir() if p.is_dir()) / "seaice.log", "inside the patch store"),
                      (run_weights / "seaice.log", f"inside run {tmp_path / 'run'}'s checkpoints")):
        with pytest.raises(SystemExit) as stop:
            main(["--log-file", str(path), "prepare", "--raw", str(raw_dir), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"--log-file {path}: {why}" in err and "Traceback" not in err, err
        assert (path.is_dir() or not path.exists()) and not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # RT20-R2: a log in the folder the stage is about to fill, which it then refused
    for stage, option in (("prepare", "--out"), ("prepare", "--out="), ("synthetic", "--out"), ("patches", "--out"),
                          ("download", "--dest")):
        folder = [f"{option}{tmp_path / 'empty'}"] if option.endswith("=") else [option, str(tmp_path / "empty")]
        with pytest.raises(SystemExit) as stop:
            main(["--log-file", str(tmp_path / "empty" / "x.log"), stage, *folder])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"--log-file {tmp_path / 'empty' / 'x.log'}: inside {option.rstrip('=')} " \
            f"{tmp_path / 'empty'} of seaice {stage}, which holds only what it writes" in err, err
        assert list((tmp_path / "empty").iterdir()) == []
    main(["--log-file", str(tmp_path / "prepare.txt"), "prepare", "--raw", str(raw_dir),
          "--out", str(tmp_path / "out")])  # a .txt log is a log
    assert (tmp_path / "prepare.txt").read_text().count(" INFO ") >= 1
