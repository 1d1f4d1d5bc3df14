"""The demo talks: with its output going to a log, every phase prints readable progress lines and the total."""

import functools
import re

from test_demo_corpus import quiet_speak

from whisper_lora.core import progress
from whisper_lora.demo import run as demo


def test_every_phase_of_the_demo_prints_progress_lines_to_a_log(short_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "speak", quiet_speak([]))
    monkeypatch.setattr(demo, "DEMO_CORPUS", {"zh": (6, 2), "en": (2, 1)})
    monkeypatch.setattr(demo, "build_out_of_domain", functools.partial(demo.build_out_of_domain, zh=2, en=1))
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.05)  # the log's heartbeat, 10 s in use
    demo.run_demo(tmp_path / "demo", str(short_model_dir), epochs=1.0)
    out = capsys.readouterr().out
    assert "\r" not in out  # whole lines, no bar redrawn in place
    phases = [out.index(f"[{n}/4]") for n in range(1, 5)]
    assert phases == sorted(phases), out
    for phase, (start, end) in enumerate(zip(phases, [*phases[1:], len(out)], strict=True), 1):
        lines = out[start:end]
        what = {1: "speaking", 2: "scoring", 3: "training", 4: "scoring"}[phase]
        assert re.search(rf"^{what}: \d+/\d+ \w+s ", lines, re.M), (phase, lines)
    assert re.search(r"^training: \d+/\d+ steps \(\d+%\), \d+:\d\d elapsed, about \d+:\d\d left$", out, re.M), out
    assert "(train's default is 3" in out  # why the demo trains fewer epochs than train
    assert re.search(r"^total time: \d+\.\d min$", out, re.M), out
