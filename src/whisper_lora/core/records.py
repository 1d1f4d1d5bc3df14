"""The options and typed records of a transcription, without torch: writers, the server and the backends share them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from whisper_lora.core.errors import UserError
from whisper_lora.core.languages import normalize_language, traits


def task_and_language_problems(task: str, language: str | None) -> list[str]:
    """What is wrong with a --task and a --language, in the words every command and the server use."""
    problems = [] if task in ("transcribe", "translate") else [f"--task must be transcribe or translate, not {task!r}"]
    if language is not None and normalize_language(language) is None:
        problems.append(f"--language {language!r} is not a Whisper language (use a code such as zh or en)")
    return problems


@dataclass(frozen=True)
class Runtime:
    """Which model runs, on which backend and device, in which CTranslate2 weight type: one definition for every command."""

    model_path: str | None = field(
        default=None,
        metadata={
            "aliases": ["--model_name_or_path"],
            "help": "a training output_dir (its adapter is merged), a merged or CTranslate2 folder, or any model name (default: base)",
        },
    )
    backend: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "ct2", "transformers", "whispercpp"),
            "help": "ct2: faster-whisper (a trained adapter is exported once, beside it); whispercpp: a whisper.cpp "
            "file (pip extra ggml); auto: whispercpp for such a file, transformers for a hub id, else ct2",
        },
    )
    device: str = field(default="auto", metadata={"choices": ("auto", "cuda", "cpu"), "help": "auto: CUDA if any"})
    compute_type: str | None = field(
        default=None, metadata={"help": "CTranslate2 weight type (int8, float16, ...); default int8 on CPU"}
    )


FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai/whisper's ladder, tried in order


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode, shared by the CLI (a flag per field), the library and the server.

    Long audio always decodes with timestamps, as OpenAI's sequential algorithm needs them.
    """

    language: str | None = field(
        default=None,
        metadata={
            "help": "language code (zh, en, ...) for every file or row; omitted: a test row's own, else detected"
        },
    )
    task: str = field(
        default="transcribe", metadata={"choices": ("transcribe", "translate"), "help": "translate: into English"}
    )
    return_timestamps: bool = field(default=False, metadata={"help": "include segment start and end times"})
    beam_size: int = field(default=1, metadata={"help": "beams per decoding step"})
    temperature: list[float] = field(
        default_factory=lambda: list(FALLBACK_TEMPERATURES),
        metadata={"help": "fallback temperatures, tried in order on a window that repeats itself or is unlikely"},
    )
    condition_on_previous_text: bool = field(
        default=True, metadata={"help": "prompt each 30 s window with the previous one's text"}
    )
    initial_prompt: str | None = field(default=None, metadata={"help": "text that steers spelling and vocabulary"})
    compression_ratio_threshold: float = field(  # transformers measures it on token ids, hence not 2.4
        default=1.35,
        metadata={
            "help": "a window more repetitive than this (zlib ratio of its token ids; ct2 scales it to its text ratio, "
            "1.35 to 2.4) is decoded at the next temperature"
        },
    )
    logprob_threshold: float = field(
        default=-1.0, metadata={"help": "a window less likely than this is decoded at the next temperature"}
    )
    no_speech_threshold: float = field(
        default=0.6, metadata={"help": "no-speech probability above which an unlikely window is silence"}
    )
    no_repeat_ngram_size: int = field(
        default=0,
        metadata={
            "help": "no run of this many tokens may come twice in a window (0: off); live, a looping step gets 3"
        },
    )
    word_timestamps: bool = field(default=False, metadata={"help": "word start and end times (ct2 backend)"})
    vad_filter: bool = field(default=False, metadata={"help": "skip non-speech with Silero VAD (ct2 backend)"})
    short_window: bool = field(
        default=False,
        metadata={
            "help": "encode a clip under 30 s at its own length plus 1.28 s, not padded to 30 s: several times faster "
            "on short clips; a model needs a short-context adapter (train --objective short_context) to stay accurate"
        },
    )

    def __post_init__(self):
        object.__setattr__(self, "temperature", tuple(self.temperature))  # frozen: a tuple, whatever was given
        problems = task_and_language_problems(self.task, self.language)
        if problems:
            raise UserError("; ".join(problems))
        if self.beam_size < 1:
            raise UserError("--beam_size must be at least 1")
        if self.no_repeat_ngram_size < 0:
            raise UserError("--no_repeat_ngram_size must be 0 (off) or more")


@dataclass
class Word:
    """One word with its start and end in seconds and the model's probability for it."""

    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    """A stretch of speech with its start and end in seconds, and its words when asked for."""

    start: float
    end: float
    text: str
    words: list[Word] | None = None


@dataclass
class Transcript:
    """The result for one file; error is set instead of segments when the file could not be transcribed."""

    path: str
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None
    duration: float = 0.0
    error: str | None = None
    redecoded: str | None = None  # why the first decoding fell short of the speech and was decoded again
    unheard: str | None = None  # set when the text is empty though the voice detector hears speech


@dataclass
class Clip:
    """Audio to transcribe: a name for the results and 16 kHz mono samples."""

    name: str
    samples: np.ndarray


def join_segments(segments: list[Segment], language: str | None) -> str:
    """The transcript's text: segments joined with spaces, or without for languages written without them."""
    return (" " if traits(language).spaces else "").join(s.text for s in segments)
