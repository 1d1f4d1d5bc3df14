"""Write a transformers Whisper as a whisper.cpp (GGML) model file, in f16 or in ggml's q8_0 and q5_0 block formats."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from transformers.convert_slow_tokenizer import bytes_to_unicode

from whisper_lora.core.errors import UserError
from whisper_lora.core.extras import require
from whisper_lora.core.files import write_atomic
from whisper_lora.core.formats import GGML_MAGIC

MAGIC = GGML_MAGIC
QUANTIZED_FILE = 2 * 1000  # GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR, added to a quantized file's ftype
# name: (ggml tensor type, ggml file type, values per block)
TYPES = {"f16": (1, 1, 1), "q8_0": (8, 7, 32), "q5_0": (6, 8, 32)}
# Small tensors whisper.cpp reads as float32 in every file type (its quantize tool skips the same ones).
CONV_BIASES = {"encoder.conv1.bias", "encoder.conv2.bias"}  # whisper.cpp reads them as (n, 1)
FLOAT32 = CONV_BIASES | {"encoder.positional_embedding", "decoder.positional_embedding"}

LAYER_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
OTHER_NAMES = {
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.layer_norm": "decoder.ln",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
}


def ggml_name(key: str) -> str:
    """whisper.cpp's (OpenAI's) name for a transformers key: model.encoder.layers.0.fc1.weight → encoder.blocks.0.mlp.0.weight."""
    side, *rest = key.removeprefix("model.").split(".")
    if rest[0] == "layers":
        return ".".join([side, "blocks", rest[1], LAYER_NAMES[".".join(rest[2:-1])], rest[-1]])
    name = ".".join([side, *rest])
    for ours, theirs in OTHER_NAMES.items():
        if name == ours or name.startswith(ours + "."):
            return theirs + name[len(ours) :]
    return name


def check_shape(config) -> None:
    """Refuse a model whisper.cpp cannot hold: its feed-forward layers are 4 × d_model wide, always."""
    for side in ("encoder", "decoder"):
        width = getattr(config, f"{side}_ffn_dim")
        if width != 4 * config.d_model:
            raise UserError(
                f"whisper.cpp needs {side}_ffn_dim = 4 x d_model ({4 * config.d_model}); this model has {width}"
            )


def byte_tokens(tokenizer) -> list[bytes]:
    """The tokenizer's byte-level BPE vocabulary (no special tokens) as raw bytes, in id order."""

    decode = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise UserError("the tokenizer's vocabulary has gaps in its ids; whisper.cpp needs them contiguous")
    return [bytes(decode[char] for char in token) for token, _ in by_id]


def _header(out: BinaryIO, config, file_type: int, filters: np.ndarray, tokens: list[bytes]) -> None:
    fields = (
        config.vocab_size,
        config.max_source_positions,
        config.d_model,
        config.encoder_attention_heads,
        config.encoder_layers,
        config.max_target_positions,
        config.d_model,
        config.decoder_attention_heads,
        config.decoder_layers,
        config.num_mel_bins,
        file_type,
    )
    out.write(struct.pack("<12i", MAGIC, *fields))
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.astype("<f4").tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<i", len(token)) + token)


def _payload(name: str, data: np.ndarray, kind: str) -> tuple[int, bytes]:
    """The tensor's ggml type and bytes: float32 for the small ones, f16, or ggml blocks for 2-D weights."""
    if data.ndim < 2 or name in FLOAT32:
        return 0, data.astype("<f4").tobytes()
    tensor_type, _, block = TYPES[kind]
    if kind == "f16" or data.ndim != 2:
        return 1, data.astype("<f2").tobytes()
    if data.shape[-1] % block:
        raise UserError(f"{kind} needs rows a multiple of {block} values; {name} has rows of {data.shape[-1]}")
    gguf = require("gguf.quants", f"GGML {kind}")
    return tensor_type, gguf.quantize(data.astype(np.float32), gguf.GGMLQuantizationType[kind.upper()]).tobytes()


def _tensors(out: BinaryIO, state: dict, kind: str) -> None:
    for key, value in state.items():
        if key == "proj_out.weight":
            continue  # tied to the token embedding; whisper.cpp reuses that
        name = ggml_name(key)
        data = value.detach().float().cpu().numpy()
        if name in CONV_BIASES:
            data = data.reshape(-1, 1)
        tensor_type, payload = _payload(name, data, kind)
        encoded = name.encode()
        out.write(struct.pack(f"<{3 + data.ndim}i", data.ndim, len(encoded), tensor_type, *reversed(data.shape)))
        out.write(encoded + payload)


def write_ggml(model, processor, path: str | Path, kind: str = "f16") -> Path:
    """Write model (a merged WhisperForConditionalGeneration) to path as a whisper.cpp file of type kind (see TYPES)."""
    if kind not in TYPES:
        raise UserError(f"GGML type must be one of {', '.join(TYPES)}, not {kind!r}")
    check_shape(model.config)
    if kind != "f16":
        require("gguf.quants", f"GGML {kind} (f16 needs nothing)")  # before any writing
    file_type = TYPES[kind][1] + (QUANTIZED_FILE if kind != "f16" else 0)
    filters = np.asarray(processor.feature_extractor.mel_filters).T  # (n_mels, n_fft // 2 + 1), as whisper.cpp reads it
    tokens = byte_tokens(processor.tokenizer)
    state = model.state_dict()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            _header(out, model.config, file_type, filters, tokens)
            _tensors(out, state, kind)

    return write_atomic(path, write)
