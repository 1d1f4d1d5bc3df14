"""Does a fine-tune generalize? Our defaults against the textbook recipe, trained on the same rows in one run.

Each run fine-tunes the embedded whisper-base twice, each time in a fresh process:
- "voices": the demo's espeak-ng corpus (Mandarin and English, varied speed and pitch). Scored on held-out
  corpus rows (in-domain) and on sentences written apart from the corpus's templates, in the same voices
  (out-of-domain, `whisper_lora.data.sentences`).
- "recordings": recorded human speech (Debian's asterisk-core-sounds, `whisper_lora.data.realspeech`), Spanish
  and French training prompts; scored on the test prompts, which no training row shares.
Both adapters also decode real English recordings, a language neither trained on, against the base model
(forgetting). Samples/s is end to end: training rows x epochs over the wall time from model load to the
finished model. Peak RSS is the training process's. Finished runs are kept in WORKDIR/results and reused.

    whisper_lora_env/bin/python benchmarks/generalization.py [--runs base,recipe,ours] [--variant NAME:KEY=VALUE,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from results import write_result

from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.memory import peak_rss_mb
from whisper_lora.data.manifests import read_manifest
from whisper_lora.data.realspeech import write_manifests
from whisper_lora.demo.run import _scorer, build_corpus, build_out_of_domain

TASKS = ("voices", "recordings")
SCALES = {  # corpus rows (zh and en, train and test), out-of-domain sentences, and the corpus seed
    "full": {"zh": (240, 40), "en": (48, 12), "ood": {}, "seed": 0},
    "test": {
        "zh": (48, 20),
        "en": (0, 0),
        "ood": {"zh": 16, "en": 0},
        "seed": 3,
    },  # tests/integration/test_train_integration.py's
}


def datasets(workdir: Path, real_languages: list[str], real_rows: int, scale: str = "full") -> dict:
    """Train and score manifests: {task: train manifest}, {set name: test manifest}."""
    size, folder = SCALES[scale], workdir / f"corpus{suffix(scale)}"
    corpus_train, corpus_test = build_corpus(folder, zh=size["zh"], en=size["en"], seed=size["seed"])
    ood = build_out_of_domain(folder, seed=size["seed"], **size["ood"])
    real = write_manifests(tuple(sorted({*real_languages, "en"})))
    rows = []
    for language in real_languages:
        found = json.loads(real[f"{language}_train"].read_text(encoding="utf-8"))
        rows += random.Random(0).sample(found, min(real_rows, len(found)))
    recordings = write_json_atomic(workdir / "recordings_train.json", rows)
    tests = {"in-domain": corpus_test, "out-of-domain": ood, "forgetting": real["en_test"]}
    tests.update({f"real {language}": real[f"{language}_test"] for language in real_languages})
    return {"train": {"voices": corpus_train, "recordings": recordings}, "test": tests, "real": real}


def sets_for(task: str | None, tests: dict, tasks: tuple = TASKS) -> dict:
    """Which test sets score a task's adapter; the base model (task None) is scored on those of every task run."""
    if task is None:
        return {name: path for each in tasks for name, path in sets_for(each, tests).items()}
    if task == "voices":
        names: tuple = ("in-domain", "out-of-domain", "forgetting")
    else:
        names = tuple(n for n in tests if n.startswith("real ")) + ("forgetting",)
    return {name: tests[name] for name in names}


class RecipeDataset(torch.utils.data.Dataset):
    """The textbook recipe's examples: 30 s log-mel features and tokenizer(text) labels with the prefix."""

    def __init__(self, rows, processor):
        self.rows, self.processor = rows, processor

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        from whisper_lora.audio.decode import decode_audio

        row = self.rows[index]
        self.processor.tokenizer.set_prefix_tokens(language=row.language, task="transcribe")
        features = self.processor.feature_extractor(decode_audio(row.audio_path), sampling_rate=16000).input_features[0]
        return {"input_features": features, "labels": self.processor.tokenizer(row.text).input_ids}


