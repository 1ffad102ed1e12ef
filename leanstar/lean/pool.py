"""The REPL worker pool: a `ProofEnv` over N Lean REPL processes shared by many searches.

    search ─┐                    ┌─ worker 0: REPL process (header envs, proof states)
    search ─┼─► ReplPool ─ pick ─┼─ worker 1
    search ─┘   (asyncio)        └─ worker N-1

- A REPL proof state lives in the process that made it, so a `ProofState` remembers its worker
  and that worker's generation. Each worker runs one request at a time (its own lock).
- `start` goes to the least-loaded ready worker. The header is imported once per worker and
  its environment reused for every theorem (imports and the rest of the header are cached
  apart, so headers that differ only after their imports share the expensive part).
- A worker whose request times out, whose process dies or prints garbage, or that answers
  "Unknown proof state." is retired: its process group is killed, its generation goes up, and
  a fresh process boots in the background (re-importing the most recent headers) while the
  others carry on. Requests queued on it wake at once, see that they are stale, and move on;
  none waits for the restart. Workers are also recycled after `max_commands_per_worker`
  commands (stretched to 5x the commands spent rebuilding lost states, so that rebuilds after
  a recycle cannot trigger the next one) or when their resident memory passes
  `max_worker_rss_mb`.
- A stale state is rebuilt by replaying its tactic path from the theorem's start on a ready
  worker (rebuilt prefixes are cached, so sibling states share the replay). A crash costs a
  retry, never a wrong answer: a request that met a crash is retried once, and a tactic that
  itself makes Lean time out gets `Timeout`.

This module is what the searches ask (start, run a tactic, rebuild, verify); `workers.py` keeps
the processes (boot, pick, one request at a time, retire, recycle).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from leanstar.lean import verifier
from leanstar.lean.env import (
    EnvFailure,
    LeanError,
    ProofFinished,
    ProofState,
    StartResult,
    TacticResult,
    Timeout,
    assemble_proof,
)
from leanstar.lean.interpret import (
    Broken,
    Finished,
    Lost,
    Opened,
    Rejected,
    start_outcome,
    tactic_outcome,
)
from leanstar.lean.process import ReplError, ReplTimeout
from leanstar.lean.screen import screen_proof
from leanstar.lean.workers import (
    Failed,
    Launch,
    NoWorkers,
    PoolOptions,
    Stale,
    Worker,
    Workers,
    split_header,
)
from leanstar.records import Theorem, Verdict

__all__ = ["Launch", "PoolOptions", "ReplPool", "split_header"]


@dataclass(frozen=True, eq=False)
class _Handle:
    theorem: Theorem
    worker: Worker
    generation: int
    proof_state: int

    def valid(self) -> bool:
        return self.worker.ready and self.worker.generation == self.generation


class ReplPool:
    """A `ProofEnv` over a pool of Lean REPL processes (see the module docstring)."""

    def __init__(self, launch: Launch, options: PoolOptions, label: str = "Lean REPL") -> None:
        self.launch, self.options, self.label = launch, options, label
        self.stats: Counter[str] = Counter()
        self.workers = Workers(launch, options, self.stats)
        self._rebuilt: OrderedDict[tuple, _Handle] = OrderedDict()
        self._reference_types: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------ the ProofEnv interface

    async def start(self, theorem: Theorem) -> StartResult:
        if not theorem.statement.strip():
            return EnvFailure(
                f"theorem {theorem.name!r} has no statement text; the REPL needs one "
                "(LeanDojo records carry none: use lean.backend=dojo or replay for them)"
            )
        return await self._attempt(lambda: self._start_once(theorem))

    async def run_tactic(self, state: ProofState, tactic: str) -> TacticResult:
        if not isinstance(state.handle, _Handle):
            return EnvFailure("this proof state was not made by this REPL pool")
        finding = screen_proof(tactic, allow_native_decide=self.options.allow_native_decide)
        if finding is not None:
            return LeanError(f"not sent to Lean: {finding.reason}")
        return await self._attempt(lambda: self._tactic_once(state, tactic))

    async def verify(
        self, theorem: Theorem, tactics: tuple[str, ...], *, screen: bool = True
    ) -> Verdict:
        """The whole-proof check (see `leanstar.lean.verifier`). `screen=False` skips the
        textual screen; only the tests of Lean's own checks use it."""
        body = assemble_proof(tactics)
        finding = screen_proof(body, allow_native_decide=self.options.allow_native_decide)
        if screen and finding is not None:
            return Verdict(False, finding.reason, self.label)
        if not tactics:
            return Verdict(False, "the proof has no tactics", self.label)
        name = verifier.declared_name(theorem.statement)
        if name is None:
            return Verdict(
                False,
                "the statement declares no theorem name, so its axioms cannot be checked",
                self.label,
            )
        result = await self._attempt(lambda: self._verify_once(theorem, body, name))
        if isinstance(result, Verdict):
            return result
        return Verdict(False, f"could not be checked: {_describe(result)}", self.label)

    async def close(self) -> None:
        await self.workers.close()

    # ------------------------------------------------------------ introspection

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers.all if w.proc is not None and w.proc.pid]

    def ready_workers(self) -> int:
        return sum(w.ready for w in self.workers.all)

    # ------------------------------------------------------------ one attempt at a request

    async def _attempt(self, op) -> Any:
        """Run `op`, moving past stale workers and retrying once after a crash."""
        if self.workers.closed:
            return EnvFailure("the Lean pool is closed")
        self.workers.ensure_started()
        crashes, stale = 0, 0
        while True:
            try:
                return await op()
            except Failed as e:
                return e.result
            except Stale:
                stale += 1
                if stale > 4 + 4 * len(self.workers.all):
                    return EnvFailure("the Lean workers kept restarting under this request")
            except ReplTimeout as e:
                return Timeout(e.seconds)
            except ReplError as e:
                crashes += 1
                if crashes > self.options.max_crash_retries:
                    return EnvFailure(f"Lean failed {crashes} times on this request: {e}")
            except NoWorkers as e:
                return EnvFailure(str(e))

    async def _start_once(self, theorem: Theorem, replay: bool = False) -> StartResult:
        w = await self.workers.pick()
        generation = w.generation
        header = theorem.header or self.options.default_header
        env = await self.workers.header_env(w, generation, header)
        payload: dict[str, Any] = {"cmd": f"{theorem.statement} := by sorry"}
        if env is not None:
            payload["env"] = env
        timeout = self.options.tactic_timeout_s
        resp = await self.workers.call(w, generation, payload, timeout, replay=replay)
        out = self._settle(w, start_outcome(resp))
        if isinstance(out, Opened):
            handle = _Handle(theorem, w, generation, out.proof_state)
            return ProofState(theorem.name, out.goals, (), handle)
        return _result(out)

    async def _tactic_once(self, state: ProofState, tactic: str) -> TacticResult:
        handle: _Handle = state.handle
        if not handle.valid():
            handle = await self._rebuild(state)
        payload = {"tactic": tactic, "proofState": handle.proof_state}
        resp = await self.workers.call(
            handle.worker, handle.generation, payload, self.options.tactic_timeout_s
        )
        out = self._settle(handle.worker, tactic_outcome(resp))
        self.workers.maybe_recycle(handle.worker, handle.generation)
        path = (*state.tactics, tactic)
        if isinstance(out, Opened):
            new = _Handle(handle.theorem, handle.worker, handle.generation, out.proof_state)
            return ProofState(state.theorem, out.goals, path, new)
        if isinstance(out, Finished):
            return ProofFinished(state.theorem, path, out.messages)
        return _result(out)

    def _settle(self, w: Worker, out: Any) -> Any:
        """A "lost" answer means the worker forgot its states: retire it and try elsewhere."""
        if isinstance(out, Lost):
            self.workers.retire(w, f"lost its state ({out.message})")
            raise Stale()
        return out

    # ------------------------------------------------------------ rebuilding lost states

    async def _rebuild(self, state: ProofState) -> _Handle:
        """A valid handle for `state`, made by replaying its tactic path on a ready worker."""
        theorem = state.handle.theorem
        tactics = state.tactics
        done, handle, goals = 0, None, None
        for k in range(len(tactics), -1, -1):
            cached = self._rebuilt.get((theorem, tactics[:k]))
            if cached is not None and cached.valid():
                done, handle = k, cached
                self._rebuilt.move_to_end((theorem, tactics[:k]))
                break
        if handle is None:
            start = await self._start_once(theorem, replay=True)
            if not isinstance(start, ProofState):
                raise Failed(
                    EnvFailure(f"rebuilding a lost state: start failed: {_describe(start)}")
                )
            handle, goals = start.handle, start.goals
            self._remember((theorem, ()), handle)
        for i in range(done, len(tactics)):
            payload = {"tactic": tactics[i], "proofState": handle.proof_state}
            resp = await self.workers.call(
                handle.worker,
                handle.generation,
                payload,
                self.options.tactic_timeout_s,
                replay=True,
            )
            out = self._settle(handle.worker, tactic_outcome(resp))
            if not isinstance(out, Opened):
                raise Failed(
                    EnvFailure(
                        f"rebuilding a lost state: tactic {i + 1} of its path now gives "
                        f"{_describe(_result(out))}"
                    )
                )
            handle = _Handle(theorem, handle.worker, handle.generation, out.proof_state)
            goals = out.goals
            self._remember((theorem, tactics[: i + 1]), handle)
            self.stats["replayed_tactics"] += 1
        if goals is not None and goals != state.goals:
            raise Failed(EnvFailure("rebuilding a lost state: the replayed path gives other goals"))
        self.stats["rebuilds"] += 1
        return handle

    def _remember(self, key: tuple, handle: _Handle) -> None:
        self._rebuilt[key] = handle
        self._rebuilt.move_to_end(key)
        while len(self._rebuilt) > 8192:
            self._rebuilt.popitem(last=False)

    # ------------------------------------------------------------ whole-proof verification

    async def _verify_once(self, theorem: Theorem, body: str, name: str) -> Verdict:
        w = await self.workers.pick()
        generation = w.generation
        header = theorem.header or self.options.default_header
        env = await self.workers.header_env(w, generation, header)

        async def command(text: str, env_id: int | None, timeout: float | None = None):
            payload: dict[str, Any] = {"cmd": text}
            if env_id is not None:
                payload["env"] = env_id
            return await self.workers.call(
                w, generation, payload, timeout or self.options.tactic_timeout_s
            )

        try:
            return await self._judge(theorem, body, name, header, env, command)
        finally:
            self.workers.maybe_recycle(w, generation)

    async def _judge(self, theorem, body, name, header, env, command) -> Verdict:
        """The checks of `leanstar.lean.verifier`, in order; the first that fails decides."""
        proof = await command(
            verifier.proof_command(theorem.statement, body), env, self.options.verify_timeout_s
        )
        problem = verifier.judge_compile(proof)
        if problem is not None:
            return Verdict(False, problem, self.label)
        try:
            axioms = verifier.parse_axioms(await command(verifier.axioms_command(name), proof.env))
            native = any(verifier.is_native_axiom(a) for a in axioms)
            problem = verifier.judge_axioms(axioms, self.options.allow_native_decide)
            if problem is not None:
                return Verdict(False, problem, self.label, axioms, native)
            proved = verifier.parse_type(await command(verifier.type_command(name), proof.env))
            key = (header, theorem.statement)
            if key not in self._reference_types:
                ref = await command(verifier.reference_command(theorem.statement, name), env)
                self._reference_types[key] = verifier.parse_type(ref)
        except verifier.VerifyError as e:
            return Verdict(False, str(e), self.label)
        if proved != self._reference_types[key]:
            changed = f"the statement's elaborated type changed: {proved[:300]!r}"
            return Verdict(False, changed, self.label, axioms, native)
        listed = ", ".join(axioms) if axioms else "none"
        reason = (
            f"checked by {self.label}: no errors, no sorry, statement unchanged, axioms: {listed}"
        )
        return Verdict(True, reason, self.label, axioms, native)

    # ------------------------------------------------------------ workers


def _result(out: Any) -> Any:
    if isinstance(out, Rejected):
        return LeanError(out.message)
    if isinstance(out, Broken):
        return EnvFailure(out.message)
    raise AssertionError(f"unexpected outcome {out!r}")


def _describe(result: Any) -> str:
    if isinstance(result, (LeanError, EnvFailure)):
        return result.message
    if isinstance(result, Timeout):
        return f"timed out after {result.seconds:g} s"
    return type(result).__name__
