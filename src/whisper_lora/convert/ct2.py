"""Read a CTranslate2 Whisper model folder into a transformers Whisper model and processor."""

from __future__ import annotations

import json
import mmap
import re
import struct
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tokenizers import AddedToken
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from whisper_lora.core.errors import UserError

SPEC_NAME = "WhisperSpec"
BINARY_VERSION = 6  # the model.bin layout this reader knows: what current ctranslate2 writes (CURRENT_BINARY_VERSION)
CONVERTER_VERSION = 2  # bump when the conversion's output changes, so cached conversions are redone
TIME_PRECISION = 0.02  # seconds per timestamp token
TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|>
# CTranslate2 dtype codes; bfloat16 has no numpy type and is widened by hand.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5


class CT2FormatError(UserError):
    """A CTranslate2 folder or model.bin that cannot be read, with the file and the reason."""


class _Reader:
    """Cursor over the bytes of a model.bin that names the file when it ends early."""

    def __init__(self, buffer, path: Path):
        self.buffer, self.pos, self.path = buffer, 0, path

    def take(self, size: int) -> int:
        if self.pos + size > len(self.buffer):
            raise CT2FormatError(f"{self.path}: file ends early at byte {self.pos} (truncated copy or download?)")
        start, self.pos = self.pos, self.pos + size
        return start

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack_from("<" + fmt, self.buffer, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (size,) = self.unpack("H")
        start = self.take(size)
        return bytes(self.buffer[start : start + size - 1]).decode("utf-8")

    def array(self, dtype_code: int, dims: tuple, nbytes: int) -> np.ndarray:
        if dtype_code not in _DTYPES:
            raise CT2FormatError(f"{self.path}: unknown dtype code {dtype_code} at byte {self.pos}")
        start = self.take(nbytes)
        values = np.frombuffer(self.buffer, dtype=_DTYPES[dtype_code], count=int(np.prod(dims)), offset=start)
        if dtype_code == _BFLOAT16:
            values = (values.astype(np.uint32) << 16).view(np.float32)
        return values.reshape(dims)


def read_model_bin(path: str | Path) -> dict[str, np.ndarray]:
    """Return every variable of a CTranslate2 Whisper model.bin by name, with aliases resolved."""
    path = Path(path)
    with open(path, "rb") as handle:
        if path.stat().st_size == 0:
            raise CT2FormatError(f"{path}: empty file")
        buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    reader = _Reader(buffer, path)
    (version,) = reader.unpack("I")
    if version != BINARY_VERSION:
        raise CT2FormatError(
            f"{path}: CTranslate2 binary format version {version}; this reader knows version "
            f"{BINARY_VERSION} only (convert the model again with a current ctranslate2)"
        )
    spec = reader.string()
    if spec != SPEC_NAME:
        raise CT2FormatError(f"{path}: holds a {spec!r} model, not a Whisper model ({SPEC_NAME})")
    reader.unpack("I")  # spec revision
    variables = {}
    for _ in range(reader.unpack("I")[0]):
        name = reader.string()
        (rank,) = reader.unpack("B")
        dims = reader.unpack("I" * rank)
        dtype_code, nbytes = reader.unpack("B")[0], reader.unpack("I")[0]
        variables[name] = reader.array(dtype_code, dims, nbytes)
    for _ in range(reader.unpack("I")[0]):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return variables


def _weight(variables: dict, name: str) -> np.ndarray:
    """A float32 weight, dequantized where the model was saved as int8 or int16."""
    weight = variables[f"{name}/weight"]
    if np.issubdtype(weight.dtype, np.integer):
        scale = variables[f"{name}/weight_scale"].astype(np.float32)
        return weight.astype(np.float32) / scale.reshape((-1,) + (1,) * (weight.ndim - 1) if scale.ndim else ())
    return weight.astype(np.float32)


def _bias(variables: dict, name: str, size: int) -> np.ndarray:
    # The converter leaves out biases that are all zero.
    bias = variables.get(f"{name}/bias")
    return np.zeros(size, np.float32) if bias is None else bias.astype(np.float32)


def _count_layers(variables: dict, side: str) -> int:
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return len({match.group(1) for match in map(pattern.match, variables) if match})


def _attention(variables: dict, ct2: str, hf: str, fused: list[str]) -> dict[str, np.ndarray]:
    """Split a fused CT2 projection into the named HF projections; k_proj has no bias in HF."""
    weight = _weight(variables, ct2)
    bias = _bias(variables, ct2, weight.shape[0])
    out = {}
    for proj, w, b in zip(fused, np.split(weight, len(fused)), np.split(bias, len(fused)), strict=True):
        out[f"{hf}.{proj}.weight"] = w
        if proj != "k_proj":
            out[f"{hf}.{proj}.bias"] = b
    return out


def _linear(variables: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    weight = _weight(variables, ct2)
    return {f"{hf}.weight": weight, f"{hf}.bias": _bias(variables, ct2, weight.shape[0])}


def _norm(variables: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": variables[f"{ct2}/gamma"], f"{hf}.bias": variables[f"{ct2}/beta"]}


def _layer(variables: dict, side: str, i: int) -> dict[str, np.ndarray]:
    ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    out = _attention(variables, f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"])
    out |= _linear(variables, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
    out |= _norm(variables, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
    out |= _linear(variables, f"{ct2}/ffn/linear_0", f"{hf}.fc1")
    out |= _linear(variables, f"{ct2}/ffn/linear_1", f"{hf}.fc2")
    out |= _norm(variables, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
    if side == "decoder":
        out |= _linear(variables, f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
        out |= _attention(variables, f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ["k_proj", "v_proj"])
        out |= _linear(variables, f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        out |= _norm(variables, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    return out


def ct2_state_dict(variables: dict) -> dict[str, torch.Tensor]:
    """Map CT2 Whisper variables onto the float32 state dict of WhisperForConditionalGeneration."""
    out = {}
    for side in ("encoder", "decoder"):
        out[f"model.{side}.embed_positions.weight"] = variables[f"{side}/position_encodings/encodings"]
        out |= _norm(variables, f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(_count_layers(variables, side)):
            out |= _layer(variables, side, i)
    for conv in ("conv1", "conv2"):
        out |= _linear(variables, f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.decoder.embed_tokens.weight"] = _weight(variables, "decoder/embeddings")
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in out.items()}


def _heads(variables: dict, side: str, d_model: int) -> int:
    heads = variables.get(f"{side}/num_heads")
    return int(heads) if heads is not None else d_model // 64


def whisper_config(variables: dict, tokenizer: WhisperTokenizer) -> WhisperConfig:
    """Derive the transformers WhisperConfig from the CT2 variable shapes and the tokenizer."""
    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    special = _special_ids(tokenizer)
    return WhisperConfig(
        vocab_size=int(vocab_size),
        d_model=int(d_model),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=_heads(variables, "encoder", d_model),
        decoder_attention_heads=_heads(variables, "decoder", d_model),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        scale_embedding=bool(variables.get("decoder/scale_embeddings", False)),
        pad_token_id=special["eot"],
        bos_token_id=special["eot"],
        eos_token_id=special["eot"],
        decoder_start_token_id=special["sot"],
        tie_word_embeddings=True,
    )


def _special_ids(tokenizer: WhisperTokenizer) -> dict[str, int]:
    names = {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "prev": "<|startofprev|>",
        "no_timestamps": "<|notimestamps|>",
        "transcribe": "<|transcribe|>",
        "translate": "<|translate|>",
    }
    return {key: cast(int, tokenizer.convert_tokens_to_ids(token)) for key, token in names.items()}


def generation_config(ct2_config: dict, tokenizer: WhisperTokenizer, config: WhisperConfig) -> GenerationConfig:
    """Build the Whisper generation config (languages, tasks, suppressions) from the CT2 config.json."""
    special = _special_ids(tokenizer)
    multilingual = config.vocab_size >= 51865  # English-only models have 51864 tokens
    lang_ids = ct2_config.get("lang_ids") or []
    if isinstance(lang_ids, str):
        lang_ids = json.loads(lang_ids)
    # transformers detects the language whenever lang_to_id exists, so English-only models must not have it.
    languages = dict(
        lang_to_id={tokenizer.convert_ids_to_tokens(i): i for i in lang_ids},
        task_to_id={"transcribe": special["transcribe"], "translate": special["translate"]},
        # The hub's folders get this default from forced_decoder_ids, which transformers deprecates.
        task="transcribe",
    )
    return GenerationConfig(
        **(languages if multilingual else {}),
        alignment_heads=ct2_config.get("alignment_heads") or [],
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin") or [220, special["eot"]],
        suppress_tokens=ct2_config.get("suppress_ids") or [],
        bos_token_id=special["eot"],
        eos_token_id=special["eot"],
        pad_token_id=special["eot"],
        decoder_start_token_id=special["sot"],
        is_multilingual=multilingual,
        no_timestamps_token_id=special["no_timestamps"],
        prev_sot_token_id=special["prev"],
        max_initial_timestamp_index=50,
        max_length=config.max_target_positions,
        median_filter_width=7,
        return_timestamps=False,
    )


def load_tokenizer(folder: str | Path) -> WhisperTokenizer:
    """Load a Whisper tokenizer from a folder's tokenizer.json, adding the timestamp tokens if absent."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise CT2FormatError(f"{folder}: no tokenizer.json (copy it from the model the folder was converted from)")
    tokenizer = WhisperTokenizer.from_pretrained(str(folder))
    # Timestamp decoding takes the last registered special token as <|notimestamps|>, so register them all.
    specials = [token.content for token in tokenizer.added_tokens_decoder.values() if token.special]
    tokenizer.add_special_tokens({"extra_special_tokens": specials}, replace_extra_special_tokens=True)
    tokenizer.pad_token = "<|endoftext|>"  # as in the hub's Whisper tokenizers; padding needs one
    if tokenizer.convert_tokens_to_ids("<|0.00|>") == tokenizer.unk_token_id:
        stamps = [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(TIMESTAMP_TOKENS)]
        tokenizer.add_tokens([AddedToken(s, lstrip=False, rstrip=False, normalized=False) for s in stamps])
    return tokenizer


def load_ct2_whisper(
    folder: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Build a transformers Whisper model and processor from a CTranslate2 / faster-whisper folder."""
    folder = Path(folder)
    for required in ("model.bin", "config.json"):
        if not (folder / required).is_file():
            raise CT2FormatError(f"{folder}: not a CTranslate2 Whisper folder (no {required})")
    variables = read_model_bin(folder / "model.bin")
    tokenizer = load_tokenizer(folder)
    config = whisper_config(variables, tokenizer)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(ct2_state_dict(variables), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = generation_config(json.loads((folder / "config.json").read_text()), tokenizer, config)
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return model.to(dtype).eval(), WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)
