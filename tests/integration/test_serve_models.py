"""Several models in one real server: two adapters that answer differently, picked by the openai client's model."""

import json
import subprocess
import sys

import pytest

from helpers import config, free_port, wait_until_ready
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.train.trainer import train

openai = pytest.importorskip("openai", reason="the dev extra (openai) is not installed")


def adapter(model_dir, tones, folder, word: str):
    """A tiny adapter trained to say word for every tone."""
    rows = [{**row, "text": word} for row in json.loads(tones[0].read_text())]
    manifest = folder / f"{word}.json"
    manifest.write_text(json.dumps(rows))
    out = folder / word
    train(config(model_dir, (manifest, tones[1]), out, validation_file=None, num_train_epochs=20, save_steps=1000))
    return out


def said(text: str) -> set:
    """Which of the two trained words a transcript holds: the tiny adapters sometimes add a stray token after it."""
    return {word for word in ("alpha", "omega") if word in text.lower()}


def test_two_adapters_in_one_server_answer_as_each_does_alone(short_model_dir, tones, tmp_path):
    adapters = {word: adapter(short_model_dir, tones, tmp_path, word) for word in ("alpha", "omega")}
    clip = json.loads(tones[0].read_text())[3]["audio_path"]
    alone = {
        word: Transcriber(str(path), batch_size=1).files([clip], TranscribeOptions(language="en"))[0].text
        for word, path in adapters.items()
    }
    assert [said(alone[word]) for word in adapters] == [{"alpha"}, {"omega"}], alone
    port, log = free_port(), tmp_path / "server.log"
    command = [sys.executable, "-m", "whisper_lora.cli", "serve", "--port", str(port), "--max_loaded", "1"]
    command += [arg for word, path in adapters.items() for arg in ("--model", f"{word}={path}")]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}/health", process), log.read_text()
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        assert [m.id for m in api.models.list()] == ["alpha", "omega"]
        for word in ("omega", "alpha", "whisper-1"):
            with open(clip, "rb") as audio:
                text = api.audio.transcriptions.create(model=word, file=audio, language="en").text
            assert said(text) == {"alpha" if word == "whisper-1" else word}, (word, text, alone)
        with open(clip, "rb") as audio, pytest.raises(openai.NotFoundError, match="'gamma' does not exist"):
            api.audio.transcriptions.create(model="gamma", file=audio, language="en")
    finally:
        process.terminate()
        process.wait(timeout=30)
    printed = log.read_text()
    assert (
        "loaded alpha in" in printed and "loaded omega in" in printed and "unloaded alpha (--max_loaded 1)" in printed
    )
    assert "RSS" in printed
