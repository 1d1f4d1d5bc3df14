"""Every method on every out-of-domain set, each reported on its own; defaults chosen by leave-one-set-out.

Each method fine-tunes the embedded whisper-base on the same templated espeak-ng Mandarin rows, in a process of
its own, for the recipe's 2 epochs; every model is then scored (CER) on sets built unlike those rows and unlike
each other:
- ood: sentences written apart from the templates (data.sentences' first ones), the corpus's voice, 22 kHz WAV;
- shifted: the last of those sentences, voice variants +f3/+m3, speeds and pitches outside the corpus's,
  8 kHz MP3 or Ogg/Opus with white or brown noise (demo.run.build_shifted);
- fortunes: modern sentences of 2 to 40 characters from Debian's fortunes-zh (another author, another register),
  the corpus's voice, 16 kHz FLAC;
- held-back: other fortunes-zh sentences, variants +f4/+m7, 24 kHz AAC in M4A, music-like chords at 10 to 20 dB.
  No choice reads it: it is scored last, for the method chosen on the three others.
The early-stopping method watches a stop split of its own: other fortunes-zh sentences, 16 kHz Ogg/Opus.
For each tuning set, the method with the lowest mean CER on the two other tuning sets is chosen; a default is
confirmed only where that choice is the default. Finished runs are kept in WORKDIR/results and reused.

    whisper_lora_env/bin/python benchmarks/per_set.py [--rows 96] [--clips 16] [--runs base,recipe,default,...]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jiwer
import opencc
from generalization import parse_variants, train_defaults, train_ours, train_recipe, trained_alike
from results import write_result

from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.memory import peak_rss_mb
from whisper_lora.core.metrics import error_rate, normalize_text
from whisper_lora.core.models import cache_root
from whisper_lora.data.manifests import read_manifest
from whisper_lora.data.realspeech import debian_package
from whisper_lora.demo.run import _scorer, build_corpus, build_out_of_domain, build_shifted, speak_degraded

EPOCHS = 2.0
METHODS = {  # TrainConfig overrides of each run of ours; base and recipe are not ours
    "default": {},
    "encoder": {"target_modules": "encoder"},
    "enclr": {"target_modules": "encoder", "learning_rate": 1e-3},
    "all": {"target_modules": "all"},
    "qv": {"target_modules": "qv"},
    "specaug": {"spec_augment": True},
    "perturb": {"perturb": "speed,noise"},
    "smooth": {"label_smoothing": 0.1},
    "average": {"average_checkpoints": 3, "save_steps": 8},  # steps 32, 40 and 48 of 48
    # Up to twice the epochs, stopped when the stop split's CER has not improved in 2 evaluations; the best kept.
    "early": {"early_stopping_patience": 2, "eval_steps": 6, "save_steps": 6, "num_train_epochs": 2 * EPOCHS},
}
LABELS = {
    "base": "zero-shot base",
    "recipe": "Hugging Face recipe (q,v r=8 everywhere)",
    "default": "default (every encoder projection + decoder cross-attention)",
    "encoder": "encoder projections only",
    "enclr": "encoder projections only, learning rate 1e-3",
    "all": "every projection, decoder self-attention and FFN too",
    "qv": "q,v only, encoder and decoder",
    "specaug": "default + SpecAugment",
    "perturb": "default + speed and noise perturbation",
    "smooth": "default + label smoothing 0.1",
    "average": "default, adapter averaged over the last 3 of 6 checkpoints",
    "early": "default, stopped early on the stop split (up to 4 epochs)",
}
TUNING = ("ood", "shifted", "fortunes")
HELD_BACK = "held-back"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HAN = re.compile(r"[\u4e00-\u9fff]")
PLAIN = re.compile(r"[\u4e00-\u9fff，、。！？；：]+")
MODERN = re.compile(r"[的了们这吗呢你我他]")  # most classical verse in the file has none of these
LENGTHS = ((2, 9), (10, 19), (20, 29), (30, 40))


def fortune_sentences() -> list[str]:
    """Modern simplified sentences of 2 to 40 Han characters from fortunes-zh's 'chinese' file, sorted."""
    tree = debian_package("fortunes-zh", cache_root() / "benchmarks" / "per_set")
    text = ANSI.sub("", (tree / "usr/share/games/fortunes/chinese").read_text(encoding="utf-8"))
    found, simplified = set(), opencc.OpenCC("t2s")
    for entry in text.split("\n%\n"):
        body = "".join(line.strip() for line in entry.splitlines() if not line.strip().startswith("--"))
        for sentence in re.split(r"(?<=[。！？])", body):
            length = len(HAN.findall(sentence))
            plain = PLAIN.fullmatch(sentence) and simplified.convert(sentence) == sentence
            if 2 <= length <= 40 and plain and MODERN.search(sentence):
                found.add(sentence)
    return sorted(found)


