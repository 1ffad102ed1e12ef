import json
import warnings

import pytest

from leanstar.jsonl import JsonlError, JsonlWriter, ReadReport, TruncatedTail, read_records
from leanstar.records import (
    REPLAY_LABEL,
    SchemaError,
    Step,
    StepOutcome,
    Theorem,
    ThoughtStep,
    TracedStep,
    Trajectory,
    TrajectoryOutcome,
    Verdict,
    from_json,
    to_json,
)

THEOREM = Theorem(
    name="mathd_algebra_10",
    statement="theorem mathd_algebra_10 : abs ((120 : ℝ) / 100 * 30 - 130 / 100 * 20) = 10",
    header="import Mathlib\n",
    split="test",
    source="minif2f",
)
TRACED = TracedStep("Foo.bar", "Mathlib/Foo.lean", 0, "x : ℕ\n⊢ x = x", "rfl", "no goals")
THOUGHT = ThoughtStep(
    state="x : ℕ\n⊢ x = x",
    thought="Both sides are the same term.",
    tactic="rfl",
    theorem="Foo.bar",
    teacher="gpt-4o",
    round=0,
    prompt_version="teacher-v1",
    key="abc",
    usage={"prompt_tokens": 10, "completion_tokens": 5},
)
TRAJECTORY = Trajectory(
    theorem="Foo.bar",
    attempt=3,
    outcome=TrajectoryOutcome.PROVED,
    steps=(
        Step(
            0,
            "x : ℕ\n⊢ x = x",
            "Try a lemma.",
            "exact foo",
            StepOutcome.LEAN_ERROR,
            message="unknown identifier 'foo'",
        ),
        Step(
            0,
            "x : ℕ\n⊢ x = x",
            "Both sides agree.",
            "rfl",
            StepOutcome.PROOF_FINISHED,
            "no goals",
            logprob=-1.5,
            sample_s=0.1,
            lean_s=0.02,
        ),
    ),
    checked_by=REPLAY_LABEL,
    proof="rfl",
    verdict=Verdict(ok=True, reason="replayed", checked_by=REPLAY_LABEL, axioms=("propext",)),
    seed=7,
)


@pytest.mark.parametrize("record", [THEOREM, TRACED, THOUGHT, TRAJECTORY])
def test_round_trip(record):
    data = to_json(record)
    assert data["schema"] == type(record).SCHEMA
    assert from_json(json.loads(json.dumps(data)), type(record)) == record


def test_trajectory_flags():
    assert TRAJECTORY.proved and TRAJECTORY.replay
    assert to_json(TRAJECTORY)["steps"][0]["outcome"] == "lean_error"


def test_schema_errors():
    data = to_json(THEOREM)
    with pytest.raises(SchemaError, match="is a 'theorem', expected a 'trajectory'"):
        from_json(data, Trajectory)
    with pytest.raises(SchemaError, match="newer"):
        from_json({**data, "schema": "theorem/99"}, Theorem)
    with pytest.raises(SchemaError, match="unknown field"):
        from_json({**data, "bogus": 1}, Theorem)
    with pytest.raises(SchemaError, match="theorem.name: expected str"):
        from_json({**data, "name": 5}, Theorem)
    bad = to_json(TRAJECTORY)
    bad["steps"][1]["outcome"] = "kinda"
    with pytest.raises(SchemaError, match=r"steps\[1\]\.outcome"):
        from_json(bad, Trajectory)


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "t.jsonl"
    with JsonlWriter(path) as w:
        w.write(TRAJECTORY)
    with JsonlWriter(path) as w:
        w.write_all([TRAJECTORY, TRAJECTORY])
    report = ReadReport()
    assert read_records(path, Trajectory, report) == [TRAJECTORY] * 3
    assert report.records == 3 and not report.truncated
    assert read_records(tmp_path / "absent.jsonl", Trajectory) == []


def test_truncated_tail_is_reported_then_repaired(tmp_path):
    path = tmp_path / "t.jsonl"
    with JsonlWriter(path) as w:
        w.write(THOUGHT)
    line = json.dumps(to_json(THOUGHT), ensure_ascii=False)
    with path.open("a", encoding="utf-8") as f:
        f.write(line[: len(line) // 2])  # a writer killed mid-line
    report = ReadReport()
    with pytest.warns(TruncatedTail, match=r"t\.jsonl:2: incomplete last line"):
        assert read_records(path, ThoughtStep, report) == [THOUGHT]
    assert report.truncated and report.truncated_line == 2
    with pytest.warns(TruncatedTail, match="moved an incomplete last line"):
        writer = JsonlWriter(path)
    writer.write(THOUGHT)
    writer.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_records(path, ThoughtStep) == [THOUGHT, THOUGHT]
    assert (tmp_path / "t.jsonl.partial").read_text(encoding="utf-8").startswith(line[:20])


def test_bad_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"schema": "theorem/1"\n' + json.dumps(to_json(THEOREM)) + "\n")
    with pytest.raises(JsonlError, match=r"t\.jsonl:1: not valid JSON"):
        read_records(path, Theorem)
    path.write_text(json.dumps(to_json(THOUGHT)) + "\n")
    with pytest.raises(JsonlError, match=r"t\.jsonl:1: record is a 'thought_step'"):
        read_records(path, Theorem)
