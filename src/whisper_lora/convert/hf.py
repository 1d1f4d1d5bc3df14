"""Load Whisper, its processor and tokenizer, or a merged LoRA adapter, as transformers objects."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from peft import PeftModel
from transformers import WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer

from whisper_lora.convert import ct2 as convert_ct2
from whisper_lora.core.models import (
    DEFAULT_MODEL,
    EMBEDDED,
    ModelError,
    adapter_base,
    build_once,
    embedded_ct2_dir,
    resolve_model,
    site_folder,
)


def embedded_hf_dir(short_name: str = DEFAULT_MODEL) -> Path:
    """The embedded model converted once to a transformers folder in the cache."""
    ct2_dir = embedded_ct2_dir(short_name)

    def build(tmp: Path) -> None:
        model, processor = convert_ct2.load_ct2_whisper(ct2_dir, dtype=torch.float16)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return build_once(ct2_dir.parent / f"hf-v{convert_ct2.CONVERTER_VERSION}", build)


def _hub_error(name: str, error: Exception) -> ModelError:
    return ModelError(
        f"Could not load {name!r} from the Hugging Face hub or its cache ({' '.join(str(error).split())}) "
        "Offline, name a local folder or an embedded model (base, tiny.en) instead."
    )


def load_whisper(
    name_or_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load a Whisper model (eval mode) and its processor from any name that resolve_model accepts."""
    source = resolve_model(name_or_path)
    if source.kind == "ct2_dir":
        model, processor = convert_ct2.load_ct2_whisper(source.location, dtype=dtype)
        return model.to(device), processor
    if source.kind == "adapter":
        return _load_adapter(Path(source.location), cache_dir, device, dtype)
    location = str(embedded_hf_dir(source.location)) if source.kind == "embedded" else source.location
    try:
        model = WhisperForConditionalGeneration.from_pretrained(location, cache_dir=cache_dir, dtype=dtype)
        processor = WhisperProcessor.from_pretrained(location, cache_dir=cache_dir)
    except OSError as error:
        if source.kind == "hub":
            raise _hub_error(location, error) from None
        raise ModelError(f"{location}: cannot load the model ({error})") from None
    return model.to(device).eval(), processor


def _load_adapter(folder: Path, cache_dir, device, dtype):
    """Load the base model, apply the LoRA adapter from folder and merge it, for plain inference speed."""
    model, processor = load_whisper(adapter_base(folder), cache_dir=cache_dir, dtype=dtype)
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    if (folder / "tokenizer_config.json").is_file():
        processor = WhisperProcessor.from_pretrained(str(folder))
        processor.tokenizer.pad_token = (
            processor.tokenizer.pad_token or "<|endoftext|>"
        )  # early adapters lacked one; batching needs it
    if (folder / "generation_config.json").is_file():
        model.generation_config = type(model.generation_config).from_pretrained(str(folder))
    return model.to(device).eval(), processor


def load_tokenizer(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> WhisperTokenizer:
    """Load only the tokenizer of a model, without converting or reading its weights."""
    source = resolve_model(name_or_path)
    if source.kind == "embedded":
        embedded = EMBEDDED[source.location]
        return convert_ct2.load_tokenizer(site_folder(embedded.packages[0], embedded) / embedded.data)
    if source.kind == "ct2_dir":
        return convert_ct2.load_tokenizer(source.location)
    if source.kind == "adapter":
        folder = Path(source.location)
        if not (folder / "tokenizer_config.json").is_file():
            return load_tokenizer(adapter_base(folder), cache_dir)
    try:
        return WhisperTokenizer.from_pretrained(source.location, cache_dir=cache_dir)
    except OSError as error:
        raise _hub_error(source.location, error) from None


def no_speech_token(tokenizer) -> int:
    """Whisper's no-speech token: <|nospeech|> in large-v3's vocabulary, <|nocaptions|> before it."""
    unknown = tokenizer.unk_token_id
    found = [tokenizer.convert_tokens_to_ids(name) for name in ("<|nospeech|>", "<|nocaptions|>")]
    return next(token for token in found if token is not None and token != unknown)
