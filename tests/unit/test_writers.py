"""Output formats."""

import json
import subprocess
import sys

from whisper_lora.core.records import Segment, Transcript
from whisper_lora.infer.writers import get_writer

DONE = Transcript(
    "a.wav",
    "Hello there. General Kenobi.",
    [Segment(0.0, 1.5, "Hello there."), Segment(3661.25, 3662.0, "General Kenobi.")],
    "en",
    0.9,
    3662.0,
)


def test_srt():
    assert get_writer("srt").render([DONE]) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n01:01:01,250 --> 01:01:02,000\nGeneral Kenobi.\n\n"
    )


def test_vtt_and_tsv():
    assert get_writer("vtt").render([DONE]).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n")
    assert get_writer("tsv").render([DONE]).splitlines()[2] == "3661250\t3662000\tGeneral Kenobi."


def test_txt_and_json():
    assert get_writer("txt").render([DONE], timestamps=False) == "Hello there. General Kenobi.\n"
    assert get_writer("txt").render([DONE], timestamps=True).splitlines()[1] == "[3661.25 --> 3662.00] General Kenobi."
    record = json.loads(get_writer("json").render([DONE], timestamps=True))[0]
    assert (
        record["segments"][1] == {"start": 3661.25, "end": 3662.0, "text": "General Kenobi."}
        and record["error"] is None
    )
    assert "segments" not in json.loads(get_writer("json").render([DONE], timestamps=False))[0]


def test_json_says_why_a_file_was_decoded_again_and_only_then():
    import dataclasses

    redone = dataclasses.replace(DONE, redecoded="the text ended at 1.5 s but the speech goes on to 9.8 s")
    records = json.loads(get_writer("json").render([DONE, redone], timestamps=False))
    assert "redecoded" not in records[0] and records[1]["redecoded"].startswith("the text ended at 1.5 s")
    assert "unheard" not in records[0] and "unheard" not in records[1]


def test_the_run_summary_counts_files_decoded_again(capsys):
    import dataclasses

    from whisper_lora.cli.common import report_redecoded

    report_redecoded([DONE, DONE])
    assert capsys.readouterr().err == ""
    report_redecoded([DONE, dataclasses.replace(DONE, path="b.wav", redecoded="the text ended early")])
    assert "1 of 2 files were decoded again" in capsys.readouterr().err
    report_redecoded([DONE, dataclasses.replace(DONE, path="c.wav", unheard="no text, though ... up to 3.0 s")])
    assert "1 of 2 files have no text though speech was detected" in capsys.readouterr().err


def test_writing_an_srt_and_loading_the_server_and_cli_modules_do_not_import_torch():
    code = (
        "import json, sys\n"
        "import whisper_lora.cli.main, whisper_lora.infer.evaluate, whisper_lora.infer.transcriber, whisper_lora.serve.app\n"
        "from whisper_lora.core.records import Segment, TranscribeOptions, Transcript\n"
        "from whisper_lora.infer.writers import get_writer\n"
        "TranscribeOptions(language='zh')\n"
        "get_writer('srt').render([Transcript('a.wav', 'hi', [Segment(0.0, 1.0, 'hi')])])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
