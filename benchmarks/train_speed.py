"""Training speed and quality: the textbook HF recipe against whisper-lora's defaults, in one process.

Both train the embedded whisper-base on the same espeak-ng corpus rows (the demo's) and are scored by
the same greedy-generation CER/WER on the held-out test split. Prints samples/s, their ratio, peak RSS
of each phase, and the error rates.

    whisper_lora_env/bin/python benchmarks/train_speed.py [--train_rows 96] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from peft import LoraConfig, get_peft_model
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from whisper_lora.data import read_manifest
from whisper_lora.demo import _scorer, build_corpus
from whisper_lora.models import load_whisper
from whisper_lora.train import TrainConfig, train


class PeakRss:
    """Samples this process's resident memory in a thread; .peak_gb is the highest seen."""

    def __enter__(self):
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        process = psutil.Process()
        while self.running:
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def peak_gb(self) -> float:
        return self.peak / 2**30


class RecipeDataset(torch.utils.data.Dataset):
    """The textbook recipe's examples: 30 s log-mel features and tokenizer(text) labels with the prefix."""

    def __init__(self, rows, processor):
        self.rows, self.processor = rows, processor

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        from whisper_lora.audio import decode_audio

        row = self.rows[index]
        self.processor.tokenizer.set_prefix_tokens(language=row.language, task="transcribe")
        features = self.processor.feature_extractor(decode_audio(row.audio_path), sampling_rate=16000).input_features[0]
        return {"input_features": features, "labels": self.processor.tokenizer(row.text).input_ids}


def recipe_collator(processor, decoder_start_token_id):
    """DataCollatorSpeechSeq2SeqWithPadding from the Hugging Face fine-tuning blog post."""

    def collate(features):
        batch = processor.feature_extractor.pad([{"input_features": f["input_features"]} for f in features], return_tensors="pt")
        labels_batch = processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch

    return collate


def run_recipe(rows, epochs: float, output_dir: str):
    model, processor = load_whisper("base")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.05))
    arguments = Seq2SeqTrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=4, gradient_accumulation_steps=2, learning_rate=5e-4,
        warmup_steps=10, num_train_epochs=epochs, logging_steps=10, save_strategy="no", report_to="none",
        remove_unused_columns=False, label_names=["labels"], use_cpu=not torch.cuda.is_available(), seed=42,
    )  # fmt: skip
    trainer = Seq2SeqTrainer(model=model, args=arguments, train_dataset=RecipeDataset(rows, processor),
                             data_collator=recipe_collator(processor, model.config.decoder_start_token_id))  # fmt: skip
    result = trainer.train()
    return model.merge_and_unload().eval(), processor, result.metrics["train_samples_per_second"]


def run_ours(train_manifest: Path, epochs: float, output_dir: str):
    metrics = train(TrainConfig(train_file=[str(train_manifest)], output_dir=output_dir, num_train_epochs=epochs,
                                save_steps=10_000, report_to="none"))  # fmt: skip
    model, processor = load_whisper(output_dir)
    return model, processor, metrics["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="demo_output", help="where the demo corpus is (made if missing)")
    parser.add_argument("--train_rows", type=int, default=96, help="training rows for both runs")
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    train_manifest, test_manifest = build_corpus(Path(args.workdir) / "corpus")
    rows, _ = read_manifest(train_manifest)
    rows = random.Random(0).sample(rows, min(args.train_rows, len(rows)))  # both languages, as in the demo
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        subset = Path(scratch) / "train.json"
        subset.write_text(json.dumps([{"audio_path": r.audio_path, "text": r.text, "language": r.language} for r in rows]))
        for name, run in (("recipe", lambda: run_recipe(rows, args.epochs, f"{scratch}/recipe")),
                          ("whisper-lora", lambda: run_ours(subset, args.epochs, f"{scratch}/ours"))):  # fmt: skip
            with PeakRss() as rss:
                model, processor, speed = run()
            scores = _scorer(test_manifest, model, processor).by_language(model)
            results[name] = {"samples_per_second": speed, "peak_rss_gb": rss.peak_gb, "scores": scores}
            del model
    print(f"\n{len(rows)} training rows x {args.epochs:g} epochs, torch threads {torch.get_num_threads()}")
    print(f"{'run':<14}{'samples/s':>10}{'peak RSS':>10}  held-out error rates")
    for name, result in results.items():
        scores = "  ".join(f"{lang} {s['metric'].upper()} {s['score']:.1%}" for lang, s in result["scores"].items())
        print(f"{name:<14}{result['samples_per_second']:>10.2f}{result['peak_rss_gb']:>8.2f} GB  {scores}")
    ratio = results["whisper-lora"]["samples_per_second"] / results["recipe"]["samples_per_second"]
    print(f"speed ratio whisper-lora / recipe: {ratio:.2f}x (target >= 2.5x)")


if __name__ == "__main__":
    main()
