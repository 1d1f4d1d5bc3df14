"""transcribe --ray on a local Ray: an actor killed mid-run, the job killed and rerun, and no Ray process left behind."""

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from helpers import real_speech

pytest.importorskip("ray")  # a failure under CI=true (conftest.py)

FILES = 40  # at two files a task, enough tasks that an actor is killed in the middle of the run


@pytest.fixture
def job(tmp_path):
    """The listing, output, sidecar and PID folder of one batch job over recorded English prompts."""
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(p.audio_path for p in real_speech("en")[:FILES]) + "\n")
    (tmp_path / "pids").mkdir()
    output = tmp_path / "out.json"
    return {"listing": listing, "output": output, "sidecar": tmp_path / "out.json.partial.jsonl", "tmp": tmp_path}


def start(job) -> subprocess.Popen:
    """The command in a session of its own, so that every process it starts can be found and killed with it."""
    command = [sys.executable, "-m", "whisper_lora.cli", "transcribe", "--model_path", "base", "--language", "en"]
    command += ["--audio_list", str(job["listing"]), "--output_file", str(job["output"]), "--batch_size", "2"]
    command += ["--ray", "--ray_actors", "2"]
    env = {**os.environ, "WHISPER_LORA_RAY_PIDS": str(job["tmp"] / "pids")}
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)


def results(sidecar) -> list[str]:
    """The paths of the finished files in the sidecar, a path for each line (a torn last line left out)."""
    paths = []
    for line in sidecar.read_text().splitlines()[1:] if sidecar.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            paths.append(json.loads(line)["path"])
    return paths


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def in_session(session: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                found.append(process)
        except (ProcessLookupError, PermissionError):
            pass
    return found


def test_an_actor_killed_mid_run_loses_nothing_and_duplicates_nothing(job):
    driver = start(job)
    wait_for(lambda: len(os.listdir(job["tmp"] / "pids")) >= 2 and len(results(job["sidecar"])) >= 2)
    os.kill(int(os.listdir(job["tmp"] / "pids")[0]), signal.SIGKILL)
    assert len(results(job["sidecar"])) < FILES  # killed in the middle of the run
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    expected = job["listing"].read_text().split()
    assert [r["path"] for r in json.loads(job["output"].read_text())] == expected
    assert all(r["error"] is None and r["text"] for r in json.loads(job["output"].read_text()))
    assert collections.Counter(results(job["sidecar"])) == collections.Counter(expected)  # each once
    assert len(os.listdir(job["tmp"] / "pids")) >= 3  # the killed actor was replaced
    wait_for(lambda: not in_session(driver.pid), 30)  # Ray shut down with the command

    actors = len(os.listdir(job["tmp"] / "pids"))
    again = start(job)  # the same command: everything is done already
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0 and f"{FILES} of {FILES} files are done already" in stderr, stderr
    assert len(os.listdir(job["tmp"] / "pids")) == actors  # Ray was not even started
    assert collections.Counter(results(job["sidecar"])) == collections.Counter(expected)


def test_a_killed_job_resumes_from_its_sidecar(job):
    driver = start(job)
    wait_for(lambda: len(results(job["sidecar"])) >= 3)
    os.killpg(driver.pid, signal.SIGKILL)  # the whole job, as a scheduler or a terminal kills it
    driver.wait(30)
    wait_for(lambda: not in_session(driver.pid), 30)
    finished = results(job["sidecar"])
    assert 3 <= len(finished) < FILES
    rerun = start(job)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"{len(finished)} of {FILES} files are done already" in stderr
    expected = job["listing"].read_text().split()
    assert collections.Counter(results(job["sidecar"])) == collections.Counter(expected)  # none twice
    assert [r["path"] for r in json.loads(job["output"].read_text())] == expected
    wait_for(lambda: not in_session(rerun.pid), 30)


def test_evaluate_on_ray_scores_as_one_process_does(tmp_path):
    rows = [{"audio_path": p.audio_path, "text": p.text, "language": p.language} for p in real_speech("en")[:4]]
    rows += [{"audio_path": p.audio_path, "text": p.text, "language": p.language} for p in real_speech("es")[:4]]
    manifest = tmp_path / "test.json"
    manifest.write_text(json.dumps(rows))
    reports = {}
    for name, extra in (("here", []), ("ray", ["--ray", "--ray_actors", "2"])):
        report = tmp_path / f"{name}.csv"
        command = [sys.executable, "-m", "whisper_lora.cli", "evaluate", "--model_path", "base", "--temperature", "0"]
        result = subprocess.run(
            [*command, "--test_file", str(manifest), "--report_csv", str(report), *extra],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        reports[name] = report.read_text(encoding="utf-8-sig")
        assert "on Ray" in result.stderr if extra else "(ct2)" in result.stderr
    assert reports["ray"] == reports["here"]  # the same words on every row
