"""The REPL protocol layer against real transcripts: every recorded answer parsed, round-tripped,
replayed through a real subprocess by the client, and interpreted; and `ReplProcess` faults."""

import asyncio
import json
import sys
from pathlib import Path

import pytest
from fakes import FAKE_REPL, V415, V433, fake_repl_argv
from fakes.fake_repl import split_blocks

from leanstar.lean.interpret import Finished, Lost, Opened, Rejected, start_outcome, tactic_outcome
from leanstar.lean.process import ReplCrashed, ReplProcess, ReplProtocolError, ReplTimeout
from leanstar.lean.protocol import (
    CommandResponse,
    ErrorResponse,
    ProtocolError,
    TacticResponse,
    encode_request,
    parse_response,
    to_wire,
)

VERSIONS = {"v4.33.0-rc2": V433, "v4.15.0": V415}


def transcripts(folder: Path):
    """(name, requests, answers) of every test that has recorded answers."""
    out = []
    for path in sorted(folder.rglob("*.in")):
        expected = path.with_name(path.name[: -len(".in")] + ".expected.out")
        if expected.is_file():
            requests = [json.loads(b) for b in split_blocks(path.read_text(encoding="utf-8"))]
            answers = [json.loads(b) for b in split_blocks(expected.read_text(encoding="utf-8"))]
            out.append((str(path.relative_to(folder)), requests, answers))
    return out


ALL = {version: transcripts(folder) for version, folder in VERSIONS.items()}


def test_fixtures_are_all_there():
    assert len(ALL["v4.33.0-rc2"]) == 71 and len(ALL["v4.15.0"]) == 51
    assert sum(len(a) for _, _, a in ALL["v4.33.0-rc2"]) == 217
    assert sum(len(a) for _, _, a in ALL["v4.15.0"]) == 144


@pytest.mark.parametrize("version", VERSIONS)
def test_every_recorded_answer_parses_and_round_trips(version):
    kinds = set()
    for name, _, answers in ALL[version]:
        for answer in answers:
            parsed = parse_response(answer)
            kinds.add(type(parsed))
            assert to_wire(parsed) == answer, name
            assert getattr(parsed, "extra", ()) == (), f"{name}: unknown keys"
    assert kinds == {CommandResponse, TacticResponse, ErrorResponse}


def test_proof_status_appears_only_in_newer_repl():
    def statuses(version):
        return [
            parse_response(a).proof_status
            for _, _, answers in ALL[version]
            for a in answers
            if "goals" in a
        ]

    assert all(s is None for s in statuses("v4.15.0"))
    assert all(s is not None for s in statuses("v4.33.0-rc2"))


def test_malformed_answers_are_protocol_errors():
    for bad in ([], {"goals": "x", "proofState": 1}, {"env": "0"}, {"what": 1}, {"message": 3}):
        with pytest.raises(ProtocolError):
            parse_response(bad)


def test_requests_go_out_as_one_line():
    wire = encode_request({"cmd": "theorem t : 1 = 1 := by\n  rfl", "env": 3})
    assert wire.endswith(b"\n\n") and wire.count(b"\n") == 2
    assert json.loads(wire) == {"cmd": "theorem t : 1 = 1 := by\n  rfl", "env": 3}
    assert "⊢".encode() in encode_request({"tactic": "show ⊢"})  # UTF-8, not \u escapes


@pytest.mark.parametrize("version", VERSIONS)
def test_client_replays_every_transcript_through_a_process(version):
    """One fake REPL process, reset between transcripts, driven by the real client code."""

    async def main():
        proc = ReplProcess(fake_repl_argv(transcripts=[VERSIONS[version]]))
        await proc.spawn()
        try:
            for name, requests, answers in ALL[version]:
                reset = await proc.request({"fake": "reset"}, 10)
                assert reset == ErrorResponse("fake REPL: reset")
                for request, expected in zip(requests, answers):
                    got = await proc.request(request, 10)
                    assert to_wire(got) == expected, f"{name}: {request}"
        finally:
            await proc.close()

    asyncio.run(main())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_tactic_answer_has_a_meaning(version):
    """`tactic_outcome` never raises, and no-goals answers that are not clean never finish."""
    for name, requests, answers in ALL[version]:
        for request, answer in zip(requests, answers):
            if "tactic" not in request:
                continue
            resp = parse_response(answer)
            out = tactic_outcome(resp)
            if isinstance(out, Finished):
                assert isinstance(resp, TacticResponse) and not resp.goals and not resp.sorries
                assert resp.proof_status in (None, "Completed"), name
            if isinstance(resp, TacticResponse) and resp.sorries:
                assert isinstance(out, Rejected), name


def _answer(version, test, index):
    for name, _, answers in ALL[version]:
        if name == f"test/{test}.in":
            return parse_response(answers[index])
    raise KeyError(test)


