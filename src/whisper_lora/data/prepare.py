"""Import the corpus layouts people download (Common Voice, AISHELL-1, LibriSpeech, Kaldi, audiofolder, a folder
of transcribed files) as a manifest in our format."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from whisper_lora.core.errors import UserError
from whisper_lora.core.files import decode_utf8, write_text_atomic
from whisper_lora.core.languages import normalize_language
from whisper_lora.data.segments import read_subtitles

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac", ".sph")
TRANSCRIPT_SUFFIXES = (".txt", ".lab", ".srt", ".vtt")
TEXT_COLUMNS = ("transcription", "text", "sentence", "transcript")  # audiofolder's usual names, in order


class LayoutError(UserError):
    """A source folder that is not the layout asked for: a file it needs is missing or unreadable."""


@dataclass
class Imported:
    """The rows an importer found, and one line per entry it could not use (file, line or cue, and why)."""

    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    without_text: list[tuple[str, dict]] = field(default_factory=list)  # (where, row): kept only as non-speech

    def add(self, where: str, audio: Path, text: str | None, **extra) -> None:
        """Keep a row, set it aside when it has no text, or note why it cannot be kept; where names its file and line."""
        if not audio.is_file():
            self.problems.append(f"{where}: audio file not found: {audio}")
        elif text is None or not text.strip():
            self.without_text.append((where, {"audio_path": str(audio), "text": "", "no_speech": True, **extra}))
        else:
            self.rows.append({"audio_path": str(audio), "text": text.strip(), **extra})

    def add_recording(self, audio: Path, subtitles: Path, **extra) -> None:
        """Keep a recording with its subtitle file, whose cues check-data checks; or note why the file is unusable."""
        try:
            cues = read_subtitles(subtitles, LayoutError)
        except LayoutError as error:
            self.problems.append(str(error))
            return
        if not cues:
            self.problems.append(f"{subtitles}: no cues found")
        else:
            self.rows.append({"audio_path": str(audio), "subtitles": str(subtitles), **extra})


def read_text(path: Path) -> str:
    """A transcript or table file as text: UTF-8 with or without a BOM, any line ends; LayoutError if unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise LayoutError(f"{path}: cannot read it ({error.strerror or error})") from None
    return decode_utf8(raw, path, LayoutError).replace("\r\n", "\n").replace("\r", "\n")


