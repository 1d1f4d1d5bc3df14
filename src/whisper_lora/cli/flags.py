"""One --flag per dataclass field, parsed as transformers' HfArgumentParser does, without importing transformers."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

TRUE_WORDS, FALSE_WORDS = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def string_to_bool(text: str | bool) -> bool:
    """True or False for yes/no, true/false, t/f, y/n, 1/0 in any case."""
    if isinstance(text, bool):
        return text
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"Truthy value expected: got {text} but expected one of yes/no, true/false, 1/0")


def _without_none(hint):
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kept) != 1:
            raise TypeError(f"only X | None unions can be flags, not {hint}")
        return kept[0]
    return hint


def _default(spec: dataclasses.Field) -> dict:
    if spec.default is not dataclasses.MISSING:
        return {"default": spec.default}
    if spec.default_factory is not dataclasses.MISSING:
        return {"default": spec.default_factory()}
    return {"required": True}


def add_field(parser: argparse.ArgumentParser, spec: dataclasses.Field, hint) -> None:
    """Add --name (and --name-with-hyphens, its aliases, and --no_name for a bool that defaults to True)."""
    options = [f"--{spec.name}"] + ([f"--{spec.name.replace('_', '-')}"] if "_" in spec.name else [])
    kwargs = dict(spec.metadata)
    aliases = kwargs.pop("aliases", [])
    bare = _without_none(hint)
    if bare is bool:
        kwargs.update(type=string_to_bool, nargs="?", const=True, default=bool(spec.default))
    elif typing.get_origin(bare) is list:
        kwargs.update(type=typing.get_args(bare)[0], nargs=kwargs.get("nargs", "+"), **_default(spec))
    else:
        kwargs.update(type=bare, **_default(spec))
    parser.add_argument(*options, *aliases, **kwargs)
    if bare is bool and spec.default is True:
        negated = [f"--no_{spec.name}", f"--no-{spec.name.replace('_', '-')}"]
        # argparse takes the dest's default from the first flag; False here only mirrors transformers
        parser.add_argument(*negated, action="store_false", dest=spec.name, default=False, help=kwargs["help"])


def add_dataclass(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag for every field of the dataclass cls, typed by its annotation and helped by its metadata."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.init:
            add_field(parser, spec, hints[spec.name])
