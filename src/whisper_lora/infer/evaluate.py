"""Score models on a test manifest: WER/CER with training's normalisation, per-utterance rows, CSV, real-time factor."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.files import write_text_atomic
from whisper_lora.core.metrics import default_metric, error_rate
from whisper_lora.core.progress import Progress
from whisper_lora.core.records import Runtime, TranscribeOptions, Transcript
from whisper_lora.data.manifests import Row, usable_rows
from whisper_lora.infer.ray_jobs import clips_on_ray
from whisper_lora.infer.transcriber import Clip, Transcriber


@dataclass
class ModelRun:
    """One model's hypotheses for every row, its error rate per language, and its timing."""

    model: str
    transcripts: list[Transcript]
    errors: dict[str, float] = field(default_factory=dict)  # language (or "all") -> WER or CER
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def hypotheses(self) -> list[str]:
        """The text of each row's transcript."""
        return [t.text for t in self.transcripts]

    @property
    def real_time_factor(self) -> float:
        """Wall seconds per audio second: below 1 is faster than real time."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0


def load_test_rows(paths: list[str], strict: bool = False, log=print) -> tuple[list[Row], list[Clip]]:
    """The usable rows of the test manifests (each bad one named and skipped), with their decoded audio."""
    rows = usable_rows(paths, strict=strict, max_seconds=float("inf"), log=log, list_problems=True)
    return rows, [Clip(row.audio_path, decode_audio(row.audio_path, row.start, row.end)) for row in rows]


def row_language(row: Row, language: str | None) -> str | None:
    """The language a row is decoded and scored in: --language, else the row's own, else None (detect)."""
    return language or row.language


def indices_by(languages: list[str | None]) -> dict[str | None, list[int]]:
    """The indices of each language in the list, languages in first-seen order."""
    groups: dict[str | None, list[int]] = {}
    for index, language in enumerate(languages):
        groups.setdefault(language, []).append(index)
    return groups


def language_groups(rows: list[Row], language: str | None) -> dict[str | None, list[int]]:
    """Row indices by the language each row is decoded and scored in, in first-seen order."""
    return indices_by([row_language(row, language) for row in rows])


def metric_for(language: str | None, metric: str | None) -> str:
    """--metric when given, else CER for languages written without spaces and WER for the rest."""
    return metric or default_metric(language)


def run_model(
    transcriber: Transcriber,
    rows: list[Row],
    clips: list[Clip],
    options: TranscribeOptions | None = None,
    metric: str | None = None,
) -> ModelRun:
    """Transcribe every clip with options, grouped by language so each group shares them, and score it.

    options.language, when set, decodes every row in it; otherwise each row's own language is used, else detected.
    """
    options = options or TranscribeOptions()
    transcripts: list[Transcript] = [Transcript(c.name) for c in clips]
    started = time.perf_counter()
    for group_language, indices in language_groups(rows, options.language).items():
        group_options = replace(options, language=group_language)
        for index, transcript in zip(
            indices, transcriber.clips([clips[i] for i in indices], group_options), strict=True
        ):
            transcripts[index] = transcript
    model = str(transcriber.model_path or "base")
    return scored(model, rows, clips, transcripts, options, metric, time.perf_counter() - started)


def run_model_on_ray(
    runtime: Runtime, rows: list[Row], clips: list[Clip], options: TranscribeOptions, metric: str | None, **ray
) -> ModelRun:
    """run_model's result with the clips decoded by Ray Data actors (ray: address, actors, batch_size)."""
    languages = [row_language(row, options.language) for row in rows]
    started = time.perf_counter()
    transcripts = clips_on_ray(clips, [replace(options, language=lang) for lang in languages], runtime, **ray)
    model = runtime.model_path or "base"
    return scored(model, rows, clips, transcripts, options, metric, time.perf_counter() - started)


def scored(model: str, rows, clips, transcripts, options: TranscribeOptions, metric, seconds: float) -> ModelRun:
    """A model's run: its transcripts, the error rate per language and the real-time factor."""
    run = ModelRun(model, transcripts, wall_seconds=seconds)
    run.audio_seconds = sum(len(c.samples) for c in clips) / SAMPLE_RATE
    written = "en" if options.task == "translate" else options.language  # translations are scored as English
    run.errors = score(rows, run.hypotheses, written, metric)
    return run


def score_by_language(
    references: list[str], hypotheses: list[str], languages: list[str | None], metric: str | None = None
) -> dict[str | None, dict]:
    """Per language, in first-seen order: its metric (metric, else the language's default), error rate and rows."""
    scores = {}
    for language, indices in indices_by(languages).items():
        name = metric_for(language, metric)
        refs, hyps = [references[i] for i in indices], [hypotheses[i] for i in indices]
        scores[language] = {"metric": name, "rows": len(indices), "score": error_rate(refs, hyps, name, language)}
    return scores


def score(rows: list[Row], hypotheses: list[str], language: str | None, metric: str | None) -> dict[str, float]:
    """Error rate per language present, each with its metric, and over all rows when there are several."""
    languages = [row_language(row, language) for row in rows]
    by_language = score_by_language([row.text for row in rows], hypotheses, languages, metric)
    errors = {(lang or "?"): s["score"] for lang, s in by_language.items()}
    if len(by_language) > 1:
        errors["all"] = error_rate([r.text for r in rows], hypotheses, metric or "cer")
    return errors