def recipe_collator(processor, decoder_start_token_id):
    """DataCollatorSpeechSeq2SeqWithPadding from the Hugging Face fine-tuning blog post."""

    def collate(features):
        batch = processor.feature_extractor.pad(
            [{"input_features": f["input_features"]} for f in features], return_tensors="pt"
        )
        labels_batch = processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch

    return collate


RECIPE_SEED = 42


def train_recipe(manifest: Path, epochs: float, output_dir: Path):
    """Seq2SeqTrainer + peft as the Hugging Face recipe has it: r=8 on q_proj/v_proj everywhere, lr 5e-4, batch 4 x 2."""
    from peft import LoraConfig, get_peft_model
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed

    rows, _ = read_manifest(manifest)
    model, processor = load_whisper("base")
    set_seed(RECIPE_SEED)  # before LoRA's random init, which the Trainer's own seeding comes too late for
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.05)
    )
    arguments = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=5e-4,
        warmup_steps=10,
        num_train_epochs=epochs,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
        seed=RECIPE_SEED,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=arguments,
        train_dataset=RecipeDataset(rows, processor),
        data_collator=recipe_collator(processor, model.config.decoder_start_token_id),
    )
    trainer.train()
    return model.merge_and_unload().eval(), processor, len(rows)


def train_ours(manifest: Path, epochs: float, output_dir: Path, overrides: dict):
    """whisper-lora's train() with its defaults, or with overrides for a variant."""
    from whisper_lora.train.trainer import TrainConfig, train

    options = dict(num_train_epochs=epochs, save_steps=10_000, report_to="none", overwrite_output_dir=True)
    config = TrainConfig(train_file=[str(manifest)], output_dir=str(output_dir), **{**options, **overrides})
    train(config)
    model, processor = load_whisper(str(output_dir))
    return model, processor, len(read_manifest(manifest)[0])


def parse_value(text: str):
    """A --variant value as JSON where it parses (numbers, true/false), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_variants(specs: list[str]) -> dict[str, dict]:
    """--variant NAME:KEY=VALUE,... options as {name: TrainConfig overrides}; a value may hold commas."""
    variants = {}
    for spec in specs:
        name, _, settings = spec.partition(":")
        items = re.split(r",(?=\w+=)", settings)
        variants[name] = {k: parse_value(v) for k, v in (item.split("=", 1) for item in items if item)}
    return variants


RECIPE_EPOCHS = 2.0  # the textbook recipe as the issue defines it, whatever --epochs gives ours


def train_defaults(run: str) -> dict | None:
    """The defaults a run of ours trains with where not overridden: a kept run made under others is stale."""
    from whisper_lora.train import schedule
    from whisper_lora.train.trainer import TrainConfig

    if run in ("base", "recipe"):
        return None
    simple = (bool, int, float, str, type(None))
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig) if isinstance(f.default, simple)}
    return {**fields, "base_learning_rate": schedule.BASE_LEARNING_RATE}


# Options added since runs were first stamped, with the value that trains as runs did before them.
ADDED_SINCE_STAMPED = {"decoder_scale": 1.0}


def trained_alike(record: dict, run: str, overrides: dict | None) -> bool:
    """Whether a kept record was trained with these overrides under today's defaults."""
    stamped = record.get("defaults")
    if stamped is not None:
        stamped = {**ADDED_SINCE_STAMPED, **stamped}
    return record["overrides"] == overrides and stamped == train_defaults(run)


def epochs_of(args, run: str) -> float | None:
    """The epochs a run trains for: the recipe's own, else --epochs, else TrainConfig's default."""
    from whisper_lora.train.trainer import TrainConfig

    if run == "base":
        return None
    if run == "recipe":
        return RECIPE_EPOCHS
    return args.epochs or TrainConfig.__dataclass_fields__["num_train_epochs"].default


