"""Scene files edited for the tests: copies of the tiny set, and one variable changed in place."""

import shutil

import netCDF4


def copy_scenes(paths, folder):
    """``folder`` (made) holding copies of ``paths``: sequences need a target's neighbours."""
    folder.mkdir()
    for p in paths:
        shutil.copy(p, folder / p.name)
    return folder


def edit_variable(path, variable, edit):
    """Apply ``edit(values)`` (in place, values as stored: no scaling, no mask) to ``variable`` of ``path``."""
    with netCDF4.Dataset(path, "r+") as nc:
        var = nc[variable]
        var.set_auto_maskandscale(False)
        values = var[:]
        edit(values)
        var[:] = values
    return path


def twin_of(scene, folder):
    """A copy of ``scene`` in ``folder`` as another acquisition one second earlier (its name,
    ``scene_id`` and ``original_id`` moved): a scene of the same region and minute, unless the
    scene was taken in the minute's first second."""
    sid = scene.name[:19]
    other = f"{sid[:13]}{int(sid[13:15]) - 1:02d}{sid[15:]}"
    assert int(sid[13:15]) > 0, "a scene taken in its minute's first second has no twin a second before"
    path = folder / scene.name.replace(sid, other)
    shutil.copy(scene, path)
    with netCDF4.Dataset(path, "r+") as nc:
        nc.scene_id = other
        nc.original_id = nc.original_id.replace(sid[:15], other[:15], 1)
    return path


def unreadable_twin(synthetic_dir, folder, history=None):
    """``(target, twin)``: a copy of one synthetic scene in ``folder``, and in ``history`` (default
    ``folder``) its :func:`twin_of` one second earlier, truncated: an earlier acquisition that cannot
    be read."""
    target = folder / sorted(synthetic_dir.glob("*_prep.nc"))[4].name
    shutil.copy(synthetic_dir / target.name, target)
    twin = twin_of(target, history or folder)
    twin.write_bytes(twin.read_bytes()[:500])
    return target, twin
