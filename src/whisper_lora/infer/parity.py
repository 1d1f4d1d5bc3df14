"""Do two exports of one model read the same words? Readers through each backend, and their agreement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from whisper_lora.core.metrics import normalize_text
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.transcriber import Transcriber


def agreement(first: Callable[[str, str], str], second: Callable[[str, str], str], clips, log=print) -> float:
    """Share of clips (path, language) that two readers, (path, language) -> text, give the same words for."""
    agree = 0
    for path, language in clips:
        ours, theirs = first(str(path), language), second(str(path), language)
        same = normalize_text(ours, language) == normalize_text(theirs, language)
        agree += same
        log(f"  {'same' if same else 'DIFF'}  {Path(path).name}: {ours!r} | {theirs!r}")
    return agree / len(clips) if clips else 1.0


def greedy_reader(model_path: str | Path, backend: str) -> Callable[[str, str], str]:
    """A reader through the Transcriber that transcribe and evaluate use, greedy, with no fallback and no context."""
    model = Transcriber(str(model_path), backend=backend, batch_size=1)

    def read(path: str, language: str) -> str:
        options = TranscribeOptions(language=language, temperature=[0.0], condition_on_previous_text=False)
        return model.files([path], options)[0].text

    return read


def whispercpp_reader(path: str | Path) -> Callable[[str, str], str]:
    """A reader through whisper.cpp (pywhispercpp) on a GGML file, greedy like greedy_reader."""
    return greedy_reader(path, "whispercpp")


def parity(hf_model: str | Path, ct2_folder: Path, clips: list[tuple[str, str]], log=print) -> float:
    """Share of clips (path, language) that the merged model and the CTranslate2 model transcribe to the same words."""
    return agreement(greedy_reader(hf_model, "transformers"), greedy_reader(ct2_folder, "ct2"), clips, log)
