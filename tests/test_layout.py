"""The package layout: imports run one way, from the dataset facts down the pipeline.

Every import inside ``seaice_lib`` (module level or inside functions) is read from the source and
checked against the parts each part may use. The checker is tested on a made-up upward import, so
this test can fail.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import seaice_lib

ROOT = Path(seaice_lib.__file__).parent

# part of seaice_lib -> the parts it may import (itself always)
ALLOWED = {
    "__init__": {"logs"},
    "logs": set(),
    "schema": set(),
    "grid": {"schema"},
    "atomic": set(),
    "arguments": set(),
    "jsondoc": set(),
    "walk": {"logs"},
    "stopping": set(),
    "yamldoc": set(),
    "stages": set(),
    "sample_format": {"schema"},
    "data": {"arguments", "logs", "__init__", "schema", "grid", "atomic", "provenance", "walk", "stopping",
             "sample_format", "stages"},
    "synthetic": {"arguments", "logs", "schema", "grid", "atomic", "data", "provenance", "stages"},
    "models": {"schema", "grid", "sample_format"},
    "engine": {"arguments", "logs", "schema", "grid", "atomic", "data", "models", "provenance", "walk", "jsondoc",
               "stopping", "sample_format", "yamldoc", "stages"},
    "charts": {"arguments", "logs", "schema", "grid", "atomic", "data", "models", "engine", "provenance", "walk",
               "stopping", "stages"},
    "explain": {"schema", "grid", "atomic", "data", "models", "engine", "jsondoc", "provenance", "sample_format",
                "stages"},
    "plots": {"schema", "grid", "atomic", "data", "engine", "charts"},
    "figures": {"arguments", "logs", "schema", "grid", "atomic", "data", "engine", "explain", "plots", "experiments",
                "walk", "jsondoc", "provenance", "stages"},
    "testing": {"arguments", "logs", "schema", "data"},
    "batch": {"arguments", "logs", "atomic", "jsondoc", "notebook", "provenance", "stopping", "yamldoc", "stages"},
    "notebook": {"arguments", "atomic", "logs", "stopping", "yamldoc", "jsondoc", "provenance", "stages"},
    "provenance": {"__init__"},
    "experiments": {"arguments", "logs", "schema", "grid", "atomic", "data", "models", "engine", "batch",
                    "provenance", "jsondoc", "walk", "sample_format", "stopping", "yamldoc", "stages"},
    # the edge runtime loads no torch (test_edge)
    "edge": {"arguments", "logs", "schema", "grid", "atomic", "data", "models", "engine", "charts", "provenance",
             "walk", "sample_format", "stopping", "stages"},
    "cli": {"arguments", "logs", "__init__", "walk", "stages"},
    "__main__": {"cli"},
}


def part_of(module: str) -> str:
    """``seaice_lib.data.scene`` -> ``data``; ``seaice_lib`` and its attributes -> ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1 or not ((ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").is_file()):
        return "__init__"
    return parts[1]


def imported_parts(source: str, module: str, is_package: bool) -> set[str]:
    """The parts of seaice_lib that ``module``'s source imports."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "seaice_lib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "seaice_lib":
                continue
            # `from seaice_lib import schema` names a part; `from .scene import X` a module
            names = [f"{target}.{a.name}" for a in node.names] if target == "seaice_lib" else [target]
        else:
            continue
        found |= {part_of(n) for n in names}
    return found


def violations(source: str, module: str, is_package: bool = False) -> set[str]:
    own = part_of(module)
    return imported_parts(source, module, is_package) - ALLOWED[own] - {own}


def library_modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        yield path, module, is_package


def test_every_part_of_the_library_is_known():
    parts = {part_of(m) for _, m, _ in library_modules()}
    assert parts == set(ALLOWED)


@pytest.mark.parametrize("path, module, is_package", list(library_modules()),
                         ids=[module for _, module, _ in library_modules()])
def test_imports_run_one_way(path, module, is_package):
    assert violations(path.read_text(), module, is_package) == set()


def test_the_checker_sees_wrong_way_imports():
    assert violations("from ..data.dataset import collate\n", "seaice_lib.models.unet") == {"data"}
    assert violations("from .. import plots\n", "seaice_lib.models.tsvit") == {"plots"}
    assert violations("import seaice_lib.engine.training\n", "seaice_lib.data.scene") == {"engine"}
    assert violations("def f():\n    from ..charts import inference\n", "seaice_lib.engine.training") \
        == {"charts"}
    assert violations("from ..grid import cell_index\n", "seaice_lib.models.tsvit") == set()
    assert violations("from .geo import TiePointGrid\n", "seaice_lib.data.scene") == set()


def test_reading_scenes_and_samples_loads_neither_torch_nor_the_pipeline_upstream():
    """Scene readers stay light (no torch); a DataLoader worker loads neither xarray nor scipy."""
    code = ("import sys, seaice_lib.data.scene, seaice_lib.data.prepare, seaice_lib.grid; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    code = ("import sys, seaice_lib.data.dataset, seaice_lib.data.samplers, seaice_lib.data.transforms; "
            "print(sorted(m for m in ('xarray', 'scipy', 'netCDF4') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_stop_signals_are_handled_in_one_place():
    """Training, --follow and download stop through seaice_lib.stopping (one exit code); the only
    other handler is the DataLoader workers' ignoring of the signals their trainer handles."""
    installing = sorted(module for path, module, _ in library_modules() if "signal.signal(" in path.read_text())
    assert installing == ["seaice_lib.engine.evaluation", "seaice_lib.stopping"]
    assert "signal.SIG_IGN" in (ROOT / "engine" / "evaluation.py").read_text()


def test_no_module_shadows_the_standard_library():
    names = {path.stem for path, _, _ in library_modules()} | \
        {p.name for p in ROOT.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert not names & set(sys.stdlib_module_names)


RUN_FILES = ("config.yaml", "evaluation.json", "model.pt", "last.pt", "checkpoints", "provenance.json")
# the edge runtime loads no torch, so it finds export/ and model.pt beside it without engine.run; stages
# tells a run folder by its files, for the stages below engine too (data, synthetic refuse one as output)
READS_RUN_FILES = {"seaice_lib.edge.runtime", "seaice_lib.stages"}


def _imports_from(tree: ast.AST, module: str, is_package: bool):
    """(absolute module, names) of each ``from ... import`` in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
            yield (".".join(base + [node.module]) if node.level else node.module), [a.name for a in node.names]


def test_readers_of_a_run_never_import_the_trainer():
    """Charts, edge, explain, figures, experiments and the notebooks load runs through engine.run's
    ``Run`` alone; the trainer (engine.training) is imported by its command and its tests alone."""
    importers = []
    for path, module, is_package in library_modules():
        if module == "seaice_lib.engine.training":
            continue
        for target, names in _imports_from(ast.parse(path.read_text()), module, is_package):
            if target == "seaice_lib.engine.training" or (target == "seaice_lib.engine" and "training" in names):
                importers.append(module)
    notebooks = [p.name for p in (ROOT.parent / "notebooks").glob("*.ipynb")
                 if "seaice_lib.engine.training import" in p.read_text() and not p.name.startswith("04_train")]
    assert importers == [] and notebooks == []


def test_outside_engine_a_run_folder_is_read_through_run_alone():
    """No module outside engine names a run folder's files (a path part or a glob ending in one) or
    imports anything of engine.run but ``Run``; no notebook either."""
    by_hand, other_imports = [], []
    for path, module, is_package in library_modules():
        if part_of(module) == "engine" or module in READS_RUN_FILES:
            continue
        tree = ast.parse(path.read_text())
        by_hand += [f"{module}: {node.value!r}" for node in ast.walk(tree) if isinstance(node, ast.Constant)
                    and isinstance(node.value, str) and node.value.split("/")[-1] in RUN_FILES]
        other_imports += [f"{module}: {names}" for target, names in _imports_from(tree, module, is_package)
                          if target == "seaice_lib.engine.run" and names != ["Run"]]
    for path in sorted((ROOT.parent / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            by_hand += [f"{path.name}: {name}" for name in RUN_FILES if f'"{name}"' in source or f'/{name}"' in source]
            other_imports += [f"{path.name}: {line}" for line in source.splitlines()
                              if "seaice_lib.engine.run import" in line and line.split("import")[-1].strip() != "Run"]
    assert by_hand == [] and other_imports == []