def numbered_lines(path: Path) -> Iterator[tuple[str, str]]:
    """('FILE line N', text) for each non-blank line of a text file."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if line.strip():
            yield f"{path} line {number}", line.strip()


def keyed_lines(path: Path) -> Iterator[tuple[str, str, str]]:
    """(where, key, rest) for Kaldi-style 'KEY rest of line' files; rest is '' when the line has only a key."""
    for where, line in numbered_lines(path):
        key, _, rest = line.partition(" ")
        yield where, key, rest.strip()


def need(path: Path, layout: str) -> Path:
    """path, or LayoutError saying that the layout needs it."""
    if not path.exists():
        raise LayoutError(f"{path}: not found; a {layout} folder has it")
    return path


def table(path: Path, delimiter: str, quoted: bool, needed: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """('FILE line N', row) for a CSV/TSV with a header naming at least the needed columns; quoted: CSV quoting."""
    reader = csv.DictReader(
        io.StringIO(read_text(path)), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    )
    missing = [name for name in needed if name not in (reader.fieldnames or [])]
    if missing:
        raise LayoutError(f"{path}: no {', '.join(map(repr, missing))} column (header: {reader.fieldnames})")
    for row in reader:
        yield f"{path} line {reader.line_num}", row


def commonvoice(src: Path, split: str, **_) -> Imported:
    """Common Voice: clips/ and SPLIT.tsv (no quoting, as Mozilla writes it) with path, sentence and locale."""
    found, clips = Imported(), need(src / "clips", "Common Voice")
    for where, row in table(need(src / f"{split}.tsv", "Common Voice"), "\t", False, ("path", "sentence")):
        language = normalize_language((row.get("locale") or "").split("-")[0])
        found.add(where, clips / (row["path"] or ""), row["sentence"], **({"language": language} if language else {}))
    return found


def aishell(src: Path, split: str, **_) -> Imported:
    """AISHELL-1: transcript/aishell_transcript_v0.8.txt and wav/SPLIT/S*/ID.wav; the spaces between words go."""
    transcript = need(src / "transcript" / "aishell_transcript_v0.8.txt", "AISHELL-1")
    texts = {key: (where, "".join(rest.split())) for where, key, rest in keyed_lines(transcript)}
    folder = need(src / "wav" / split, "AISHELL-1")
    if not any(folder.glob("S*/*.wav")) and any(folder.glob("*.tar.gz")):
        raise LayoutError(f"{folder}: holds .tar.gz archives; extract them first (tar xzf) so S*/ID.wav exist")
    found = Imported()
    for wav in sorted(folder.glob("S*/*.wav")):
        where, text = texts.get(wav.stem, (f"{transcript}", None))
        if text is None:
            found.problems.append(f"{wav}: no line for {wav.stem} in {transcript}")
        else:
            found.add(where, wav, text, language="zh")
    return found


def librispeech(src: Path, **_) -> Imported:
    """LibriSpeech: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt beside its FLAC files, one 'ID TEXT' line each."""
    found = Imported()
    transcripts = sorted(src.rglob("*.trans.txt"))
    if not transcripts:
        raise LayoutError(f"{src}: no *.trans.txt files; a LibriSpeech folder has one per chapter")
    for transcript in transcripts:
        for where, key, text in keyed_lines(transcript):
            found.add(where, transcript.parent / f"{key}.flac", text, language="en")
    return found


def kaldi_audio(spec: str, src: Path) -> tuple[Path | None, str | None]:
    """The audio file of a wav.scp entry (a path, or a command ending in '|' that reads one file), and a note."""
    if not spec.endswith("|"):
        path = Path(spec)
        return (path if path.is_absolute() or path.exists() else src / path), None
    files = [Path(word) for word in spec[:-1].split() if Path(word).suffix.lower() in AUDIO_SUFFIXES]
    files = [path for path in files if path.is_file()]
    if len(files) != 1:
        return None, "a command ('... |') that does not name exactly one existing audio file"
    return files[0], f"read as its input file {files[0]}; the command's own options are not applied"


def kaldi(src: Path, language: str | None = None, **_) -> Imported:
    """A Kaldi data folder: wav.scp, text and an optional segments file (utterance, recording, start, end)."""
    recordings = {key: (where, rest) for where, key, rest in keyed_lines(need(src / "wav.scp", "Kaldi data"))}
    segments = src / "segments"
    spans = {key: (where, rest.split()) for where, key, rest in keyed_lines(segments)} if segments.exists() else None
    found, extra = Imported(), {"language": language} if language else {}
    for where, key, text in keyed_lines(need(src / "text", "Kaldi data")):
        utterance = kaldi_utterance(key, recordings, spans, src)
        if isinstance(utterance, str):
            found.problems.append(f"{where}: {utterance}")
            continue
        audio, times, note = utterance
        found.notes += [note] if note else []
        found.add(where, audio, text, **times, **extra)
    return found


def kaldi_utterance(key: str, recordings: dict, spans: dict | None, src: Path) -> tuple[Path, dict, str | None] | str:
    """(audio file, {'start', 'end'} or {}, a note) for one utterance of a Kaldi folder, or why it cannot be read."""
    if spans is not None and key not in spans:
        return f"utterance {key} is not in {src / 'segments'}"
    span_where, span = spans[key] if spans is not None else ("", [key])
    if span[0] not in recordings:
        return f"recording {span[0]} is not in {src / 'wav.scp'}"
    scp_where, spec = recordings[span[0]]
    audio, note = kaldi_audio(spec, src)
    if audio is None:
        return f"{scp_where}: {note}"
    times = kaldi_times(span)
    if isinstance(times, str):
        return f"{span_where}: {times}"
    return audio, times, note and f"{scp_where}: {note}"


def kaldi_times(span: list[str]) -> dict | str:
    """{'start', 'end'} from a segments line's 'RECORDING START END' (nothing without segments), or why not."""
    if len(span) == 1:
        return {}
    try:
        start, end = float(span[1]), float(span[2])
    except (IndexError, ValueError):
        return f"expected 'UTTERANCE RECORDING START END', got {' '.join(span)!r}"
    return {"start": start, "end": end} if 0 <= start < end else f"end {end} is not after start {start}"


def audiofolder_metadata(src: Path, split: str) -> Path:
    """metadata.csv or metadata.jsonl in src or in src/SPLIT, as Hugging Face's audiofolder loader finds them."""
    for folder in (src, src / split):
        for name in ("metadata.csv", "metadata.jsonl"):
            if (folder / name).is_file():
                return folder / name
    raise LayoutError(f"{src}: no metadata.csv or metadata.jsonl (looked in {src} and {src / split})")


