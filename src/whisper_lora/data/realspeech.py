"""Recorded human speech with transcripts, built from Debian's asterisk-core-sounds packages and cached outside the repo.

Each language has one professional speaker reading telephone prompts; many prompts hold several
sentences. The vendor's transcripts come from the plain package, the 16 kHz G.722 audio from its
``-g722`` twin. Prompts are split into train and test by name, so a test prompt never appears in training.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.models import cache_root

LANGUAGES = ("en", "es", "fr", "it")
PACKAGE = "asterisk-core-sounds-{language}"
TEST_SHARE = 4  # one prompt in four goes to the test split
MAX_SECONDS = 30.0
_SENTENCE_END = re.compile(r"[.!?]+")
_ENTRY_START = re.compile(r"\s+(?=[\w/-]+: )")  # where "name: text" may begin inside a line


@dataclass(frozen=True)
class Prompt:
    """One recorded prompt: its name in the package, the vendor's transcript and the audio file."""

    name: str
    text: str
    audio_path: str
    language: str
    seconds: float

    @property
    def split(self) -> str:
        """'test' or 'train', fixed by the prompt's name."""
        return "test" if zlib.crc32(self.name.encode()) % TEST_SHARE == 0 else "train"

    @property
    def sentences(self) -> int:
        """How many sentences the transcript holds."""
        return len([part for part in _SENTENCE_END.split(self.text) if part.strip()])


def default_root() -> Path:
    """Where the packages are downloaded and unpacked: the whisper-lora cache's realspeech folder."""
    return cache_root() / "realspeech"


def fetch(language: str, root: Path | None = None) -> Path:
    """Download and unpack one language's transcript and audio packages once; return the unpacked tree."""
    if language not in LANGUAGES:
        raise UserError(f"real speech: no recordings for {language!r}; choose from {', '.join(LANGUAGES)}")
    package = PACKAGE.format(language=language)
    return debian_packages((package, f"{package}-g722"), language, root)


def debian_package(name: str, root: Path | None = None) -> Path:
    """Download and unpack one Debian package (such as fortunes-zh) once under the cache; return its unpacked tree."""
    return debian_packages((name,), name, root)


def debian_packages(names: tuple[str, ...], tree_name: str, root: Path | None = None) -> Path:
    """Download Debian packages and unpack them together into root/tree/TREE_NAME once; return that tree."""
    root = Path(root or default_root())
    tree = root / "tree" / tree_name
    if (tree / ".complete").is_file():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f"{tree_name}.lock"):  # another process may be unpacking the same tree
        return tree if (tree / ".complete").is_file() else _unpack(names, root, tree)


def _unpack(names: tuple[str, ...], root: Path, tree: Path) -> Path:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise UserError(f"Debian's apt-get and dpkg-deb are needed to download {', '.join(names)}")
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not list(debs.glob(f"{name}_*.deb")):
            _download(name, debs)
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for deb in [deb for name in names for deb in debs.glob(f"{name}_*.deb")]:
        _run(["dpkg-deb", "-x", str(deb), str(tree)], debs, f"dpkg-deb -x {deb.name}")
    (tree / ".complete").touch()
    return tree


def _download(name: str, debs: Path) -> None:
    """apt-get download, refreshing the package lists once when the package is not found (a fresh machine)."""
    if subprocess.run(["apt-get", "download", name], cwd=debs, check=False, capture_output=True).returncode == 0:
        return
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    _run(["apt-get", "download", name], debs, f"apt-get download {name} (as root, run 'apt-get update' first)")


def _run(command: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(command, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{what} failed: {(done.stderr or done.stdout).strip()[-300:]}")


def prompts(language: str, root: Path | None = None) -> list[Prompt]:
    """The language's usable prompts, sorted by name.

    Kept: transcripts of two words or more that have audio of at most 30 s. Left out: bracketed
    sound descriptions ("[beep]") and notes ("(data)", "(You are now muted.)"), which the speaker does not say,
    and transcripts with digits, which the speaker reads as words.
    """
    tree = fetch(language, root)
    transcript = tree / "usr/share/doc" / PACKAGE.format(language=language) / f"core-sounds-{language}.txt.gz"
    voices = sorted((tree / "usr/share/asterisk/sounds").glob(f"{language}_*"))
    if not transcript.is_file() or not voices:
        raise UserError(f"real speech: {tree} lacks the transcript or the audio folder for {language}")
    with gzip.open(transcript, "rt", encoding="utf-8") as lines:
        entries = [entry for line in lines for entry in transcript_entries(line, voices[0])]
    texts: dict[str, set[str]] = {}
    for entry in entries:
        name, _, text = entry.partition(": ")
        texts.setdefault(name, set()).add(text.strip())
    said = {name: next(iter(found)) for name, found in texts.items() if len(found) == 1}  # each audio decoded once
    found = [prompt for name, text in said.items() if (prompt := _prompt(f"{name}: {text}", voices[0], language))]
    return sorted(found, key=lambda p: p.name)


def transcript_entries(line: str, voice: Path) -> list[str]:
    """A transcript line's "name: text" entries: the vendor's file runs a few together on one line (Italian's does).

    A new entry starts only at a name whose audio file exists, so "Nota: ..." inside a text stays in it. A name given
    two different texts is left out by prompts(): which one the audio says is unknown.
    """
    pieces = _ENTRY_START.split(line.strip())
    entries = pieces[:1]
    for piece in pieces[1:]:
        if (voice / f"{piece.partition(': ')[0]}.g722").is_file():
            entries.append(piece)
        else:
            entries[-1] += " " + piece
    return entries


def _prompt(line: str, voice: Path, language: str) -> Prompt | None:
    name, _, text = line.strip().partition(": ")
    audio = voice / f"{name}.g722"
    if line.startswith(";") or re.search(r"[(\[]", text) or re.search(r"\d", text) or len(text.split()) < 2:
        return None
    if audio.is_file() and 0 < (seconds := len(decode_audio(str(audio))) / SAMPLE_RATE) <= MAX_SECONDS:
        return Prompt(name, text.strip(), str(audio), language, round(seconds, 2))
    return None


def write_manifests(
    languages: tuple[str, ...] = LANGUAGES, out_dir: Path | None = None, root: Path | None = None
) -> dict[str, Path]:
    """Write {language}_{split}.json manifests (audio_path, text, language) and return them by that name."""
    out_dir = Path(out_dir or default_root() / "manifests")
    written = {}
    for language in languages:
        found = prompts(language, root)
        for split in ("train", "test"):
            rows = [
                {"audio_path": p.audio_path, "text": p.text, "language": p.language} for p in found if p.split == split
            ]
            written[f"{language}_{split}"] = write_json_atomic(out_dir / f"{language}_{split}.json", rows)
    return written


def end_to_end(found: list[Prompt], seconds: float, pause: float = 0.8) -> tuple[np.ndarray, list[Prompt]]:
    """Prompts of two sentences or more, in order, up to `seconds` of speech, `pause` s apart: samples and prompts."""
    chosen, total = [], 0.0
    for prompt in found:
        if prompt.sentences >= 2 and total + prompt.seconds <= seconds:
            chosen.append(prompt)
            total += prompt.seconds
    gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
    return np.concatenate([part for p in chosen for part in (decode_audio(p.audio_path), gap)]), chosen
