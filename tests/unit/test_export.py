"""Export: a trained adapter merged into a transformers folder and converted to CTranslate2."""

import os
import re
import shutil

import pytest
import torch
from faster_whisper import WhisperModel

from conftest import tiny_model_in, tones_in
from helpers import config
from whisper_lora.convert.ct2 import load_ct2_whisper
from whisper_lora.convert.export import export_model
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.errors import UserError
from whisper_lora.train.trainer import train

PROMPT = torch.tensor([[50258, 50259, 50359, 50363]])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    """One adapter of the tiny model, trained on the tones once for the module."""
    folder = tmp_path_factory.mktemp("export")
    out = folder / "adapter"
    train(config(tiny_model_in(folder, tokenizer), tones_in(folder), out, num_train_epochs=2, validation_file=None))
    return out


@pytest.fixture
def adapter(trained, tmp_path):
    """A copy of the trained adapter that the test may change."""
    return shutil.copytree(trained, tmp_path / "adapter")


def logits(model, features):
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=PROMPT).logits


def test_export_both_matches_the_adapter(adapter, tmp_path):
    paths = export_model(str(adapter), tmp_path / "exported", "both", "float32")
    features = torch.randn(1, 80, 3000)
    expected = logits(load_whisper(adapter)[0], features)
    merged, _ = load_whisper(paths["hf"])
    converted, _ = load_ct2_whisper(paths["ct2"])
    assert torch.allclose(logits(merged, features), expected, atol=1e-4)
    assert torch.allclose(logits(converted, features), expected, atol=1e-4)
    for name in ("model.bin", "tokenizer.json", "preprocessor_config.json", "config.json"):
        assert (paths["ct2"] / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exported.")]  # no staging left behind


def test_int8_ct2_export_loads_in_faster_whisper(adapter, tmp_path):
    paths = export_model(str(adapter), tmp_path / "ct2only", "ct2", "int8")
    assert paths == {"ct2": tmp_path / "ct2only"} and not (tmp_path / "ct2only" / "hf").exists()
    WhisperModel(str(paths["ct2"]), device="cpu", compute_type="int8")


def test_export_refuses_a_non_empty_folder(adapter, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty"):
        export_model(str(adapter), tmp_path / "busy")


def test_ct2_backend_exports_an_adapter_once_and_says_so_on_stderr(adapter, monkeypatch, capsys):
    from whisper_lora.cli.main import _log_to_stderr
    from whisper_lora.convert import export
    from whisper_lora.infer.backends import ct2 as fast

    _log_to_stderr()
    folder = fast.ct2_folder(str(adapter))
    assert folder == adapter / "ct2" and (folder / "model.bin").is_file()
    captured = capsys.readouterr()
    assert captured.out == "" and "to CTranslate2 once" in captured.err  # stdout carries only transcripts
    assert re.search(r"exported in \d+ s", captured.err)  # the step's time, so a slow first start is explained
    monkeypatch.setattr(export, "export_model", lambda *a, **k: pytest.fail("exported twice"))
    assert fast.ct2_folder(str(adapter)) == folder


def test_an_adapter_restored_with_older_times_is_exported_again(adapter, monkeypatch):
    from whisper_lora.infer.backends import ct2 as fast

    folder = fast.ct2_folder(str(adapter))
    weights = adapter / "adapter_model.safetensors"
    changed = bytearray(weights.read_bytes())
    changed[-1] ^= 1  # other weights, as `cp -p` of another adapter would bring, dated before the export
    weights.write_bytes(bytes(changed))
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    exported, real = [], fast._export
    monkeypatch.setattr(fast, "_export", lambda location, target: exported.append(target) or real(location, target))
    assert fast.ct2_folder(str(adapter)) == folder and exported == [folder] and (folder / "model.bin").is_file()


def test_parity_decodes_both_exports_through_the_transcriber(adapter, tones, tmp_path, monkeypatch):
    import json

    from whisper_lora.infer import parity as export
    from whisper_lora.infer.transcriber import Transcriber

    paths = export_model(str(adapter), tmp_path / "exported", "both", "float32")
    used = []
    real_files = Transcriber.files
    monkeypatch.setattr(Transcriber, "files", lambda self, *a: used.append(self.backend) or real_files(self, *a))
    clips = [(row["audio_path"], "en") for row in json.loads(tones[0].read_text())[:2]]
    lines = []
    share = export.parity(paths["hf"], paths["ct2"], clips, log=lines.append)
    assert used == ["transformers", "ct2"] * 2 and len(lines) == 2
    assert share == sum(line.lstrip().startswith("same") for line in lines) / 2


def test_a_ggml_export_whisper_cpp_cannot_hold_is_refused_and_leaves_nothing(adapter, tmp_path):
    with pytest.raises(UserError, match="whisper.cpp needs encoder_ffn_dim = 4 x d_model"):
        export_model(str(adapter), tmp_path / "ggml", "ggml")  # the tiny model's feed-forward is 2 x d_model
    with pytest.raises(UserError, match="--ggml_types takes one or more of f16, q8_0, q5_0, not 'q4_k'"):
        export_model(str(adapter), tmp_path / "ggml", "ggml", ggml_types=("f16", "q4_k"))
    assert not (tmp_path / "ggml").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ggml.")]