def transcribe_by_language(
    transcriber: Transcriber,
    languages: list[str | None],
    clip_at: Callable[[int], Clip],
    options_for: Callable[[str | None], TranscribeOptions],
    chunk: int,
    log=None,
) -> list[str]:
    """Each row's text, rows grouped by language and decoded `chunk` at a time, with progress between chunks."""
    texts = [""] * len(languages)
    with Progress(len(languages), "scoring", "row", write=log) as progress:
        for language, indices in indices_by(languages).items():
            options = options_for(language)
            for first in range(0, len(indices), chunk):
                batch = indices[first : first + chunk]
                for index, transcript in zip(
                    batch, transcriber.clips([clip_at(i) for i in batch], options), strict=True
                ):
                    texts[index] = transcript.text
                progress.update(len(batch))
    return texts


class ModelScorer:
    """Scores a model in memory on manifest rows as `evaluate --backend transformers --temperature 0` would.

    Training's validation, the forgetting guard, the demo and the benchmarks score through it, so the error
    rate a run logs is the one `evaluate` prints for the saved model on the same rows.
    """

    def __init__(self, rows: list[Row], processor, batch_size: int = 8, language: str | None = None, task="transcribe"):
        self.rows, self.processor, self.batch_size, self.task = rows, processor, batch_size, task
        self.languages = [row.language or language for row in rows]  # a row's own language comes first
        self.written = ["en" if task == "translate" else lang for lang in self.languages]  # what the text is in

    def describe(self) -> str:
        """Which decoder made the scores, for metrics.json."""
        return "the transformers backend of `whisper-lora evaluate --temperature 0`: greedy, with its coverage guard"

    def transcripts(self, model) -> list[str]:
        """Each row's text, decoded batch_size rows at a time; the model is left in the mode it was in."""
        transcriber = Transcriber.wrap(model, self.processor, self.batch_size)
        was_training = model.training
        model.eval()
        try:
            return transcribe_by_language(
                transcriber,
                self.languages,
                lambda i: Clip(self.rows[i].audio_path, self._samples(i)),
                # greedy, no fallback: a looping zero-shot clip stops at its token budget, once
                lambda language: TranscribeOptions(language=language, task=self.task, temperature=[0.0]),
                self.batch_size,
            )
        finally:
            model.train(was_training)

    def _samples(self, index: int):
        row = self.rows[index]
        return decode_audio(row.audio_path, row.start, row.end)

    def by_language(self, model) -> dict[str | None, dict]:
        """Per language: its default metric, that error rate, and the row count."""
        return score_by_language([row.text for row in self.rows], self.transcripts(model), self.written)

    def __call__(self, model) -> dict[str, float]:
        """CER and WER over all rows, as training logs them (eval_cer, eval_wer)."""
        hypotheses, references = self.transcripts(model), [row.text for row in self.rows]
        language = self.written[0] if len(set(self.written)) == 1 else None
        return {metric: error_rate(references, hypotheses, metric, language) for metric in ("cer", "wer")}


def error_label(key: str, metric: str | None) -> str:
    """A column title such as 'zh CER' or 'all CER'."""
    return f"{key} {(metric or ('cer' if key == 'all' else default_metric(key))).upper()}"


def format_summary(runs: list[ModelRun], metric: str | None) -> str:
    """A table with one line per model: its error rates, the real-time factor and the audio it covered."""
    keys = list(runs[0].errors)
    width = max(len(r.model) for r in runs)
    head = f"{'model':<{width}}  " + "  ".join(f"{error_label(k, metric):>8}" for k in keys) + "       RTF  audio s"
    lines = [head]
    for run in runs:
        rates = "  ".join(f"{100 * run.errors[k]:>7.1f}%" for k in keys)
        lines.append(f"{run.model:<{width}}  {rates}  {run.real_time_factor:>8.3f}  {run.audio_seconds:>7.1f}")
    return "\n".join(lines)


def utterance_table(rows: list[Row], runs: list[ModelRun], language: str | None, metric: str | None) -> list[dict]:
    """One record per row: where it came from, the reference, and each model's hypothesis and error rate."""
    records = []
    for index, row in enumerate(rows):
        lang = row_language(row, language)
        record: dict[str, Any] = {
            "row": row.where(),
            "audio_path": row.audio_path,
            "language": lang or "",
            "reference": row.text,
        }
        for number, run in enumerate(runs, 1):
            hypothesis = run.hypotheses[index]
            record[f"hypothesis_{number}"] = hypothesis
            record[f"error_{number}"] = round(error_rate([row.text], [hypothesis], metric_for(lang, metric), lang), 4)
        records.append(record)
    return records


def format_utterances(records: list[dict], runs: list[ModelRun]) -> str:
    """The per-utterance rows as text: reference, then each model's hypothesis with its error rate."""
    lines = []
    for record in records:
        lines.append(f"{record['row']}  ref: {record['reference']}")
        for number in range(1, len(runs) + 1):
            lines.append(f"    [{number}] {100 * record[f'error_{number}']:5.1f}%  {record[f'hypothesis_{number}']}")
    return "\n".join(lines)


def write_csv(path: str | Path, records: list[dict]) -> Path:
    """The per-utterance records as a UTF-8 CSV (with BOM, so spreadsheet programs read Chinese), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    return write_text_atomic(path, "\ufeff" + buffer.getvalue())
