"""The demo: speak sentences with espeak-ng and transcribe them with the embedded Whisper."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from whisper_lora.audio.decode import decode_audio
from whisper_lora.audio.encode import encode_audio
from whisper_lora.audio.noise import add_noise
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.metrics import default_metric, error_rate
from whisper_lora.core.progress import Progress
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.data.manifests import read_manifest
from whisper_lora.data.sentences import ENGLISH, MANDARIN
from whisper_lora.infer.backends.hf import transcribe_clip
from whisper_lora.infer.evaluate import ModelScorer, load_test_rows, score_by_language, transcribe_by_language
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.train.trainer import TrainConfig, train

# (language, espeak-ng voice, sentence); cmn-latn-pinyin reads Chinese characters, plain cmn does not.
SMOKE_SENTENCES = (
    ("en", "en-us", "The weather is lovely today, so we are going for a walk in the park."),
    ("zh", "cmn-latn-pinyin", "今天天气很好，我们去公园散步。"),
)


# Sentences are built from parts, so train and test share words but never a whole sentence. The Mandarin
# parts are many, so that the training rows hear most of the language's syllables: a corpus of a few dozen
# characters measured whether a fine-tune could guess syllables it never heard, not whether it learnt a voice.
MANDARIN_PARTS = (
    (
        *("我", "你", "他", "她", "我们", "老师", "学生", "妈妈", "爸爸", "朋友", "医生", "哥哥", "姐姐", "弟弟"),
        *("妹妹", "爷爷", "叔叔", "阿姨", "邻居", "同学", "经理", "司机", "警察", "厨师", "护士", "律师", "记者"),
        *("演员", "画家", "教练", "邮递员", "售货员"),
    ),
    (
        *("今天", "明天", "昨天", "早上", "晚上", "下午", "周末", "现在", "中午", "后天", "前天", "刚才", "傍晚"),
        *("凌晨", "平时", "假期"),
    ),
    (
        *("去学校", "吃米饭", "喝绿茶", "看新书", "买水果", "写作业", "打电话", "学中文", "坐火车", "听音乐"),
        *("做晚饭", "去医院", "开汽车", "看电影", "洗衣服", "去公园", "画山水", "擦桌子", "剪头发", "寄包裹"),
        *("修手表", "扫楼梯", "煮咖啡", "切西瓜", "拍照片", "弹吉他", "唱京剧", "爬泰山", "逛商场", "晒被子"),
        *("抄笔记", "读报告", "练书法", "贴春联", "包粽子", "钓鲫鱼", "骑骆驼", "租房子", "借雨伞", "还钥匙"),
        *("订酒店", "泡温泉", "换灯泡", "插鲜花", "缝扣子", "织围巾", "熨衬衫", "拖地板", "倒垃圾", "喂金鱼"),
        *("遛小狗", "收快递", "交水费", "查邮件", "翻词典", "背单词", "考驾照", "办签证", "烤面包", "炒青菜"),
        *("蒸馒头", "炖排骨", "削苹果", "剥橘子", "磨豆浆", "搭积木", "下象棋", "打篮球", "踢毽子", "玩扑克"),
        *("荡秋千", "吹口琴", "拉二胡", "折纸鹤", "绣枕头", "扎辫子", "穿皮鞋", "戴口罩", "系鞋带", "锁抽屉"),
        *("贴邮票", "填表格", "签合同", "装软件", "测体温", "量血压", "摘葡萄", "挖土豆", "捡贝壳", "追蝴蝶"),
        *("捉蜻蜓", "看日出", "数星星", "扔纸团", "擦皮鞋", "买拖鞋", "找眼镜", "送礼物", "请客人", "跑马拉松"),
    ),
)
ENGLISH_PARTS = (
    ("My sister", "The teacher", "Our neighbour", "A young doctor", "The old farmer", "His friend"),
    ("bought", "painted", "found", "cleaned", "carried", "opened"),
    ("a red door", "the small boat", "three green apples", "a heavy box", "the wooden table", "two new books"),
    ("this morning.", "last week.", "after lunch.", "before dinner.", "on Sunday.", "in the garden."),
)


class DemoError(UserError):
    """The demo cannot run on this machine, and what to install."""


def speak(text: str, path: Path, voice: str, speed: int = 150, pitch: int = 50) -> Path:
    """Write text spoken by espeak-ng to a WAV file."""
    if shutil.which("espeak-ng") is None:
        raise DemoError("espeak-ng is not installed; on Debian or Ubuntu: sudo apt-get install espeak-ng")
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
    return path


def run_smoke(model_name: str | None = None, log=print) -> list[dict]:
    """Transcribe one spoken sentence per language with the model and report its error rate."""
    started = time.perf_counter()
    model, processor = load_whisper(model_name)
    log(f"model loaded in {time.perf_counter() - started:.1f} s")
    results = []
    with tempfile.TemporaryDirectory(prefix="whisper-lora-demo-") as folder:
        for language, voice, sentence in SMOKE_SENTENCES:
            clip = speak(sentence, Path(folder) / f"{language}.wav", voice)
            began = time.perf_counter()
            text = transcribe_clip(model, processor, clip, language=language)
            metric = default_metric(language)
            score = error_rate([sentence], [text], metric, language)
            results.append(dict(language=language, reference=sentence, hypothesis=text, metric=metric, score=score))
            log(f"[{language}] {metric.upper()} {score:.1%} in {time.perf_counter() - began:.1f} s")
            log(f"  reference:  {sentence}\n  transcript: {text}")
    return results


def _sentences(parts: tuple, joiner: str, count: int, rng: random.Random) -> list[str]:
    combos = [joiner.join(words) for words in itertools.product(*parts)]
    return rng.sample(combos, count)


def _speak_all(folder: Path, plan: list[tuple[str, str, str, str]], rng: random.Random, log=print) -> list[dict]:
    """Speak each (file name, language, voice, text) into folder, each at a speed and pitch drawn from rng; return manifest rows."""
    voices = [(rng.randint(125, 175), rng.randint(30, 70)) for _ in plan]
    for parent in {(folder / name).parent for name, *_ in plan}:
        parent.mkdir(parents=True, exist_ok=True)

    def make(i: int) -> dict:
        name, language, voice, text = plan[i]
        speak(text, folder / name, voice, *voices[i])
        return {"audio_path": name, "text": text, "language": language}

    with ThreadPoolExecutor(max_workers=4) as pool, Progress(len(plan), "speaking", "clip", write=log) as progress:
        rows = []
        for row in pool.map(make, range(len(plan))):
            rows.append(row)
            progress.update()
        return rows


def build_corpus(
    folder: str | Path, zh: tuple[int, int] = (240, 40), en: tuple[int, int] = (48, 12), seed: int = 0, log=print
):
    """Speak a Mandarin and English corpus into folder/audio; return the (train, test) manifest paths.

    zh and en are (train, test) sentence counts. Test sentences never occur in training. Each clip gets
    its own speed and pitch. An existing corpus with the same counts, seed and parts is reused.
    """
    folder = Path(folder)
    train_path, test_path = folder / "train.json", folder / "test.json"
    stamp = folder / "corpus.json"
    words = json.dumps([MANDARIN_PARTS, ENGLISH_PARTS], ensure_ascii=False).encode()
    wanted = {"zh": list(zh), "en": list(en), "seed": seed, "parts": hashlib.sha256(words).hexdigest()[:16]}
    ready = stamp.is_file() and train_path.is_file() and test_path.is_file()
    if ready and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        return train_path, test_path
    rng = random.Random(seed)
    plan = []  # (split, language, voice, text)
    for language, voice, parts, joiner, (n_train, n_test) in (
        ("zh", "cmn-latn-pinyin", MANDARIN_PARTS, "", zh),
        ("en", "en-us", ENGLISH_PARTS, " ", en),
    ):
        sentences = _sentences(parts, joiner, n_train + n_test, rng)
        plan += [("train", language, voice, text) for text in sentences[:n_train]]
        plan += [("test", language, voice, text) for text in sentences[n_train:]]
    named = [
        (f"audio/{split}_{language}_{i:04d}.wav", language, voice, text)
        for i, (split, language, voice, text) in enumerate(plan)
    ]
    rows = _speak_all(folder, named, rng, log)
    for path, wanted_split in ((train_path, "train"), (test_path, "test")):
        write_json_atomic(path, [row for row, (split, *_) in zip(rows, plan, strict=True) if split == wanted_split])
    write_json_atomic(stamp, wanted)
    return train_path, test_path


def build_out_of_domain(
    folder: str | Path, seed: int = 0, zh: int | None = None, en: int | None = None, log=print
) -> Path:
    """Speak sentences.MANDARIN and sentences.ENGLISH (the first zh and en of them; default all) into folder/ood,
    in voices drawn as the corpus's are; return the manifest.

    They share no template with the corpus, so they measure what a fine-tune learnt about the voices
    rather than about its training sentences. An existing set is reused.
    """
    folder = Path(folder)
    manifest = folder / "test_out_of_domain.json"
    if manifest.is_file():
        return manifest
    rng = random.Random(seed + 1)
    plan = [("zh", "cmn-latn-pinyin", text) for text in MANDARIN[:zh]] + [
        ("en", "en-us", text) for text in ENGLISH[:en]
    ]
    named = [(f"ood/{language}_{i:04d}.wav", language, voice, text) for i, (language, voice, text) in enumerate(plan)]
    rows = _speak_all(folder, named, rng, log)
    return write_json_atomic(manifest, rows)


# A set built unlike the corpus in every way it can be: voice variants, speeds and pitches outside the corpus's
# draws (125-175 words a minute, pitch 30-70), telephone band in MP3 or Ogg/Opus instead of espeak-ng's 22 kHz WAV, and noise.
SHIFTED_VOICES = {"zh": ("cmn-latn-pinyin+f3", "cmn-latn-pinyin+m3"), "en": ("en-gb+f3", "en-us+m3")}
SHIFTED_SPEEDS = (105, 115, 185, 195)
SHIFTED_PITCHES = (15, 22, 78, 85)
SHIFTED_RATE = 8000
SHIFTED_SNR_DB = (15.0, 25.0)


def build_shifted(folder: str | Path, seed: int = 0, zh: int = 16, en: int = 0, log=print) -> Path:
    """The last zh and en of sentences.MANDARIN and .ENGLISH, spoken unlike the corpus (SHIFTED_*) into folder/shifted.

    The sentences are not build_out_of_domain's first ones either, so the two sets share neither text nor sound.
    An existing set is reused; the manifest's paths are relative to folder.
    """
    folder = Path(folder)
    manifest = folder / "test_shifted.json"
    if manifest.is_file():
        return manifest
    (folder / "shifted").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 2)
    plan = [("zh", text) for text in MANDARIN[len(MANDARIN) - zh :]] + [
        ("en", text) for text in ENGLISH[len(ENGLISH) - en :]
    ]
    with Progress(len(plan), "speaking", "clip", write=log) as progress:
        rows = []
        for i, (language, text) in enumerate(plan):
            suffix = (".mp3", ".ogg")[i % 2]  # MP3 at 8 kHz, or Opus (48 kHz in name) over a telephone band
            rows.append(_speak_shifted(folder, f"shifted/{language}_{i:04d}{suffix}", language, text, rng))
            progress.update()
    return write_json_atomic(manifest, rows)


def _speak_shifted(folder: Path, name: str, language: str, text: str, rng: random.Random) -> dict:
    voice, speed, pitch = (
        rng.choice(SHIFTED_VOICES[language]),
        rng.choice(SHIFTED_SPEEDS),
        rng.choice(SHIFTED_PITCHES),
    )
    noise = (rng.choice(("white noise", "brown noise")), rng.uniform(*SHIFTED_SNR_DB), rng.randrange(10**6))
    return speak_degraded(folder, name, language, text, (voice, speed, pitch), SHIFTED_RATE, noise)


def speak_degraded(
    folder: Path, name: str, language: str, text: str, voice: tuple, rate: int, noise: tuple | None = None
) -> dict:
    """Speak text in voice (espeak-ng voice, speed, pitch) at rate, mix in noise (kind, SNR dB, seed) if given, and
    encode it into folder/name (the format from its suffix); the manifest row."""
    with tempfile.TemporaryDirectory(prefix="whisper-lora-degraded-") as scratch:
        speech = decode_audio(speak(text, Path(scratch) / "clip.wav", *voice), sample_rate=rate)
    if noise is not None:
        kind, snr_db, seed = noise
        speech = add_noise(speech, snr_db, kind, seed)
    encode_audio(folder / name, speech[None], rate)
    return {"audio_path": name, "text": text, "language": language}


def _scorer(test_manifest: Path, model, processor, batch_size: int = 8):
    rows, _ = read_manifest(test_manifest)
    return ModelScorer(rows, processor, batch_size)


# (train, test) rows per language: 108 training rows, on which train's defaults end the demo in about 6 minutes on 2 cores
DEMO_CORPUS = {"zh": (96, 40), "en": (12, 12)}


def _train_default(name: str) -> Any:
    return TrainConfig.__dataclass_fields__[name].default


TRAIN_EPOCHS: float = _train_default("num_train_epochs")
SCORING_CHUNK = 8  # clips per call: one packed window, and a progress line between calls


def score_sets(model_path: str | None, test_sets, log=print) -> dict:
    """Per test set, per language: metric, error rate and rows, decoded as `whisper-lora evaluate` does by default."""
    transcriber = Transcriber(model_path)
    scores = {}
    for name, manifest in test_sets:
        rows, clips = load_test_rows([str(manifest)], log=log)
        languages = [row.language for row in rows]
        options = lambda language: TranscribeOptions(language=language)  # noqa: E731
        texts = transcribe_by_language(transcriber, languages, clips.__getitem__, options, SCORING_CHUNK, log)
        scores[name] = score_by_language([row.text for row in rows], texts, languages)
    return scores


def run_demo(
    workdir: str | Path = "demo_output", model_name: str | None = None, epochs: float | None = None, log=print
) -> dict:
    """Make the corpus, score the base model zero-shot, fine-tune it, score it again, and print the table."""
    started, workdir = time.perf_counter(), Path(workdir)
    passes = TRAIN_EPOCHS if epochs is None else epochs
    log("[1/4] speaking the corpus with espeak-ng")
    train_manifest, test_manifest = build_corpus(workdir / "corpus", DEMO_CORPUS["zh"], DEMO_CORPUS["en"], log=log)
    ood_manifest = build_out_of_domain(workdir / "corpus", log=log)
    test_sets = (("in-domain", test_manifest), ("out-of-domain", ood_manifest))
    log(f"[2/4] scoring the base model zero-shot on {_count(test_sets)} test rows")
    before = score_sets(model_name, test_sets, log)
    rows = sum(train for train, _ in DEMO_CORPUS.values())
    log(f"[3/4] fine-tuning with LoRA on {rows} rows for {passes:g} epochs{_epochs_note(passes)}")
    output_dir = workdir / "model"
    config = TrainConfig(
        train_file=[str(train_manifest)],
        model_name_or_path=model_name,
        output_dir=str(output_dir),
        num_train_epochs=passes,
        save_steps=10_000,
        logging_steps=20,
        overwrite_output_dir=True,  # the demo's own folder: a checkpoint left by a Ctrl-C must not stop a rerun
    )
    metrics = train(config)
    log(f"fine-tuned at {metrics['train_samples_per_second']:.2f} samples/s")
    log(f"[4/4] scoring the fine-tuned model on the same {_count(test_sets)} rows (exported to CTranslate2 first)")
    after = score_sets(str(output_dir), test_sets, log)
    result: dict[str, Any] = {
        "before": before,
        "after": after,
        "seconds": time.perf_counter() - started,
        "output_dir": str(output_dir),
    }
    keyed = {
        when: {name: _keyed(scores) for name, scores in sets.items()}
        for when, sets in (("before", before), ("after", after))
    }
    write_json_atomic(workdir / "demo_results.json", {**result, **keyed})
    log(_table(before, after, result["seconds"]))
    log(_next_steps(output_dir, test_manifest))
    return result


def _count(test_sets) -> int:
    return sum(len(json.loads(Path(path).read_text(encoding="utf-8"))) for _, path in test_sets)


def _epochs_note(epochs: float) -> str:
    if epochs >= TRAIN_EPOCHS:
        return ""
    return f" (train's default is {TRAIN_EPOCHS:g}: fewer end the demo sooner; --epochs {TRAIN_EPOCHS:g} matches it)"


def _keyed(scores: dict) -> dict:
    return {str(language): score for language, score in scores.items()}


def _table(before: dict, after: dict, seconds: float) -> str:
    """Per test set and language: zero-shot and fine-tuned error rates. Out-of-domain is the figure that counts."""
    lines = ["", f"{'test set':<15}{'language':<9}{'metric':<8}{'rows':>5}{'zero-shot':>12}{'fine-tuned':>12}"]
    for name, scores in before.items():
        for language, score in scores.items():
            lines.append(
                f"{name:<15}{language or '-':<9}{score['metric'].upper():<8}{score['rows']:>5}"
                f"{score['score']:>12.1%}{after[name][language]['score']:>12.1%}"
            )
    lines.append("in-domain: held-out sentences from the training templates; out-of-domain: sentences written apart")
    lines.append(f"total time: {seconds / 60:.1f} min")
    return "\n".join(lines)


def _next_steps(output_dir: Path, test_manifest: Path) -> str:
    rows = json.loads(test_manifest.read_text(encoding="utf-8"))
    clip, language = test_manifest.parent / rows[0]["audio_path"], rows[0]["language"]
    listing = output_dir.parent / "test_audio_list.txt"
    listing.write_text("".join(f"{test_manifest.parent / row['audio_path']}\n" for row in rows), encoding="utf-8")
    return "\n".join(
        [
            "",
            f"The fine-tuned adapter is in {output_dir}. Transcribe with it:",
            f"  whisper_lora_env/bin/python whisper_lora_inference.py --model_path {output_dir} "
            f"--audio_path {clip} --language {language} --return_timestamps",
            f"  whisper_lora_env/bin/python whisper_lora_inference.py --model_path {output_dir} "
            f"--audio_list {listing} --output_file {output_dir.parent / 'results.json'}",
            "Compare it with the base model, and ship it:",
            f"  whisper_lora_env/bin/whisper-lora evaluate --model_path {output_dir} --compare_with base "
            f"--test_file {test_manifest} --report_csv {output_dir.parent / 'evaluation.csv'}",
            f"  whisper_lora_env/bin/whisper-lora export {output_dir} --output_dir {output_dir.parent / 'exported'}",
            f"  whisper_lora_env/bin/whisper-lora serve --model_path {output_dir}",
        ]
    )
