"""Output formats."""

import json

from whisper_lora.transcribe import Segment, Transcript
from whisper_lora.writers import get_writer

DONE = Transcript("a.wav", "Hello there. General Kenobi.", [Segment(0.0, 1.5, "Hello there."), Segment(3661.25, 3662.0, "General Kenobi.")], "en", 0.9, 3662.0)


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
    assert record["segments"][1] == {"start": 3661.25, "end": 3662.0, "text": "General Kenobi."} and record["error"] is None
    assert "segments" not in json.loads(get_writer("json").render([DONE], timestamps=False))[0]
