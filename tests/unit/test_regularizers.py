"""Speed and noise perturbation, label smoothing, checkpoint averaging and early stopping, on a tiny Whisper."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import config
from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.audio.perturb import change_speed, perturb
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.errors import UserError
from whisper_lora.data.manifests import read_manifest
from whisper_lora.train.dataset import LabelOptions, SpeechDataset
from whisper_lora.train.trainer import TrainConfig, train


def tone(seconds: float, hertz: float) -> np.ndarray:
    return np.sin(2 * np.pi * hertz * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE).astype(np.float32)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_together(factor):
    faster = change_speed(tone(1.0, 400.0), factor)
    assert abs(len(faster) - SAMPLE_RATE / factor) <= 2
    spectrum = np.abs(np.fft.rfft(faster))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(faster) == pytest.approx(400.0 * factor, abs=5)


def test_perturbation_never_slows_a_window_past_its_limit():
    long = tone(28.0, 300.0)
    factors = {perturb(long, ("speed",), random.Random(seed), 29.0)[1] for seed in range(30)}
    assert factors == {1.0, 1.1}  # 28 s at 0.9 would be 31 s
    noisy, factor = perturb(tone(1.0, 300.0), ("noise",), random.Random(3), 29.0)
    assert factor == 1.0 and len(noisy) == SAMPLE_RATE


def test_each_reading_of_a_window_is_perturbed_anew_and_its_timestamps_follow(short_model_dir, tones):
    _, processor = load_whisper(str(short_model_dir))
    rows, _ = read_manifest(str(tones[0]))
    options = LabelOptions(language="en", timestamp_fraction=1.0)
    plain = SpeechDataset(rows, processor, options)
    varied = SpeechDataset(rows, processor, options, perturbations=("speed", "noise"))
    readings = [varied[3] for _ in range(8)]
    assert len({reading["input_features"].tobytes() for reading in readings}) >= 4
    end_tokens = {reading["labels"][-2] for reading in readings}  # the end timestamp moves with the speed
    assert len(end_tokens) >= 2
    assert readings[0]["labels"][:-2] == plain[3]["labels"][:-2]  # the same text
    again = SpeechDataset(rows, processor, options, perturbations=("speed", "noise"))
    assert again[3]["input_features"].tobytes() == readings[0]["input_features"].tobytes()  # seeded


def test_bad_regularizer_options_are_refused_with_the_reason(tones):
    cases = {
        "--perturb: 'pitch' is not one of speed, noise": dict(perturb="speed,pitch"),
        "--label_smoothing must be": dict(label_smoothing=1.0),
        "--average_checkpoints with --validation_file": dict(average_checkpoints=2, validation_file=[str(tones[1])]),
        "--average_checkpoints needs --save_total_limit 4": dict(average_checkpoints=5),
        "--early_stopping_patience needs --validation_file": dict(early_stopping_patience=2),
    }
    for message, options in cases.items():
        with pytest.raises(UserError, match=message):
            TrainConfig(train_file=[str(tones[0])], **options)


def last_loss(out) -> float:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry][-1]


def test_label_smoothing_keeps_the_loss_of_a_confident_model_high(short_model_dir, tones, tmp_path):
    plain = dict(validation_file=None, report_to="none", num_train_epochs=5, save_steps=100)
    train(config(short_model_dir, tones, tmp_path / "plain", **plain))
    train(config(short_model_dir, tones, tmp_path / "smooth", label_smoothing=0.5, **plain))
    assert last_loss(tmp_path / "smooth") > last_loss(tmp_path / "plain") + 1.0  # half the mass on the vocabulary


def test_the_saved_adapter_is_the_mean_of_the_last_checkpoints(short_model_dir, tones, tmp_path, capsys):
    out = tmp_path / "out"
    short = dict(validation_file=None, report_to="none", num_train_epochs=6)
    train(config(short_model_dir, tones, out, average_checkpoints=3, **short))
    assert "averaged the adapter over 3 points of training (steps 12, 8, 4)" in capsys.readouterr().out
    saved = load_file(str(out / "adapter_model.safetensors"))
    points = [load_file(str(out / f"checkpoint-{step}" / "adapter_model.safetensors")) for step in (4, 8, 12)]
    assert not torch.allclose(points[0][next(iter(saved))], points[2][next(iter(saved))])
    for key, value in saved.items():
        torch.testing.assert_close(value, sum(point[key] for point in points) / 3)


def test_averaging_takes_only_whole_checkpoints_of_this_run(short_model_dir, tones, tmp_path, capsys):
    from whisper_lora.train.trainer import _same_run

    out = tmp_path / "out"
    train(config(short_model_dir, tones, out, validation_file=None, report_to="none", num_train_epochs=4))
    history = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    assert _same_run(out / "checkpoint-4", history)
    assert not _same_run(out / "checkpoint-4", [{"loss": 9.0, "step": 1}, *history])  # another run's losses
    (out / "checkpoint-4" / "adapter_model.safetensors").unlink()  # cut short while saving
    assert not _same_run(out / "checkpoint-4", history)
    printed = capsys.readouterr().out
    assert f"not averaging {out / 'checkpoint-4'}: an earlier run saved it" in printed
    assert f"not averaging {out / 'checkpoint-4'}: incomplete" in printed


def test_early_stopping_ends_training_when_the_validation_score_stops_improving(short_model_dir, tones, tmp_path):
    out = tmp_path / "out"
    metrics = train(
        config(short_model_dir, tones, out, early_stopping_patience=1, eval_steps=2, save_steps=2, learning_rate=0.0)
    )
    assert metrics["global_step"] == 4  # nothing learns at rate 0: the second evaluation is no better, and it stops
