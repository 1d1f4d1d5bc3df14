"""Atomic writes (a temporary file or folder beside the target, then a rename) and strict UTF-8 reading."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from whisper_lora.core.errors import UserError

UMASK = os.umask(0o022)
os.umask(UMASK)  # read once: mkstemp's files are private, and a written model or transcript should not be


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp) on a temporary file beside path, then rename it over path; on any failure path is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to path through a temporary file and a rename."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, value) -> Path:
    """Write value as sorted, indented UTF-8 JSON, atomically."""
    return write_text_atomic(path, json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def publish_folder(final: str | Path, build: Callable[[Path], Path]) -> Path:
    """Fill a temporary folder beside final with build(tmp), which returns what to publish (tmp or a folder in it),
    and rename that to final in one step. An empty final is replaced; one another process published first is kept.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        ready = build(tmp)  # its errors always reach the caller
        os.chmod(ready, 0o777 & ~UMASK)  # mkdtemp's folder is private
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        try:
            os.rename(ready, final)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
            # another process published the same folder first: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def fingerprint(paths: list[Path], hashed_up_to: int = 64 * 2**20) -> dict[str, str]:
    """What each file holds: its SHA-256 up to hashed_up_to bytes, its size and modification time above."""
    found = {}
    for path in sorted(paths):
        stat = path.stat()
        if stat.st_size <= hashed_up_to:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(2**20):
                    digest.update(block)
            found[path.name] = digest.hexdigest()
        else:
            found[path.name] = f"{stat.st_size} bytes, modified {stat.st_mtime_ns}"
    return found


def decode_utf8(raw: bytes, path: Path, error_class: type[UserError]) -> str:
    """raw as UTF-8 with or without a BOM; error_class naming the line of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise error_class(
            f"{path}: not UTF-8 (byte 0x{raw[error.start]:02x} at line {line}); save the file as UTF-8"
        ) from None
