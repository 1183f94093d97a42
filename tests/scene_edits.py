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
