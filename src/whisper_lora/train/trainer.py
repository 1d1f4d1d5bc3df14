"""LoRA fine-tuning of Whisper on transformers' Seq2SeqTrainer and peft, with CER/WER evaluation."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from matplotlib.figure import Figure
from peft import LoraConfig, get_peft_model
from transformers import (
    EarlyStoppingCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    set_seed,
)

from whisper_lora.audio.perturb import PERTURBATIONS
from whisper_lora.convert.hf import load_tokenizer, load_whisper
from whisper_lora.core.errors import TrainingInterrupted, UserError
from whisper_lora.core.extras import require
from whisper_lora.core.files import write_atomic, write_json_atomic
from whisper_lora.core.languages import normalize_language
from whisper_lora.core.memory import MemoryProfile, map_large_allocations
from whisper_lora.core.metrics import default_metric
from whisper_lora.core.models import ADAPTER_INFO, resolve_model
from whisper_lora.core.progress import Progress
from whisper_lora.core.records import task_and_language_problems
from whisper_lora.data.manifests import MAX_AUDIO_SECONDS, Row, usable_report
from whisper_lora.infer.evaluate import ModelScorer
from whisper_lora.train import schedule
from whisper_lora.train.dataset import (
    EncoderStemCache,
    LabelOptions,
    SpeechCollator,
    SpeechDataset,
    encoder_top,
    pack_rows,
)
from whisper_lora.train.lora import average_adapters, fuse_lora_dropout, scale_adapters
from whisper_lora.train.short_context import OBJECTIVES, distillation_loss, draw_positions

log = logging.getLogger("whisper_lora.train.trainer")

# Measured by benchmarks/generalization.py (README, "Defaults, and why"): LoRA on the decoder's self-attention
# and FFN learns the training sentences; adapting the encoder and the decoder's cross-attention learns the voices.
LINEAR = r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"
CROSS_ATTENTION = r"model\.decoder\.layers\.\d+\.encoder_attn\.(q_proj|k_proj|v_proj|out_proj)"
DECODER_MODULES = r"model\.decoder\.layers\.\d+\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"
ALL_MODULES = "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
TARGET_PRESETS = {"decoder": DECODER_MODULES, "all": ALL_MODULES, "qv": "q_proj,v_proj"}


@dataclass
class TrainConfig:
    """Every training option; the CLI makes one flag of each field, with the field's help text."""

    train_file: list[str] = field(metadata={"help": "training manifests (JSON list or JSONL)", "nargs": "+"})
    validation_file: list[str] | None = field(
        default=None, metadata={"help": "validation manifests; CER/WER is measured on them", "nargs": "+"}
    )
    regression_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "manifests (any language) the model must not get worse on: scored before training and at every evaluation",
            "nargs": "+",
        },
    )
    replay_file: list[str] | None = field(
        default=None,
        metadata={
            "help": 'manifests of speech the model must keep understanding (any language; "text" may be empty): the base model transcribes them at the start, and --replay_fraction of the training rows are those transcripts',
            "nargs": "+",
        },
    )
    replay_fraction: float = field(
        default=0.1, metadata={"help": "replay rows mixed in per training row, drawn from --replay_file"}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"aliases": ["--model_path"], "help": "base model: embedded name, folder or hub id (default: base)"},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache folder for hub models"})
    output_dir: str = field(
        default="./output", metadata={"help": "where the adapter, processor, metrics and checkpoints go"}
    )
    language: str | None = field(
        default=None, metadata={"help": "language of rows without their own 'language' (zh, en, ...)"}
    )
    task: str = field(default="transcribe", metadata={"help": "transcribe or translate"})
    num_train_epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "examples per step on each device: windows of up to --pack_rows rows (default 1), or rows with --pack_rows 1 (default 4)"
        },
    )
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "examples per generation batch in evaluation"})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "steps whose gradients add up before one update"}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "peak learning rate (default: 5e-4 at 4 rows an update, times the square root of how many times more rows an update reads, up to 2e-3)"
        },
    )
    decoder_lr_scale: float = field(
        default=1.0,
        metadata={
            "help": "the decoder's adapters learn at this multiple of the learning rate (the encoder's at 1): at 0.5, real English after fine-tuning stays near the base model's error rate, but a tenth of noise clips come out as text"
        },
    )
    decoder_scale: float = field(
        default=1.0,
        metadata={
            "help": "keep this share (0-1) of what the decoder's adapters learned, scaled once training ends: the rest is the base model's (weight-space ensembling), which reads speech unlike the training rows better and the training rows' own words worse"
        },
    )
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "learning-rate schedule after warm-up (linear, cosine, constant, ...)"}
    )
    warmup_steps: int | None = field(
        default=None,
        metadata={"help": "updates of linear warm-up (default: 10, or half a shorter run's updates)"},
    )
    logging_steps: int = field(default=10, metadata={"help": "updates between loss logs"})
    save_steps: int = field(default=500, metadata={"help": "updates between checkpoints"})
    eval_steps: int | None = field(default=None, metadata={"help": "updates between evaluations (default: save_steps)"})
    save_total_limit: int = field(default=3, metadata={"help": "checkpoints kept (the best one is always kept)"})
    fp16: bool = field(
        default=False, metadata={"help": "float16 mixed precision (CUDA only; on CPU bf16 is used where supported)"}
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations to save memory"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA path"})
    target_modules: str = field(
        default="default",
        metadata={
            "help": "'default' (every projection of the encoder's layers, or of its top --encoder_layers, and the decoder's cross-attention), 'encoder' (the same without the decoder), 'decoder', 'all', 'qv', a comma list of module names, or a regex"
        },
    )
    encoder_layers: int | None = field(
        default=None,
        metadata={
            "help": "top encoder layers that the 'default' and 'encoder' targets adapt (default: all); the frozen ones below run once per row and are cached"
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 autocast on CPUs with AMX or AVX512-BF16, else fp32), fp32 or bf16; --fp16/--bf16 override it"
        },
    )
    pack_rows: int = field(
        default=4,
        metadata={
            "help": "most rows per training example: rows are laid end to end in one 30 s window, 1-3 s apart, and transcribed one after the other, so the encoder runs once for them all (1: a row per example)"
        },
    )
    spec_augment: bool = field(
        default=False,
        metadata={
            "help": "SpecAugment: zero random time spans (5%%) and mel bands (5%%) of each training example's features"
        },
    )
    perturb: str = field(
        default="",
        metadata={
            "help": "comma list of what to vary in each reading of a training example: speed (0.9, 1.0 or 1.1x) and noise (white or brown, 10-30 dB below the speech, in half of them)"
        },
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "share of each label's probability spread over the vocabulary (0: off)"}
    )
    average_checkpoints: int = field(
        default=1,
        metadata={
            "help": "average the adapter over the last N checkpoints (every --save_steps) and the end of training"
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "stop after this many evaluations on --validation_file without a better score"},
    )
    use_dora: bool = field(default=False, metadata={"help": "weight-decomposed LoRA (DoRA)"})
    timestamp_fraction: float = field(
        default=0.5,
        metadata={"help": "share of training windows transcribed with timestamps, which keeps them working"},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use at most this many validation rows"})
    max_duration: float = field(default=MAX_AUDIO_SECONDS, metadata={"help": "longest usable row in seconds"})
    strict: bool = field(default=False, metadata={"help": "stop on any bad row instead of skipping it"})
    allow_empty_text: bool = field(
        default=False,
        metadata={"help": 'train rows with empty text as audio without speech (else only rows with "no_speech": true)'},
    )
    metric: str | None = field(
        default=None, metadata={"help": "cer or wer, for choosing the best checkpoint (default: by language)"}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'auto' for the last in output_dir"}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start afresh where output_dir holds an earlier run's checkpoints, deleting them"},
    )
    seed: int = field(default=42, metadata={"help": "random seed"})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, both (comma list) or none"})
    use_wandb: bool = field(
        default=False,
        metadata={"help": "also report to Weights & Biases (WANDB_MODE=offline works without an account)"},
    )
    wandb_project: str = field(default="whisper-lora", metadata={"help": "Weights & Biases project"})
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "processes decoding audio for the trainer (0 keeps the encoder cache)"}
    )
    encoder_cache_gb: float = field(
        default=2.0, metadata={"help": "memory for frozen-encoder outputs reused across epochs (0: off)"}
    )
    objective: str = field(
        default="transcribe",
        metadata={
            "choices": OBJECTIVES,
            "help": "transcribe: learn the rows' transcripts; short_context: learn to read short encoder windows "
            "(--short_window) as the model reads 30 s ones, by distillation from the model itself",
        },
    )

    def __post_init__(self):
        problems = task_and_language_problems(self.task, self.language)
        if self.language is not None:
            self.language = normalize_language(self.language) or self.language
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"--precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.metric not in (None, "cer", "wer"):
            problems.append(f"--metric must be cer or wer, not {self.metric!r}")
        problems += _target_problems(self) + _objective_problems(self) + _regularizer_problems(self)
        if self.replay_fraction <= 0:
            problems.append("--replay_fraction must be more than 0")
        if not 0.0 <= self.timestamp_fraction <= 1.0:
            problems.append("--timestamp_fraction must be between 0 and 1")
        if self.per_device_train_batch_size is None:
            self.per_device_train_batch_size = 1 if self.pack_rows > 1 else 4
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "lora_r",
            "save_steps",
            "logging_steps",
            "pack_rows",
        ):
            if getattr(self, name) < 1:
                problems.append(f"--{name} must be at least 1")
        self.eval_steps = self.eval_steps or self.save_steps
        if self.validation_file and self.save_steps % self.eval_steps:
            problems.append(
                f"--save_steps ({self.save_steps}) must be a multiple of --eval_steps ({self.eval_steps}) to keep the best checkpoint"
            )
        if problems:
            raise UserError("; ".join(problems))

    def perturbations(self) -> tuple[str, ...]:
        """The --perturb kinds, in order."""
        return tuple(kind.strip() for kind in self.perturb.split(",") if kind.strip())

    def reporters(self) -> list[str]:
        names = [] if self.report_to == "none" else [n.strip() for n in self.report_to.split(",") if n.strip()]
        if self.use_wandb and "wandb" not in names:
            names.append("wandb")
        return names


