"""Atomic outputs: written under a temporary sibling, renamed only when whole."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seaice_lib.atomic import atomic_path, remove_stale, temporary_sibling, write_text
from seaice_lib.jsondoc import COUNT, NON_NEGATIVE, POSITIVE, read_json


def test_a_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("half")
        assert not target.exists() and tmp.name == f".out.txt.{os.getpid()}.tmp"
    assert target.read_text() == "half"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_a_failure_keeps_the_old_output_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_folders_replace_folders_unless_told_not_to(tmp_path):
    target = tmp_path / "group"
    for text in ("one", "two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text(text)
    assert (target / "data").read_text() == "two"
    with pytest.raises(FileExistsError):
        with atomic_path(target, replace=False) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text("three")
    assert (target / "data").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["group"]


def test_a_folder_renamed_by_another_process_first_is_reported_as_written(tmp_path, monkeypatch):
    target = tmp_path / "group"
    real_replace = os.replace

    def another_process_wins(src, dst):
        Path(dst).mkdir()
        (Path(dst) / "data").write_text("theirs")
        real_replace(src, dst)  # a folder onto a non-empty folder: OSError

    monkeypatch.setattr("seaice_lib.atomic.os.replace", another_process_wins)
    with pytest.raises(FileExistsError):
        with atomic_path(target, replace=False) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text("ours")
    assert (target / "data").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["group"]


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "scene"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = tmp_path / f".scene.{int(dead.stdout)}.tmp"
    stale.mkdir()
    alive = temporary_sibling(target)
    alive.mkdir()
    unrelated = tmp_path / ".scene.notapid.tmp"
    unrelated.write_text("")
    assert remove_stale(target) == [stale]
    assert alive.exists() and unrelated.exists() and not stale.exists()


@pytest.mark.parametrize("name", ["a" * 250, "é" * 127, "[x]*?.json"])
def test_long_names_and_glob_characters_write_and_clean_up(tmp_path, name):
    """The longest names a file system takes (255 bytes) still get a temporary sibling, and one of
    a dead process is found again by the same rule."""
    target = tmp_path / name
    write_text(target, "whole")
    assert target.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == [name]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = temporary_sibling(target).with_name(temporary_sibling(target).name.replace(
        f".{os.getpid()}.tmp", f".{int(dead.stdout)}.tmp"))
    stale.write_text("half")
    assert len(os.fsencode(stale.name)) <= 255 and remove_stale(target) == [stale]


SHAPE = {"name": str, "rate": float, "info": ({"scenes": ([str], None)}, None), "models": {"*": {"speed": float}}}


@pytest.mark.parametrize("text, problem", [
    ('{"name": "a", "rate": ', "not JSON (truncated?)"),
    ('[{"name": "a"}]', "holds a list, not a mapping"),
    ('{"rate": 1, "models": {}}', "no name (must be a string)"),
    ('{"name": "a", "rate": "1.5", "models": {}}', "rate must be a number, not a string"),
    ('{"name": "a", "rate": true, "models": {}}', "rate must be a number, not true or false"),
    ('{"name": "a", "rate": 1, "info": ["x"], "models": {}}', "info must be a mapping or null, not a list"),
    ('{"name": "a", "rate": 1, "info": {"scenes": ["x", 2]}, "models": {}}', "info.scenes[1] must be a string, not an integer"),
    ('{"name": "a", "rate": 1, "models": {"unet": {"speed": null}}}', "models.unet.speed must be a number, not null"),
])
def test_a_json_of_another_shape_is_named_with_its_key(tmp_path, text, problem):
    path, message = _read_json_error(tmp_path, text, SHAPE)
    assert message.startswith(f"{path}: {problem}") and "\n" not in message


def _read_json_error(tmp_path, text, shape):
    """(the file written with ``text``, the message of the ValueError read_json raises on it)."""
    path = tmp_path / "doc.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_json(path, shape)
    return path, str(err.value)


@pytest.mark.parametrize("text, problem", [
    ('{"speed": NaN, "mib": 0, "n": 1}', "speed must be a finite number above 0, not nan"),
    ('{"speed": Infinity, "mib": 0, "n": 1}', "speed must be a finite number above 0, not inf"),
    ('{"speed": 0, "mib": 0, "n": 1}', "speed must be a finite number above 0, not 0"),
    ('{"speed": 2, "mib": -1e9, "n": 1}', "mib must be a finite number of at least 0, not -1000000000.0"),
    ('{"speed": 2, "mib": 0, "n": 0}', "n must be an integer of at least 1, not 0"),
    ('{"speed": 2, "mib": 0, "n": 2.5}', "n must be an integer of at least 1, not 2.5"),
    ('{"speed": 2, "mib": 0, "n": "3"}', "n must be an integer of at least 1, not a string"),
])
def test_a_number_of_an_impossible_value_is_named_with_its_key(tmp_path, text, problem):
    """Number shapes: finite, at least (or above) a bound, an integer where asked; JSON's NaN and Infinity too."""
    path, message = _read_json_error(tmp_path, text, {"speed": POSITIVE, "mib": NON_NEGATIVE, "n": COUNT})
    assert message == f"{path}: {problem}"
    path.write_text('{"speed": 0.5, "mib": 0, "n": 3}')
    assert read_json(path, {"speed": POSITIVE, "mib": NON_NEGATIVE, "n": COUNT}) == {"speed": 0.5, "mib": 0, "n": 3}


def test_a_json_of_the_shape_comes_back_as_it_is(tmp_path):
    """An integer is a number, null or a missing key is what None allows, other keys are left alone."""
    doc = {"name": "a", "rate": 2, "info": None, "models": {"unet": {"speed": 1.5}, "tsvit": {"speed": 3}}, "more": [1]}
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    assert read_json(tmp_path / "doc.json", SHAPE) == doc
    (tmp_path / "doc.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "info"}))
    assert "info" not in read_json(tmp_path / "doc.json", SHAPE)


def test_a_writer_failing_on_a_full_disk_is_named_as_out_of_space(tmp_path, monkeypatch):
    """netCDF's "HDF error" and torch's "unexpected pos" on a full disk become one OSError naming the
    output (an item's failure the walks name and skip); the same error with space left stays itself."""
    import errno
    import shutil
    from collections import namedtuple

    target = tmp_path / "chart.nc"
    with pytest.raises(RuntimeError, match="NetCDF: HDF error"):
        with atomic_path(target):
            raise RuntimeError("NetCDF: HDF error")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10 << 20, 10 << 20, 4096))
    with pytest.raises(OSError, match=f"{target}: no space left on device") as err:
        with atomic_path(target):
            raise RuntimeError("NetCDF: HDF error")
    assert err.value.errno == errno.ENOSPC and not target.exists() and not list(tmp_path.iterdir())