def run_one(args, run: str, task: str | None) -> dict:
    """Train (unless base) and score in this process; return the result record."""
    data = datasets(Path(args.workdir), args.real_languages, args.real_rows, args.scale)
    overrides = args.variants.get(run, {})
    started = time.perf_counter()
    if run == "base":
        model, processor = load_whisper("base")
        speed = None
    else:
        output_dir = Path(args.workdir) / "models" / f"{run}_{run_key(args, task)}"
        manifest = data["train"][task]
        if run == "recipe":
            model, processor, rows = train_recipe(manifest, RECIPE_EPOCHS, output_dir)
        else:
            replay = overrides.get("replay_file")  # a recorded set's name, such as en_train, or a manifest path
            files = {"replay_file": [str(data["real"].get(replay, replay))]} if replay else {}
            model, processor, rows = train_ours(manifest, epochs_of(args, run), output_dir, {**overrides, **files})
        speed = rows * epochs_of(args, run) / (time.perf_counter() - started)
    peak_gb = peak_rss_mb() / 1024
    scores = {
        name: _scorer(path, model, processor).by_language(model)
        for name, path in sets_for(task, data["test"], args.tasks).items()
    }
    return {
        "run": run,
        "task": task,
        "overrides": overrides,
        "epochs": epochs_of(args, run),
        "scale": args.scale,
        "samples_per_second": speed,
        "peak_rss_gb": peak_gb,
        "scores": {n: {str(k): v for k, v in s.items()} for n, s in scores.items()},
        "threads": torch.get_num_threads(),
        "defaults": train_defaults(run),
    }


def suffix(scale: str) -> str:
    return "" if scale == "full" else f"_{scale}"


def run_key(args, task: str | None) -> str:
    """What names a run's model and result: its task, scale and, where recordings are read, their languages."""
    key = (task or "zero-shot") + suffix(args.scale)
    return key if task == "voices" else f"{key}-{'-'.join(args.real_languages)}"


def result_path(args, run: str, task: str | None) -> Path:
    return Path(args.workdir) / "results" / f"{run}_{run_key(args, task)}.json"


def cached(args, run: str, task: str | None, tests: dict) -> dict | None:
    """The stored result of a run, if it was made with the same options and scored every set asked for now."""
    path = result_path(args, run, task)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    same_epochs = run == "base" or record["epochs"] == epochs_of(args, run)
    same = trained_alike(record, run, args.variants.get(run, {})) and same_epochs
    wanted = sets_for(task, tests, args.tasks)
    return record if same and set(wanted) <= set(record["scores"]) else None


def score(record: dict | None, set_name: str, language: str) -> str:
    entry = (record or {}).get("scores", {}).get(set_name, {}).get(language)
    return f"{entry['score']:.1%}" if entry else "-"


def coverage(train_manifest: Path, test_manifest: Path, language: str = "zh") -> str:
    """How much of a test set's text its training rows never say: distinct training characters, unseen test share."""

    def letters(manifest: Path) -> list[str]:
        rows = json.loads(manifest.read_text(encoding="utf-8"))
        return [c for row in rows if row.get("language") == language for c in row["text"] if c.isalpha()]

    seen, test = set(letters(train_manifest)), letters(test_manifest)
    unseen = sum(c not in seen for c in test) / max(1, len(test))
    return f"{len(seen)} distinct {language} characters in training; {unseen:.0%} of the out-of-domain ones never in it"


