"""Per-language traits shared by training labels, transcript joining and scoring: one table, used everywhere."""

from __future__ import annotations

from dataclasses import dataclass

# Whisper's languages, code to English name, in its token order (tests check it against transformers).
NAMES = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}
ALIASES = {
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}  # other English names
CODES = {name: code for code, name in NAMES.items()} | ALIASES


@dataclass(frozen=True)
class Traits:
    """How a language is written, and how its transcripts are scored by default."""

    spaces: bool = True  # words are separated by spaces (Whisper then writes one before the first word too)
    metric: str = "wer"  # the default error rate: CER where words are not a reliable unit
    chinese: bool = False  # traditional characters fold to simplified before scoring
    # Twice the fastest recorded speech measured (10 tokens/s, French, timestamps included); scripts that
    # Whisper's byte-level BPE spells in several tokens per syllable get twice that again, unmeasured.
    tokens_per_second: float = 20.0


TRAITS = {
    "zh": Traits(spaces=False, metric="cer", chinese=True),
    "yue": Traits(spaces=False, metric="cer", chinese=True),
    "ja": Traits(spaces=False, metric="cer"),
    "ko": Traits(spaces=True, metric="cer"),  # Korean separates words with spaces, but is scored by character
}
_MANY_TOKENS = Traits(tokens_per_second=40.0)
TRAITS |= dict.fromkeys(
    ("am", "ar", "bn", "bo", "fa", "gu", "he", "hi", "hy", "ka", "km", "kn", "lo", "ml", "mr", "my", "ne", "pa", "ps")
    + ("sd", "si", "ta", "te", "th", "ur", "yi"),
    _MANY_TOKENS,
)


def traits(language: str | None) -> Traits:
    """The traits of a Whisper language code; those of space-separated, word-scored languages otherwise."""
    return TRAITS.get(language or "", Traits())


def tokens_per_second(language: str | None) -> float:
    """The most tokens a second of speech in the language can need; unknown languages get the widest rate."""
    return traits(language).tokens_per_second if language else _MANY_TOKENS.tokens_per_second


def normalize_language(code: str) -> str | None:
    """A Whisper language code for a code or English name ('zh', 'Chinese'), or None when unknown."""
    code = code.strip().lower()
    return code if code in NAMES else CODES.get(code)
