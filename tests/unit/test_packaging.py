"""Packaging: requirements.txt mirrors pyproject.toml, and the set-up files exist as the seed names them."""

import re
from pathlib import Path

import tomllib
from setuptools import build_meta

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_license_metadata_builds_with_the_setuptools_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    metadata = (tmp_path / folder / "METADATA").read_text(encoding="utf-8")
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert (tmp_path / folder / "licenses" / "LICENSE").read_text().startswith("MIT License")


def test_the_wheel_carries_every_module_and_the_live_page(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.chdir(ROOT)
    wheel = tmp_path / build_meta.build_wheel(str(tmp_path))
    packed = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "whisper_lora").rglob("*.py")}
    assert sources <= packed and "whisper_lora/serve/web/index.html" in packed