def print_table(args, records: dict) -> dict:
    """One line per run: speed, memory and every error rate; returned as a result table too."""
    columns = [
        ("in-domain", "zh", "voices"),
        ("in-domain", "en", "voices"),
        ("out-of-domain", "zh", "voices"),
        ("out-of-domain", "en", "voices"),
    ]
    columns += [(f"real {lang}", lang, "recordings") for lang in args.real_languages]
    columns += [("forgetting", "en", "voices"), ("forgetting", "en", "recordings")]
    heads = [  # "real es" names its language already; a starred column is the recordings adapter's
        name
        if name.startswith("real ")
        else f"{name.replace('out-of-domain', 'ood').replace('in-domain', 'in')} "
        f"{language}{'' if task == 'voices' else '*'}"
        for name, language, task in columns
    ]
    print(f"\nsamples/s and peak RSS: the {args.tasks[0]} training run")
    print(f"{'run':<12}{'samples/s':>10}{'peak RSS':>10}" + "".join(f"{h:>16}" for h in heads))
    rows = []
    for run in args.runs:
        trained = records.get((run, args.tasks[0])) if run != "base" else None  # speed and memory of the first task
        speed = f"{trained['samples_per_second']:.2f}" if trained else "-"
        rss = f"{trained['peak_rss_gb']:.2f} GB" if trained else "-"
        cells = [
            score(records.get(("base", None)) if run == "base" else records.get((run, task)), name, language)
            for name, language, task in columns
        ]
        print(f"{run:<12}{speed:>10}{rss:>10}" + "".join(f"{c:>16}" for c in cells))
        rows.append([run, speed, rss, *cells])
    legend = (
        "in/ood: espeak-ng voices (CER for zh, WER otherwise); real: recorded test prompts; forgetting: real English,"
        " decoded by the voices adapter (forgetting en) and by the recordings adapter (forgetting en*)"
    )
    print(legend)
    title = f"Fine-tuning, {', '.join(args.tasks)}, {args.scale} scale"
    return {"title": title, "columns": ["run", "samples/s", "peak RSS", *heads], "rows": rows, "legend": legend}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="generalization_output", help="corpus, models and results")
    parser.add_argument("--runs", default="base,recipe,ours", help="comma list: base, recipe, ours and variant names")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="our training with TrainConfig overrides, e.g. r8:lora_r=8,lora_alpha=16",
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help="voices, recordings or both")
    parser.add_argument("--real_languages", default="es,fr", help="recorded languages to train and test on")
    parser.add_argument("--real_rows", type=int, default=96, help="training prompts per recorded language")
    parser.add_argument(
        "--epochs", type=float, default=None, help="our runs' epochs (default: TrainConfig's); the recipe keeps 2"
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="voices corpus: full (288 rows) or test (the integration test's 48 Mandarin rows, minutes a run)",
    )
    parser.add_argument("--result", default=None, help="result file name (default: from --tasks and --scale)")
    parser.add_argument("--one", nargs=2, metavar=("RUN", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.runs, args.tasks = args.runs.split(","), args.tasks.split(",")
    args.real_languages = args.real_languages.split(",")
    args.variants = parse_variants(args.variant)
    if args.one:
        run, task = args.one
        task = None if task == "-" else task
        write_json_atomic(result_path(args, run, task), run_one(args, run, task))
        return
    data = datasets(Path(args.workdir), args.real_languages, args.real_rows, args.scale)  # built once, before the runs
    tests = data["test"]
    records = {}
    for run in args.runs:
        for task in [None] if run == "base" else args.tasks:
            record = cached(args, run, task, tests)
            if record is None:
                print(f"--- {run} {task or 'zero-shot'}", flush=True)
                command = [sys.executable, __file__, *sys.argv[1:], "--one", run, task or "-"]
                subprocess.run(command, check=True)
                record = cached(args, run, task, tests)
            records[(run, task)] = record
    table = print_table(args, records)
    notes = table.pop("legend")
    if "voices" in args.tasks:
        notes += ". " + coverage(data["train"]["voices"], data["test"]["out-of-domain"])
        print(coverage(data["train"]["voices"], data["test"]["out-of-domain"]))
    name = args.result or f"generalization-{'-'.join(args.tasks)}" + ("" if args.scale == "full" else f"-{args.scale}")
    write_result(name, table, notes)


if __name__ == "__main__":
    main()
