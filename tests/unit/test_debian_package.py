"""A Debian package is downloaded and unpacked once into the cache; a failed download names the package."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from whisper_lora.core.errors import UserError
from whisper_lora.data.realspeech import debian_package

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="Debian's dpkg-deb is not installed")


def fake_apt_get(folder: Path, deb: Path | None) -> Path:
    """An apt-get on PATH that 'downloads' deb into the working folder (or fails), and counts its calls."""
    folder.mkdir()
    script = folder / "apt-get"
    body = f'cp {deb} "$PWD"/' if deb else 'echo "E: Unable to locate package $2" >&2; exit 100'
    script.write_text(f"#!/bin/sh\necho called >> {folder / 'calls'}\n{body}\n")
    script.chmod(0o755)
    return folder


def built_deb(tmp_path: Path) -> Path:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: fake-text\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: fake\n"
    )
    (tree / "usr/share/fake").mkdir(parents=True)
    (tree / "usr/share/fake/words").write_text("hello\n")
    deb = tmp_path / "fake-text_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def test_a_package_is_downloaded_once_and_unpacked(tmp_path, monkeypatch):
    bin_folder = fake_apt_get(tmp_path / "bin", built_deb(tmp_path))
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    first = debian_package("fake-text", tmp_path / "cache")
    again = debian_package("fake-text", tmp_path / "cache")
    assert first == again and (first / "usr/share/fake/words").read_text() == "hello\n"
    assert (bin_folder / "calls").read_text().count("called") == 1


def test_a_package_that_cannot_be_downloaded_is_named(tmp_path, monkeypatch):
    bin_folder = fake_apt_get(tmp_path / "bin", None)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UserError, match="apt-get download no-such-text .*failed: E: Unable to locate package"):
        debian_package("no-such-text", tmp_path / "cache")
