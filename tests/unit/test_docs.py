"""The user docs: a README short enough to read, a Chinese one that mirrors it, no process words, tables from results."""

import re
import sys
from pathlib import Path

import pytest

from whisper_lora.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import tables  # noqa: E402

# Words about how the project is made, not how it is used: issue numbers, work sessions, one run's anecdotes.
PROCESS_WORDS = re.compile(
    r"\bissues?\b|\bstop \d+|\b(this|that|last|previous|next|each) (stop|session)\b|\bthis run\b"
    r"|\bwhere .{0,20} stands\b|\b(I|we) (measured|tried|ran)\b|问题 ?\d+|本次运行",
    re.I,
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def help_texts() -> str:
    """--help of the program and of every command."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return "\n".join([parser.format_help(), *(sub.format_help() for sub in commands.choices.values())])


def headings(text: str) -> list[int]:
    """The level of each heading, in order, outside fenced blocks."""
    return [len(m.group(1)) for m in re.finditer(r"^(#+) ", FENCE.sub("", text), re.M)]


def test_the_readme_is_a_guide_of_about_400_lines():
    lines = read("README.md").splitlines()
    assert len(lines) <= 420, len(lines)


@pytest.mark.parametrize("name", ["README.md", "README.zh-CN.md", "--help"])
def test_user_docs_hold_no_process_words(name):
    text = help_texts() if name == "--help" else read(name)
    found = [m.group(0) for m in PROCESS_WORDS.finditer(text)]
    assert not found, f"{name}: {found}"


def test_the_process_word_check_finds_what_it_looks_for():
    for phrase in ("as issue 10 asks", "Where issue 10 stands", "measured this stop", "this run's figures"):
        assert PROCESS_WORDS.search(phrase), phrase
    assert not PROCESS_WORDS.search("live sessions at once; --strict stops on any bad row")


def test_the_chinese_readme_mirrors_the_english_one():
    english, chinese = read("README.md"), read("README.zh-CN.md")
    assert headings(chinese) == headings(english)
    code = lambda text: [body for lang, body in FENCE.findall(text) if lang in ("bash", "python", "json")]  # noqa: E731
    assert code(chinese) == code(english)
    table_flags = lambda text: re.findall(r"^\| `(--\w+)` \|", text, re.M)  # noqa: E731
    assert table_flags(chinese) == table_flags(english) and table_flags(english)


def test_every_flag_of_the_two_seed_commands_is_in_the_readme_table():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    documented = set(re.findall(r"^\| `(--\w+)` \|", read("README.md"), re.M))
    for name in ("train", "transcribe"):
        flags = {a.option_strings[0] for a in commands.choices[name]._actions if a.option_strings}
        flags -= {"-h", "--no-condition_on_previous_text"}
        assert flags <= documented, (name, sorted(flags - documented))


def test_the_benchmark_tables_are_the_result_files():
    text, results = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8"), tables.load_results()
    assert results and not tables.unplaced(text, results)
    assert tables.rendered(text, results) == text, "run: python benchmarks/tables.py"


def test_a_changed_result_makes_its_table_stale():
    text, results = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8"), tables.load_results()
    name = next(iter(results))
    results[name] = {**results[name], "rows": [[*results[name]["rows"][0][:-1], "changed"]]}
    assert tables.rendered(text, results) != text