def _objective_problems(config: TrainConfig) -> list[str]:
    if config.objective not in OBJECTIVES:
        return [f"--objective must be one of {', '.join(OBJECTIVES)}, not {config.objective!r}"]
    if config.objective == "short_context" and config.spec_augment:
        return ["--spec_augment with --objective short_context: the teacher must hear what the student hears"]
    return []


def _target_problems(config: TrainConfig) -> list[str]:
    if config.encoder_layers is not None and config.encoder_layers < 0:
        return ["--encoder_layers must be 0 or more"]
    if config.target_modules == "encoder" and config.encoder_layers == 0:
        return ["--target_modules encoder with --encoder_layers 0 adapts nothing: name at least one layer"]
    return []


def _regularizer_problems(config: TrainConfig) -> list[str]:
    problems = [
        f"--perturb: {kind!r} is not one of {', '.join(PERTURBATIONS)}"
        for kind in config.perturbations()
        if kind not in PERTURBATIONS
    ]
    if not 0.0 <= config.label_smoothing < 1.0:
        problems.append("--label_smoothing must be at least 0 and less than 1")
    if config.average_checkpoints < 1:
        problems.append("--average_checkpoints must be at least 1")
    if config.average_checkpoints > 1 and config.validation_file:
        problems.append("--average_checkpoints with --validation_file: the best checkpoint is kept, choose one")
    if config.average_checkpoints > config.save_total_limit + 1:
        problems.append(f"--average_checkpoints needs --save_total_limit {config.average_checkpoints - 1} or more")
    if config.early_stopping_patience is not None and not config.validation_file:
        problems.append("--early_stopping_patience needs --validation_file, the rows it watches")
    if config.decoder_lr_scale <= 0:
        problems.append(
            "--decoder_lr_scale must be more than 0: to leave the decoder alone, use --target_modules encoder"
        )
    if not 0 <= config.decoder_scale <= 1:
        problems.append("--decoder_scale must be from 0 to 1: the share of the decoder adapters' change kept")
    if config.decoder_scale != 1 and config.use_dora:
        problems.append("--decoder_scale with --use_dora: a DoRA adapter's change does not scale, choose one")
    return problems


