"""Optional extras, imported only when a feature needs one, with the pip command to run when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from whisper_lora.core.errors import UserError

EXTRAS = {
    "wandb": "wandb",
    "gguf": "ggml",
    "gguf.quants": "ggml",
    "pywhispercpp.model": "ggml",
    "_pywhispercpp": "ggml",
    "ray": "ray",
}


def require(module: str, feature: str) -> ModuleType:
    """Import an optional extra's module, or refuse with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module]
        raise UserError(
            f"{feature} needs {module.split('.', maxsplit=1)[0]}: pip install 'whisper-lora[{extra}]'"
        ) from None
