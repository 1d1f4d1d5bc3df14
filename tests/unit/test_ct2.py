"""CTranslate2 model.bin reading and conversion, checked against ctranslate2's own converter."""

import struct

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from conftest import convert_to_ct2, save_hf
from helpers import tiny_whisper
from whisper_lora.convert.ct2 import CT2FormatError, load_ct2_whisper, read_model_bin

PROMPT = torch.tensor([[50258, 50259, 50359, 50363, 440, 1702]])


def logits(model, features):
    with torch.no_grad():
        return model(features, decoder_input_ids=PROMPT).logits


def reference(folder):
    return WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()


def test_float32_conversion_is_exact(tiny_hf_dir, tiny_ct2_dir):
    model, processor = load_ct2_whisper(tiny_ct2_dir)
    original = reference(tiny_hf_dir)
    ours, theirs = model.state_dict(), original.state_dict()
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    features = torch.randn(1, 80, 3000)
    assert torch.equal(logits(model, features), logits(original, features))
    assert processor.feature_extractor.feature_size == 80


def test_128_mel_model_loads(tmp_path, tokenizer):
    hf = save_hf(tiny_whisper(num_mel_bins=128), tokenizer, tmp_path / "hf128")
    model, processor = load_ct2_whisper(convert_to_ct2(hf, tmp_path / "ct2_128"))
    assert model.config.num_mel_bins == 128
    assert processor.feature_extractor.feature_size == 128
    features = torch.randn(1, 128, 3000)
    assert torch.equal(logits(model, features), logits(reference(hf), features))


@pytest.mark.parametrize("quantization, tolerance", [("float16", 1e-2), ("bfloat16", 5e-2), ("int8", 0.15)])
def test_quantized_models_dequantize(tmp_path, tiny_hf_dir, quantization, tolerance):
    model, _ = load_ct2_whisper(convert_to_ct2(tiny_hf_dir, tmp_path / quantization, quantization))
    features = torch.randn(1, 80, 3000)
    ours, theirs = logits(model, features), logits(reference(tiny_hf_dir), features)
    assert (ours - theirs).abs().max() <= tolerance * theirs.abs().max()


def test_generation_config_and_tokenizer(tiny_ct2_dir):
    model, processor = load_ct2_whisper(tiny_ct2_dir)
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens(50364) == "<|0.00|>"
    assert tokenizer.convert_ids_to_tokens(51864) == "<|30.00|>"
    assert tokenizer.all_special_ids[-1] == model.generation_config.no_timestamps_token_id == 50363
    assert tokenizer.decode([50364, 440, 50510], decode_with_timestamps=True) == "<|0.00|> The<|2.92|>"
    assert model.generation_config.task_to_id == {"transcribe": 50359, "translate": 50358}


def test_truncated_model_bin_names_the_file(tiny_ct2_dir):
    path = tiny_ct2_dir / "model.bin"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CT2FormatError, match=r"model\.bin: file ends early .*truncated"):
        read_model_bin(path)


def test_other_spec_is_refused(tmp_path):
    name = b"TransformerSpec\0"
    path = tmp_path / "model.bin"
    path.write_bytes(struct.pack("<IH", 6, len(name)) + name + struct.pack("<II", 1, 0))
    with pytest.raises(CT2FormatError, match="not a Whisper model"):
        read_model_bin(path)


def test_unknown_binary_version_is_refused(tiny_ct2_dir):
    path = tiny_ct2_dir / "model.bin"
    path.write_bytes(struct.pack("<I", 7) + path.read_bytes()[4:])  # a layout this reader has never seen
    with pytest.raises(CT2FormatError, match="binary format version 7; this reader knows version 6 only"):
        read_model_bin(path)


def test_missing_tokenizer_is_explained(tiny_ct2_dir):
    (tiny_ct2_dir / "tokenizer.json").unlink()
    with pytest.raises(CT2FormatError, match="no tokenizer.json"):
        load_ct2_whisper(tiny_ct2_dir)
