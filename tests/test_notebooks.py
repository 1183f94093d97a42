"""Notebooks: stored clean, parameterised with scalars, and runnable through papermill."""

import ast
import json
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        assert path.name[:2].isdigit() and path.name[2] == "_", path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_holds_scalar_parameters(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), path.name
    tree = ast.parse(first.source)
    assert tree.body, "the parameters cell is empty"
    for node in tree.body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), \
            f"{path.name}: parameters must be scalar assignments, got {ast.unparse(node)}"


def test_explore_notebook_runs_with_parameters(synthetic_dir, tmp_path):
    out = tmp_path / "explore"
    papermill.execute_notebook(
        str(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("02_explore.ipynb")]),
        str(tmp_path / "02_explore.ipynb"),
        parameters={"data_dir": str(synthetic_dir), "out_dir": str(out), "downsample": 2,
                    "generate_if_missing": False},
        cwd=str(NOTEBOOKS[0].parent), progress_bar=False, kernel_name="python3")
    written = {p.name for p in out.iterdir()}
    assert {"footprints.html", "class_shares.html", "class_shares.csv"} <= written
    assert any(n.endswith("_overview.png") for n in written)
    page = (out / "footprints.html").read_text()
    assert "cdn.bokeh.org" not in page and "Bokeh" in page  # BokehJS inlined: works offline
