"""Training on a tiny Whisper: loss falls, outputs, adapter reload, resume after SIGKILL, Ctrl-C, and DDP."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import config
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core import progress
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.evaluate import load_test_rows, run_model
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def test_training_lowers_the_loss_and_writes_every_output(short_model_dir, tones, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.5)  # the log's heartbeat, 10 s in use
    out = tmp_path / "out"
    metrics = train(config(short_model_dir, tones, out))
    printed = capsys.readouterr()  # not a terminal: whole progress lines, no carriage returns
    assert re.search(r"^training: \d+/20 steps \(\d+%\), \d+:\d\d elapsed, about \d+:\d\d left$", printed.out, re.M)
    assert re.search(r"^training: 20/20 steps in \d+:\d\d$", printed.out, re.M), printed.out
    bars = [line for line in (printed.out + printed.err).split("\r") if "it/s]" in line or "s/it]" in line]
    assert all(line.strip().startswith("Loading weights") for line in bars), bars  # only the model load's own bar
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0]
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "processor_config.json",
        "training_config.json",
        "metrics.json",
        "training_curves.png",
        "whisper_lora.json",
    ):
        assert (out / name).is_file(), name
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics)) and saved["global_step"] == 20 and saved["world_size"] == 1
    assert saved["train_samples_per_second"] > 0 and saved["metric"] == "wer" and saved["final"]["wer"] is not None
    assert saved["scored_by"].startswith("the transformers backend of `whisper-lora evaluate --temperature 0`")
    assert json.loads((out / "training_config.json").read_text())["lora_r"] == 8
    stages = [
        "reading the rows",
        "loading the model",
        "preparing the data",
        "training",
        "the final evaluation",
        "saving",
    ]
    assert [s["stage"] for s in saved["memory_mb"]] == stages  # where the memory goes, stage by stage
    peaks = [s["peak_mb"] for s in saved["memory_mb"]]
    assert peaks == sorted(peaks) and all(s["rss_mb"] <= s["peak_mb"] + 1 for s in saved["memory_mb"])
    assert re.search(r"^train memory after training: RSS \d+ MB, peak \d+ MB \([\d.]+ s\)$", printed.out, re.M)
    assert all(s["seconds"] >= 0 for s in saved["memory_mb"])
    rows, clips = load_test_rows([str(tones[1])])  # the saved (best) model, scored as `evaluate` scores it
    greedy = TranscribeOptions(temperature=[0.0])  # as training scores, so a looping clip is decoded once
    evaluated = run_model(Transcriber(str(out), backend="transformers"), rows, clips, greedy)
    assert evaluated.errors["en"] == pytest.approx(saved["best"]["wer"]), saved


def test_saved_adapter_reloads_to_the_same_outputs(short_model_dir, tones, tmp_path):
    from peft import PeftModel

    out = tmp_path / "out"
    train(config(short_model_dir, tones, out, num_train_epochs=2, validation_file=None))
    merged, processor = load_whisper(out)
    base, _ = load_whisper(short_model_dir)
    unmerged = PeftModel.from_pretrained(base, str(out)).eval()
    features = torch.randn(2, 80, 3000)
    prompt = torch.tensor([[50258, 50259, 50359, 50363]] * 2)
    with torch.no_grad():
        expected = unmerged(input_features=features, decoder_input_ids=prompt).logits
        assert torch.allclose(merged(input_features=features, decoder_input_ids=prompt).logits, expected, atol=1e-4)
    fresh, _ = load_whisper(short_model_dir)
    with torch.no_grad():
        assert not torch.allclose(fresh(input_features=features, decoder_input_ids=prompt).logits, expected, atol=1e-4)


def test_all_bad_rows_stop_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from whisper_lora.cli.main import main
    from whisper_lora.train import trainer

    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps([{"audio_path": "missing.wav", "text": "x"}]))
    monkeypatch.setattr(trainer, "load_whisper", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["train", "--train_file", str(manifest)]) == 2
    assert "no usable rows" in capsys.readouterr().err


def test_a_fresh_run_refuses_an_earlier_runs_checkpoints_before_the_model_loads(tones, tmp_path, capsys, monkeypatch):
    from whisper_lora.cli.main import main
    from whisper_lora.train import trainer

    earlier = tmp_path / "out" / "checkpoint-8"
    earlier.mkdir(parents=True)
    (earlier / "trainer_state.json").write_text("{}")
    monkeypatch.setattr(trainer, "load_whisper", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["train", "--train_file", str(tones[0]), "--output_dir", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr().err
    assert "holds checkpoints of an earlier run (checkpoint-8)" in printed and "--overwrite_output_dir" in printed
    assert earlier.is_dir()  # the Trainer's rotation would have deleted it


def test_overwrite_output_dir_deletes_the_earlier_checkpoints_and_trains(short_model_dir, tones, tmp_path, capsys):
    out = tmp_path / "out"
    for name in ("checkpoint-40", "checkpoint-41", "checkpoint-notes"):
        (out / name).mkdir(parents=True)
    train(config(short_model_dir, tones, out, validation_file=None, num_train_epochs=2, overwrite_output_dir=True))
    assert "deleted 2 checkpoint(s) of an earlier run" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-notes"]


def test_default_targets_train_the_top_encoder_layer_on_cached_stem_outputs_of_packed_windows(
    short_model_dir, tones, tmp_path
):
    out = tmp_path / "out"
    metrics = train(
        config(
            short_model_dir,
            tones,
            out,
            target_modules="default",
            encoder_layers=1,
            validation_file=None,
            regression_file=[str(tones[1])],
            pack_rows=4,
            per_device_train_batch_size=1,
            num_train_epochs=25,
        )
    )
    assert metrics["global_step"] == 50  # 8 rows of about a second, 4 to a window, for 25 epochs
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0]
    weights = load_file(out / "adapter_model.safetensors")
    names = list(weights)
    assert any("encoder.layers.1." in n for n in names) and not any("encoder.layers.0." in n for n in names)
    trained = [n for n in names if "encoder.layers.1." in n and "lora_B" in n]
    assert trained and all(weights[n].abs().sum() > 0 for n in trained)  # gradients reached the cached path
    assert any("decoder.layers.0.encoder_attn." in n for n in names)
    assert not any("decoder.layers.0.self_attn." in n or "decoder.layers.0.fc1" in n for n in names)
    regression = json.loads((out / "metrics.json").read_text())["regression"]
    assert set(regression["base"]) == set(regression["final"]) == {"en_wer"}
    assert metrics["regression"] == regression and any("eval_regression_en_wer" in e for e in history)


def test_forgetting_guard_warns_past_one_point(caplog):
    from whisper_lora.train.trainer import ForgettingGuard

    results = iter([0.10, 0.105, 0.125])
    scorer = type(
        "Scorer", (), {"by_language": lambda self, model: {"en": {"metric": "wer", "score": next(results)}}}
    )()
    guard = ForgettingGuard(scorer)
    with caplog.at_level("WARNING", logger="whisper_lora.train.trainer"):
        assert guard.measure(None) == {"regression_en_wer": 0.10}
        guard.measure(None)
        assert not caplog.records
        guard.measure(None)
    assert "2.5 points worse" in caplog.text and guard.summary()["worse"] == ["en_wer"]


def test_default_targets_name_the_encoder_layers_and_the_decoders_cross_attention():
    import re

    from whisper_lora.train.trainer import target_modules

    pattern = re.compile(target_modules("default", encoder_layers=2, total_encoder_layers=6))
    assert pattern.fullmatch("model.encoder.layers.4.self_attn.q_proj") and pattern.fullmatch(
        "model.encoder.layers.5.fc2"
    )
    assert not pattern.fullmatch("model.encoder.layers.3.self_attn.q_proj") and not pattern.fullmatch(
        "model.encoder.conv1"
    )
    assert pattern.fullmatch("model.decoder.layers.0.encoder_attn.out_proj")
    assert not pattern.fullmatch("model.decoder.layers.5.fc1") and not pattern.fullmatch(
        "model.decoder.layers.0.self_attn.q_proj"
    )
    every = re.compile(target_modules("default", total_encoder_layers=6))  # all encoder layers unless told
    assert every.fullmatch("model.encoder.layers.0.self_attn.k_proj") and every.fullmatch("model.encoder.layers.5.fc1")
    assert r"model\.encoder" not in target_modules("default", encoder_layers=0)


def test_encoder_targets_are_the_defaults_encoder_layers_without_the_decoder(tones):
    import re

    from whisper_lora.core.errors import UserError
    from whisper_lora.train.trainer import target_modules

    pattern = re.compile(target_modules("encoder", encoder_layers=2, total_encoder_layers=6))
    assert pattern.fullmatch("model.encoder.layers.5.self_attn.v_proj") and pattern.fullmatch(
        "model.encoder.layers.4.fc1"
    )
    assert not pattern.fullmatch("model.encoder.layers.3.fc1")
    assert not pattern.fullmatch("model.decoder.layers.0.encoder_attn.q_proj")
    with pytest.raises(UserError, match="--target_modules encoder with --encoder_layers 0 adapts nothing"):
        TrainConfig(train_file=[str(tones[0])], target_modules="encoder", encoder_layers=0)


def test_decoder_lr_scale_slows_only_the_decoders_adapters(short_model_dir, tones, tmp_path):
    from whisper_lora.core.errors import UserError

    with pytest.raises(UserError, match="--decoder_lr_scale must be more than 0"):
        TrainConfig(train_file=[str(tones[0])], decoder_lr_scale=0)
    out = tmp_path / "out"
    train(config(short_model_dir, tones, out, decoder_lr_scale=1e-6, validation_file=None, num_train_epochs=2))
    moved = {name: weight.abs().max().item() for name, weight in load_file(out / "adapter_model.safetensors").items()}
    encoder = [m for name, m in moved.items() if "lora_B" in name and ".encoder." in name]
    decoder = [m for name, m in moved.items() if "lora_B" in name and ".decoder." in name]
    assert encoder and decoder and min(encoder) > 1e-3 and max(decoder) < 1e-5  # B starts at zero


def test_decoder_scale_keeps_that_share_of_the_decoders_change_and_all_of_the_encoders(
    short_model_dir, tones, tmp_path
):
    with pytest.raises(UserError, match="--decoder_scale must be from 0 to 1"):
        TrainConfig(train_file=[str(tones[0])], decoder_scale=1.5)
    with pytest.raises(UserError, match="--decoder_scale with --use_dora"):
        TrainConfig(train_file=[str(tones[0])], decoder_scale=0.5, use_dora=True)
    saved, final, logged = {}, {}, {}
    for share in (1.0, 0.25):
        out = tmp_path / str(share)
        metrics = train(config(short_model_dir, tones, out, decoder_scale=share, num_train_epochs=2))
        saved[share] = load_file(out / "adapter_model.safetensors")
        final[share] = metrics["final"]["loss"]
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        logged[share] = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    assert metrics["global_step"] == 4 and logged[1.0] == [final[1.0]]  # evaluated at the last step, kept
    assert logged[0.25][0] == logged[1.0][0] and final[0.25] == logged[0.25][-1] != logged[0.25][0]  # scored again
    decoder_b = [name for name in saved[1.0] if "lora_B" in name and ".decoder." in name]
    assert decoder_b and saved[1.0].keys() == saved[0.25].keys()
    for name, full in saved[1.0].items():
        expected = full * 0.25 if name in decoder_b else full  # the same seed trains the same adapter
        torch.testing.assert_close(saved[0.25][name], expected)
    assert max(saved[1.0][name].abs().max().item() for name in decoder_b) > 1e-4


def test_bad_precision_is_refused(tones):
    from whisper_lora.core.errors import UserError

    with pytest.raises(UserError, match="--precision must be auto, fp32 or bf16"):
        TrainConfig(train_file=[str(tones[0])], precision="fp8")


def test_spec_augment_masks_training_features_and_refuses_the_stem_cache(short_model_dir, tones, tmp_path):
    import torch

    from helpers import tiny_whisper
    from whisper_lora.core.errors import UserError
    from whisper_lora.train.trainer import _augment

    model = tiny_whisper()
    model.get_base_model = lambda: model
    _augment(model, TrainConfig(train_file=[str(tones[0])], spec_augment=True), None)
    features = torch.randn(2, 80, 3000) + 5.0  # no entry is zero before masking
    masked = model.model.train()._mask_input_features(features.clone())
    zeroed = (masked == 0).float().mean().item()
    assert 0.03 < zeroed < 0.3
    assert torch.equal(model.model.eval()._mask_input_features(features.clone()), features)  # only in training
    with pytest.raises(UserError, match="--spec_augment change what the encoder reads at every step"):
        train(
            config(
                short_model_dir, tones, tmp_path / "out", target_modules="default", encoder_layers=1, spec_augment=True
            )
        )


# The tiny model's loss on the tones' packed, half-timestamped training labels. It moves when the labels change (tokens,
# masking, timestamps, packing, gaps): if that change is meant, pin the new value and re-run benchmarks/generalization.py.
PINNED_LABEL_TOKENS, PINNED_LOSS = 28, 12.11018


def test_training_labels_are_pinned_by_the_tiny_models_loss(short_model_dir, tones):
    from whisper_lora.data.manifests import usable_report
    from whisper_lora.train.dataset import IGNORE_INDEX, LabelOptions, SpeechCollator, SpeechDataset, pack_rows

    model, processor = load_whisper(str(short_model_dir))
    rows, seconds = zip(
        *usable_report([tones[0]], processor.tokenizer, log=lambda line: None).ok, strict=True
    )  # as train() reads them
    options = LabelOptions(seed=42, timestamp_fraction=0.5)
    dataset = SpeechDataset(rows, processor, options, windows=pack_rows(rows, seconds, processor.tokenizer, options, 4))
    batch = SpeechCollator(processor.tokenizer.eos_token_id)([dataset[k] for k in range(len(dataset))])
    with torch.no_grad():
        loss = model.eval()(**batch).loss.item()
    assert (int((batch["labels"] != IGNORE_INDEX).sum()), loss) == (
        PINNED_LABEL_TOKENS,
        pytest.approx(PINNED_LOSS, rel=1e-4),
    )


@pytest.mark.parametrize("task, language", [("translate", "xx"), ("summarise", "zh"), ("summarise", "xx")])
def test_training_and_decoding_refuse_a_bad_task_or_language_in_the_same_words(task, language):
    from whisper_lora.core.errors import UserError
    from whisper_lora.core.records import TranscribeOptions

    with pytest.raises(UserError) as decoding:
        TranscribeOptions(language=language, task=task)
    with pytest.raises(UserError) as training:
        TrainConfig(train_file=["rows.json"], language=language, task=task)
    assert str(decoding.value) in str(training.value)


def test_replay_rows_take_the_base_models_transcripts_and_leave_out_empty_ones(tones, monkeypatch, capsys):
    from whisper_lora.train import trainer as training

    said = iter(["one two", "", "three", "four five", "six"])
    monkeypatch.setattr(training.ModelScorer, "transcripts", lambda self, model: [next(said) for _ in self.rows])
    options = dict(train_file=[str(tones[0])], replay_file=[str(tones[0])], replay_fraction=0.25, language="en")
    replay, seconds = training._replay_rows(TrainConfig(**options), None, None, None, 12)
    assert [row.text for row in replay] == ["one two", "three"]  # 3 of 12 asked for; the empty one left out
    assert len(seconds) == 2 and all(0 < s < 30 for s in seconds)
    assert {row.manifest for row in replay} == {str(tones[0])}
    assert (
        "replay: 2 rows transcribed by the base model join the 12 training rows (1 came out empty"
        in capsys.readouterr().out
    )


def test_replay_fraction_must_be_positive(tones):
    with pytest.raises(UserError, match="--replay_fraction must be more than 0"):
        TrainConfig(train_file=[str(tones[0])], replay_fraction=0)


def test_replay_rows_are_trained_beside_the_training_rows(short_model_dir, tones, tmp_path, monkeypatch, capsys):
    from whisper_lora.train import trainer as training

    monkeypatch.setattr(training.ModelScorer, "transcripts", lambda self, model: ["tone"] * len(self.rows))
    metrics = train(
        config(
            short_model_dir,
            tones,
            tmp_path / "out",
            validation_file=None,
            replay_file=[str(tones[1])],
            replay_fraction=0.25,
            num_train_epochs=1,
        )
    )
    printed = capsys.readouterr().out
    assert "replay: 2 rows transcribed by the base model join the 8 training rows" in printed
    assert "train: 10 rows" in printed and metrics["global_step"] == 3  # 10 rows, 4 to a step
