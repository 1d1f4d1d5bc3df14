"""Transcribe through CTranslate2 with faster-whisper: the fast path for exported, CT2 and embedded models."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import UserError
from .transcribe import Segment, Transcript, TranscribeOptions, Word


def ct2_folder(model_path: str | None) -> Path | None:
    """A CTranslate2 folder for the model, exporting a trained adapter once (kept beside it); None for hub ids."""
    from .export import export_model
    from .models import cache_root, embedded_ct2_dir, resolve_model

    source = resolve_model(model_path)
    if source.kind == "embedded":
        return embedded_ct2_dir(source.location)
    if source.kind == "ct2_dir":
        return Path(source.location)
    if source.kind == "adapter":
        target = Path(source.location) / "ct2"
    elif source.kind == "hf_dir":
        key = hashlib.sha1(str(Path(source.location).resolve()).encode()).hexdigest()[:16]
        target = cache_root() / "exports" / key
    else:
        return None
    stamp = Path(source.location) / ("adapter_model.safetensors" if source.kind == "adapter" else "config.json")
    if not (target / "model.bin").is_file() or target.stat().st_mtime < stamp.stat().st_mtime:
        if target.exists():
            import shutil

            shutil.rmtree(target)
        print(f"exporting {source.location} to CTranslate2 once, in {target}")
        export_model(source.location, target, fmt="ct2", quantization="float16")
    return target


def load_faster_whisper(model_path: str | None, device: str, compute_type: str | None):
    """A faster_whisper.WhisperModel for the model, or a UserError naming why the CT2 path is unavailable."""
    from faster_whisper import WhisperModel

    folder = ct2_folder(model_path)
    if folder is None:
        raise UserError(f"{model_path}: hub models have no CTranslate2 folder here; use --backend transformers")
    compute_type = compute_type or ("float16" if device == "cuda" else "int8")
    return WhisperModel(str(folder), device=device, compute_type=compute_type)


def transcribe_file_ct2(model, path: str | Path, options: TranscribeOptions) -> Transcript:
    """Transcribe one file with faster-whisper; decoding problems come back as Transcript.error."""
    from .audio import AudioError, decode_audio

    try:
        samples = decode_audio(path)
    except AudioError as error:
        return Transcript(path=str(path), error=error.reason)
    segments, info = model.transcribe(
        samples,
        language=options.language,
        task=options.task,
        beam_size=options.beam_size,
        temperature=list(options.temperature),
        condition_on_previous_text=options.condition_on_previous_text,
        initial_prompt=options.initial_prompt,
        log_prob_threshold=options.logprob_threshold,
        no_speech_threshold=options.no_speech_threshold,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad_filter,
        without_timestamps=not (options.return_timestamps or options.word_timestamps) and len(samples) <= 480000,
    )
    ours = [_segment(s) for s in segments if s.text.strip()]
    joiner = "" if info.language in ("zh", "ja", "yue") else " "
    probability = None if options.language else round(float(info.language_probability), 4)
    return Transcript(str(path), joiner.join(s.text for s in ours), ours, info.language, probability,
                      round(len(samples) / 16000, 3))  # fmt: skip


def _segment(segment) -> Segment:
    words = [Word(round(w.start, 2), round(w.end, 2), w.word, round(w.probability, 3)) for w in segment.words or []]
    return Segment(round(segment.start, 2), round(segment.end, 2), segment.text.strip(), words or None)
