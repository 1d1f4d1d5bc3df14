"""Text normalisation and error rates."""

import pytest

from whisper_lora.core.metrics import default_metric, error_rate, normalize_text


@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("Hello, World!", "en", "hello world"),
        ("ＡＢＣ１２３", None, "abc123"),  # NFKC folds full-width forms
        ("漢語說話。", "zh", "汉语说话"),
        ("漢語，說話", None, "汉语 说话"),  # detected as Chinese without a language
        ("  spaced\tout  ", "en", "spaced out"),
    ],
)
def test_normalize_text(text, language, expected):
    assert normalize_text(text, language) == expected


def test_cer_ignores_spaces_and_script():
    assert error_rate(["今天 天氣很好"], ["今天天气很好。"], "cer", "zh") == 0.0
    assert error_rate(["今天天气很好"], ["今天天气不好"], "cer", "zh") == pytest.approx(1 / 6)


def test_chinese_numbers_score_the_same_spelled_out_or_in_digits():
    assert error_rate(["北京的最高气温是二十三度。"], ["北京的最高气温是23度"], "cer", "zh") == 0.0
    assert error_rate(["这座桥建于一九五八年", "比分是二比一"], ["这座桥建于1958年", "比分是2比1"], "cer", "zh") == 0.0
    assert error_rate(["二十三度"], ["24度"], "cer", "zh") == pytest.approx(1 / 3)  # 23度 against 24度
    assert normalize_text("twenty three", "en") == "twenty three"  # other languages are left alone


def test_wer():
    assert error_rate(["The cat sat."], ["the cat sat"], "wer") == 0.0
    assert error_rate(["the cat sat"], ["the dog sat"], "wer") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        error_rate(["a"], ["a"], "bleu")


def test_default_metric():
    assert [default_metric(x) for x in ("zh", "ja", "en", None)] == ["cer", "cer", "wer", "wer"]


def test_the_language_table_is_whispers():
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    from whisper_lora.core.languages import CODES, NAMES, normalize_language

    assert NAMES == LANGUAGES and CODES == TO_LANGUAGE_CODE
    assert [normalize_language(x) for x in ("zh", "Chinese", " Mandarin ", "klingon")] == ["zh", "zh", "zh", None]
