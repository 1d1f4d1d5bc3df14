"""Inference speed and quality: whisper-lora's default path against faster-whisper and the transformers pipeline.

All three decode the same clips (the demo's held-out split) with the same model, greedily, with the
language given, and are scored with the same normalisation as training. Prints audio seconds per wall
second, the ratio to faster-whisper's sequential int8 throughput, and WER/CER; then the same for one
long file made by joining the Mandarin clips with pauses.

    whisper_lora_env/bin/python benchmarks/infer_speed.py [--workdir demo_output] [--model_path M]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from whisper_lora.audio import SAMPLE_RATE
from whisper_lora.backends import Clip, Transcriber
from whisper_lora.data import Row
from whisper_lora.demo import build_corpus
from whisper_lora.evaluate import load_test_rows, run_model, score
from whisper_lora.fast import ct2_folder
from whisper_lora.transcribe import TranscribeOptions


def faster_whisper_sequential(folder: Path, rows: list[Row], clips: list[Clip], beam_size: int) -> tuple[list[str], float]:
    """faster-whisper used directly, one clip after another, int8 on the CPU."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type="int8")
    started, texts = time.perf_counter(), []
    for row, clip in zip(rows, clips):
        segments, _ = model.transcribe(clip.samples, language=row.language, beam_size=beam_size, without_timestamps=True)
        texts.append(("" if row.language == "zh" else " ").join(s.text.strip() for s in segments))
    return texts, time.perf_counter() - started


def transformers_pipeline(model_path: str | None, rows: list[Row], clips: list[Clip]) -> tuple[list[str], float]:
    """transformers' automatic-speech-recognition pipeline on the merged model, batch 8, fp32 on the CPU."""
    from transformers import pipeline

    from whisper_lora.models import load_whisper

    model, processor = load_whisper(model_path)
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                   feature_extractor=processor.feature_extractor, device="cpu")  # fmt: skip
    started, texts = time.perf_counter(), [""] * len(rows)
    for language in {row.language for row in rows}:
        indices = [i for i, row in enumerate(rows) if row.language == language]
        inputs = [{"raw": clips[i].samples, "sampling_rate": SAMPLE_RATE} for i in indices]
        with torch.inference_mode():
            outputs = asr(inputs, batch_size=8, generate_kwargs={"language": language, "task": "transcribe"})
        for i, output in zip(indices, outputs):
            texts[i] = output["text"].strip()
    return texts, time.perf_counter() - started


def report(name: str, rows: list[Row], texts: list[str], seconds: float, audio: float, reference: float | None) -> float:
    """Print one line of figures and return the throughput in audio seconds per wall second."""
    speed = audio / seconds
    errors = "  ".join(f"{k} {100 * v:.1f}%" for k, v in score(rows, texts, None, None).items())
    ratio = f"{speed / reference:5.2f}x" if reference else "    1x"
    print(f"{name:<40} {speed:7.1f} audio s/s  {ratio}  {errors}")
    return speed


def long_file(model_path, folder: Path, rows: list[Row], clips: list[Clip]) -> None:
    """One file of all the Mandarin clips with 0.7 s pauses: ours against faster-whisper, both sequential 30 s."""
    from faster_whisper import WhisperModel

    picked = [i for i, row in enumerate(rows) if row.language == "zh"]
    pause = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([part for i in picked for part in (clips[i].samples, pause)])
    joined = [Row("long", 1, "long.wav", "".join(rows[i].text for i in picked), "zh")]
    seconds = len(audio) / SAMPLE_RATE
    print(f"\nlong file: {seconds:.0f} s of Mandarin")
    ours = Transcriber(model_path)
    started = time.perf_counter()
    text = ours.clips([Clip("long.wav", audio)], TranscribeOptions(language="zh"))[0].text
    elapsed = time.perf_counter() - started
    fw = WhisperModel(str(folder), device="cpu", compute_type="int8")
    started = time.perf_counter()
    segments, _ = fw.transcribe(audio, language="zh", beam_size=1)
    fw_text = "".join(s.text.strip() for s in segments)
    reference = report("faster-whisper, sequential int8", joined, [fw_text], time.perf_counter() - started, seconds, None)
    report("whisper-lora default (ct2)", joined, [text], elapsed, seconds, reference)


def main() -> None:
    """Build or reuse the demo corpus, then time each path on the same clips and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_output", help="the demo's folder (its corpus and model)")
    parser.add_argument("--model_path", default=None, help="default: workdir/model when trained, else base")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    test_file = workdir / "corpus" / "test.json"
    if not test_file.is_file():
        build_corpus(workdir / "corpus")
    model_path = args.model_path or (str(workdir / "model") if (workdir / "model" / "adapter_config.json").is_file() else "base")
    rows, clips = load_test_rows([str(test_file)])
    audio = sum(len(c.samples) for c in clips) / SAMPLE_RATE
    folder = ct2_folder(model_path)
    print(f"model {model_path}; {len(clips)} clips, {audio:.0f} s of audio, mean {audio / len(clips):.1f} s\n")
    texts, seconds = faster_whisper_sequential(folder, rows, clips, beam_size=1)
    reference = report("faster-whisper, sequential int8, beam 1", rows, texts, seconds, audio, None)
    texts, seconds = faster_whisper_sequential(folder, rows, clips, beam_size=5)
    report("faster-whisper, sequential int8, beam 5", rows, texts, seconds, audio, reference)
    run = run_model(Transcriber(model_path), rows, clips, None)
    report("whisper-lora default (ct2, packed)", rows, run.hypotheses, run.wall_seconds, audio, reference)
    run = run_model(Transcriber(model_path, batch_size=1), rows, clips, None)
    report("whisper-lora --batch_size 1", rows, run.hypotheses, run.wall_seconds, audio, reference)
    texts, seconds = transformers_pipeline(model_path, rows, clips)
    report("transformers pipeline, fp32, batch 8", rows, texts, seconds, audio, reference)
    long_file(model_path, folder, rows, clips)


if __name__ == "__main__":
    main()
