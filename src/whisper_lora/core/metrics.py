"""Text normalisation and WER/CER, shared by training, evaluation and the tests."""

from __future__ import annotations

import re
import unicodedata
import warnings
from functools import lru_cache

import cn2an
import jiwer
import opencc

from whisper_lora.core.languages import traits

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _to_simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def chinese_numerals_to_digits(text: str) -> str:
    """Numbers written in Chinese characters as Arabic digits (二十三度 -> 23度, 一九五八年 -> 1958年), by cn2an."""
    with warnings.catch_warnings():  # cn2an warns about each run of numerals it leaves as it is
        warnings.simplefilter("ignore")
        return cn2an.transform(text, "cn2an")


def default_metric(language: str | None) -> str:
    """'cer' for Chinese, Japanese and Korean, 'wer' otherwise (see languages.TRAITS)."""
    return traits(language).metric


def normalize_text(text: str, language: str | None = None) -> str:
    """NFKC; for Chinese, traditional to simplified and numerals to digits; case and punctuation folded, spaces collapsed.

    Whisper writes the numbers it hears in Chinese as digits (23度) where references spell them (二十三度);
    both sides are given digits, as Whisper's English normaliser does for English numbers.
    """
    text = unicodedata.normalize("NFKC", text)
    if traits(language).chinese or (language is None and _CJK.search(text)):
        text = chinese_numerals_to_digits(_to_simplified().convert(text))
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text.casefold())
    return " ".join(text.split())


def error_rate(references: list[str], hypotheses: list[str], metric: str, language: str | None = None) -> float:
    """Corpus WER or CER after normalize_text; CER ignores spaces, as Chinese references rarely agree on them."""
    refs = [normalize_text(t, language) for t in references]
    hyps = [normalize_text(t, language) for t in hypotheses]
    if metric == "wer":
        return jiwer.wer(refs, hyps) if any(refs) else float(any(hyps))
    if metric == "cer":
        refs, hyps = [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
        return jiwer.cer(refs, hyps) if any(refs) else float(any(hyps))
    raise ValueError(f"unknown metric {metric!r}: use 'cer' or 'wer'")
