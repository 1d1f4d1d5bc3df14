"""Model names: resolution, the hub code path against a local cache, CT2 folders, and the embedded cache."""

import hashlib
import shutil

import pytest
import torch

from whisper_lora.convert import hf as hf_loading
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core import models
from whisper_lora.core.models import EmbeddedModel, ModelError, cache_root, resolve_model


@pytest.mark.parametrize(
    "name, kind, location",
    [
        (None, "embedded", "base"),
        ("whisper-base", "embedded", "base"),
        ("tiny.en", "embedded", "tiny.en"),
        ("small", "hub", "openai/whisper-small"),
        ("whisper-large-v3", "hub", "openai/whisper-large-v3"),
        ("turbo", "hub", "openai/whisper-large-v3-turbo"),
        ("openai/whisper-small", "hub", "openai/whisper-small"),
        ("someone/whisper-zh-ft", "hub", "someone/whisper-zh-ft"),
    ],
)
def test_names_resolve(name, kind, location):
    assert resolve_model(name) == models.ModelSource(kind, location)


def test_folders_resolve_by_content(tiny_hf_dir, tiny_ct2_dir):
    assert resolve_model(tiny_hf_dir).kind == "hf_dir"
    assert resolve_model(str(tiny_ct2_dir)).kind == "ct2_dir"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d, "not a Whisper model folder: expected config.json"),
        (lambda d: (d / "config.json").write_text('{"model_type": "bert"}') and d, "model_type 'bert', not 'whisper'"),
        (lambda d: (d / "weights.bin").write_bytes(b"x") and d / "weights.bin", "is a file"),
        (lambda d: "no such thing!", "Unknown model 'no such thing!'.*base, whisper-base, tiny.en"),
    ],
    ids=["empty-dir", "other-model", "file", "nonsense"],
)
def test_bad_names_are_explained(tmp_path, setup, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(setup(tmp_path))


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WHISPER_LORA_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "whisper-lora"
    monkeypatch.setenv("WHISPER_LORA_HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home"


def hub_cache(cache, repo, source):
    """Lay out a Hugging Face hub cache entry for repo holding the files of source, as a download would."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, entry / "snapshots" / "0123456789abcdef")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123456789abcdef")
    return cache


def test_hub_ids_load_through_the_hub_cache(tmp_path, tiny_hf_dir):
    cache = hub_cache(tmp_path / "hf-cache", "openai/whisper-tiny", tiny_hf_dir)
    for name in ("openai/whisper-tiny", "tiny"):
        model, processor = load_whisper(name, cache_dir=cache)
        assert (
            model.config.d_model == 64 and processor.tokenizer.convert_ids_to_tokens(50258) == "<|startoftranscript|>"
        )


def test_unreachable_hub_model_is_explained(tmp_path):
    with pytest.raises(ModelError, match=r"Could not load 'openai/whisper-small' .*Offline, name a local folder"):
        load_whisper("openai/whisper-small", cache_dir=tmp_path)


def test_ct2_folder_loads_as_transformers(tiny_ct2_dir):
    model, _ = load_whisper(tiny_ct2_dir)
    assert isinstance(model.model.encoder.conv1.weight, torch.nn.Parameter) and not model.training


@pytest.fixture
def fake_embedded(tmp_path, tiny_ct2_dir, monkeypatch):
    """The tiny CT2 model shipped as two fake pip packages, registered as the embedded 'base'."""
    site = tmp_path / "site"
    blob = (tiny_ct2_dir / "model.bin").read_bytes()
    half = len(blob) // 2
    for package, piece in (("fake_part1", blob[:half]), ("fake_part2", blob[half:])):
        (site / package / "data").mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        (site / package / "data" / f"model.bin.{package[-5:]}").write_bytes(piece)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy2(tiny_ct2_dir / name, site / "fake_part1" / "data" / name)
    (site / "fake_part1" / "data" / "vocabulary.txt").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("WHISPER_LORA_HOME", str(tmp_path / "home"))
    embedded = EmbeddedModel(
        name="whisper-fake",
        packages=("fake_part1", "fake_part2"),
        parts=("fake_part1/data/model.bin.part1", "fake_part2/data/model.bin.part2"),
        data="fake_part1/data",
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    monkeypatch.setitem(models.EMBEDDED, "base", embedded)
    return site


def test_embedded_model_is_joined_checked_and_converted_once(tmp_path, fake_embedded, monkeypatch):
    model, _ = load_whisper("base")
    assert model.config.d_model == 64
    folders = sorted(p.name for p in (tmp_path / "home" / "models").iterdir())
    assert len(folders) == 1 and folders[0].startswith("whisper-fake-")
    monkeypatch.setattr(hf_loading.convert_ct2, "load_ct2_whisper", lambda *a, **k: pytest.fail("converted twice"))
    again, _ = load_whisper("base")
    assert torch.equal(again.proj_out.weight, model.proj_out.weight)


def test_corrupted_embedded_model_says_how_to_fix_it(tmp_path, fake_embedded):
    part = fake_embedded / "fake_part2" / "data" / "model.bin.part2"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="is corrupted: .*pip install --force-reinstall fake-part1 fake-part2"):
        load_whisper("base")
    left = [p.name for p in (tmp_path / "home" / "models").rglob("*")]
    assert left == ["whisper-fake-" + models.EMBEDDED["base"].sha256[:12]]  # no ct2/ or hf/, no temp folder


def test_missing_embedded_part_says_how_to_fix_it(fake_embedded):
    (fake_embedded / "fake_part2" / "data" / "model.bin.part2").unlink()
    with pytest.raises(ModelError, match="is missing .*model.bin.part2: pip install --force-reinstall"):
        load_whisper("base")


def test_missing_embedded_package_says_what_to_install(fake_embedded):
    shutil.rmtree(fake_embedded / "fake_part2")
    with pytest.raises(ModelError, match="needs the package fake-part2: pip install fake-part1 fake-part2"):
        load_whisper("base")
