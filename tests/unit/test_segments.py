"""Long recordings with timed segments: subtitles read, bad cues named, windows planned, labelled and trained."""

import json
import re
from itertools import pairwise

import pytest

from helpers import recording, sine, write_audio, write_srt
from whisper_lora.cli.main import main
from whisper_lora.data.manifests import DataError, check_manifests, format_report, usable_rows
from whisper_lora.data.segments import Cue, SubtitleError, plan_windows, read_subtitles, sentence_cues


def test_windows_hold_whole_consecutive_cues_timed_from_their_own_start():
    cues = [Cue(n + 1, 5.0 * n + 1.0, 5.0 * n + 4.5, f"words {n}") for n in range(120)]  # ten minutes
    windows, skipped = plan_windows(cues, 600.0, 30.0, len)
    assert skipped == {}
    assert [cue.number for window in windows for cue in window.cues] == list(range(1, 121))  # each once, in order
    assert len(windows) == 20  # six 3.5 s cues 5 s apart fill 29 s, a window's share with its margins
    for window, after in zip(windows, windows[1:] + [None], strict=True):
        assert window.end - window.start <= 30.0
        first, last = window.cues[0], window.cues[-1]
        assert first.start == pytest.approx(0.5) and last.end == pytest.approx(window.end - window.start - 0.5)
        original = cues[first.number - 1]
        assert window.start + first.start == pytest.approx(original.start)  # times are from the window's start
        assert after is None or window.end <= after.start + after.cues[0].start  # no window holds another's speech


def test_bad_cues_are_skipped_with_their_reason_and_no_window_spans_one():
    cues = [
        Cue(1, 0.2, 2.0, "first"),
        Cue(2, 3.0, 2.5, "backwards"),
        Cue(3, 4.0, 5.0, ""),
        Cue(4, 6.0, 41.0, "too long"),
        Cue(5, 42.0, 45.0, "overlapped"),
        Cue(6, 44.0, 46.0, "overlapping"),
        Cue(7, 47.0, 49.0, "last"),
        Cue(8, 49.5, 50.5, "ends late"),
        Cue(9, 51.0, 52.0, "past the end"),
    ]
    windows, skipped = plan_windows(cues, 50.0, 30.0, len)
    assert skipped == {
        2: "ends at 2.500 s, not after its start 3.000 s",
        3: "no text",
        4: "is 35.0 s long, over the 30 s window",
        5: "overlaps cue 6, which starts at 44.00 s",
        6: "overlaps cue 5 (starts at 44.00 s, before it ends)",
        8: "ends at 50.50 s, past the audio's end at 50.00 s",
        9: "ends at 52.00 s, past the audio's end at 50.00 s",
    }
    assert [[cue.text for cue in window.cues] for window in windows] == [["first"], ["last"]]
    assert (windows[0].start, windows[0].end) == (0.0, 2.5)  # the margin stops at the audio's start
    assert (windows[1].start, windows[1].end) == (46.5, 49.5)  # and at the skipped cues either side


def test_a_window_holds_no_more_label_tokens_than_the_decoder_takes():
    cues = [Cue(n + 1, 2.0 * n, 2.0 * n + 1.5, "x" * 150) for n in range(10)]
    windows, _ = plan_windows(cues, 20.0, 30.0, len)  # 150 tokens a cue: two fit in 440 with the prompt
    assert [len(window.cues) for window in windows] == [2] * 5


def test_subtitles_read_with_markup_removed_and_unreadable_files_named(tmp_path):
    srt = tmp_path / "a.srt"
    srt.write_bytes(b"\xef\xbb\xbf1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i>\r\n{\\an8}there\r\n")
    assert read_subtitles(srt) == [Cue(1, 1.0, 2.5, "Hello there")]
    vtt = tmp_path / "b.vtt"
    vtt.write_text("WEBVTT\n\nNOTE x\n\nid\n00:00.500 --> 00:01.000 align:start\n<v Ann>hi\n")
    assert read_subtitles(vtt) == [Cue(1, 0.5, 1.0, "hi")]
    (tmp_path / "bad.srt").write_text("1\nnot a time\nwords\n")
    with pytest.raises(SubtitleError, match=r"bad.srt: not a valid SRT file"):
        read_subtitles(tmp_path / "bad.srt")
    with pytest.raises(SubtitleError, match=r"gone.vtt: subtitle file not found"):
        read_subtitles(tmp_path / "gone.vtt")
    assert sentence_cues([{"start": 0, "end": 1.5, "text": " a  b "}]) == ([Cue(1, 0.0, 1.5, "a b")], None)
    assert sentence_cues([{"start": 0, "text": "a"}])[1] == (
        "sentence 1: needs 'start' and 'end' in seconds (>= 0) and a 'text' string"
    )
    assert sentence_cues([])[1].startswith("'sentences' must be a non-empty list")


