"""The token budget: a decode of short audio stops at what the audio can hold, on every backend."""

from whisper_lora.core.budget import MAX_TARGET_POSITIONS, max_new_tokens


def test_the_budget_grows_with_the_audio_and_stays_inside_the_decoder():
    assert max_new_tokens(1.0, "en") < max_new_tokens(5.0, "en") < max_new_tokens(10.0, "en")
    assert max_new_tokens(5.0, "zh") == max_new_tokens(5.0, "en") == 20 * 5 + 16
    assert max_new_tokens(5.0, "th") == max_new_tokens(5.0, None) == 40 * 5 + 16  # unmeasured scripts, unknown
    assert max_new_tokens(30.0, "en") == MAX_TARGET_POSITIONS - 4  # a full window may use the whole decoder
    assert max_new_tokens(3600.0, "en", prompt_tokens=227) == MAX_TARGET_POSITIONS - 227
    assert max_new_tokens(0.0, "en") == 16
    assert max_new_tokens(5.0, "en", limit=40) == 36  # a model's own smaller generation limit wins
