"""Short encoder windows for live transcription: the full 30 s window, a short window untrained, and with an adapter.

Trains a short-context adapter (`train --objective short_context`) on the language's recorded training prompts
(Debian's asterisk-core-sounds, `whisper_lora.data.realspeech`), then, for each of the three ways, transcribes the
held-out prompts one by one (error rate and seconds), and streams long files of held-out prompts at real speed
through the streaming engine (word-end-to-commit latency and streamed error rate beside the offline one).

    whisper_lora_env/bin/python benchmarks/short_window.py [--language en] [--epochs 3] [--files 2] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

from results import write_result
from stream_latency import build_files, offline_and_streamed  # benchmarks/ is on the path when a script in it runs

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.metrics import default_metric, error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.core.records import Clip, Runtime, TranscribeOptions
from whisper_lora.data.realspeech import prompts
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.train.trainer import TrainConfig, train


def train_adapter(folder: Path, language: str, epochs: float, rows: int) -> float:
    """Train the short-context adapter into folder/adapter (once); the training seconds, measured when trained."""
    done = folder / "adapter" / "training_seconds.json"
    if done.is_file():
        return json.loads(done.read_text())["seconds"]
    chosen = [p for p in prompts(language) if p.split == "train"]
    random.Random(0).shuffle(chosen)
    manifest = folder / "train.json"
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"audio_path": p.audio_path, "text": p.text, "language": language} for p in chosen[:rows]]
    manifest.write_text(json.dumps(entries, ensure_ascii=False))
    started = time.perf_counter()
    train(
        TrainConfig(
            train_file=[str(manifest)],
            output_dir=str(folder / "adapter"),
            objective="short_context",
            num_train_epochs=epochs,
            report_to="none",
            save_steps=10_000,
        )
    )
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"seconds": seconds, "rows": len(entries)}))
    return seconds


def prompt_clips(language: str) -> list[tuple[Clip, str]]:
    """The held-out prompts, each as one clip with its transcript."""
    chosen = [p for p in prompts(language) if p.split == "test"]
    return [(Clip(p.name, decode_audio(p.audio_path)), p.text) for p in chosen]


def one_by_one(transcriber: Transcriber, clips, options: TranscribeOptions) -> tuple[float, float]:
    """Error rate and seconds of transcribing each clip alone, as a live pass does."""
    started = time.perf_counter()
    said = [transcriber.clips([clip], options)[0].text for clip, _ in clips]
    seconds = time.perf_counter() - started
    language = options.language
    return error_rate([text for _, text in clips], said, default_metric(language), language), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "short_window"))
    parser.add_argument("--language", default="en")
    parser.add_argument("--rows", type=int, default=400, help="training prompts at most")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--files", type=int, default=2, help="long files streamed at real speed")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech per long file")
    args = parser.parse_args()
    workdir, language = Path(args.workdir), args.language
    train_seconds = train_adapter(workdir / language, language, args.epochs, args.rows)
    print(f"short-context adapter: trained in {train_seconds:.0f} s")
    adapter = str(workdir / language / "adapter")
    clips = prompt_clips(language)
    files = build_files(workdir / "long", language, args.files, args.seconds)[: args.files]
    audio_seconds = sum(len(clip.samples) for clip, _ in clips) / SAMPLE_RATE
    rows = []
    for label, model, short in (
        ("full 30 s window", None, False),
        ("short window, untrained", None, True),
        ("short window, short-context adapter", adapter, True),
    ):
        transcriber = Transcriber.run(Runtime(model_path=model), batch_size=1)
        options = TranscribeOptions(language=language, temperature=[0.0], short_window=short)
        clip_rate, clip_seconds = one_by_one(transcriber, clips, options)
        full_rate = one_by_one(transcriber, clips, replace(options, short_window=False))[0] if model else None
        streamed = offline_and_streamed(transcriber, files, language, speed=1.0, short_window=short)
        print(label, f"clips {clip_rate:.1%} in {clip_seconds:.0f} s;", streamed)
        rows.append(
            [
                label,
                f"{streamed['latency_p50']:.2f} s",
                f"{streamed['latency_p95']:.2f} s",
                f"{streamed['streamed_wer']:.1%}",
                f"{streamed['offline_wer']:.1%}",
                f"{clip_rate:.1%}" + (f" ({full_rate:.1%} at 30 s)" if full_rate is not None else ""),
                f"{audio_seconds / clip_seconds:.1f}",
            ]
        )
    columns = ["window", "latency p50", "latency p95", "WER streamed", "WER offline", "WER, prompts alone", "audio s/s"]
    table = {"title": "Short encoder windows for live transcription", "columns": columns, "rows": rows}
    notes = (
        f"base int8, ct2, {language}; adapter trained on {args.rows} recorded prompts at most for {args.epochs:g} "
        f"epochs in {train_seconds:.0f} s; {len(clips)} held-out prompts one by one, greedy; {len(files)} long files "
        "of held-out prompts streamed at real speed"
    )
    write_result(f"short_window-{language}", table, notes)


if __name__ == "__main__":
    main()