def target_modules(spec: str, encoder_layers: int | None = None, total_encoder_layers: int = 6) -> str | list[str]:
    """Map a preset name or comma list to what peft's LoraConfig takes; anything else is a regex."""
    if spec in ("default", "encoder"):
        first = 0 if encoder_layers is None else max(total_encoder_layers - encoder_layers, 0)
        top = "|".join(str(i) for i in range(first, total_encoder_layers))
        parts = [f"model\\.encoder\\.layers\\.({top})\\.{LINEAR}"] if top else []
        return "|".join(parts + [CROSS_ATTENTION] * (spec == "default"))
    spec = TARGET_PRESETS.get(spec, spec)
    return spec.split(",") if "," in spec or spec.isidentifier() else spec


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX or AVX512-BF16), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def mixed_precision(config: TrainConfig) -> dict:
    """fp16/bf16 TrainingArguments for this machine; fp16 without CUDA falls back to bf16 with a warning."""
    cuda = torch.cuda.is_available()
    if config.fp16 and not cuda:
        cpu_bf16 = cpu_has_bf16()
        log.warning("--fp16 needs CUDA; %s", "using bf16 autocast on this CPU" if cpu_bf16 else "training in float32")
        return {"bf16": cpu_bf16}
    if config.fp16 or config.bf16:
        return {"fp16": config.fp16, "bf16": config.bf16}
    return {"bf16": config.precision == "bf16" or (config.precision == "auto" and not cuda and cpu_has_bf16())}


def _rows(files, tokenizer, config: TrainConfig, limit: int | None, what: str) -> tuple[list[Row], list[float]]:
    """The usable rows of files, at most limit, and their durations in seconds."""
    report = usable_report(
        files,
        tokenizer,
        strict=config.strict,
        log=lambda line: print(f"{what}: {line}"),
        max_seconds=config.max_duration,
        allow_empty_text=config.allow_empty_text,
    )
    usable = report.ok[:limit] if limit else report.ok
    return [row for row, _ in usable], [seconds for _, seconds in usable]


