"""`leanstar thoughts` with the OpenAI-compatible teacher, against a real HTTP server on
loopback (tests/fakes/openai_server.py) that can be told to fail in every way we handle."""

import json
import time
from pathlib import Path

import pytest

from leanstar import cli
from leanstar.jsonl import read_records
from leanstar.records import ThoughtStep, from_json
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.plan import make_plan
from leanstar.thoughts.store import ThoughtFailure, ThoughtReject
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.teacher import echo_teacher, pair_of

KEY = "sk-test-5ecret-d0-not-write-me-0123456789"
ENV = "LEANSTAR_TEST_TEACHER_KEY"
PAIRS = 39  # the bundled sample, 5 theorems per file and 4 tactics per theorem


@pytest.fixture
def server():
    with FakeOpenAIServer(responder=echo_teacher, api_key=KEY, retry_after_s=0.01) as srv:
        yield srv


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)


def run(server, run_dir, *flags):
    argv = [
        "thoughts",
        "--run_dir", str(run_dir),
        "--generator.base_url", server.base_url,
        "--generator.model", "fake-teacher",
        "--generator.api_key_env", ENV,
        "--backoff_base_s", "0.01",
        "--backoff_max_s", "0.05",
        "--progress", "false",
        *flags,
    ]  # fmt: skip
    return cli.main(argv)


def summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


def test_end_to_end_accepts_every_good_answer(server, tmp_path):
    assert run(server, tmp_path / "run") == 0
    records = read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)
    assert len(records) == PAIRS == len(server.bodies())
    assert len({r.key for r in records}) == PAIRS
    for record in records:
        assert record.source == "teacher" and record.teacher == "fake-teacher"
        assert record.round == 0 and record.prompt_version == "teacher-v1"
        assert record.thought.startswith("The goal is")
        assert set(record.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    # What the server was asked: the few-shot conversation, our sampling settings.
    body = server.bodies()[0]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["model"] == "fake-teacher" and body["temperature"] == 0.7
    assert {pair_of(b) for b in server.bodies()} == {(r.state, r.tactic) for r in records}
    s = summary(tmp_path / "run")
    assert s["run_dir"]["accepted"] == PAIRS and s["this_run"]["failed"] == 0
    assert s["this_run"]["requests"] == PAIRS


def test_a_reasoning_teacher_gets_no_sampling_settings(server, tmp_path):
    """OpenAI's reasoning models refuse temperature, top_p, max_tokens, stop and seed."""
    assert run(server, tmp_path / "run", "--reasoning_effort", "low", "--max_pairs", "3") == 0
    assert len(read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)) == 3
    for body in server.bodies():
        assert body["reasoning_effort"] == "low" and body["max_completion_tokens"] == 256
        assert not {"temperature", "top_p", "max_tokens", "stop", "seed"} & set(body)


def test_reasoning_effort_is_for_the_openai_teacher_only(tmp_path, capsys):
    argv = [
        "thoughts",
        "--run_dir",
        str(tmp_path),
        "--teacher",
        "local",
        "--reasoning_effort",
        "low",
    ]
    assert cli.main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())  # the message is wrapped to the terminal
    assert "reasoning_effort='low' applies to teacher: openai only, not 'local'" in err


def test_export_is_a_datasets_dataset_sft_can_read(server, tmp_path):
    import datasets

    assert run(server, tmp_path / "run") == 0
    ds = datasets.load_from_disk(str(tmp_path / "run" / "dataset"))
    records = read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)
    assert len(ds) == len(records)
    assert [from_json(row, ThoughtStep) for row in ds] == records


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request, monkeypatch):
    """Both HTTP transports of the openai client: aiohttp (ours when installed) and httpx."""
    if request.param == "httpx":
        import openai

        from leanstar.thoughts import openai_teacher

        def httpx_client(httpx, concurrency):
            return openai.DefaultAsyncHttpxClient()

        monkeypatch.setattr(openai_teacher, "_http_client", httpx_client)
    else:
        pytest.importorskip("aiohttp")
    return request.param


def test_retries_every_transient_failure_and_counts_them(server, tmp_path, transport):
    for kind, count in [("429", 3), ("500", 2), ("503", 1), ("malformed", 2), ("disconnect", 1)]:
        server.fail_next(kind, count)
    assert run(server, tmp_path / "run", "--concurrency", "4") == 0
    assert len(read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)) == PAIRS
    retries = summary(tmp_path / "run")["this_run"]["retries"]
    assert retries == {"connection": 1, "malformed": 2, "rate_limit": 3, "server_error": 3}
    assert len(server.bodies()) == PAIRS + 9


def test_timeouts_are_retried(server, tmp_path, transport):
    server.fail_next("hang", 2)
    flags = ("--request_timeout_s", "0.5", "--max_pairs", "6", "--concurrency", "3")
    assert run(server, tmp_path / "run", *flags) == 0
    assert summary(tmp_path / "run")["this_run"]["retries"] == {"timeout": 2}
    assert len(read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)) == 6


def test_retry_after_is_honoured(server, tmp_path):
    server.retry_after_s = 0.4
    server.fail_next("429", 1)
    assert run(server, tmp_path / "run", "--max_pairs", "1") == 0
    first, second = server.requests
    assert second.at - first.at >= 0.4


