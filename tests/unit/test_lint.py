"""The code passes ruff's linter, is as ruff's formatter writes it, and type-checks (pyproject.toml's [tool.ruff], [tool.mypy])."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: ./setup_environment.sh --dev")  # a failure under CI=true (conftest.py)
    return subprocess.run([found, *args], cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)


def test_ruff_lint():
    result = tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout + result.stderr


def test_mypy():
    result = tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers():
    result = tool("lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_architecture_page_names_every_subpackage_in_the_contract_order():
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    contract = [name.removeprefix("whisper_lora.") for layer in layers for name in layer.split(" | ")]
    page = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    diagram = re.findall(r"^(\w+)/ ", page.split("```")[1], re.M)
    packages = sorted(p.parent.name for p in (ROOT / "src" / "whisper_lora").glob("*/__init__.py"))
    assert diagram == contract and sorted(diagram) == packages
    named = set(re.findall(r"`((?:\w+/)+\w+\.py)`", page))
    missing = [p for p in named if not (ROOT / "src" / "whisper_lora" / p).is_file() and not (ROOT / p).is_file()]
    assert len(named) > 10 and not missing, missing


def test_no_function_is_longer_than_60_lines():
    import ast

    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60
    ]
    assert not long, long
