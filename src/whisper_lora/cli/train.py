"""whisper-lora train: LoRA fine-tuning, its flags the fields of TrainConfig."""

from __future__ import annotations

import argparse

from whisper_lora.cli.common import from_args

add_arguments = None  # every flag is a TrainConfig field
HELP = "fine-tune Whisper with LoRA on JSON/JSONL manifests (whisper_lora_finetune.py)"


def fields() -> tuple[type, ...]:
    """The dataclasses whose fields are this command's flags (imported only for this command: torch)."""
    from whisper_lora.train.trainer import TrainConfig

    return (TrainConfig,)


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    from whisper_lora.train.trainer import TrainConfig, train

    config = from_args(TrainConfig, args)
    metrics = train(config)
    if metrics:
        best = metrics["best"]
        print(f"done: adapter, processor and metrics.json in {config.output_dir}")
        if best.get("step") is not None:
            print(f"best {metrics['metric'].upper()} {best[metrics['metric']]:.2%} at step {best['step']}")
    return 0
