"""Training as whole processes: SIGKILL and resume, Ctrl-C, and two-process DDP on gloo (the tiny model)."""

import json
import os
import signal
import subprocess
import sys

from helpers import ROOT, cli_args, free_port, run_cli, wait_for


def test_sigkill_then_resume_auto_goes_on_from_the_last_checkpoint(short_model_dir, tones, tmp_path):
    out = tmp_path / "out"
    process = run_cli(*cli_args(short_model_dir, tones, out, epochs=10))
    wait_for((out / "checkpoint-4" / "trainer_state.json").is_file, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete = [int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json")]
    last = max(complete)  # a checkpoint the kill cut short has no trainer_state.json and must be skipped
    resumed = run_cli(*cli_args(short_model_dir, tones, out, epochs=10), "--resume_from_checkpoint", "auto")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resuming from {out / f'checkpoint-{last}'}" in output
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 40  # 8 rows / 2 per step * 10 epochs
    first_logged = min(
        e["step"]
        for e in json.loads((out / "checkpoint-40/trainer_state.json").read_text())["log_history"]
        if "loss" in e
    )
    assert first_logged == 1  # the resumed state carries the earlier history, not a fresh start


def test_ctrl_c_saves_a_resumable_checkpoint(short_model_dir, tones, tmp_path):
    out = tmp_path / "out"
    process = run_cli(*cli_args(short_model_dir, tones, out, epochs=200))
    wait_for((out / "checkpoint-2").is_dir, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Resume with --resume_from_checkpoint auto" in output
    stopped = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert stopped >= 2 and (out / f"checkpoint-{stopped}" / "adapter_model.safetensors").is_file()


def test_two_process_ddp_on_gloo(short_model_dir, tones, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "whisper_lora_finetune.py"),
        *map(str, cli_args(short_model_dir, tones, out, epochs=2)),
    ]
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4  # 8 rows / (2 per device * 2) * 2 epochs
