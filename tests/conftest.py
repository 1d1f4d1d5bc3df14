"""Shared fixtures: the suite never reaches a model hub, and builds its tiny models and CT2 folders here."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: xdist runs a worker per core
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from helpers import sine, tiny_whisper, write_audio  # noqa: E402
from whisper_lora.convert.ct2 import generation_config, load_ct2_whisper  # noqa: E402
from whisper_lora.convert.hf import load_tokenizer
from whisper_lora.core.models import embedded_ct2_dir  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


INTEGRATION = Path(__file__).resolve().parent / "integration"


FIRST = ("test_train_integration.py",)  # the longest: their shared adapter trains for minutes


def pytest_collection_modifyitems(items):
    """Every test under tests/integration is marked integration, so `-m "not integration"` is the unit lane; the
    longest run first, so that parallel workers finish together and one worker holds the shared adapter's tests."""
    for item in items:
        if INTEGRATION in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: (Path(item.fspath).name not in FIRST, "integration" not in item.keywords))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test fails: CI must run every test, so a missing prerequisite is a red build."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped under CI=true, which must run every test: {reason}"


@pytest.fixture(scope="session")
def base():
    """The embedded whisper-base and its processor, loaded once for the whole run."""
    from whisper_lora.convert.hf import load_whisper

    return load_whisper("base")


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded multilingual tokenizer (no weights are read)."""
    return load_tokenizer("base")


def save_hf(model, tokenizer, folder: Path) -> Path:
    """Save a model with a tokenizer and matching feature extractor as a transformers folder."""
    from transformers import WhisperFeatureExtractor

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=model.config.num_mel_bins).save_pretrained(folder)
    return folder


def convert_to_ct2(hf_folder: Path, out: Path, quantization: str = "float32") -> Path:
    """Convert a transformers folder with ctranslate2's own converter, adding tokenizer.json as faster-whisper expects."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(hf_folder)).convert(str(out), quantization=quantization, force=True)
    shutil.copy2(hf_folder / "tokenizer.json", out / "tokenizer.json")
    return out


@pytest.fixture
def tiny_hf_dir(tmp_path, tokenizer):
    """A random tiny Whisper saved as a transformers folder."""
    return save_hf(tiny_whisper(), tokenizer, tmp_path / "tiny_hf")


@pytest.fixture
def tiny_ct2_dir(tmp_path, tiny_hf_dir):
    """The same tiny Whisper converted to a CTranslate2 folder by ctranslate2's converter."""
    return convert_to_ct2(tiny_hf_dir, tmp_path / "tiny_ct2")


def full_tiny_model(ct2_folder: Path, folder: Path) -> Path:
    """The tiny CT2 Whisper with a full generation config (languages, tasks), saved as a transformers folder."""
    model, processor = load_ct2_whisper(ct2_folder)
    embedded = json.loads((embedded_ct2_dir("base") / "config.json").read_text())  # the languages it lacks
    model.generation_config = generation_config(embedded, processor.tokenizer, model.config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_model_in(folder: Path, tokenizer) -> Path:
    """A new random tiny Whisper in folder, as tiny_model_dir makes it (for fixtures of a wider scope)."""
    ct2 = convert_to_ct2(save_hf(tiny_whisper(), tokenizer, folder / "tiny_hf"), folder / "tiny_ct2")
    return full_tiny_model(ct2, folder / "tiny_model")


@pytest.fixture
def processor(tokenizer):
    """The embedded tokenizer with an 80-bin feature extractor, for tiny_whisper models."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)


@pytest.fixture
def tiny_ggml_file(tmp_path, processor):
    """A random tiny Whisper as a whisper.cpp f16 file (its feed-forward 4 x d_model wide, as whisper.cpp needs)."""
    from whisper_lora.convert.ggml import write_ggml

    return write_ggml(tiny_whisper(ffn_dim=256), processor, tmp_path / "tiny-f16.bin", "f16")


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_ct2_dir):
    """A tiny Whisper with a full generation config (languages, tasks), saved as a transformers folder."""
    return full_tiny_model(tiny_ct2_dir, tmp_path / "tiny_model")


@pytest.fixture
def short_model_dir(tiny_model_dir):
    """The tiny transformers Whisper with generation stopped at 40 tokens, 20 times faster on a random model (training's validation decodes)."""
    path = tiny_model_dir / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_length": 40}))
    return tiny_model_dir


def tones_in(folder: Path) -> tuple[Path, Path]:
    """Eight short tones, each with its own transcript, as train and validation manifests in folder."""
    (folder / "audio").mkdir()
    rows = []
    for i in range(8):
        path = write_audio(folder / "audio" / f"{i}.wav", sine(0.5 + 0.1 * i, 16000, 200.0 * (i + 1)), 16000)
        rows.append({"audio_path": str(path), "text": f"tone {i}", "language": "en"})
    (folder / "train.json").write_text(json.dumps(rows))
    (folder / "dev.json").write_text(json.dumps(rows[:2]))
    return folder / "train.json", folder / "dev.json"


@pytest.fixture
def tones(tmp_path):
    """Eight short tones, each with its own transcript, as train and validation manifests."""
    return tones_in(tmp_path)
