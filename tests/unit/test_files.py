"""Atomic writes of files and folders."""

import os

import pytest

from whisper_lora.core.files import publish_folder, write_atomic, write_json_atomic, write_text_atomic


def test_json_is_written_whole_and_leaves_no_temporary_file(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "out.json", {"b": 1, "a": "二"})
    assert path.read_text(encoding="utf-8") == '{\n  "a": "二",\n  "b": 1\n}\n'
    assert os.listdir(path.parent) == ["out.json"]


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    def build(tmp):
        (tmp / "model.bin").write_text("weights")
        return tmp

    final = publish_folder(tmp_path / "model", build)
    assert (final / "model.bin").read_text() == "weights" and os.listdir(tmp_path) == ["model"]

    def crash(tmp):
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        publish_folder(tmp_path / "other", crash)
    assert os.listdir(tmp_path) == ["model"]  # neither the folder nor its temporary sibling


def test_an_empty_folder_is_replaced_and_one_published_first_is_kept(tmp_path):
    (tmp_path / "empty").mkdir()
    assert publish_folder(tmp_path / "empty", lambda tmp: (tmp / "x").mkdir() or tmp / "x").is_dir()

    def lose_the_race(tmp):
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "theirs").write_text("first")
        (tmp / "ours").write_text("second")
        return tmp

    final = publish_folder(tmp_path / "shared", lose_the_race)
    assert os.listdir(final) == ["theirs"] and sorted(os.listdir(tmp_path)) == ["empty", "shared"]


def test_a_build_that_fails_is_reported_even_when_the_folder_exists_already(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.bin").write_text("old")

    def disk_full(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        publish_folder(tmp_path / "model", disk_full)


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = write_text_atomic(tmp_path / "curves.png", "old")

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_crash)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_written_files_and_folders_get_the_usual_permissions_not_private_ones(tmp_path):
    from whisper_lora.core.files import UMASK

    written = write_json_atomic(tmp_path / "out.json", {"a": 1})
    folder = publish_folder(tmp_path / "model", lambda staging: staging)
    assert written.stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert folder.stat().st_mode & 0o777 == 0o777 & ~UMASK
