"""Manifests: formats, path resolution, every problem kind, the report, and the training row filter."""

import json
import wave

import pytest

from helpers import sine, write_audio
from whisper_lora.data.manifests import (
    DataError,
    ManifestError,
    Report,
    check_manifests,
    format_report,
    read_manifest,
    usable_rows,
)


@pytest.fixture
def clips(tmp_path):
    """A folder of clips: 1 s and 2 s tones, a 31 s tone, and a 40 s tone for spans."""
    folder = tmp_path / "audio"
    folder.mkdir()
    write_audio(folder / "one.wav", sine(1.0, 16000), 16000)
    write_audio(folder / "two.flac", sine(2.0, 22050), 22050)
    write_audio(folder / "long.wav", sine(31.0, 8000), 8000)
    write_audio(folder / "forty.mp3", sine(40.0, 16000), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    return folder


def write_json(path, rows):
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def kinds(report: Report) -> dict[int, str]:
    return {problem.number: problem.kind for problem in report.problems}


def test_json_list_and_jsonl_read_the_same(tmp_path, clips):
    rows = [
        {"audio_path": "audio/one.wav", "text": "你好"},
        {"audio_path": "audio/two.flac", "text": "hi", "language": "English"},
    ]
    listed, _ = read_manifest(write_json(tmp_path / "m.json", rows))
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    lines, _ = read_manifest(tmp_path / "m.jsonl")
    assert [(r.audio_path, r.text, r.language) for r in listed] == [(r.audio_path, r.text, r.language) for r in lines]
    assert listed[0].audio_path == str(clips / "one.wav") and listed[1].language == "en"


def test_relative_paths_resolve_beside_the_manifest_then_the_working_dir(tmp_path, clips, monkeypatch):
    elsewhere = tmp_path / "lists"
    elsewhere.mkdir()
    manifest = write_json(
        elsewhere / "m.json", [{"audio_path": "audio/one.wav", "text": "a"}, {"audio_path": "nope.wav", "text": "b"}]
    )
    monkeypatch.chdir(tmp_path)
    rows, problems = read_manifest(manifest)
    assert rows[0].audio_path == str(clips / "one.wav")
    assert problems[0].kind == "missing"
    assert str(elsewhere / "nope.wav") in problems[0].reason and str(tmp_path / "nope.wav") in problems[0].reason


def test_whisper_finetune_rows_are_accepted(tmp_path, clips):
    rows, problems = read_manifest(
        write_json(tmp_path / "m.json", [{"audio": {"path": "audio/one.wav"}, "sentence": "好", "language": "Chinese"}])
    )
    assert not problems and rows[0].text == "好" and rows[0].language == "zh"


@pytest.mark.parametrize(
    "content, message",
    [
        (b'[{"audio_path": "a.wav", "text": "\xff\xfe"}]', r"not UTF-8 \(byte 0xff at line 1\)"),
        (b'[\n  {"audio_path": "a.wav",\n   "text": }\n]', "invalid JSON at line 3 column 12"),
        (b'{"audio_path": "a.wav", "text": "x"}\n{"audio_path": \n', "invalid JSON at line 2 column 16"),
    ],
    ids=["not-utf8", "bad-json-list", "bad-jsonl"],
)
def test_unreadable_manifests_say_where(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=message) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "absent.json")


def test_every_problem_kind_is_reported(tmp_path, clips, tokenizer):
    rows = [
        {"audio_path": "audio/one.wav", "text": "fine"},  # 1 ok
        {"audio_path": "audio/absent.wav", "text": "x"},  # 2 missing
        {"audio_path": "audio/broken.wav", "text": "x"},  # 3 undecodable
        {"audio_path": "audio/long.wav", "text": "x"},  # 4 too long
        {"audio_path": "audio/two.flac", "text": "   "},  # 5 empty text
        {"audio_path": "audio/two.flac", "text": "word " * 500, "start": 0.0},  # 6 label too long
        {"audio_path": "audio/one.wav", "text": "again"},  # 7 duplicate of 1
        {"audio_path": "audio/forty.mp3", "text": "span", "start": 30.0, "end": 35.0},  # 8 ok, 5 s
        {"audio_path": "audio/forty.mp3", "text": "past the end", "start": 45.0},  # 9 zero length
        {"text": "no audio"},  # 10 missing key
        ["not", "an", "object"],  # 11
        {"audio_path": "audio/two.flac", "text": "x", "language": "klingon"},  # 12
        {"audio_path": "audio/two.flac", "text": "x", "start": 2, "end": 1},  # 13
    ]
    report = check_manifests([write_json(tmp_path / "m.json", rows)], tokenizer)
    assert [row.number for row in report.rows] == [1, 8]
    assert kinds(report) == {
        2: "missing",
        3: "undecodable",
        4: "too long",
        5: "empty text",
        6: "label too long",
        7: "duplicate",
        9: "zero length",
        10: "bad row",
        11: "bad row",
        12: "bad row",
        13: "bad row",
    }
    assert report.total_seconds == pytest.approx(6.0, abs=0.01)
    reasons = {problem.number: problem.reason for problem in report.problems}
    assert "row 1" in reasons[7] and "'audio_path'" in reasons[10] and "klingon" in reasons[12]