def test_interpretation_of_recorded_answers():
    # several goals, joined as LeanDojo prints them
    out = tactic_outcome(_answer("v4.33.0-rc2", "proof_branching", 1))
    assert isinstance(out, Opened) and out.goals.count("⊢") == 2 and "\n\ncase right" in out.goals
    # a completed proof
    assert tactic_outcome(_answer("v4.33.0-rc2", "proof_branching", 4)) == Finished()
    # the kernel refused the proof although no goals remain
    out = tactic_outcome(_answer("v4.33.0-rc2", "app_type_mismatch2", 4))
    assert isinstance(out, Rejected) and "kernel type check failed" in out.message
    # `sorry` as a tactic: "Incomplete: contains sorry" (v4.33) / only a sorries entry (v4.15)
    assert isinstance(tactic_outcome(_answer("v4.33.0-rc2", "tactic_mode_sorry", 1)), Rejected)
    assert isinstance(tactic_outcome(_answer("v4.15.0", "tactic_mode_sorry", 1)), Rejected)
    # metavariables left
    meta = [
        tactic_outcome(parse_response(a))
        for _, _, answers in ALL["v4.33.0-rc2"]
        for a in answers
        if a.get("proofStatus") == "Incomplete: contains metavariable(s)" and not a["goals"]
    ]
    assert meta and all(isinstance(o, Rejected) for o in meta)
    # a Lean error answer, an error message inside a tactic answer, a lost proof state
    out = tactic_outcome(_answer("v4.33.0-rc2", "unknown_tactic", 1))
    assert out == Rejected("<input>:1:1: unknown tactic")
    out = tactic_outcome(_answer("v4.33.0-rc2", "invalid_tactic", 1))
    assert isinstance(out, Rejected) and "my_fake_premise" in out.message
    assert tactic_outcome(_answer("v4.33.0-rc2", "unknown_proof_state", 1)) == Lost(
        "Unknown proof state."
    )
    # Mathlib's `exact?` "Try this" info rides along with a finished proof
    out = tactic_outcome(_answer("v4.33.0-rc2", "Mathlib/test/exact", 2))
    assert isinstance(out, Finished) and "Try this" in out.messages[0]


def test_start_interpretation():
    out = start_outcome(_answer("v4.33.0-rc2", "proof_branching", 0))
    assert out == Opened("p q r : Prop\nh1 : p ∧ q\nh2 : q → r\n⊢ p ∧ r", 0)
    out = start_outcome(_answer("v4.33.0-rc2", "have_by_sorry", 0))
    assert isinstance(out, Rejected) and "unsolved goals" in out.message
    two = start_outcome(_answer("v4.33.0-rc2", "self_proof_check", 7))  # rootGoals: 2 sorries
    assert isinstance(two, Rejected) and "exactly one `sorry`" in two.message


# ---------------------------------------------------------------- ReplProcess faults


def run(coro):
    return asyncio.run(coro)


def test_timeout_kills_the_process_group():
    async def main():
        proc = ReplProcess(fake_repl_argv("--fault", "hang", "--fault-at", "1"))
        await proc.spawn()
        with pytest.raises(ReplTimeout):
            await proc.request({"cmd": "def f : Nat := by sorry"}, 0.5)
        assert not proc.alive
        await proc.close()
        return proc.pid

    pid = run(main())
    assert not _running(pid)


def test_crash_reports_exit_status_and_stderr():
    async def main():
        proc = ReplProcess(fake_repl_argv("--fault", "crash", "--fault-at", "2"))
        await proc.spawn()
        await proc.request({"cmd": "def f : Nat := by sorry"}, 10)
        with pytest.raises(ReplCrashed, match=r"exit status 134: fake REPL: crashing as told"):
            await proc.request({"tactic": "exact 42", "proofState": 0}, 10)
        with pytest.raises(ReplCrashed):
            await proc.request({"tactic": "exact 42", "proofState": 0}, 10)
        await proc.close()

    run(main())


def test_garbage_is_a_protocol_error():
    async def main():
        proc = ReplProcess(fake_repl_argv("--fault", "garbage", "--fault-at", "1"))
        await proc.spawn()
        with pytest.raises(ReplProtocolError, match="not JSON"):
            await proc.request({"cmd": "def f : Nat := by sorry"}, 10)
        assert not proc.alive
        await proc.close()

    run(main())


def test_memory_cap_makes_a_growing_process_fail():
    async def main():
        proc = ReplProcess(fake_repl_argv("--synthetic", "--grow-mb", "64"), memory_limit_mb=300)
        await proc.spawn()
        with pytest.raises(ReplCrashed, match="MemoryError"):
            for _ in range(20):
                await proc.request({"cmd": "def f : Nat := by sorry"}, 10)
        await proc.close()

    run(main())


def test_missing_program_is_a_crash_not_a_hang():
    async def main():
        proc = ReplProcess(["/nonexistent/repl"])
        with pytest.raises(ReplCrashed, match="could not start"):
            await proc.spawn()

    run(main())


def test_fake_rejects_unrecorded_requests_and_unknown_ids():
    async def main():
        proc = ReplProcess((sys.executable, str(FAKE_REPL), "--transcripts", str(V433)))
        await proc.spawn()
        unknown = await proc.request({"cmd": "theorem never_recorded : True := by sorry"}, 10)
        lost = await proc.request({"tactic": "rfl", "proofState": 99}, 10)
        await proc.close()
        return unknown, lost

    unknown, lost = run(main())
    assert isinstance(unknown, ErrorResponse) and unknown.message.startswith("fake REPL:")
    assert lost == ErrorResponse("Unknown proof state.")


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
