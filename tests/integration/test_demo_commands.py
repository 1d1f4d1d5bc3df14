"""Every command the demo prints at its end runs, as printed, with what ./setup_environment.sh installs."""

import shlex
import subprocess
import sys
from pathlib import Path

from helpers import config, free_port, wait_until_ready
from whisper_lora.demo.run import _next_steps
from whisper_lora.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = "whisper_lora_env/bin/"


def printed_commands(output_dir: Path, test_manifest: Path) -> list[list[str]]:
    """The demo's closing commands, with the venv's bin folder made the one running these tests."""
    lines = [line.strip() for line in _next_steps(output_dir, test_manifest).splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith(VENV_BIN)]
    here = Path(sys.executable).parent
    return [[str(here / c[0].removeprefix(VENV_BIN)), *c[1:]] for c in commands]


def test_setup_installs_the_server_the_demo_tells_users_to_start():
    script = (ROOT / "setup_environment.sh").read_text()
    assert 'EXTRAS="[server]"' in script  # the first README command has no --dev, and the demo ends with serve


def test_each_printed_command_runs(short_model_dir, tones, tmp_path):
    output_dir = tmp_path / "model"
    train(config(short_model_dir, tones, output_dir, num_train_epochs=1, validation_file=None))
    commands = printed_commands(output_dir, tones[1])
    assert [Path(c[0]).name for c in commands] == ["python", "python", "whisper-lora", "whisper-lora", "whisper-lora"]
    for command in commands[:-1]:
        result = subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    serve, port = commands[-1], free_port()  # as printed, on a free port instead of 8000
    assert serve[1] == "serve" and "--port" not in serve
    process = subprocess.Popen(
        [*serve, "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}/health", process), process.stdout.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
