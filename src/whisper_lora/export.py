"""Merge a LoRA adapter into its base model, save a transformers folder, and convert it to CTranslate2."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .files import publish_folder

FORMATS = ("hf", "ct2", "both")
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int16", "float16", "bfloat16", "float32")


def _save_hf(model, processor, folder: Path) -> None:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)  # preprocessor_config.json, which the converter copies


def _convert_ct2(hf_folder: Path, folder: Path, quantization: str) -> None:
    from ctranslate2.converters import TransformersConverter

    converter = TransformersConverter(str(hf_folder), copy_files=["tokenizer.json", "preprocessor_config.json"])
    converter.convert(str(folder), quantization=quantization, force=True)


def export_model(model_path: str | None, output_dir: str | Path, fmt: str = "both", quantization: str = "int8") -> dict:
    """Write output_dir/hf and/or output_dir/ct2 (or output_dir itself for one format); returns their paths."""
    from .models import load_whisper

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UserError(f"{output_dir}: exists and is not empty; choose another --output_dir or remove it")
    model, processor = load_whisper(model_path)

    def build(staging: Path) -> Path:
        _save_hf(model, processor, staging / "hf")
        if fmt != "hf":
            _convert_ct2(staging / "hf", staging / "ct2", quantization)
        return staging if fmt == "both" else staging / fmt

    publish_folder(output_dir, build)  # nothing half-written is ever visible
    if fmt == "both":
        return {"hf": output_dir / "hf", "ct2": output_dir / "ct2"}
    return {fmt: output_dir}


def parity(hf_model: str | Path, ct2_folder: Path, clips: list[tuple[str, str]], log=print) -> float:
    """Share of clips (path, language) that the merged model and the CTranslate2 model transcribe to the same words.

    Both decode through the Transcriber that transcribe and evaluate use, with the same greedy options.
    """
    from .backends import Transcriber
    from .metrics import normalize_text
    from .records import TranscribeOptions

    models = [
        Transcriber(str(hf_model), backend="transformers", batch_size=1),
        Transcriber(str(ct2_folder), backend="ct2", batch_size=1),
    ]
    agree = 0
    for path, language in clips:
        options = TranscribeOptions(language=language, temperature=[0.0], condition_on_previous_text=False)
        ours, theirs = (model.files([str(path)], options)[0].text for model in models)
        same = normalize_text(ours, language) == normalize_text(theirs, language)
        agree += same
        log(f"  {'same' if same else 'DIFF'}  {Path(path).name}: {ours!r} | {theirs!r}")
    return agree / len(clips) if clips else 1.0