def metadata_rows(path: Path) -> Iterator[tuple[str, dict | None]]:
    """('FILE line N', row) from an audiofolder metadata file; row is None for a line that is not a JSON object."""
    if path.suffix == ".csv":
        yield from table(path, ",", True, ("file_name",))
        return
    for where, line in numbered_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
        yield where, value if isinstance(value, dict) else None


def audiofolder(src: Path, split: str, text_column: str | None = None, language: str | None = None, **_) -> Imported:
    """Hugging Face audiofolder: metadata.csv or .jsonl with file_name and a text column, paths beside it."""
    metadata, found = audiofolder_metadata(src, split), Imported()
    extra = {"language": language} if language else {}
    for where, row in metadata_rows(metadata):
        if row is None or "file_name" not in row:
            found.problems.append(f"{where}: not an object with 'file_name'")
            continue
        column = text_column or next((name for name in TEXT_COLUMNS if name in row), None)
        if column is None or column not in row:
            wanted = repr(text_column) if text_column else "one of " + ", ".join(TEXT_COLUMNS)
            raise LayoutError(f"{where}: no text column ({wanted}); name yours with --text_column")
        found.add(where, metadata.parent / str(row["file_name"]), row[column], **extra)
    return found


def folder(src: Path, language: str | None = None, **_) -> Imported:
    """Audio files anywhere under src, each with a same-named .txt or .lab (its text) or .srt or .vtt (its segments)."""
    found, extra = Imported(), {"language": language} if language else {}
    audio = sorted(path for path in src.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file())
    for path in audio:
        sidecar = next((path.with_suffix(s) for s in TRANSCRIPT_SUFFIXES if path.with_suffix(s).is_file()), None)
        if sidecar is None:
            found.problems.append(f"{path}: no {', '.join(TRANSCRIPT_SUFFIXES)} file of the same name beside it")
        elif sidecar.suffix in (".srt", ".vtt"):
            found.add_recording(path, sidecar, **extra)
        else:
            found.add(str(sidecar), path, " ".join(read_text(sidecar).split()), **extra)
    return found


FORMATS: dict[str, Callable[..., Imported]] = {
    "commonvoice": commonvoice,
    "aishell": aishell,
    "librispeech": librispeech,
    "kaldi": kaldi,
    "audiofolder": audiofolder,
    "folder": folder,
}


def import_corpus(
    kind: str, src: str | Path, split: str = "train", allow_empty_text: bool = False, **options
) -> Imported:
    """The rows of the corpus at src in the given layout; LayoutError if src is not that layout or holds no row.

    An entry whose audio has no text is skipped, or kept as a row without speech when allow_empty_text is set.
    """
    src = Path(src)
    if not src.is_dir():
        raise LayoutError(f"{src}: not a folder")
    if options.get("language") is not None:
        options["language"] = normalize_language(options["language"]) or unknown_language(options["language"])
    found = FORMATS[kind](src, split=split, **options)
    if allow_empty_text:
        found.rows += [row for _, row in found.without_text]
    else:
        found.problems += [f"{where}: no text for {Path(row['audio_path']).name}" for where, row in found.without_text]
        if found.without_text:
            found.notes.append("--allow_empty_text keeps audio without text, as rows without speech")
    if not found.rows:
        listed = "".join(f"\n  {line}" for line in found.problems[:5])
        raise LayoutError(f"{src}: no usable rows for --format {kind}{listed}")
    return found


def unknown_language(code: str):
    """Refuse a --language that is not one of Whisper's."""
    raise UserError(f"--language {code!r}: not a Whisper language code or name (such as 'zh' or 'English')")


def portable(rows: list[dict], manifest: Path, lowercase: bool = False) -> list[dict]:
    """The rows with audio and subtitle paths relative to the manifest's folder (absolute where none exists)."""

    def relative(path: str) -> str:
        try:
            return os.path.relpath(path, manifest.resolve().parent)
        except ValueError:  # another drive on Windows
            return os.path.abspath(path)

    def portable_row(row: dict) -> dict:
        moved = {key: relative(row[key]) for key in ("audio_path", "subtitles") if key in row}
        return {**row, **moved, **({"text": row["text"].lower()} if lowercase and "text" in row else {})}

    return [portable_row(row) for row in rows]


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write rows as a JSON list, or as JSON Lines when path ends in .jsonl, atomically."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return write_text_atomic(path, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