def test_report_text(tmp_path, clips):
    report = check_manifests(
        [
            write_json(
                tmp_path / "m.json",
                [
                    {"audio_path": "audio/one.wav", "text": "a short one"},
                    {"audio_path": "audio/two.flac", "text": "x" * 30},
                    {"audio_path": "audio/absent.wav", "text": "x"},
                ],
            )
        ]
    )
    text = format_report(report)
    assert "rows OK:  2" in text and "rows bad: 1" in text and "m.json row 3" in text
    assert "total audio: 0.001 h (3.0 s)" in text
    assert "    0-2 s | " in text and "20-50 chars |" in text


def test_training_rows_skip_or_refuse_bad_ones(tmp_path, clips):
    manifest = write_json(
        tmp_path / "m.json",
        [{"audio_path": "audio/one.wav", "text": "ok"}, {"audio_path": "audio/broken.wav", "text": "x"}],
    )
    lines = []
    rows = usable_rows([manifest], log=lines.append)
    assert [row.number for row in rows] == [1]
    assert lines == ["1 of 2 rows usable (0.00 h of audio); 1 skipped: 1 undecodable"]
    with pytest.raises(DataError, match=r"--strict: 1 bad rows\n  .*m.json row 2: .*broken.wav"):
        usable_rows([manifest], strict=True, log=lines.append)


def test_all_bad_rows_stop_training(tmp_path, clips):
    manifest = write_json(tmp_path / "m.json", [{"audio_path": "audio/absent.wav", "text": "x"}])
    with pytest.raises(DataError, match="no usable rows"):
        usable_rows([manifest], log=lambda line: None)


def test_silent_zero_length_wav(tmp_path):
    with wave.open(str(tmp_path / "nothing.wav"), "wb") as handle:  # a valid header and no samples
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
    report = check_manifests([write_json(tmp_path / "m.json", [{"audio_path": "nothing.wav", "text": "x"}])])
    assert kinds(report) == {1: "zero length"}


def test_rows_without_speech_are_accepted_when_they_say_so_and_counted_apart(tmp_path, clips):
    rows = [
        {"audio_path": "audio/one.wav", "text": "speech"},  # 1
        {"audio_path": "audio/two.flac", "no_speech": True},  # 2 no text key: empty
        {"audio_path": "audio/forty.mp3", "text": "", "start": 0, "end": 3},  # 3 empty without the flag
        {"audio_path": "audio/forty.mp3", "text": "words", "no_speech": True, "start": 5, "end": 6},  # 4
        {"audio_path": "audio/forty.mp3", "text": "", "no_speech": "yes", "start": 7, "end": 8},  # 5
    ]
    manifest = write_json(tmp_path / "m.json", rows)
    report = check_manifests([manifest])
    assert [row.number for row in report.rows] == [1, 2] and report.without_speech == 1
    assert kinds(report) == {3: "empty text", 4: "bad row", 5: "bad row"}
    reasons = {problem.number: problem.reason for problem in report.problems}
    assert "no_speech" in reasons[3] and "--allow_empty_text" in reasons[3]
    assert "'words'" in reasons[4] and "'yes'" in reasons[5]
    assert "rows OK:  2 (1 without speech)" in format_report(report)
    allowed = check_manifests([manifest], allow_empty_text=True)
    assert [row.number for row in allowed.rows] == [1, 2, 3] and allowed.without_speech == 2
    lines = []
    usable_rows([manifest], log=lines.append, allow_empty_text=True)
    assert lines[0].startswith("3 of 5 rows usable (0.00 h of audio, 2 without speech); 2 skipped")
