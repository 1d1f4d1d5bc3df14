"""The short-context objective: distillation from the model's own 30 s reading, into an adapter that short windows use."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from helpers import config, tiny_whisper
from whisper_lora.core.errors import UserError
from whisper_lora.train.short_context import distillation_loss, draw_positions, short_encoder, window_positions
from whisper_lora.train.trainer import TrainConfig, train


def batch(seconds: float = 1.0) -> dict:
    """Two random examples, the first `seconds` long and the second 0.5 s."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (2, 6), generator=generator)
    labels = tokens.clone()
    labels[1, 4:] = -100  # padding the loss must skip
    return {
        "input_features": torch.randn(2, 80, 3000, generator=generator),
        "decoder_input_ids": tokens,
        "labels": labels,
        "audio_samples": torch.tensor([int(seconds * 16000), 8000]),
    }


@pytest.fixture
def student():
    torch.manual_seed(0)
    return get_peft_model(tiny_whisper(), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "fc1"]))


def test_a_fresh_adapter_over_the_whole_window_is_its_teacher(student):
    # The adapter starts at zero: over all 1500 positions the student is the teacher, so the loss is 0
    assert distillation_loss(student, batch(), 1500).item() == pytest.approx(0.0, abs=1e-10)
    assert distillation_loss(student, batch(), 114).item() > 1e-4  # a short window reads differently


def test_the_students_window_is_the_longest_audio_and_a_margin_or_now_and_then_the_whole_window():
    torch.manual_seed(0)
    audio = torch.tensor([16000, 8000])
    drawn = [draw_positions(audio) for _ in range(400)]
    assert {p for p in drawn if p != 1500} <= set(range(50, 50 + 65)) and len(set(drawn)) > 40
    assert 0.15 < drawn.count(1500) / len(drawn) < 0.35
    assert window_positions(audio, 64) == 114 and window_positions(torch.tensor([29 * 16000]), 64) == 1500


def test_only_the_adapter_learns_and_the_short_encoder_reads_the_audio_and_margin(student):
    distillation_loss(student, batch(), 114).backward()
    learning = {name for name, p in student.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert learning and all("lora_" in name for name in learning), learning
    encoder = student.get_base_model().model.encoder
    assert short_encoder(encoder, torch.zeros(1, 80, 3000), 114).shape == (1, 114, 64)


def test_training_short_context_lowers_the_distillation_loss_and_marks_the_adapter(short_model_dir, tones, tmp_path):
    out = tmp_path / "out"
    train(config(short_model_dir, tones, out, objective="short_context", validation_file=None, num_train_epochs=6))
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert max(losses[-3:]) < 0.5 * max(losses[:3]), losses  # a whole-window step's loss starts near 0
    assert json.loads((out / "whisper_lora.json").read_text())["objective"] == "short_context"


def test_spec_augment_is_refused_with_short_context(tones):
    with pytest.raises(UserError, match="--spec_augment with --objective short_context"):
        TrainConfig(train_file=[str(tones[0])], objective="short_context", spec_augment=True)
