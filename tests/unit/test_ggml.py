"""GGML export: names, header and types, checked by loading the file in whisper.cpp itself (pywhispercpp)."""

import struct

import numpy as np
import pytest

from helpers import sine, tiny_whisper
from whisper_lora.convert.ggml import MAGIC, QUANTIZED_FILE, _payload, ggml_name, write_ggml
from whisper_lora.core.errors import UserError
from whisper_lora.infer.backends.whispercpp import load_context

pytest.importorskip("pywhispercpp")  # a failure under CI=true (conftest.py)


def test_names_follow_whisper_cpp():
    assert ggml_name("model.encoder.layers.0.fc1.weight") == "encoder.blocks.0.mlp.0.weight"
    assert ggml_name("model.decoder.layers.1.encoder_attn.k_proj.weight") == "decoder.blocks.1.cross_attn.key.weight"
    assert ggml_name("model.encoder.layers.1.self_attn.k_proj.weight") == "encoder.blocks.1.attn.key.weight"
    assert ggml_name("model.encoder.layer_norm.bias") == "encoder.ln_post.bias"
    assert ggml_name("model.decoder.embed_tokens.weight") == "decoder.token_embedding.weight"
    assert ggml_name("model.encoder.conv2.weight") == "encoder.conv2.weight"


@pytest.mark.parametrize("kind", ["f16", "q8_0", "q5_0"])
def test_whisper_cpp_loads_and_runs_every_type(kind, processor, tmp_path):
    # whisper.cpp checks every tensor's name, shape, type and byte count as it loads, and fails on a missing one.
    path = write_ggml(tiny_whisper(ffn_dim=256), processor, tmp_path / f"{kind}.bin", kind)
    magic, vocab, *_, file_type = struct.unpack("<12i", path.read_bytes()[:48])
    assert (magic, vocab) == (MAGIC, 51865)
    assert file_type == {"f16": 1, "q8_0": QUANTIZED_FILE + 7, "q5_0": QUANTIZED_FILE + 8}[kind]
    load_context(path, threads=1).transcribe(sine(0.5, 16000, 440.0).astype(np.float32), language="en", max_tokens=8)


def test_quantized_files_are_smaller(processor, tmp_path):
    model = tiny_whisper(ffn_dim=256)
    sizes = {
        kind: write_ggml(model, processor, tmp_path / kind, kind).stat().st_size for kind in ("f16", "q8_0", "q5_0")
    }
    assert sizes["q5_0"] < sizes["q8_0"] < sizes["f16"]


def test_a_model_whisper_cpp_cannot_hold_is_refused_by_name(processor, tmp_path):
    with pytest.raises(UserError, match="encoder_ffn_dim = 4 x d_model"):
        write_ggml(tiny_whisper(), processor, tmp_path / "narrow.bin")  # feed-forward 2 x d_model
    assert not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="rows a multiple of 32 values; w has rows of 48"):
        _payload("w", np.zeros((2, 48), dtype=np.float32), "q8_0")
    with pytest.raises(UserError, match="GGML type must be one of"):
        write_ggml(tiny_whisper(ffn_dim=256), processor, tmp_path / "x.bin", "q3_k")