def fortune_split(count: int, seed: int, besides: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Two disjoint draws of count sentences, none of them in besides, each spread evenly over LENGTHS."""
    rng, first, second = random.Random(seed), [], []
    sentences = [s for s in fortune_sentences() if s not in besides]
    for index, (low, high) in enumerate(LENGTHS):
        share = count // len(LENGTHS) + (index < count % len(LENGTHS))
        bucket = [s for s in sentences if low <= len(HAN.findall(s)) <= high]
        drawn = rng.sample(bucket, 2 * share)
        first += drawn[:share]
        second += drawn[share:]
    return first, second


def speak_set(folder: Path, name: str, texts: list[str], sound: dict, seed: int) -> Path:
    """Speak texts into folder/name as sound says (voices, speeds, pitches, rate, suffixes, noise); the manifest."""
    manifest = folder / f"test_{name}.json"
    if manifest.is_file():
        return manifest
    (folder / name).mkdir(parents=True, exist_ok=True)
    rng, rows = random.Random(seed), []
    for i, text in enumerate(texts):
        voice = (rng.choice(sound["voices"]), rng.randint(*sound["speeds"]), rng.randint(*sound["pitches"]))
        noise = None
        if sound.get("noise"):
            noise = (sound["noise"], rng.uniform(*sound["snr_db"]), rng.randrange(10**6))
        path = f"{name}/zh_{i:04d}{sound['suffixes'][i % len(sound['suffixes'])]}"
        rows.append(speak_degraded(folder, path, "zh", text, voice, sound["rate"], noise))
    return write_json_atomic(manifest, rows)


def datasets(workdir: Path, rows: int, clips: int) -> tuple[Path, dict[str, Path], Path]:
    """The training manifest, {set name: test manifest} and the stop split (early stopping's), built once."""
    folder = workdir / f"corpus_{rows}_{clips}"
    train, in_domain = build_corpus(folder, zh=(rows, clips), en=(0, 0), seed=5)
    fortunes, held_back = fortune_split(clips, seed=5)
    stop = fortune_split(clips, seed=8, besides=(*fortunes, *held_back))[0]
    plain = {"voices": ["cmn-latn-pinyin"], "speeds": (140, 165), "pitches": (35, 65), "rate": 16000}
    unlike = {"voices": ["cmn-latn-pinyin+f4", "cmn-latn-pinyin+m7"], "speeds": (120, 200), "pitches": (10, 90)}
    unlike.update(rate=24000, suffixes=[".m4a"], noise="chords", snr_db=(10.0, 20.0))
    tests = {
        "in-domain": in_domain,
        "ood": build_out_of_domain(folder, seed=5, zh=clips, en=0),
        "shifted": build_shifted(folder, seed=5, zh=clips, en=0),
        "fortunes": speak_set(folder, "fortunes", fortunes, {**plain, "suffixes": [".flac"]}, seed=6),
        HELD_BACK: speak_set(folder, "held_back", held_back, unlike, seed=7),
    }
    return train, tests, speak_set(folder, "stop", stop, {**plain, "suffixes": [".ogg"]}, seed=8)


def label(run: str, overrides: dict | None) -> str:
    """A run's name in the tables: LABELS's, or a variant's flags."""
    flags = ", ".join(f"--{key} {value}" for key, value in (overrides or {}).items())
    return LABELS.get(run, f"default, {flags}")


def run_one(args, run: str) -> dict:
    """Train (unless base) and score every set in this process; the result record."""
    train, tests, stop = datasets(Path(args.workdir), args.rows, args.clips)
    started = time.perf_counter()
    output_dir = Path(args.workdir) / "models" / f"{run}_{args.rows}"
    if run == "base":
        model, processor = load_whisper("base")
    elif run == "recipe":
        model, processor, _ = train_recipe(train, EPOCHS, output_dir)
    else:
        overrides = args.methods[run]
        if "early_stopping_patience" in overrides:
            overrides = {**overrides, "validation_file": [str(stop)]}
        model, processor, _ = train_ours(train, EPOCHS, output_dir, overrides)
    seconds = time.perf_counter() - started
    scorers = {name: _scorer(path, model, processor) for name, path in tests.items()}
    transcripts = {name: scorer.transcripts(model) for name, scorer in scorers.items()}
    return {
        "run": run,
        "overrides": args.methods.get(run),
        "train_seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "defaults": train_defaults(run),
        "scores": {
            name: error_rate([r.text for r in s.rows], transcripts[name], "cer", "zh") for name, s in scorers.items()
        },
        "transcripts": transcripts,
    }


def characters(text: str) -> str:
    """text as CER counts it: normalised as `evaluate` does, without spaces."""
    return normalize_text(text, "zh").replace(" ", "")


def split_errors(rows, hypotheses: list[str], kind: Callable[[str], str]) -> dict[str, dict[str, float]]:
    """Per kind of reference character: the share of them wrong (substituted or deleted), and their share of the text."""
    references = [characters(row.text) for row in rows]
    output = jiwer.process_characters(references, [characters(h) for h in hypotheses])
    wrong, total = Counter(), Counter()
    for reference, chunks in zip(references, output.alignments, strict=True):
        for chunk in chunks:
            for char in reference[chunk.ref_start_idx : chunk.ref_end_idx]:
                wrong[kind(char)] += chunk.type != "equal"
                total[kind(char)] += 1
    count = sum(total.values())
    return {k: {"wrong": wrong[k] / total[k], "share": total[k] / count} for k in total}


@functools.cache
def syllable(char: str) -> str:
    """How espeak-ng's Mandarin voice says char on its own, without tone or stress marks."""
    command = ["espeak-ng", "-v", "cmn-latn-pinyin", "-q", "-x", char]
    return re.sub(r"[\d'_|\s]", "", subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def character_kind(train: Path) -> Callable[[str], str]:
    """Whether the training rows say a character ('said'), say only others that sound like it ('heard'), or neither."""
    said = {char for row in read_manifest(train)[0] for char in characters(row.text)}
    heard = {syllable(char) for char in said}
    return lambda char: "said" if char in said else "heard" if syllable(char) in heard else "unheard"


def chosen_by(records: dict, methods: list[str], sets: tuple) -> str:
    """The trained method with the lowest mean CER over sets."""
    return min(methods, key=lambda m: sum(records[m]["scores"][s] for s in sets) / len(sets))


def leave_one_out(records: dict) -> list[list[str]]:
    """Per set left out: the method the tuning sets choose without it, its CER there, the default's, and its ratio
    to the recipe's; the held-back set last, for the choice made on every tuning set."""
    trained = [run for run in records if run not in ("base", "recipe")]
    folds = [(held, tuple(s for s in TUNING if s != held), held) for held in TUNING]
    folds.append((HELD_BACK, TUNING, f"{HELD_BACK} (reported last)"))
    rows = []
    for held, sets, name in folds:
        pick = chosen_by(records, trained, sets)
        default = records["default"]["scores"][held]
        ratio = f"{default / records['recipe']['scores'][held]:.2f}x" if "recipe" in records else "-"
        rows.append([name, pick, f"{records[pick]['scores'][held]:.1%}", f"{default:.1%}", ratio])
    return rows


def unsaid_table(args, records: dict, train: Path, tests: dict[str, Path]) -> tuple[dict, str]:
    """Per run and set: the error on characters the training rows say, on those only heard in others, and the rest."""
    kind, kinds = character_kind(train), ("said", "heard", "unheard")
    rows = {name: read_manifest(path)[0] for name, path in tests.items()}
    splits = {
        run: {name: split_errors(rows[name], record["transcripts"][name], kind) for name in tests}
        for run, record in records.items()
        if "transcripts" in record
    }
    cell = lambda split, key: " / ".join(f"{split[k][key]:.0%}" if k in split else "-" for k in kinds)  # noqa: E731
    table = [["share of the set's characters", *(cell(s, "share") for s in next(iter(splits.values())).values())]]
    table += [
        [label(run, args.methods.get(run)), *(cell(s, "wrong") for s in split.values())]
        for run, split in splits.items()
    ]
    title = "Characters wrong: said in training / only heard (another character of the same syllable said) / neither"
    notes = (
        "Substitutions and deletions of reference characters, after the CER's normalisation (insertions are in the CER "
        "only); a syllable is how espeak-ng says the character alone, tones left out."
    )
    return {"title": title, "columns": ["run", *tests], "rows": table}, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "per_set"))
    parser.add_argument("--rows", type=int, default=96, help="templated Mandarin training rows")
    parser.add_argument("--clips", type=int, default=16, help="clips in each test set")
    parser.add_argument("--runs", default=",".join(["base", "recipe", *METHODS]))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="another method: TrainConfig overrides, e.g. r8:lora_r=8,lora_alpha=16",
    )
    parser.add_argument("--result", default="per_set", help="result file name; the choice goes to NAME-choice")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.methods = {**METHODS, **parse_variants(args.variant)}
    workdir = Path(args.workdir)
    if args.one:
        write_json_atomic(workdir / "results" / f"{args.one}_{args.rows}_{args.clips}.json", run_one(args, args.one))
        return
    train, tests, _ = datasets(workdir, args.rows, args.clips)  # built once, before the runs
    records = {}
    for run in args.runs.split(","):
        path = workdir / "results" / f"{run}_{args.rows}_{args.clips}.json"
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if record is None or not trained_alike(record, run, args.methods.get(run)):
            print(f"--- {run}", flush=True)
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", run], check=True)
            record = json.loads(path.read_text(encoding="utf-8"))
        records[run] = record
    sets = ("in-domain", *TUNING, HELD_BACK)
    table = [
        [
            label(run, args.methods.get(run)),
            f"{r['train_seconds']:.0f} s" if run != "base" else "-",
            *(f"{r['scores'][s]:.1%}" for s in sets),
        ]
        for run, r in records.items()
    ]
    for row in table:
        print(" | ".join(row))
    notes = (
        f"{args.rows} templated espeak-ng Mandarin rows, {EPOCHS:g} epochs each (the recipe's), {args.clips} clips a set; "
        "CER. Train time includes loading and saving; it compares only runs that had the cores to themselves."
    )
    write_result(
        args.result, {"title": "Every method on every set", "columns": ["run", "train", *sets], "rows": table}, notes
    )
    write_result(f"{args.result}-unsaid", *unsaid_table(args, records, train, tests))
    choice = leave_one_out(records)
    for row in choice:
        print(" | ".join(row))
    columns = ["set left out", "chosen on the others", "its CER there", "default's CER there", "default / recipe"]
    write_result(
        f"{args.result}-choice",
        {"title": "Leave-one-set-out choice of the adaptation method", "columns": columns, "rows": choice},
        "The held-back set is scored once, for the choice made on all three tuning sets.",
    )


if __name__ == "__main__":
    main()
