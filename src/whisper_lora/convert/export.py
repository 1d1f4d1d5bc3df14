"""Merge a LoRA adapter into its base model, save a transformers folder, and convert it to CTranslate2 or whisper.cpp."""

from __future__ import annotations

from pathlib import Path

from ctranslate2.converters import TransformersConverter

from whisper_lora.convert.ggml import write_ggml
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import publish_folder
from whisper_lora.core.formats import EXPORT_FORMATS, GGML_TYPES, QUANTIZATIONS

FORMATS = EXPORT_FORMATS


def _save_hf(model, processor, folder: Path) -> None:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)  # preprocessor_config.json, which the converter copies


def _convert_ct2(hf_folder: Path, folder: Path, quantization: str) -> None:
    converter = TransformersConverter(str(hf_folder), copy_files=["tokenizer.json", "preprocessor_config.json"])
    converter.convert(str(folder), quantization=quantization, force=True)


def ggml_file(folder: Path, kind: str) -> Path:
    """Where a GGML export of type kind lives in its folder."""
    return folder / f"ggml-model-{kind}.bin"


def _write_ggml(model, processor, folder: Path, kinds: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        write_ggml(model, processor, ggml_file(folder, kind), kind)


def export_model(
    model_path: str | None,
    output_dir: str | Path,
    fmt: str = "both",
    quantization: str = "int8",
    ggml_types: tuple[str, ...] = GGML_TYPES,
) -> dict:
    """Write output_dir/hf and/or output_dir/ct2 (or output_dir itself for one format); returns their paths.

    With fmt "ggml", output_dir holds one whisper.cpp file per GGML type, keyed "ggml f16" and so on.
    """
    unknown = [kind for kind in ggml_types if kind not in GGML_TYPES]
    if unknown or not ggml_types:
        raise UserError(f"--ggml_types takes one or more of {', '.join(GGML_TYPES)}, not {','.join(unknown)!r}")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise UserError(f"{output_dir}: exists and is not empty; choose another --output_dir or remove it")
    model, processor = load_whisper(model_path)

    def build(staging: Path) -> Path:
        if fmt == "ggml":
            _write_ggml(model, processor, staging / "ggml", ggml_types)
            return staging / "ggml"
        _save_hf(model, processor, staging / "hf")
        if fmt != "hf":
            _convert_ct2(staging / "hf", staging / "ct2", quantization)
        return staging if fmt == "both" else staging / fmt

    publish_folder(output_dir, build)  # nothing half-written is ever visible
    if fmt == "both":
        return {"hf": output_dir / "hf", "ct2": output_dir / "ct2"}
    if fmt == "ggml":
        return {f"ggml {kind}": ggml_file(output_dir, kind) for kind in ggml_types}
    return {fmt: output_dir}
