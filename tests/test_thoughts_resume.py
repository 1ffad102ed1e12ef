"""A synthesis run killed with SIGKILL resumes with nothing lost, duplicated or asked twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanstar import cli
from leanstar.jsonl import TruncatedTail, read_records
from leanstar.prompting import TEACHER_PROMPT_VERSION
from leanstar.records import ThoughtStep
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.plan import make_plan
from leanstar.thoughts.store import thought_key
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.teacher import echo_teacher, pair_of

REPO = Path(__file__).resolve().parents[1]
ENV = "LEANSTAR_TEST_TEACHER_KEY"
MODEL = "fake-teacher"


def flags(server, run_dir):
    return [
        "thoughts",
        "--run_dir", str(run_dir),
        "--generator.base_url", server.base_url,
        "--generator.model", MODEL,
        "--generator.api_key_env", ENV,
        "--concurrency", "3",
        "--progress", "false",
        "--export", "false",
    ]  # fmt: skip


def key_of(body):
    state, tactic = pair_of(body)
    return thought_key(state, tactic, MODEL, TEACHER_PROMPT_VERSION)


def written_keys(run_dir):
    return [r.key for r in read_records(run_dir / "thoughts.jsonl", ThoughtStep)]


def all_keys():
    return {job.key for job in make_plan(ThoughtsConfig(generator=_model()), set()).todo}


def _model():
    from leanstar.config import GeneratorConfig

    return GeneratorConfig(model=MODEL)


def test_kill_9_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    expected = all_keys()
    with FakeOpenAIServer(responder=echo_teacher, latency_s=0.15) as server:
        env = {**os.environ, ENV: "sk-test", "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "leanstar", *flags(server, run_dir)]
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(_lines(run_dir / "thoughts.jsonl")) < 8:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote nothing in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        before = set(written_keys(run_dir))
        asked_before = len(server.bodies())
        assert 8 <= len(before) < len(expected)

        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        keys = written_keys(run_dir)
        assert len(keys) == len(set(keys)) == len(expected)  # nothing duplicated
        assert set(keys) == expected  # nothing lost
        asked_after = [key_of(b) for b in server.bodies()[asked_before:]]
        assert before.isdisjoint(asked_after)  # nothing finished was asked again
        assert sorted(asked_after) == sorted(expected - before)  # each open pair asked once


def test_a_torn_last_line_is_set_aside_and_its_pair_asked_again(tmp_path, monkeypatch):
    """A kill in the middle of a write leaves a partial line: it is moved to .partial and the
    pair it held is asked again, so the file stays readable and complete."""
    monkeypatch.setenv(ENV, "sk-test")
    run_dir = tmp_path / "run"
    with FakeOpenAIServer(responder=echo_teacher) as server:
        assert cli.main([*flags(server, run_dir), "--max_pairs", "5"]) == 0
        path = run_dir / "thoughts.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        torn = lines[-1][:40]
        path.write_bytes(b"".join(lines[:-1]) + torn)
        asked = len(server.bodies())
        with pytest.warns(TruncatedTail):
            assert cli.main([*flags(server, run_dir), "--max_pairs", "5"]) == 0
        assert len(server.bodies()) == asked + 1
    assert len(set(written_keys(run_dir))) == len(written_keys(run_dir)) == 5
    assert (run_dir / "thoughts.jsonl.partial").read_bytes() == torn + b"\n"


def _lines(path):
    return path.read_bytes().splitlines() if path.exists() else []


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    with FakeOpenAIServer(responder=echo_teacher, latency_s=0.15) as server:
        env = {**os.environ, ENV: "sk-test", "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "leanstar", *flags(server, run_dir)]
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 120
        while len(_lines(run_dir / "thoughts.jsonl")) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err.decode()[-2000:]
        assert b"the same command resumes" in err
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert summary["run_dir"]["accepted"] == len(written_keys(run_dir)) >= 5
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    keys = written_keys(run_dir)
    assert len(keys) == len(set(keys)) == len(all_keys())
