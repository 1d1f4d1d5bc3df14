"""Fine-tuning the embedded whisper-base on espeak-ng Mandarin: CER improves, timestamps survive, noise stays quiet."""

import json
import shutil

import numpy as np
import pytest
import torch
from filelock import FileLock

from helpers import have_espeak, realtime_session, serving
from whisper_lora.audio.decode import decode_audio
from whisper_lora.audio.noise import KINDS, non_speech, write_wav
from whisper_lora.convert.export import export_model
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.demo.run import _scorer, build_corpus, build_out_of_domain, build_shifted
from whisper_lora.infer.evaluate import load_test_rows, run_model
from whisper_lora.infer.parity import greedy_reader, whispercpp_reader
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.train.trainer import TrainConfig, train

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]


# Out of domain, the set is built unlike the training rows in every way (demo.run.build_shifted: other sentences,
# voice variants, speeds and pitches outside the corpus's, 8 kHz MP3 or Opus, noise at 15-25 dB). Measured on 2
# AVX2 cores: zero-shot 87.9% CER, 72.0% after this fine-tune (0.82x). On the sentences alone in the corpus's voices
# (build_out_of_domain) the same defaults reached 24.7% from a zero-shot that loops (about 600%): the voice, not the
# text, is what such a short fine-tune learns least. In domain, 27.3% on 20 held-out corpus rows.
SHIFTED_BOUND = 0.9
SHIFTED_CER_BOUND = 0.80
IN_DOMAIN_CER_BOUND = 0.45


