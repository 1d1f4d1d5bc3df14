"""Packaging: requirements.txt mirrors pyproject.toml, and the set-up files exist as the seed names them."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def names(requirements):
    return {re.split(r"[<>=!~ \[]", line, maxsplit=1)[0].lower() for line in requirements}


def test_requirements_mirror_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pinned = [line for line in lines if line and not line.startswith("#")]
    assert names(pinned) == names(project["dependencies"])
    assert "torch==2.13.0" in pinned


def test_seed_files_exist():
    for name in (
        "setup_environment.sh",
        "setup_environment.bat",
        "data_format_example.json",
        "README.md",
        "README.zh-CN.md",
    ):
        assert (ROOT / name).is_file(), name
