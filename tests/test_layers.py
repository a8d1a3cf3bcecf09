"""The layers of `loyalty` hold: no import cycle between its modules, every import runs down the layers that
pyproject.toml's `[tool.importlinter]` contracts list, and every module sits in one of them. Each check runs
as a developer would run it (`python -m tools.imports --check`, `lint-imports`), and is shown to fail on what it
is there to catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.imports import module_graph

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _run(command: list[str], root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    # Our own interpreter and lint-imports, on our own code.
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,  # noqa: S603
                          timeout=300, check=False)


def _cycles(root: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "tools.imports", "--check"], root)


def _contracts(root: Path) -> subprocess.CompletedProcess:
    return _run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], root)


def _layer_names() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    names = []
    for layer in layers:
        for name in layer.replace("|", ":").split(":"):
            names.append(name.strip().removeprefix("(").removesuffix(")"))
    return names


def test_no_module_imports_itself_through_others():
    result = _cycles(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_import_runs_down_the_layers():
    result = _contracts(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_sits_in_a_layer():
    """A new module is placed in the layers, or no contract would see it; a package split across layers
    (its models low, its api high) keeps an `__init__` that imports nothing."""
    names = _layer_names()
    graph = module_graph()
    unplaced = [module for module in sorted(graph) if module != "loyalty"
                and not any(module == name or module.startswith(name + ".") for name in names)]
    assert [module for module in unplaced if graph[module]] == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The code the checks read, copied, so a test may plant an import in it."""
    shutil.copytree(ROOT / "loyalty", tmp_path / "loyalty", ignore=shutil.ignore_patterns(
        "__pycache__", "templates", "static"))
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _plant(root: Path, module: str, line: str) -> None:
    with (root / module).open("a") as source:
        source.write(f"\n{line}\n")


def test_a_cycle_fails_the_build(copy):
    # Both base modules, where either may import the other: only the cycle is wrong.
    _plant(copy, "loyalty/errors.py", "from loyalty import schemas  # noqa")
    result = _cycles(copy)
    assert result.returncode == 1
    assert "loyalty.errors -> loyalty.schemas -> loyalty.errors" in result.stdout


def test_a_lazy_import_back_up_fails_the_build(copy):
    """The cycle the rules once had: a lazy import inside a function is still an import."""
    _plant(copy, "loyalty/rules/service.py", "def _later():\n    from loyalty.checkout.service import quote  # noqa")
    assert _cycles(copy).returncode == 1
    result = _contracts(copy)
    assert result.returncode == 1
    assert "loyalty.rules.service is not allowed to import loyalty.checkout.service" in result.stdout


def test_an_upward_import_fails_the_build(copy):
    # No cycle: the reports never import the throttle. Only the direction is wrong.
    _plant(copy, "loyalty/auth/throttling.py", "from loyalty.reports import service  # noqa")
    assert _cycles(copy).returncode == 0
    result = _contracts(copy)
    assert result.returncode == 1
    assert "loyalty.auth.throttling is not allowed to import loyalty.reports.service" in result.stdout


def test_an_engine_that_reads_the_database_fails_the_build(copy):
    _plant(copy, "loyalty/rules/engine.py", "import sqlalchemy  # noqa")
    result = _contracts(copy)
    assert result.returncode == 1
    assert "loyalty.rules.engine is not allowed to import sqlalchemy" in result.stdout