def without_speech(folder, kinds, seed: int) -> list[dict]:
    """One row without speech of each kind, 2 to 6 s long."""
    folder.mkdir(exist_ok=True)
    return [
        {
            "audio_path": write_wav(folder / f"{seed}_{i}.wav", non_speech(kind, 2 + i % 5, seed * 100 + i)),
            "no_speech": True,
        }
        for i, kind in enumerate(kinds)
    ]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, worker_id):
    """The adapter and its scores, trained once per run: parallel workers share it (a file lock, xdist's own recipe)."""
    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.mktemp("shared")
    folder = shared / "mandarin"
    with FileLock(str(shared / "mandarin.lock")):
        if not (folder / "tuned.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a crashed worker left
            tune(folder)
    facts = json.loads((folder / "tuned.json").read_text())
    model, processor = load_whisper(folder / "model")
    test_manifest = folder / "corpus" / "test_10.json"
    return facts["before"], facts["metrics"], model, processor, test_manifest, tuple(facts["shifted"])


def tune(folder):
    """Score zero-shot, fine-tune with the defaults, score again; the scores go to folder/tuned.json."""
    speech_manifest, all_tests = build_corpus(folder / "corpus", zh=(48, 20), en=(0, 0), seed=3)
    rows = json.loads(speech_manifest.read_text()) + without_speech(folder / "noise", KINDS[:4] + KINDS[:1], seed=1)
    train_manifest = speech_manifest.with_name("train_with_noise.json")  # a tenth of the rows without speech
    train_manifest.write_text(json.dumps(rows))
    test_manifest = all_tests.with_name("test_10.json")  # ten rows tell before from after; twenty cost minutes
    test_manifest.write_text(json.dumps(json.loads(all_tests.read_text())[:10]))
    build_out_of_domain(folder / "corpus", seed=3, zh=16, en=0)  # the whisper.cpp test reads it too
    shifted_manifest = build_shifted(folder / "corpus", seed=3, zh=16, en=0)
    base, processor = load_whisper("base")
    # Each set in one batch: zero-shot, every row loops to the decoder's 448 tokens, so batches cost steps, not rows.
    before = _scorer(test_manifest, base, processor, batch_size=16).by_language(base)["zh"]["score"]
    shifted_before = _scorer(shifted_manifest, base, processor, batch_size=16).by_language(base)["zh"]["score"]
    del base
    out = folder / "model"
    metrics = train(
        TrainConfig(
            train_file=[str(train_manifest)],
            output_dir=str(out),
            num_train_epochs=2,
            save_steps=10_000,
            logging_steps=4,
            report_to="none",
        )
    )
    model, processor = load_whisper(out)
    shifted_after = _scorer(shifted_manifest, model, processor).by_language(model)["zh"]["score"]
    facts = {"before": before, "metrics": metrics, "shifted": [shifted_before, shifted_after]}
    (folder / "tuned.json").write_text(json.dumps(facts, default=str))


def test_loss_falls_and_cer_improves(tuned):
    before, metrics, model, processor, test_manifest, _ = tuned
    state = json.loads((test_manifest.parents[1] / "model" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0]
    after = _scorer(test_manifest, model, processor).by_language(model)["zh"]["score"]
    assert before > 0.5 and after < min(0.5 * before, IN_DOMAIN_CER_BOUND), (before, after)


def test_a_short_fine_tune_beats_zero_shot_on_a_set_built_unlike_its_training_rows(tuned):
    before, after = tuned[-1]  # other sentences, voices, speeds, pitches, container, sample rate, and noise
    assert after < min(SHIFTED_BOUND * before, SHIFTED_CER_BOUND), (before, after)


def test_fine_tuned_model_still_predicts_timestamps(tuned):
    _, _, model, processor, test_manifest, _ = tuned
    clip = sorted((test_manifest.parent / "audio").glob("test_zh_*.wav"))[0]
    samples = decode_audio(clip)
    features = processor.feature_extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        tokens = model.generate(features, language="zh", task="transcribe", return_timestamps=True)[0].tolist()
    first_stamp = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
    stamps = [(t - first_stamp) * 0.02 for t in tokens if t >= first_stamp]
    assert len(stamps) >= 2 and stamps == sorted(stamps)
    assert stamps[0] < stamps[-1] <= len(samples) / 16000 + 0.5


def test_the_ct2_export_scores_as_the_transformers_model_does(tuned):
    # Identical words on nearly every row held while the model was sure of rows it had memorised. On rows it is
    # unsure of, faster-whisper's greedy decoding and transformers' pick different characters from the same weights
    # (a float32 export agrees on as few rows as the float16 one), so the error rates are compared: measured 29.4%
    # for transformers and 32.4% for int8 CTranslate2 on these ten rows.
    test_manifest = tuned[4]
    output_dir = str(test_manifest.parents[1] / "model")
    rows, clips = load_test_rows([str(test_manifest)])
    greedy = TranscribeOptions(temperature=[0.0])  # sampling at a fallback temperature would differ run to run
    by_transformers = run_model(Transcriber(output_dir, backend="transformers"), rows, clips, greedy).errors["zh"]
    by_ct2 = run_model(Transcriber(output_dir, backend="ct2", batch_size=1), rows, clips, greedy).errors["zh"]  # int8
    assert by_transformers < IN_DOMAIN_CER_BOUND and by_ct2 <= by_transformers + 0.06, (by_transformers, by_ct2)


def test_fine_tuned_model_still_detects_the_language(tuned):
    from whisper_lora.infer.backends.hf import first_steps

    _, _, model, processor, test_manifest, _ = tuned
    rows, clips = load_test_rows([str(test_manifest)])
    detected = []
    for clip in clips:
        features = processor.feature_extractor(clip.samples, sampling_rate=16000, return_tensors="pt").input_features
        detected.append(first_steps(model, processor, features)[0][0])
    assert detected.count("zh") >= 0.9 * len(clips), detected  # base whisper-base: 17 of 40 on the demo split


def test_rows_without_speech_teach_it_to_stay_quiet_on_noise_it_never_heard(tuned):
    # Measured here on these five clips: zero-shot whisper-base said something on two through the default (packed)
    # path ("字幕製作人" on the tones); this fine-tune said nothing on the four kinds it trained on, and on chords,
    # which it never heard, "我" through the packed path only. benchmarks/no_speech.py measures it on 40 clips.
    test_manifest = tuned[4]
    output_dir = str(test_manifest.parents[1] / "model")
    held_out = [row["audio_path"] for row in without_speech(test_manifest.parents[1] / "held_out", KINDS, seed=2)]
    speech = str(sorted((test_manifest.parent / "audio").glob("test_zh_*.wav"))[0])
    for backend in ("ct2", "transformers"):
        transcriber = Transcriber(output_dir, backend=backend)
        said = [t.text for t in transcriber.files([*held_out, speech], TranscribeOptions(language="zh"))]
        trained, chords = said[: len(KINDS) - 1], said[len(KINDS) - 1]
        assert trained == [""] * len(trained) and len(chords) <= 2 and said[-1].strip(), (backend, said)


# The bounds over the CTranslate2 export read in float32 (points of CER), with a floor in characters. On
# rows the adapter is unsure of, any two exports pick different homophones from near-equal scores: here CT2 read
# 27.4%, whisper.cpp f16 29.5% and the coarser q8_0 27.7% (7 and 1 characters of 346 more); on the demo's 132
# rows f16 read 24.1% against CT2's 25.0%. benchmarks/ggml_parity.py holds the goal on larger sets.
GGML_BOUND = {"q8_0": (0.01, 10)}  # the file to ship; f16 is in the benchmark, as the suite's time is short


def test_the_adapters_whisper_cpp_files_read_as_its_ct2_export_does(tuned, tmp_path):
    pytest.importorskip("pywhispercpp")  # a failure under CI=true (conftest.py)
    folder = tuned[4].parents[1]
    rows = [row for name in ("test.json", "test_out_of_domain.json") for row in read_rows(folder / "corpus" / name)]
    references = [text for _, text in rows]
    ct2 = export_model(str(folder / "model"), tmp_path / "ct2", "ct2", "float32")["ct2"]
    files = export_model(str(folder / "model"), tmp_path / "ggml", "ggml", ggml_types=tuple(GGML_BOUND))
    readers = {"ct2": greedy_reader(ct2, "ct2")} | {
        kind: whispercpp_reader(files[f"ggml {kind}"]) for kind in GGML_BOUND
    }
    rates = {
        name: error_rate(references, [read(path, "zh") for path, _ in rows], "cer", "zh")
        for name, read in readers.items()
    }
    characters = sum(len(text) for text in references)
    print(f"adapter, {len(rows)} held-out rows, {characters} characters: CER {rates}")
    for kind, (points, floor) in GGML_BOUND.items():
        assert rates[kind] <= rates["ct2"] + max(points, floor / characters), (kind, rates)
    assert rates["ct2"] < IN_DOMAIN_CER_BOUND, rates


def read_rows(manifest) -> list[tuple[str, str]]:
    """(audio path, text) of a demo manifest's rows."""
    return [(str(manifest.parent / row["audio_path"]), row["text"]) for row in json.loads(manifest.read_text())]


def test_an_adapter_folder_streams_over_sse_and_the_realtime_socket(tuned, tmp_path):
    """Live transcription serves the adapter, not its base: base loops on this speech (about 600% CER)."""
    openai = pytest.importorskip("openai", reason="the dev extra (openai) is not installed")
    folder = tuned[4].parents[1]
    rows = read_rows(folder / "corpus" / "test.json")[:4]
    pause = np.zeros(int(0.8 * 16000), np.float32)
    samples = np.concatenate([part for path, _ in rows for part in (decode_audio(path), pause)])
    path = write_wav(tmp_path / "rows.wav", samples)
    reference = "".join(text for _, text in rows)
    with serving(["--model_path", str(folder / "model")], tmp_path / "server.log") as (url, port):
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        with open(path, "rb") as audio:
            whole = api.audio.transcriptions.create(model="whisper-1", file=audio, language="zh").text
        with open(path, "rb") as audio:
            events = list(api.audio.transcriptions.create(model="whisper-1", file=audio, language="zh", stream=True))
        live = realtime_session(port, samples, "zh")[0]
    streamed = events[-1].text
    assert events[-1].type == "transcript.text.done" and streamed == "".join(
        e.delta for e in events if e.type == "transcript.text.delta"
    )
    completed = "".join(e["transcript"] for e in live if e["type"].endswith("input_audio_transcription.completed"))
    for said in (whole, streamed, completed):
        assert error_rate([reference], [said], "cer", "zh") < IN_DOMAIN_CER_BOUND, (
            reference,
            whole,
            streamed,
            completed,
        )
