"""whisper-lora prepare: each corpus layout, made here with its real file names and quirks, becomes a manifest."""

import json
from pathlib import Path

import pytest

from helpers import sine, write_audio
from whisper_lora.cli.main import main
from whisper_lora.core.errors import UserError
from whisper_lora.data.manifests import check_manifests, read_manifest
from whisper_lora.data.prepare import LayoutError, import_corpus, portable, write_manifest

BOM, CRLF = "\ufeff", "\r\n"


def tone(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(path, sine(seconds, 16000), 16000)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def texts(found) -> dict[str, str]:
    return {Path(row["audio_path"]).name: row["text"] for row in found.rows}


CV_HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"  # noqa: E501


def test_common_voice_reads_the_split_tsv_unquoted(tmp_path):
    for name in ("common_voice_zh-CN_1.mp3", "common_voice_zh-CN_2.mp3", "common_voice_zh-CN_4.mp3"):
        tone(tmp_path / "clips" / name)
    lines = [
        CV_HEADER,
        'c1\tcommon_voice_zh-CN_1.mp3\ts1\t他说"你好"就走了\t\t2\t0\t\t\t\t\tzh-CN\t',
        "c2\tcommon_voice_zh-CN_2.mp3\ts2\t今天下雨\t\t2\t0\t\t\t\t\tzh-CN\t",
        "c3\tcommon_voice_zh-CN_3.mp3\ts3\t没有音频\t\t2\t0\t\t\t\t\tzh-CN\t",
        "c4\tcommon_voice_zh-CN_4.mp3\ts4\t\t\t2\t0\t\t\t\t\tzh-CN\t",
    ]
    write(tmp_path / "train.tsv", CRLF.join(lines) + CRLF)
    found = import_corpus("commonvoice", tmp_path)
    assert texts(found) == {"common_voice_zh-CN_1.mp3": '他说"你好"就走了', "common_voice_zh-CN_2.mp3": "今天下雨"}
    assert {row["language"] for row in found.rows} == {"zh"}
    assert found.problems == [
        f"{tmp_path / 'train.tsv'} line 4: audio file not found: {tmp_path / 'clips' / 'common_voice_zh-CN_3.mp3'}",
        f"{tmp_path / 'train.tsv'} line 5: no text for common_voice_zh-CN_4.mp3",
    ]
    kept = import_corpus("commonvoice", tmp_path, allow_empty_text=True)
    assert kept.rows[-1] == {**found.rows[0], "audio_path": kept.rows[-1]["audio_path"], "text": "", "no_speech": True}
    assert kept.rows[-1]["audio_path"].endswith("common_voice_zh-CN_4.mp3") and len(kept.problems) == 1
    with pytest.raises(LayoutError, match=r"dev.tsv: not found; a Common Voice folder has it"):
        import_corpus("commonvoice", tmp_path, split="dev")


def test_aishell_joins_words_and_names_wavs_without_a_transcript(tmp_path):
    transcript = [
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购",
        "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况",
    ]
    write(tmp_path / "transcript" / "aishell_transcript_v0.8.txt", BOM + "\n".join(transcript) + "\n")
    tone(tmp_path / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav")
    tone(tmp_path / "wav" / "train" / "S0002" / "BAC009S0002W0123.wav")  # AISHELL has wavs with no transcript line
    tone(tmp_path / "wav" / "test" / "S0724" / "BAC009S0724W0121.wav")
    found = import_corpus("aishell", tmp_path)
    assert texts(found) == {"BAC009S0002W0122.wav": "而对楼市成交抑制作用最大的限购"}
    assert found.rows[0]["language"] == "zh"
    assert found.problems == [
        f"{tmp_path / 'wav/train/S0002/BAC009S0002W0123.wav'}: no line for BAC009S0002W0123 in "
        f"{tmp_path / 'transcript/aishell_transcript_v0.8.txt'}"
    ]
    assert texts(import_corpus("aishell", tmp_path, split="test")) == {
        "BAC009S0724W0121.wav": "甚至出现交易几乎停滞的情况"
    }
    write(tmp_path / "wav" / "dev" / "S0724.tar.gz", "")
    with pytest.raises(LayoutError, match="extract them first"):
        import_corpus("aishell", tmp_path, split="dev")


def test_librispeech_reads_each_chapter_and_lowercases_on_request(tmp_path, capsys):
    chapter = tmp_path / "LibriSpeech" / "train-clean-100" / "19" / "198"
    lines = ["19-198-0000 NORTHANGER ABBEY", "19-198-0001 THIS LITTLE WORK WAS FINISHED", "19-198-0002 NO FLAC HERE"]
    write(chapter / "19-198.trans.txt", "\n".join(lines) + "\n")
    tone(chapter / "19-198-0000.flac")
    tone(chapter / "19-198-0001.flac")
    found = import_corpus("librispeech", tmp_path / "LibriSpeech")
    assert texts(found) == {"19-198-0000.flac": "NORTHANGER ABBEY", "19-198-0001.flac": "THIS LITTLE WORK WAS FINISHED"}
    assert found.problems == [
        f"{chapter / '19-198.trans.txt'} line 3: audio file not found: {chapter / '19-198-0002.flac'}"
    ]
    out = tmp_path / "out" / "train.jsonl"
    assert (
        main(["prepare", str(tmp_path / "LibriSpeech"), "--format", "librispeech", "--output", str(out), "--lowercase"])
        == 1
    )
    rows, problems = read_manifest(out)
    assert [row.text for row in rows] == ["northanger abbey", "this little work was finished"] and not problems
    assert json.loads(out.read_text().splitlines()[0])["audio_path"].startswith("../LibriSpeech/")
    printed = capsys.readouterr().out
    assert "prepare: 2 rows from" in printed and "19-198.trans.txt line 3: audio file not found" in printed
    assert "rows OK:  2" in printed and "rows bad: 0" in printed


def test_kaldi_reads_wav_scp_commands_and_segments(tmp_path):
    session = tone(tmp_path / "audio" / "session1.wav", 4.0)
    piped = tone(tmp_path / "audio" / "session2.flac", 2.0)
    data = tmp_path / "data" / "train"
    scp = ["rec1 " + str(session), f"rec2 flac -c -d -s {piped} |", "rec3 sph2pipe -f wav -p |"]
    write(data / "wav.scp", "\n".join(scp) + "\n")
    segments = ["utt1 rec1 0.00 1.50", "utt2 rec1 1.50 3.20", "utt3 rec2 0.0 1.9", "utt4 rec3 0 1", "utt5 rec1 2.0 1.0"]
    write(data / "segments", "\n".join(segments) + "\n")
    text = [
        "utt1 hello there",
        "utt2 general kenobi",
        "utt3 piped audio",
        "utt4 no file",
        "utt5 backwards",
        "utt6 nowhere",
    ]
    write(data / "text", CRLF.join(text) + CRLF)
    found = import_corpus("kaldi", data, language="English")
    assert [(row["text"], row["start"], row["end"]) for row in found.rows] == [
        ("hello there", 0.0, 1.5),
        ("general kenobi", 1.5, 3.2),
        ("piped audio", 0.0, 1.9),
    ]
    assert {row["language"] for row in found.rows} == {"en"} and found.rows[2]["audio_path"] == str(piped)
    assert found.notes == [
        f"{data / 'wav.scp'} line 2: read as its input file {piped}; the command's own options are not applied"
    ]
    assert found.problems == [
        f"{data / 'text'} line 4: {data / 'wav.scp'} line 3: a command ('... |') that does not name exactly one existing audio file",
        f"{data / 'text'} line 5: {data / 'segments'} line 5: end 1.0 is not after start 2.0",
        f"{data / 'text'} line 6: utterance utt6 is not in {data / 'segments'}",
    ]
    with pytest.raises(UserError, match="--language .klingon."):
        import_corpus("kaldi", data, language="klingon")


def test_audiofolder_reads_csv_with_a_bom_and_jsonl_in_a_split_folder(tmp_path):
    tone(tmp_path / "a.wav")
    tone(tmp_path / "sub" / "b.wav")
    csv_lines = ["file_name,transcription", 'a.wav,"hello, world"', "sub/b.wav,second one", "gone.wav,missing"]
    write(tmp_path / "metadata.csv", BOM + CRLF.join(csv_lines) + CRLF)
    found = import_corpus("audiofolder", tmp_path)
    assert texts(found) == {"a.wav": "hello, world", "b.wav": "second one"}
    assert found.problems == [f"{tmp_path / 'metadata.csv'} line 4: audio file not found: {tmp_path / 'gone.wav'}"]
    split = tmp_path / "other"
    tone(split / "train" / "c.flac")
    write(split / "train" / "metadata.jsonl", '{"file_name": "c.flac", "sentence": "third"}\nnot json\n')
    found = import_corpus("audiofolder", split)
    assert texts(found) == {"c.flac": "third"}
    assert found.problems == [f"{split / 'train' / 'metadata.jsonl'} line 2: not an object with 'file_name'"]
    write(split / "train" / "metadata.jsonl", '{"file_name": "c.flac", "words": "third"}\n')
    with pytest.raises(LayoutError, match="line 1: no text column .*--text_column"):
        import_corpus("audiofolder", split)
    assert texts(import_corpus("audiofolder", split, text_column="words")) == {"c.flac": "third"}


SRT = "1\r\n00:00:00,100 --> 00:00:01,200\r\nfirst <i>cue</i>\r\nsecond line\r\n\r\n2\r\n00:00:01,500 --> 00:00:02,000\r\n\r\n\r\n3\r\n00:00:02,000 --> 00:00:02,800\r\nthird cue\r\n"  # noqa: E501
VTT = "WEBVTT\n\nNOTE made by hand\n\nintro\n00:00.000 --> 00:01.000 align:start\n<v Ann>hi there\n\n00:01.000 --> 00:00.500\nbackwards\n"


def test_folder_pairs_audio_with_text_lab_and_subtitles(tmp_path):
    tone(tmp_path / "a.wav")
    write(tmp_path / "a.txt", BOM + "plain text\r\nover two lines\r\n")
    tone(tmp_path / "deep" / "b.flac")
    write(tmp_path / "deep" / "b.lab", "lab text")
    tone(tmp_path / "c.wav", 3.0)
    write(tmp_path / "c.srt", BOM + SRT)
    tone(tmp_path / "d.mp3", 1.5)
    write(tmp_path / "d.vtt", VTT)
    tone(tmp_path / "e.wav")
    found = import_corpus("folder", tmp_path, language="zh")
    rows = [(Path(row["audio_path"]).name, row.get("text"), row.get("subtitles")) for row in found.rows]
    assert rows == [
        ("a.wav", "plain text over two lines", None),
        ("c.wav", None, str(tmp_path / "c.srt")),
        ("d.mp3", None, str(tmp_path / "d.vtt")),
        ("b.flac", "lab text", None),
    ]
    assert found.problems == [f"{tmp_path / 'e.wav'}: no .txt, .lab, .srt, .vtt file of the same name beside it"]
    manifest = write_manifest(portable(found.rows, tmp_path / "m.json"), tmp_path / "m.json")
    assert json.loads(manifest.read_text())[1]["subtitles"] == "c.srt"
    report = check_manifests([manifest])  # a recording's cues are checked, and planned into windows, here
    assert [(Path(row.audio_path).name, row.text, row.window) for row in report.rows] == [
        ("a.wav", "plain text over two lines", None),
        ("c.wav", "first cue second line", 1),
        ("c.wav", "third cue", 2),  # the skipped cue 2 lies between, so no window spans it
        ("d.mp3", "hi there", 1),
        ("b.flac", "lab text", None),
    ]
    assert [problem.reason for problem in report.cue_problems] == [
        "c.srt cue 2: no text",
        "d.vtt cue 2: ends at 0.500 s, not after its start 1.000 s",
    ]


def test_prepare_writes_a_manifest_that_checks_clean(tmp_path, capsys):
    tone(tmp_path / "corpus" / "a.wav")
    write(tmp_path / "corpus" / "a.txt", "hello")
    out = tmp_path / "train.json"
    assert (
        main(["prepare", str(tmp_path / "corpus"), "--format", "folder", "--output", str(out), "--language", "en"]) == 0
    )
    assert json.loads(out.read_text()) == [{"audio_path": "corpus/a.wav", "language": "en", "text": "hello"}]
    assert "rows OK:  1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "source, message",
    [("missing", "missing: not a folder"), ("empty", "empty: no usable rows for --format folder")],
)
def test_prepare_refuses_a_source_with_nothing_to_import(tmp_path, capsys, source, message):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "train.json"
    assert main(["prepare", str(tmp_path / source), "--format", "folder", "--output", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()
