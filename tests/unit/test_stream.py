"""The live engine on a scripted model: LocalAgreement-2 commits, the bounded buffer, and the stream command's log."""

import pytest

from helpers import ScriptedModel, clock_audio, script
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript, Word
from whisper_lora.infer.stream import LiveTranscriber, LocalAgreement, TimedWord, join_words, play, spoken_segments


def test_two_agreeing_hypotheses_commit_their_common_prefix_and_never_take_it_back():
    agreement = LocalAgreement()
    first = [TimedWord(0.0, 0.4, " the"), TimedWord(0.5, 0.9, " cat"), TimedWord(1.0, 1.2, " uh")]
    assert agreement.update(first) == []  # nothing to agree with yet
    second = [TimedWord(0.0, 0.4, " the"), TimedWord(0.5, 0.9, " cat"), TimedWord(1.0, 1.4, " sat")]
    assert agreement.update(second) == first[:2]
    # The buffer is read again from its start: committed words are dropped, not committed twice.
    assert agreement.update(second + [TimedWord(1.5, 1.9, " on")]) == [second[2]]
    assert agreement.flush() == [TimedWord(1.5, 1.9, " on")] and agreement.pending == []


def test_a_long_session_commits_every_word_before_the_end_in_a_bounded_buffer():
    words = script(120.0)
    model = ScriptedModel(words)
    live = LiveTranscriber(model, trim_seconds=15.0, max_buffer_seconds=25.0)
    commits = play(live, clock_audio(120.0), speed=0, chunk_seconds=1.0)
    assert join_words(c.word for c in commits) == join_words(words)
    assert [c.word for c in commits] == words  # in order, each once
    times = [c.committed_at for c in commits]
    assert times == sorted(times)
    latencies = sorted(c.latency for c in commits[:-6])  # the last sentence is committed by finish()
    assert latencies[len(latencies) // 2] <= 2.0 and latencies[-1] <= 3.0, latencies
    assert model.longest <= 16.5, model.longest  # cut at sentence ends once past 15 s
    assert len(live.audio) == 0 and live.offset == pytest.approx(120.0, abs=0.01)


def test_silence_never_grows_the_buffer_past_its_bound():
    model = ScriptedModel([])
    live = LiveTranscriber(model, trim_seconds=15.0, max_buffer_seconds=25.0)
    assert play(live, clock_audio(60.0), speed=0, chunk_seconds=1.0) == []
    assert model.longest <= 26.0, model.longest


def test_the_prompt_carries_the_text_cut_from_the_buffer():
    model = ScriptedModel(script(40.0))
    play(LiveTranscriber(model), clock_audio(40.0), speed=0, chunk_seconds=1.0)
    prompts = [options.initial_prompt for options in model.asked]
    assert prompts[0] is None and prompts[-1].endswith("the cat sat on the mat.") and 150 < len(prompts[-1]) <= 200


def test_a_backend_without_word_times_is_refused():
    model = ScriptedModel([])
    model.backend = "transformers"
    with pytest.raises(UserError, match="needs word times.*--backend ct2"):
        LiveTranscriber(model)


def test_finish_reads_the_audio_that_came_after_the_last_step():
    words = script(8.0)
    live = LiveTranscriber(ScriptedModel(words))
    audio = clock_audio(7.3)  # 7.3 s: inside the pause after the second sentence
    live.feed(audio[:100_000])  # 6.25 s: the step hears the last word cut, as "uh"
    live.step()
    assert live.agreement.pending[-1].text == " uh"
    live.feed(audio[100_000:])
    said = live.finish()
    assert said[-1].text == " mat." and join_words(said).endswith("on the mat.")


class GreedyLoops(ScriptedModel):
    """Greedy decoding hears the words, then "it is" over and over, unless a repeated 3-token run is forbidden
    (or, stubborn, whatever is forbidden); sampling hears them right."""

    def __init__(self, words, stubborn: bool = False):
        super().__init__(words)
        self.stubborn = stubborn

    def clips(self, clips, options):
        heard = super().clips(clips, options)
        if options.temperature != (0.0,) or (options.no_repeat_ngram_size and not self.stubborn):
            return heard
        said = heard[0].segments[0].words + [Word(5.0, 5.1, w, 0.9) for w in [" it", " is"] * 20]
        return [Transcript("live", "".join(w.word for w in said), [Segment(0.0, 5.1, "", said)])]


def decoded_with(model) -> set:
    return {(o.temperature, o.no_repeat_ngram_size, o.compression_ratio_threshold, o.beam_size) for o in model.asked}


ASKED = TranscribeOptions(language="en", temperature=[0.0, 0.5, 1.0], compression_ratio_threshold=1.2, beam_size=2)


def test_a_decoding_that_loops_is_redone_once_without_repeats_and_its_loop_never_committed():
    words = script(6.0)
    model = GreedyLoops(words)
    commits = play(LiveTranscriber(model, ASKED), clock_audio(6.0), speed=0, chunk_seconds=1.0)
    assert join_words(c.word for c in commits) == join_words(words)
    assert decoded_with(model) == {((0.0,), 0, 1.2, 2), ((0.0,), 3, 1.2, 2)}  # one decoding more, greedy
    assert all(o.word_timestamps for o in model.asked)  # the engine's own need


def test_a_loop_that_survives_the_repeat_ban_is_redone_at_the_next_temperatures():
    words = script(6.0)
    model = GreedyLoops(words, stubborn=True)
    commits = play(LiveTranscriber(model, ASKED), clock_audio(6.0), speed=0, chunk_seconds=1.0)
    assert join_words(c.word for c in commits) == join_words(words)
    assert decoded_with(model) == {((0.0,), 0, 1.2, 2), ((0.0,), 3, 1.2, 2), ((0.5, 1.0), 0, 1.2, 2)}


class InventsPastTheSpeech(ScriptedModel):
    """After the words it hears, repeats the first ones in a segment of its own: improbable, in the buffer's last frame."""

    def clips(self, clips, options):
        heard = super().clips(clips, options)[0]
        end = heard.segments[0].end
        invented = [Word(end, end, w.text, 0.01) for w in self.words[:6]]
        return [Transcript("live", "", [*heard.segments, Segment(end, end, "", invented)])]


def test_words_invented_past_the_speech_at_the_buffers_end_are_never_committed():
    words = script(8.0)
    commits = play(LiveTranscriber(InventsPastTheSpeech(words)), clock_audio(8.0), speed=0, chunk_seconds=1.0)
    assert join_words(c.word for c in commits) == join_words(words)


def test_a_short_last_segment_heard_clearly_is_kept():
    said = Segment(0.0, 2.0, "", [Word(0.0, 1.5, " Call", 0.9), Word(1.5, 2.0, " me.", 0.8)])
    short = Segment(2.4, 2.6, "", [Word(2.4, 2.6, " Yes.", 0.6)])
    invented = Segment(2.6, 2.6, "", [Word(2.6, 2.6, " Call", 0.02), Word(2.6, 2.6, " me.", 0.01)])
    assert spoken_segments([said, short]) == [said, short]
    assert spoken_segments([said, short, invented]) == [said, short]