class ForgettingGuard:
    """Scores the --regression_file rows before training (the base model) and after; warns when one gets worse."""

    TOLERANCE = 0.01  # one point of CER or WER

    def __init__(self, scorer: ModelScorer):
        self.scorer = scorer
        self.base: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def measure(self, model) -> dict[str, float]:
        """This model's error rate per language, as eval_regression_{language}_{metric}; the first call is the base."""
        scores = {f"{language}_{s['metric']}": s["score"] for language, s in self.scorer.by_language(model).items()}
        if not self.base:
            self.base = scores
            log.info("regression rows, base model: %s", ", ".join(f"{k} {v:.2%}" for k, v in scores.items()))
        for key in self.worse(scores):
            score = scores[key]
            log.warning(
                "forgetting: %s on --regression_file is %.2f%%, %.1f points worse than the base model's %.2f%%. "
                "Remedies: --replay_file with speech of that language (the base model's own transcripts are "
                "trained on beside yours), fewer --num_train_epochs or a lower --learning_rate, or fewer --encoder_layers",
                key,
                100 * score,
                100 * (score - self.base[key]),
                100 * self.base[key],
            )
        self.last = scores
        return {f"regression_{key}": score for key, score in scores.items()}

    def worse(self, scores: dict[str, float]) -> list[str]:
        """The keys of scores more than TOLERANCE above the base model's."""
        return [key for key, score in scores.items() if score > self.base[key] + self.TOLERANCE]

    def summary(self) -> dict:
        return {"base": self.base, "final": self.last, "worse": self.worse(self.last)}


class WhisperLoraTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer that runs the encoder's top layers on cached stem outputs and adds CER/WER to evaluation."""

    def __init__(
        self,
        *args,
        scorer: ModelScorer | None = None,
        stem_depth: int = 0,
        guard: ForgettingGuard | None = None,
        objective: str = "transcribe",
        decoder_lr_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.scorer, self.stem_depth, self.guard, self.objective = scorer, stem_depth, guard, objective
        self.decoder_lr_scale = decoder_lr_scale

    def create_optimizer(self, model=None):
        """Transformers' optimizer, with the decoder's parameters in groups of their own at the scaled rate."""
        created = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        if created or self.decoder_lr_scale == 1.0:
            return optimizer
        named = self.model if model is None else model
        decoder = {id(p) for name, p in named.named_parameters() if ".decoder." in name}
        groups = [dict(group) for group in optimizer.param_groups]
        optimizer.param_groups.clear()
        for group in groups:
            for in_decoder in (False, True):
                params = [p for p in group["params"] if (id(p) in decoder) == in_decoder]
                lr = group["lr"] * (self.decoder_lr_scale if in_decoder else 1.0)
                if params:
                    optimizer.add_param_group({**group, "params": params, "lr": lr})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.objective == "short_context":
            with self.accelerator.autocast():
                loss = distillation_loss(
                    self.accelerator.unwrap_model(model), inputs, draw_positions(inputs["audio_samples"])
                )
            return (loss, None) if return_outputs else loss
        stem = inputs.pop("encoder_stem", None)
        if stem is not None:
            encoder = self.accelerator.unwrap_model(model).get_base_model().model.encoder
            with self.accelerator.autocast():
                inputs["encoder_outputs"] = (encoder_top(encoder, stem, self.stem_depth),)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        scores = self.scorer(self.model) if self.scorer is not None else {}
        scores.update(self.guard.measure(self.model) if self.guard is not None else {})
        scores = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
        if scores:
            self.log(scores)
            metrics.update(scores)
        return metrics


class InterruptCallback(TrainerCallback):
    """Ctrl-C saves a checkpoint at the end of the current step and stops; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested, self.previous = False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: saving a checkpoint after this step (Ctrl-C again to abort)", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class LineProgress(TrainerCallback):
    """Progress as whole lines for logs that are not a terminal (CI, nohup): steps done, with the time left.

    On a terminal the Trainer's own bar shows the same (disable_tqdm is off there, see _arguments); its
    carriage returns would make a log file unreadable.
    """

    def __init__(self, write=print):
        self.write, self.first_step = write, 0
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if args.disable_tqdm:
            self.first_step = state.global_step
            total = max(state.max_steps - state.global_step, 1)
            self.progress = Progress(total, "training", "step", write=self.write, terminal=False)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.done = state.global_step - self.first_step

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()


def checkpoint_step(folder: Path) -> int:
    """The training step a checkpoint-N folder was saved at."""
    return int(folder.name.split("-")[-1])


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The checkpoint-N folders in output_dir, the newest first."""
    found = [path for path in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", path.name)]
    return sorted(found, key=checkpoint_step, reverse=True)


def _saved_state(folder: Path) -> dict | None:
    """A checkpoint's trainer_state.json, or None where it is missing or cut short."""
    try:
        return json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint whose trainer_state.json (written last by the Trainer) is whole.

    A process killed while saving leaves a checkpoint folder without it; resuming from that would fail.
    """
    for folder in checkpoints(output_dir):
        if _saved_state(folder) is not None:
            return folder
        print(f"skipping {folder}: incomplete (the run stopped while saving it)")
    return None


def _clear_earlier_run(config: TrainConfig) -> None:
    """Refuse to start afresh beside an earlier run's checkpoints, which the Trainer's rotation would delete.

    --overwrite_output_dir deletes them first; --resume_from_checkpoint goes on from them.
    """
    earlier = checkpoints(config.output_dir)
    if config.resume_from_checkpoint is not None or not earlier:
        return
    if not config.overwrite_output_dir:
        names = ", ".join(folder.name for folder in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise UserError(
            f"{config.output_dir} holds checkpoints of an earlier run ({names}): go on from them with "
            "--resume_from_checkpoint auto, start afresh with --overwrite_output_dir (deletes them), "
            "or choose another --output_dir"
        )
    for folder in earlier:
        shutil.rmtree(folder, ignore_errors=True)  # every DDP process tries; the first one deletes
    print(f"--overwrite_output_dir: deleted {len(earlier)} checkpoint(s) of an earlier run in {config.output_dir}")


def _resume_path(config: TrainConfig) -> str | None:
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint != "auto":
        if not (Path(config.resume_from_checkpoint) / "trainer_state.json").is_file():
            raise UserError(f"{config.resume_from_checkpoint}: not a complete checkpoint (no trainer_state.json)")
        return config.resume_from_checkpoint
    last = last_complete_checkpoint(config.output_dir)
    print(f"resuming from {last}" if last else f"no checkpoint in {config.output_dir}; starting afresh")
    return str(last) if last else None


def _arguments(config: TrainConfig, has_eval: bool, metric: str) -> Seq2SeqTrainingArguments:
    reporters = config.reporters()
    if "wandb" in reporters:
        require("wandb", "--use_wandb")
        os.environ.setdefault("WANDB_PROJECT", config.wandb_project)
    evaluation = (
        dict(
            eval_strategy="steps",
            eval_steps=config.eval_steps,
            load_best_model_at_end=True,
            metric_for_best_model=metric,
            greater_is_better=False,
        )
        if has_eval
        else {"eval_strategy": "no"}
    )
    return Seq2SeqTrainingArguments(
        output_dir=config.output_dir,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size or 1,  # __post_init__ has set it
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=schedule.learning_rate(
            config.learning_rate,
            config.per_device_train_batch_size or 1,
            config.gradient_accumulation_steps,
            world_size(),
            config.pack_rows,
        ),
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=0,  # set once the windows are counted (_warm_up)
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        report_to=reporters or "none",
        disable_tqdm=not sys.stderr.isatty(),  # then LineProgress writes whole lines, and the Trainer prints its logs
        seed=config.seed,
        label_smoothing_factor=config.label_smoothing,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=config.dataloader_num_workers,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without use_cpu, torchrun's CPU processes each train alone instead of joining one gloo group.
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and world_size() > 1 else None,
        **mixed_precision(config),
        **evaluation,
    )


def world_size() -> int:
    """Processes training together (torchrun's WORLD_SIZE), 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _warm_up(arguments: Seq2SeqTrainingArguments, config: TrainConfig, windows: int) -> None:
    """Set the warm-up for this run's updates, and say the schedule; warn where the warm-up outlasts the run."""
    total = schedule.updates(
        windows,
        arguments.per_device_train_batch_size,
        arguments.gradient_accumulation_steps,
        world_size(),
        config.num_train_epochs,
    )
    arguments.warmup_steps = schedule.warmup_steps(config.warmup_steps, total)
    decoder = (
        ""
        if config.decoder_lr_scale == 1
        else f" ({arguments.learning_rate * config.decoder_lr_scale:.2g} for the decoder)"
    )
    print(
        f"train: {total} updates, learning rate {arguments.learning_rate:.2g}{decoder} "
        f"after {arguments.warmup_steps} of warm-up"
    )
    if arguments.warmup_steps >= total:
        log.warning(
            "--warmup_steps %d is not shorter than the run's %d updates: the learning rate never reaches %.2g",
            arguments.warmup_steps,
            total,
            arguments.learning_rate,
        )


def _apply_lora(model, config: TrainConfig):
    """The model with peft's LoRA layers on the configured targets, their dropout fused into the A projection."""
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules(config.target_modules, config.encoder_layers, model.config.encoder_layers),
        use_dora=config.use_dora,
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        raise UserError(f"--target_modules {config.target_modules!r}: {error}") from None
    fuse_lora_dropout(model)
    return model


def frozen_depth(encoder) -> int:
    """How many leading encoder layers (with the convolutions and positions) have nothing to train."""
    stem = [encoder.conv1, encoder.conv2, encoder.embed_positions]
    if any(p.requires_grad for module in stem for p in module.parameters()):
        return 0
    trains = [any(p.requires_grad for p in layer.parameters()) for layer in encoder.layers]
    return trains.index(True) if True in trains else len(trains)


def _stem_cache(model, config: TrainConfig, bf16: bool) -> EncoderStemCache | None:
    """A cache of the frozen lower encoder's outputs, when there is one and the data loads in this process."""
    encoder = model.get_base_model().model.encoder
    depth = frozen_depth(encoder)
    if depth == 0 or config.encoder_cache_gb <= 0 or config.dataloader_num_workers > 0:
        return None
    return EncoderStemCache(encoder, depth, int(config.encoder_cache_gb * 2**30), bf16=bf16)


def _augment(model, config: TrainConfig, cache: EncoderStemCache | None) -> None:
    """Turn on transformers' SpecAugment masking where asked; refuse augmentation that the encoder cache would skip."""
    flags = [
        name for name, on in (("--spec_augment", config.spec_augment), ("--perturb", config.perturbations())) if on
    ]
    if flags and cache is not None:
        raise UserError(
            f"{' and '.join(flags)} change what the encoder reads at every step, which the frozen-encoder cache "
            "skips: adapt every encoder layer (the default --encoder_layers) or set --encoder_cache_gb 0"
        )
    if config.spec_augment:
        model.get_base_model().config.update(
            {
                "apply_spec_augment": True,
                "mask_time_prob": 0.05,
                "mask_time_length": 10,
                "mask_feature_prob": 0.05,
                "mask_feature_length": 10,
            }
        )


def _start(config: TrainConfig) -> None:
    """Seed, refuse what would fail or lose work later (a bad model name, an earlier run's checkpoints), set glibc."""
    set_seed(config.seed)
    resolve_model(config.model_name_or_path)  # a bad name fails before the data is read
    _clear_earlier_run(config)
    map_large_allocations()


def train(config: TrainConfig) -> dict:
    """Fine-tune, save the adapter, processor, config, metrics.json and training_curves.png to output_dir."""
    _start(config)
    memory = MemoryProfile("train")
    tokenizer = load_tokenizer(config.model_name_or_path, config.cache_dir)
    train_rows, seconds, eval_rows, metric = _read_rows(config, tokenizer)
    memory.mark("reading the rows")
    model, processor = load_whisper(config.model_name_or_path, cache_dir=config.cache_dir)
    model = _apply_lora(model, config)
    memory.mark("loading the model")
    replay, replay_seconds = _replay_rows(config, tokenizer, processor, model, len(train_rows))
    train_rows, seconds = train_rows + replay, seconds + replay_seconds
    options = LabelOptions(
        config.language,
        config.task,
        config.timestamp_fraction,
        config.seed,
        multilingual=bool(model.generation_config.is_multilingual),
    )
    arguments = _arguments(config, bool(eval_rows), metric)
    distilling = config.objective == "short_context"
    cache = None if distilling else _stem_cache(model, config, bf16=arguments.bf16)  # the student's windows vary
    _augment(model, config, cache)
    windows = pack_rows(train_rows, seconds, tokenizer, options, config.pack_rows)
    print(f"train: {len(train_rows)} rows in {len(windows)} windows of up to {config.pack_rows}")
    _warm_up(arguments, config, len(windows))
    train_set = SpeechDataset(
        train_rows, processor, options, cache, windows, with_lengths=distilling, perturbations=config.perturbations()
    )
    scoring = LabelOptions(config.language, config.task, 0.0, config.seed, options.multilingual)
    eval_set = SpeechDataset(eval_rows, processor, scoring, with_lengths=distilling)
    guard = _guard(config, tokenizer, processor, model)
    memory.mark("preparing the data" + (" and the base model's scores" if replay or guard else ""))
    interrupt = InterruptCallback()
    trainer = WhisperLoraTrainer(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=eval_set if eval_rows else None,
        data_collator=SpeechCollator(processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")),
        processing_class=processor.feature_extractor,
        callbacks=[interrupt, LineProgress(), *_stopping(config)],
        scorer=ModelScorer(eval_rows, processor, config.per_device_eval_batch_size, config.language, config.task)
        if eval_rows
        else None,
        stem_depth=cache.depth if cache else 0,
        guard=guard,
        decoder_lr_scale=config.decoder_lr_scale,
        objective=config.objective,
    )
    started = time.perf_counter()
    result, final = _fit(trainer, config, interrupt, guard, bool(eval_rows), memory)
    if trainer.is_world_process_zero():
        elapsed = time.perf_counter() - started
        metrics = _save_outputs(trainer, processor, config, result, final, metric, elapsed, guard)
        memory.mark("saving")
        metrics["memory_mb"] = memory.stages
        write_json_atomic(Path(config.output_dir) / "metrics.json", metrics)
        return metrics
    return {}


class ScoredEarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, on the CER/WER that WhisperLoraTrainer.evaluate logs after the loss."""

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        pass  # these metrics hold only the loss: the scores come to on_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and f"eval_{args.metric_for_best_model}" in logs:
            super().on_evaluate(args, state, control, logs, **kwargs)


def _stopping(config: TrainConfig) -> list[TrainerCallback]:
    if config.early_stopping_patience is None:
        return []
    return [ScoredEarlyStopping(early_stopping_patience=config.early_stopping_patience)]


def _read_rows(config: TrainConfig, tokenizer) -> tuple[list[Row], list[float], list[Row], str]:
    """The usable training rows and their seconds, the validation rows, and the metric they are scored by."""
    train_rows, seconds = _rows(config.train_file, tokenizer, config, config.max_train_samples, "train")
    eval_rows = (
        _rows(config.validation_file, tokenizer, config, config.max_eval_samples, "validation")[0]
        if config.validation_file
        else []
    )
    languages = {row.language or config.language for row in train_rows + eval_rows}
    metric = config.metric or default_metric(config.language or (languages.pop() if len(languages) == 1 else None))
    return train_rows, seconds, eval_rows, metric


def _fit(
    trainer, config: TrainConfig, interrupt, guard: ForgettingGuard | None, has_eval: bool, memory: MemoryProfile
) -> tuple:
    """Train (resuming when asked), then the final validation scores; TrainingInterrupted on Ctrl-C or SIGTERM."""
    result = trainer.train(resume_from_checkpoint=_resume_path(config))
    memory.mark("training")
    if interrupt.requested:
        raise TrainingInterrupted(
            f"stopped at step {trainer.state.global_step}; the checkpoint is in {config.output_dir}. "
            "Resume with --resume_from_checkpoint auto"
        )
    if config.average_checkpoints > 1:
        _average(trainer, config)
    if config.decoder_scale != 1:
        scaled = scale_adapters(trainer.model, ".decoder.", config.decoder_scale)
        print(f"kept {config.decoder_scale:g} of what the decoder's {scaled} adapters learned (--decoder_scale)")
    final = _final_evaluation(trainer, scaled=config.decoder_scale != 1) if has_eval else {}
    if guard is not None and not has_eval:
        trainer.log({f"eval_{k}": v for k, v in guard.measure(trainer.model).items()})
    if has_eval or guard is not None:
        memory.mark("the final evaluation")
    return result, final


def _average(trainer, config: TrainConfig) -> None:
    """The adapter averaged over the end of training and the checkpoints saved before it, the last first."""
    step = trainer.state.global_step
    chosen: list[Path] = []
    for folder in checkpoints(config.output_dir):
        if len(chosen) == config.average_checkpoints - 1:
            break
        if checkpoint_step(folder) < step and _same_run(folder, trainer.state.log_history):
            chosen.append(folder)
    count = average_adapters(trainer.model, chosen)
    steps = [step, *map(checkpoint_step, chosen)]
    print(f"averaged the adapter over {count} points of training (steps {', '.join(map(str, steps))})")
    if count < config.average_checkpoints:
        print(
            f"  --average_checkpoints {config.average_checkpoints}: only {count - 1} checkpoint(s) came before the "
            f"end; a smaller --save_steps saves more"
        )


def _same_run(folder: Path, log_history: list[dict]) -> bool:
    """Whether a checkpoint is whole and was saved by this run (its log is the start of this run's), else say why not."""
    state = _saved_state(folder)
    if state is None or not (folder / "adapter_model.safetensors").is_file():
        print(f"  not averaging {folder}: incomplete (a run stopped while saving it)")
        return False
    saved = state.get("log_history", [])
    if saved != log_history[: len(saved)]:
        print(f"  not averaging {folder}: an earlier run saved it (its losses are not this run's)")
        return False
    return True


def _guard(config: TrainConfig, tokenizer, processor, model) -> ForgettingGuard | None:
    """The forgetting guard over --regression_file, with the base model's scores taken now (LoRA starts at zero)."""
    if not config.regression_file:
        return None
    rows, _ = _rows(config.regression_file, tokenizer, config, config.max_eval_samples, "regression")
    scorer = ModelScorer(rows, processor, config.per_device_eval_batch_size, config.language, config.task)
    guard = ForgettingGuard(scorer)
    guard.measure(model)
    return guard


def _replay_rows(config: TrainConfig, tokenizer, processor, model, train_rows: int) -> tuple[list[Row], list[float]]:
    """--replay_file rows relabelled with the base model's own transcripts (LoRA starts at zero), as many as asked."""
    if not config.replay_file:
        return [], []
    check = replace(config, allow_empty_text=True)
    rows, seconds = _rows(config.replay_file, tokenizer, check, None, "replay")
    wanted = min(len(rows), max(1, round(config.replay_fraction * train_rows)))
    chosen = sorted(random.Random(config.seed).sample(range(len(rows)), wanted))
    picked = [replace(rows[i], segments=None, window=None, no_speech=False) for i in chosen]
    texts = ModelScorer(picked, processor, config.per_device_eval_batch_size, config.language).transcripts(model)
    kept = [i for i, text in enumerate(texts) if text.strip()]
    print(
        f"replay: {len(kept)} rows transcribed by the base model join the {train_rows} training rows"
        + (f" ({wanted - len(kept)} came out empty and are left out)" if len(kept) < wanted else "")
    )
    return [replace(picked[i], text=texts[i].strip()) for i in kept], [seconds[chosen[i]] for i in kept]


def _final_evaluation(trainer, scaled: bool) -> dict:
    """Scores at the last step: logged already when the Trainer evaluated there and scaled nothing since, else measured now."""
    evals = [e for e in trainer.state.log_history if "eval_cer" in e]
    if evals and evals[-1].get("step") == trainer.state.global_step and not scaled:
        losses = [
            e for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == trainer.state.global_step
        ]
        return {**(losses[-1] if losses else {}), **evals[-1]}
    return trainer.evaluate()


def _save_outputs(
    trainer,
    processor,
    config: TrainConfig,
    result,
    final: dict,
    metric: str,
    seconds: float,
    guard: ForgettingGuard | None,
) -> dict:
    """Save the adapter, processor, configs and curves; the metrics, which the caller completes and writes."""
    out = Path(config.output_dir)
    trainer.model.save_pretrained(out)
    processor.save_pretrained(out)
    trainer.model.base_model.model.generation_config.save_pretrained(out)
    base = config.model_name_or_path or "base"
    base = str(Path(base).resolve()) if Path(base).exists() else base  # a folder, found from anywhere later
    info = {"base_model": base, "language": config.language, "task": config.task, "objective": config.objective}
    write_json_atomic(out / ADAPTER_INFO, info)
    write_json_atomic(out / "training_config.json", asdict(config))
    write_json_atomic(out / "trainer_state.json", asdict(trainer.state))
    metrics = _metrics(trainer, result, final, metric, seconds)
    if guard is not None:
        metrics["regression"] = guard.summary()
    scorer = trainer.scorer or (guard.scorer if guard is not None else None)
    if scorer is not None:
        metrics["scored_by"] = scorer.describe()
    _plot_curves(trainer.state.log_history, metric, out / "training_curves.png")
    return metrics


def _metrics(trainer, result, final: dict, metric: str, seconds: float) -> dict:
    evals = [entry for entry in trainer.state.log_history if f"eval_{metric}" in entry]
    best = min(evals, key=lambda entry: entry[f"eval_{metric}"]) if evals else {}
    return {
        "metric": metric,
        "final": {k: final.get(f"eval_{k}") for k in ("cer", "wer", "loss")},
        "best": {"step": best.get("step"), **{k: best.get(f"eval_{k}") for k in ("cer", "wer")}},
        "train_loss": result.training_loss,
        "train_samples_per_second": _rows_per_second(trainer, result),
        "train_runtime_seconds": result.metrics.get("train_runtime"),
        "total_seconds": seconds,
        "global_step": trainer.state.global_step,
        "world_size": trainer.args.world_size,
    }


def _rows_per_second(trainer, result) -> float | None:
    """Training rows per second; the Trainer counts examples, which are windows of several rows."""
    examples = result.metrics.get("train_samples_per_second")
    dataset = trainer.train_dataset
    return examples * len(dataset.rows) / len(dataset) if examples is not None else None


def _plot_curves(history: list[dict], metric: str, path: Path) -> None:
    figure = Figure(figsize=(10, 4))
    loss_axis, metric_axis = figure.subplots(1, 2)
    losses = [(e["step"], e["loss"]) for e in history if "loss" in e]
    series = {f"validation {metric.upper()}": f"eval_{metric}"}
    series.update(
        {
            f"regression {k.removeprefix('eval_regression_')}": k
            for e in history
            for k in e
            if k.startswith("eval_regression_")
        }
    )
    for label, key in series.items():
        points = [(e.get("step", 0), e[key]) for e in history if key in e]
        if points:
            metric_axis.plot(*zip(*points, strict=True), marker="o", label=label)
    if losses:
        loss_axis.plot(*zip(*losses, strict=True), marker="o")
    for axis, title in ((loss_axis, "training loss"), (metric_axis, "error rate")):
        axis.set_xlabel("step")
        axis.set_title(title)
    if metric_axis.lines:
        metric_axis.legend()
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
