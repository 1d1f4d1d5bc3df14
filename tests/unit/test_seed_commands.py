"""The seed README's two training commands run as written, with a local model in place of the hub id."""

import json
import os

import pytest

from whisper_lora.cli.main import main

SEED_BASIC = """--model_name_or_path MODEL --train_file TRAIN --validation_file DEV --output_dir OUT
    --num_train_epochs 3 --per_device_train_batch_size 4 --gradient_accumulation_steps 2 --learning_rate 5e-4
    --warmup_steps 500 --logging_steps 50 --save_steps 500 --eval_steps 500 --fp16 --gradient_checkpointing"""
SEED_ADVANCED = """--model_name_or_path MODEL --train_file TRAIN --validation_file DEV --output_dir OUT
    --num_train_epochs 5 --per_device_train_batch_size 2 --gradient_accumulation_steps 4 --learning_rate 1e-4
    --warmup_steps 1000 --lora_r 16 --lora_alpha 64 --lora_dropout 0.05 --max_train_samples 10000
    --max_eval_samples 1000 --use_wandb --wandb_project my-whisper-project"""


def seed_args(template, model_dir, tones, out):
    values = {"MODEL": model_dir, "TRAIN": tones[0], "DEV": tones[1], "OUT": out}
    return [str(values.get(word, word)) for word in template.split()]


def test_seed_basic_command(short_model_dir, tones, tmp_path, caplog):
    out = tmp_path / "output"
    assert main(["train", *seed_args(SEED_BASIC, short_model_dir, tones, out)]) == 0
    assert "--warmup_steps 500 is not shorter than the run's 3 updates" in caplog.text  # kept, and said
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 3  # 8 rows / (4 x 2) per update x 3 epochs
    saved = json.loads((out / "training_config.json").read_text())
    assert saved["fp16"] and saved["gradient_checkpointing"] and saved["warmup_steps"] == 500


def test_seed_advanced_command_with_offline_wandb(short_model_dir, tones, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="install the [wandb] extra")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)  # restored after the test
    out = tmp_path / "output"
    assert main(["train", *seed_args(SEED_ADVANCED, short_model_dir, tones, out)]) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert os.environ.get("WANDB_PROJECT") == "my-whisper-project"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16


def test_without_use_wandb_nothing_touches_wandb(short_model_dir, tones, tmp_path):
    import sys

    sys.modules.pop("wandb", None)
    args = seed_args(SEED_BASIC, short_model_dir, tones, tmp_path / "out")
    assert main(["train", *args[: args.index("--fp16")], "--num_train_epochs", "1"]) == 0
    assert "wandb" not in sys.modules
