"""The coverage guard: a transcript that stops before its speech does is found and decoded on, without a model."""

import numpy as np
import pytest

from whisper_lora.core.records import Segment, Transcript, Word, join_segments
from whisper_lora.infer import coverage
from whisper_lora.infer.coverage import decode_rest, falls_short, flag_unheard, speech_end

SECONDS = 10.0
AUDIO = np.zeros(int(SECONDS * 16000), np.float32)


@pytest.fixture
def speech_until(monkeypatch):
    """Pretend the voice activity detector hears speech up to the given second."""

    def set_end(seconds: float):
        monkeypatch.setattr(coverage, "speech_end", lambda samples: seconds)

    return set_end


def test_silence_has_no_speech():
    assert speech_end(AUDIO) == 0.0
    assert speech_end(np.zeros(0, np.float32)) == 0.0


def test_a_transcript_that_stops_a_second_before_the_speech_falls_short(speech_until):
    speech_until(9.8)
    assert "1.5 s" in falls_short([Segment(0.0, 1.5, "Welcome to the directory.")], AUDIO)
    assert falls_short([Segment(0.0, 1.5, "a"), Segment(1.5, 9.0, "b")], AUDIO) is None
    assert falls_short([], AUDIO) is not None


def test_the_rest_is_decoded_from_the_last_segment_and_appended_in_place(speech_until):
    speech_until(9.8)
    transcript = Transcript("clip.wav", "Welcome.", [Segment(0.0, 1.5, "Welcome.")], "en", None, SECONDS)
    seen = []

    def decode(rest):
        seen.append(len(rest) / 16000)
        return Transcript("clip.wav", "", [Segment(0.0, 8.0, "Please enter.", [Word(0.1, 0.5, " Please", 0.9)])])

    decode_rest(transcript, AUDIO, decode, join_segments)
    assert seen == [pytest.approx(SECONDS - 1.3)]  # from 0.2 s before the last segment's end
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0.0, 1.5, "Welcome."),
        (1.5, 9.3, "Please enter."),
    ]  # never before what it follows
    assert transcript.segments[1].words[0].start == 1.4
    assert transcript.text == "Welcome. Please enter." and "9.8 s" in transcript.redecoded


def test_complete_or_empty_transcripts_are_left_alone(speech_until):
    speech_until(9.8)
    whole = Transcript("a.wav", "x", [Segment(0.0, 9.5, "x")])
    empty = Transcript("b.wav")
    for transcript in (whole, empty):
        decode_rest(transcript, AUDIO, lambda rest: pytest.fail("decoded again"), join_segments)
        assert transcript.redecoded is None


def test_words_decoded_again_at_the_start_of_the_rest_are_not_repeated(speech_until):
    speech_until(9.8)
    said = "Our hotel room overlook 特quaya"
    transcript = Transcript("clip.wav", said, [Segment(0.0, 1.5, said)], "en", None, SECONDS)
    words = [
        Word(0.1 * i, 0.1 * i + 0.1, w, 0.9)
        for i, w in enumerate(["", "Our", "hotel", "room", "overlook", "特quaya", "Tritle", "May."][1:])
    ]
    rest = Transcript("clip.wav", "", [Segment(0.0, 3.0, "Our hotel room overlook 特quaya Tritle May.", words)])
    decode_rest(transcript, AUDIO, lambda samples: rest, join_segments)
    assert transcript.text == "Our hotel room overlook 特quaya Tritle May."  # the first pass closed its segment early
    assert [w.word for w in transcript.segments[1].words] == ["Tritle", "May."]


@pytest.mark.parametrize(
    "said, rest, spaces, kept",
    [
        ("Welcome to the", [" the directory.", " Goodbye."], True, [" directory.", " Goodbye."]),  # the backoff's word
        ("Welcome, to the", [" The directory."], True, [" directory."]),  # case and punctuation do not count
        ("北京的最高气温是", ["气温是二十三度。"], False, ["二十三度。"]),  # characters where there are no spaces
        ("Welcome.", [" Welcome.", " Press one."], True, [" Press one."]),  # all of it again: the segment goes
        ("Press one.", [" Press one for sales."], True, [" for sales."]),
        ("one two", [" two three two"], True, [" three two"]),
        ("Welcome.", [" Please hold."], True, [" Please hold."]),  # nothing repeated: left as it is
    ],
)
def test_the_longest_repeated_run_at_the_start_of_the_rest_is_dropped(said, rest, spaces, kept):
    segments = [Segment(float(i), float(i + 1), text) for i, text in enumerate(rest)]
    assert [s.text for s in coverage.drop_repeated_start(said, segments, spaces)] == kept


def test_an_empty_transcript_over_speech_is_flagged_and_one_over_silence_is_not(speech_until):
    speech_until(9.8)
    over_speech, failed, said = Transcript("a.wav"), Transcript("b.wav", error="unreadable"), Transcript("c.wav", "x")
    said.segments = [Segment(0.0, 9.5, "x")]
    for transcript in (over_speech, failed, said):
        flag_unheard(transcript, AUDIO)
    assert "9.8 s" in over_speech.unheard and failed.unheard is None and said.unheard is None
    speech_until(0.5)  # a cough: less than a second
    quiet = Transcript("d.wav")
    flag_unheard(quiet, AUDIO)
    assert quiet.unheard is None
