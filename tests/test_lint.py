"""The code passes ruff's linter, is as ruff's formatter writes it, and type-checks (pyproject.toml's [tool.ruff], [tool.mypy])."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: ./setup_environment.sh --dev")  # a failure under CI=true (conftest.py)
    return subprocess.run([found, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


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
