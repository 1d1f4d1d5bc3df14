"""Rows without speech: does training on them make held-out noise come out empty, and is speech left alone?

Three models decode the same held-out clips: the embedded whisper-base zero-shot, our defaults fine-tuned on
recorded Spanish prompts (Debian's asterisk-core-sounds, `whisper_lora.data.realspeech`), and the same run with
rows without speech added as a tenth of the training rows ("no_speech": true: noise, tone melodies, near
silence). Scored on the Spanish test prompts (WER) and on non-speech clips made with other seeds, lengths and
levels, one kind of them (chords) never seen in training. Decoded the way users decode: whisper-lora's
default path (CTranslate2, packed) and --batch_size 1, speech and noise clips mixed in one list (es WER), and
the speech clips alone (alone).

    whisper_lora_env/bin/python benchmarks/no_speech.py [--workdir DIR] [--speech_rows 120] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from results import write_result

from whisper_lora.audio.noise import KINDS, non_speech, write_wav
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.data.realspeech import write_manifests

TRAIN_KINDS = KINDS[:4]
HELD_OUT_KINDS = KINDS  # chords are never trained on


def non_speech_rows(folder: Path, kinds: tuple, count: int, seed: int) -> list[dict]:
    """count rows without speech, kinds in turn, 2 to 12 s each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        path = write_wav(
            folder / f"{kind.replace(' ', '_')}_{seed}_{i}.wav", non_speech(kind, rng.uniform(2, 12), seed * 1000 + i)
        )
        rows.append({"audio_path": path, "text": "", "no_speech": True, "kind": kind})
    return rows


def datasets(workdir: Path, speech_rows: int) -> dict:
    """The training manifests (speech only, and with a tenth of rows without speech) and the held-out rows."""
    real = write_manifests(("es",))
    speech = json.loads(real["es_train"].read_text(encoding="utf-8"))
    speech = random.Random(0).sample(speech, min(speech_rows, len(speech)))
    silent = non_speech_rows(workdir / "train_audio", TRAIN_KINDS, max(1, len(speech) // 9), seed=1)
    return {
        "speech": write_json_atomic(workdir / "train_speech.json", speech),
        "with_no_speech": write_json_atomic(workdir / "train_with_no_speech.json", speech + silent),
        "test_speech": json.loads(real["es_test"].read_text(encoding="utf-8")),
        "test_non_speech": non_speech_rows(workdir / "test_audio", HELD_OUT_KINDS, 40, seed=2),
    }


def train_run(manifest: Path, output_dir: Path, epochs: float) -> tuple[str, float | None]:
    """Our defaults on the manifest; the model folder and the training time in seconds (None: kept from before)."""
    from whisper_lora.train.trainer import TrainConfig, train

    started = time.perf_counter()
    if (output_dir / "adapter_config.json").is_file():
        return str(output_dir), None
    train(
        TrainConfig(
            train_file=[str(manifest)],
            output_dir=str(output_dir),
            num_train_epochs=epochs,
            save_steps=10_000,
            report_to="none",
        )
    )
    return str(output_dir), time.perf_counter() - started


def decode(model: str, rows: list[dict], batch_size: int) -> list[str]:
    """Each row's text through whisper-lora's default backend, every clip in one list as a user would pass it."""
    from whisper_lora.core.records import TranscribeOptions
    from whisper_lora.infer.transcriber import Transcriber

    transcriber = Transcriber(model, batch_size=batch_size)
    return [t.text for t in transcriber.files([row["audio_path"] for row in rows], TranscribeOptions(language="es"))]


def score(model: str, data: dict, batch_size: int) -> dict:
    """Speech WER, and the share of non-speech clips decoded to nothing, overall and by kind."""
    rows = data["test_speech"] + data["test_non_speech"]
    started = time.perf_counter()
    texts = decode(model, rows, batch_size)
    seconds = time.perf_counter() - started
    speech, silent = texts[: len(data["test_speech"])], texts[len(data["test_speech"]) :]
    wer = error_rate([row["text"] for row in data["test_speech"]], speech, "wer", "es")
    empty = {kind: [] for kind in HELD_OUT_KINDS}
    for row, text in zip(data["test_non_speech"], silent, strict=True):
        empty[row["kind"]].append(not text.strip())
    said = [text.strip() for text in silent if text.strip()]
    alone = decode(model, data["test_speech"], batch_size)  # packed windows can carry noise into speech
    return {
        "wer": wer,
        "wer_alone": error_rate([row["text"] for row in data["test_speech"]], alone, "wer", "es"),
        "empty": sum(map(sum, empty.values())) / len(silent),
        "by_kind": {kind: sum(v) / len(v) for kind, v in empty.items()},
        "said": said[:5],
        "decode_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "no_speech"))
    parser.add_argument("--speech_rows", type=int, default=120)
    parser.add_argument("--epochs", type=float, default=2.0)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    data = datasets(workdir, args.speech_rows)
    models: dict[str, tuple[str, float | None]] = {"base (zero-shot)": ("base", None)}
    for name in ("speech", "with_no_speech"):
        models[f"ours, {name.replace('_', ' ')}"] = train_run(
            data[name], workdir / "models" / f"{name}_{args.epochs:g}", args.epochs
        )
    silent_rows = sum(1 for row in json.loads(data["with_no_speech"].read_text()) if row.get("no_speech"))
    print(
        f"\ntraining: {args.speech_rows} Spanish prompts, + {silent_rows} rows without speech; {args.epochs:g} epochs"
    )
    print(f"held out: {len(data['test_speech'])} Spanish prompts, {len(data['test_non_speech'])} clips without speech")
    print(
        f"\n{'model':<26} {'path':<11} {'es WER':>7} {'alone':>6} {'empty':>6}  "
        + "  ".join(f"{k:>12}" for k in HELD_OUT_KINDS)
    )
    table = []
    for name, (model, trained) in models.items():
        for path, batch_size in (("default", 8), ("batch 1", 1)):
            result = score(model, data, batch_size)
            kinds = "  ".join(f"{result['by_kind'][k]:>12.0%}" for k in HELD_OUT_KINDS)
            table.append(
                [name, path, f"{result['wer']:.1%}", f"{result['wer_alone']:.1%}", f"{result['empty']:.0%}"]
                + [f"{result['by_kind'][k]:.0%}" for k in HELD_OUT_KINDS]
            )
            print(
                f"{name:<26} {path:<11} {result['wer']:>7.1%} {result['wer_alone']:>6.1%} {result['empty']:>6.0%}  {kinds}"
            )
            if result["said"]:
                print(f"{'':<26} said on non-speech: {' | '.join(result['said'])[:110]}")
        if trained is not None:
            print(f"{'':<26} trained in {trained / 60:.1f} min")
        elif model != "base":
            print(f"{'':<26} trained before, kept in {model}")
    columns = ["model", "path", "es WER", "alone", "empty", *HELD_OUT_KINDS]
    title = "Rows without speech: held-out Spanish prompts mixed with clips without speech"
    notes = f"{args.speech_rows} Spanish training prompts, + {silent_rows} no_speech rows; {args.epochs:g} epochs"
    write_result("no_speech", {"title": title, "columns": columns, "rows": table}, notes)


if __name__ == "__main__":
    main()