def test_exhausted_retries_are_recorded_then_retried_on_the_next_run(server, tmp_path):
    server.fail_next("500", 3)  # one pair: its first request and both retries fail
    flags = ("--max_retries", "2", "--concurrency", "1")
    assert run(server, tmp_path / "run", *flags) == 1
    failures = read_records(tmp_path / "run" / "failures.jsonl", ThoughtFailure)
    assert [(f.kind, f.attempts) for f in failures] == [("server_error", 3)]
    assert summary(tmp_path / "run")["run_dir"]["failed_not_yet_answered"] == 1
    assert not (tmp_path / "run" / "dataset").exists()  # not exported while incomplete

    asked_before = len(server.bodies())
    assert run(server, tmp_path / "run", *flags) == 0
    assert len(server.bodies()) == asked_before + 1  # only the failed pair is asked again
    records = read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)
    assert len(records) == PAIRS and failures[0].key in {r.key for r in records}
    assert summary(tmp_path / "run")["run_dir"]["failed_not_yet_answered"] == 0


def test_a_refused_request_is_not_retried(server, tmp_path):
    server.fail_next("400", 1)
    assert run(server, tmp_path / "run", "--concurrency", "1", "--max_pairs", "3") == 1
    (failure,) = read_records(tmp_path / "run" / "failures.jsonl", ThoughtFailure)
    assert failure.kind == "refused" and failure.attempts == 1
    assert "maximum context length" in failure.error


def test_wrong_key_stops_the_run_at_once(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "sk-wrong")
    assert run(server, tmp_path / "run", "--concurrency", "4") == 2
    assert "HTTP 401" in capsys.readouterr().err
    assert len(server.requests) <= 4  # the requests already in flight, nothing more
    assert summary(tmp_path / "run")["status"].startswith("stopped")


def test_missing_key_is_a_clear_error(server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ENV)
    assert run(server, tmp_path / "run") == 2
    assert f"${ENV}" in capsys.readouterr().err
    assert server.requests == []


def test_api_key_never_reaches_any_written_file(server, tmp_path):
    """Through success, failures, rejects and export: grep every byte the run wrote."""
    server.fail_next("500", 3)
    server.fail_next("malformed", 1)
    run(server, tmp_path / "run", "--max_retries", "2", "--concurrency", "1")
    server.responder = lambda path, body: "not the format"
    run(server, tmp_path / "other", "--max_pairs", "3")
    assert run(server, tmp_path / "run") == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files) and len(files) > 10
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert ENV in (tmp_path / "run" / "config.yaml").read_text()  # the variable's name only
    # and the key did travel, in the header where it belongs
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_rejected_answers_are_kept_with_their_reason(server, tmp_path):
    def answers(path, body):
        state, tactic = pair_of(body)
        if "⊢ 0 <" in state:
            return f"THOUGHT:\nJust use {tactic} directly.\nTACTIC:\n```lean\n{tactic}\n```"
        if "Heap" in state:
            return "I think the answer is simp."
        return echo_teacher(path, body)

    server.responder = answers
    assert run(server, tmp_path / "run") == 0
    rejects = read_records(tmp_path / "run" / "rejects.jsonl", ThoughtReject)
    by_reason = summary(tmp_path / "run")["run_dir"]["rejected_by_reason"]
    assert set(by_reason) == {
        "unparsable",
        "tactic_mismatch",
        "empty_thought",
        "overlong_thought",
        "reveals_tactic",
        "reveals_lemma",
        "duplicate",
    }
    assert by_reason["unparsable"] == sum(1 for r in rejects if "Heap" in r.state) > 0
    assert by_reason["reveals_tactic"] == sum(1 for r in rejects if "⊢ 0 <" in r.state) > 0
    assert all(r.answer and r.detail and r.usage["total_tokens"] > 0 for r in rejects)
    accepted = read_records(tmp_path / "run" / "thoughts.jsonl", ThoughtStep)
    assert len(accepted) + len(rejects) == PAIRS
    # rejected pairs are done too: a second run asks for nothing
    asked = len(server.bodies())
    assert run(server, tmp_path / "run") == 0
    assert len(server.bodies()) == asked


def test_concurrency_is_bounded_and_used(server, tmp_path):
    server.latency_s = 0.1
    assert run(server, tmp_path / "run", "--concurrency", "5") == 0
    assert server.max_in_flight == 5


def test_requests_per_minute_budget(server, tmp_path):
    # 300 per minute = 5 per second, one second of burst: 12 requests take >= 1.4 s.
    start = time.monotonic()
    assert run(server, tmp_path / "run", "--requests_per_minute", "300", "--max_pairs", "12") == 0
    times = sorted(r.at for r in server.requests)
    assert times[-1] - times[0] >= (12 - 5) / 5 - 0.05
    assert time.monotonic() - start < 30


def test_same_pair_twice_is_asked_once(tmp_path):
    data = json.loads(Path("leanstar/data/bundled/leandojo-benchmark4-sample.json").read_text())
    copy = [dict(t, file_path="Copy/" + t["file_path"]) for t in data]
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(data + copy))
    cfg = ThoughtsConfig(input=str(path))
    plan = make_plan(cfg, done_keys=set())
    assert plan.sampled == 2 * PAIRS and plan.duplicate_pairs == PAIRS
    assert len(plan.todo) == PAIRS
    done = {plan.todo[0].key}
    assert make_plan(cfg, done_keys=done).done_before == 1


def test_key_depends_on_teacher_and_prompt_version():
    from leanstar.thoughts.store import thought_key

    base = thought_key("⊢ True", "trivial", "m", "teacher-v1")
    assert base == thought_key("⊢ True", "trivial", "m", "teacher-v1")
    others = {
        thought_key("⊢ True ", "trivial", "m", "teacher-v1"),
        thought_key("⊢ True", "trivial", "m2", "teacher-v1"),
        thought_key("⊢ True", "trivial", "m", "teacher-v2"),
        thought_key("⊢ Tru", "etrivial", "m", "teacher-v1"),
    }
    assert base not in others and len(others) == 4
