"""--ray's pieces that need no cluster: the flag, the checks on the driver, and transcripts sent back as JSON."""

import json
from dataclasses import asdict

import pytest

from whisper_lora.cli.common import RAY_LOCAL as LOCAL
from whisper_lora.cli.main import build_parser
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import Runtime, Segment, TranscribeOptions, Transcript, Word
from whisper_lora.infer.ray_jobs import check_on_ray, transcript_from_json


@pytest.mark.parametrize(
    ("flags", "address"),
    [([], None), (["--ray"], LOCAL), (["--ray", "ray://head:10001"], "ray://head:10001")],
)
def test_the_flag_takes_an_optional_address(flags, address):
    args = build_parser("transcribe").parse_args(["transcribe", "--audio_list", "list.txt", *flags])
    assert args.ray == address and args.ray_actors == 2


def test_zero_actors_are_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        build_parser("transcribe").parse_args(["transcribe", "--audio_list", "l", "--ray", "--ray_actors", "0"])
    assert "--ray_actors" in capsys.readouterr().err


def test_a_transcript_survives_the_trip_from_an_actor():
    words = [Word(0.0, 0.4, " hello", 0.9), Word(0.4, 0.9, " world", 0.8)]
    sent = Transcript("a.wav", "hello world", [Segment(0.0, 0.9, "hello world", words)], "en", 0.97, 1.2)
    bare = Transcript("b.wav", error="file not found")
    for transcript in (sent, bare):
        assert transcript_from_json(json.dumps(asdict(transcript))) == transcript


def test_options_the_backend_cannot_honour_are_refused_before_ray_starts(tiny_model_dir):
    with pytest.raises(UserError, match="--word_timestamps"):
        check_on_ray(
            Runtime(model_path=str(tiny_model_dir), backend="transformers"), TranscribeOptions(word_timestamps=True)
        )
    check_on_ray(Runtime(model_path=str(tiny_model_dir), backend="transformers"), TranscribeOptions())
