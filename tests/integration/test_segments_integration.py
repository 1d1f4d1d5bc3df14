"""A long subtitled recording, planned into windows and trained on end to end (the tiny model)."""

import json

import numpy as np

from helpers import recording, write_srt
from whisper_lora.data.manifests import check_manifests


def test_a_ten_minute_recording_with_subtitles_trains_end_to_end_on_cached_stems(short_model_dir, tmp_path, capsys):
    from whisper_lora.train.trainer import TrainConfig, train

    audio, cues = recording(tmp_path, 600.0)
    write_srt(tmp_path / "talk.srt", cues)
    (tmp_path / "train.json").write_text(json.dumps([{"audio_path": "talk.wav", "subtitles": "talk.srt"}]))
    config = TrainConfig(
        train_file=[str(tmp_path / "train.json")],
        model_name_or_path=str(short_model_dir),
        output_dir=str(tmp_path / "out"),
        language="en",
        num_train_epochs=6,
        learning_rate=1e-2,
        target_modules="all",
        per_device_train_batch_size=4,
        pack_rows=1,
        warmup_steps=0,
        logging_steps=1,
        save_steps=1000,
        report_to="none",
        dataloader_num_workers=0,
        encoder_layers=1,
    )
    metrics = train(config)
    printed = capsys.readouterr().out
    windows = len(check_manifests([tmp_path / "train.json"]).rows)
    assert (
        windows >= 20 and "train: 1 of 1 rows usable (0.1" in printed and f"planned into {windows} windows" in printed
    )
    assert metrics["global_step"] == 6 * -(-windows // 4)  # four windows a step, every epoch
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    steps = len(losses) // 6
    assert np.mean(losses[-steps:]) < 0.65 * np.mean(losses[:steps])  # the last epoch against the first