def test_check_data_plans_a_recording_into_windows_and_names_each_bad_cue(tmp_path, tokenizer, capsys):
    audio, cues = recording(tmp_path, 70.0)
    bad = [
        Cue(len(cues) + 1, cues[-1].start + 0.5, cues[-1].start + 1.0, "overlap"),
        Cue(len(cues) + 2, 69.0, 75.0, "late"),
    ]
    write_srt(tmp_path / "talk.srt", cues + bad)
    write_audio(tmp_path / "short.wav", sine(3.0, 16000, 220.0), 16000)
    rows = [
        {"audio_path": "talk.wav", "subtitles": "talk.srt", "language": "en"},
        {"audio_path": "short.wav", "sentences": [{"start": 1.0, "end": 2.0, "text": "a"}], "language": "en"},
        {"audio_path": "talk.wav", "subtitles": "missing.srt"},
        {"audio_path": "talk.wav", "subtitles": "talk.txt"},
        {"audio_path": "talk.wav", "subtitles": "talk.srt", "start": 1.0},
        {"audio_path": "talk.wav", "sentences": [{"start": 1.0, "end": 2.0, "text": "a"}], "subtitles": "talk.srt"},
    ]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(rows))
    report = check_manifests([manifest], tokenizer)
    windows = [row for row in report.rows if row.number == 1]
    assert len(windows) >= 2 and all(0 < row.end - row.start <= 30 for row in windows)
    assert [cue.number for row in windows for cue in row.segments] == list(range(1, len(cues)))  # the last overlaps
    assert windows[0].text == " ".join(cue.text for cue in windows[0].segments)
    for window, after in pairwise(windows):  # margins stop at a neighbour's speech
        assert (
            window.start + window.segments[-1].end <= after.start
            and window.end <= after.start + after.segments[0].start
        )
    assert windows[1].where() == f"{manifest} row 1 window 2 ({windows[1].start:.1f}-{windows[1].end:.1f} s)"
    assert [row.number for row in report.rows if row.number != 1] == [2]
    assert [p.reason for p in report.cue_problems] == [
        f"talk.srt cue {len(cues)}: overlaps cue {len(cues) + 1}, which starts at {bad[0].start:.2f} s",
        f"talk.srt cue {len(cues) + 1}: overlaps cue {len(cues)} (starts at {bad[0].start:.2f} s, before it ends)",
        f"talk.srt cue {len(cues) + 2}: ends at 75.00 s, past the audio's end at 70.00 s",
    ]
    reasons = {p.number: p.reason for p in report.problems}
    assert reasons[3].startswith("subtitle file not found (looked in")
    assert reasons[4] == "'subtitles' must name an .srt or .vtt file, got 'talk.txt'"
    assert reasons[5] == "'start'/'end' do not combine with timed segments; the segments' own times place them"
    assert reasons[6] == "give 'subtitles' or 'sentences', not both"
    assert report.summary().startswith("2 of 6 rows usable") and "2 recordings planned into" in report.summary()
    text = format_report(report, windows=True)
    assert f"  {manifest} row 1: {audio}: 70.0 s, {len(cues) - 1} cues in {len(windows)} windows of " in text
    assert f"    window 2: {windows[1].start:.2f}-{windows[1].end:.2f} s, cues " in text
    assert f"cues skipped: 3\n  {manifest} row 1: {audio}: talk.srt cue {len(cues)}: overlaps" in text
    with pytest.raises(DataError, match=r"--strict: 4 bad rows, 3 bad cues"):
        usable_rows([manifest], tokenizer, strict=True, log=lambda line: None)
    assert main(["check-data", str(manifest), "--json", str(tmp_path / "report.json")]) == 1
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ok"][0]["segments"][0]["text"] == cues[0].text and len(saved["cue_problems"]) == 3


def test_a_window_decodes_only_its_span_and_labels_each_segment_between_timestamps(tmp_path, tokenizer):
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from whisper_lora.train.dataset import LabelOptions, SpeechDataset

    audio, cues = recording(tmp_path, 70.0)
    write_srt(tmp_path / "talk.srt", cues)
    (tmp_path / "m.json").write_text(json.dumps([{"audio_path": str(audio), "subtitles": "talk.srt"}]))
    rows = check_manifests([tmp_path / "m.json"], tokenizer).rows
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    dataset = SpeechDataset(rows, processor, LabelOptions(language="en", timestamp_fraction=1.0))
    row = rows[1]
    assert len(dataset.window_samples(1)) == pytest.approx((row.end - row.start) * 16000, abs=2)
    labels = [tokenizer.convert_ids_to_tokens(t) for t in dataset[1]["labels"] if t >= 0]
    stamps = [float(label[2:-2]) for label in labels if re.fullmatch(r"<\|\d+\.\d\d\|>", label)]
    expected = [round(t / 0.02) * 0.02 for cue in row.segments for t in (cue.start, cue.end)]
    assert stamps == pytest.approx(expected) and 0 < stamps[0] <= 0.5 and stamps[-1] <= 30.0
    plain = [
        t
        for t in SpeechDataset(rows, processor, LabelOptions(language="en", timestamp_fraction=0.0))[1]["labels"]
        if t >= 0
    ]
    assert tokenizer.decode(plain, skip_special_tokens=True) == " " + row.text
