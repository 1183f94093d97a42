"""environment.yml (conda, for clusters) declares what pyproject.toml declares, with the torch
pins of the Makefile. Conda channels cannot be reached from the project's machines, so the file
is checked against pyproject here, never built (README, "Set-up")."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
CONDA_ONLY = {"python", "pip"}  # the interpreter and the installer itself


def _name(requirement: str) -> str:
    """Distribution name of a requirement (PEP 503 normalised): ``netCDF4>=1.6`` -> ``netcdf4``."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;#]", requirement.strip(), maxsplit=1)[0]).lower()


def _bound(requirement: str) -> str:
    """Version bound of a requirement, spaces and comments dropped: ``numpy >= 1.26  # x`` -> ``>=1.26``."""
    text = requirement.split("#")[0].split(";")[0].replace(" ", "")
    return text[len(re.split(r"[<>=!~]", text, maxsplit=1)[0]):]


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]


def _pyproject() -> set[str]:
    return {_name(r) for r in _pyproject_requirements()}


def _environment_requirements() -> tuple[list[str], list[str]]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return conda, pip


def _environment() -> tuple[set[str], list[str]]:
    conda, pip = _environment_requirements()
    names = {_name(d) for d in conda} | {_name(p) for p in pip if not p.startswith("-")}
    return names - CONDA_ONLY, pip


def test_environment_yml_declares_exactly_the_packages_of_pyproject():
    declared, _ = _environment()
    wanted = _pyproject()
    assert declared == wanted, (f"in pyproject only: {sorted(wanted - declared)}; "
                                f"in environment.yml only: {sorted(declared - wanted)}")


def test_environment_yml_asks_for_the_versions_pyproject_asks_for():
    """The same lower bounds (conda's ``>=`` reads as pip's); torch and torchvision: the Makefile's pins."""
    conda, pip = _environment_requirements()
    declared = {_name(r): _bound(r) for r in conda + pip if _name(r) not in CONDA_ONLY}
    wanted = {_name(r): _bound(r) for r in _pyproject_requirements()}
    differ = {n: (wanted[n], declared[n]) for n in wanted
              if n in declared and n not in {"torch", "torchvision"} and wanted[n] != declared[n]}
    assert not differ, f"pyproject vs environment.yml: {differ}"


def test_torch_is_pinned_as_in_the_makefile_in_one_pip_command():
    pins = re.search(r"^TORCH_PINS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    _, pip = _environment()
    assert set(pins) <= set(pip), f"environment.yml pip section lacks {pins}"
    torch_users = {"torch", "torchvision", "timm", "captum", "grad-cam", "onnxscript"}
    assert torch_users <= {_name(p) for p in pip}  # installed beside the pins, so pip keeps them


def test_the_version_bound_reading():
    assert [_bound(r) for r in ("numpy >= 1.26  # arrays", "torch==2.14.1", "scikit-learn",
                                "zarr>=3.0,<4; python_version>'3'")] == [">=1.26", "==2.14.1", "", ">=3.0,<4"]


def test_the_name_normalisation():
    assert [_name(r) for r in ("netCDF4>=1.6", "grad_cam>=1.5", "torch==2.14.1", "scikit-learn")] == \
        ["netcdf4", "grad-cam", "torch", "scikit-learn"]


def test_licence_citation_and_changelog_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert (citation["version"], citation["license"]) == (project["version"], project["license"])
    assert (ROOT / "LICENSE").read_text().startswith(f"{project['license']} License")
    assert f"({project['version']})" in (ROOT / "CHANGELOG.md").read_text().split("\n## ")[1].splitlines()[0]
    cited = {r.get("doi") for r in citation["references"]}
    assert {"10.11583/DTU.c.6244065", "10.5194/tc-18-3471-2024"} <= cited
