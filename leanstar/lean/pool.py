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
  commands or when their resident memory passes `max_worker_rss_mb`.
- A stale state is rebuilt by replaying its tactic path from the theorem's start on a ready
  worker (rebuilt prefixes are cached, so sibling states share the replay). A crash costs a
  retry, never a wrong answer: a request that met a crash is retried once, and a tactic that
  itself makes Lean time out gets `Timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from leanstar.config import LeanConfig
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
    command_env,
    start_outcome,
    tactic_outcome,
)
from leanstar.lean.process import ReplError, ReplProcess, ReplTimeout
from leanstar.lean.screen import screen_proof
from leanstar.records import Theorem, Verdict


@dataclass(frozen=True)
class Launch:
    """How to start one REPL process."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: dict[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PoolOptions:
    num_workers: int = 1
    tactic_timeout_s: float = 60.0
    start_timeout_s: float = 600.0
    verify_timeout_s: float = 300.0
    memory_limit_mb: int = 0
    max_commands_per_worker: int = 1000
    max_worker_rss_mb: int = 0
    rss_check_every: int = 20
    allow_native_decide: bool = False
    default_header: str = ""
    max_crash_retries: int = 1
    max_boot_failures: int = 3

    @classmethod
    def from_config(cls, cfg: LeanConfig, num_workers: int) -> PoolOptions:
        return cls(
            num_workers=num_workers,
            tactic_timeout_s=cfg.tactic_timeout_s,
            start_timeout_s=cfg.start_timeout_s,
            verify_timeout_s=cfg.verify_timeout_s,
            memory_limit_mb=cfg.memory_limit_mb,
            max_commands_per_worker=cfg.max_commands_per_worker,
            max_worker_rss_mb=cfg.max_worker_rss_mb,
            allow_native_decide=cfg.allow_native_decide,
            default_header=cfg.header,
        )


class _Stale(Exception):
    """The worker a request was meant for has restarted since."""


class _NoWorkers(Exception):
    pass


class _Failed(Exception):
    """A request ends with this result (e.g. a rebuild that Lean refused)."""

    def __init__(self, result: Any) -> None:
        self.result = result


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.proc: ReplProcess | None = None
        self.lock = asyncio.Lock()
        self.ready = False
        self.broken: str | None = None
        self.pending = 0
        self.commands = 0
        self.rss_checked_at = 0
        self.boot_failures = 0
        self.envs: dict[tuple, asyncio.Future] = {}


@dataclass(frozen=True, eq=False)
class _Handle:
    theorem: Theorem
    worker: _Worker
    generation: int
    proof_state: int

    def valid(self) -> bool:
        return self.worker.ready and self.worker.generation == self.generation


def split_header(header: str) -> tuple[str, str]:
    """(the leading `import` lines, the rest), each stripped."""
    lines = header.strip().splitlines()
    n = 0
    while n < len(lines) and (lines[n].startswith("import ") or not lines[n].strip()):
        n += 1
    imports = "\n".join(line.strip() for line in lines[:n] if line.strip())
    return imports, "\n".join(lines[n:]).strip()


class ReplPool:
    """A `ProofEnv` over a pool of Lean REPL processes (see the module docstring)."""

    def __init__(self, launch: Launch, options: PoolOptions, label: str = "Lean REPL") -> None:
        self.launch, self.options, self.label = launch, options, label
        self.stats: Counter[str] = Counter()
        self._workers = [_Worker(i) for i in range(max(1, options.num_workers))]
        self._started = self._closed = self._all_booted = False
        self._wake: asyncio.Event | None = None
        self._boots: set[asyncio.Task] = set()  # cancelled on close
        self._reaps: set[asyncio.Task] = set()  # killed processes being reaped; awaited on close
        self._rebuilt: OrderedDict[tuple, _Handle] = OrderedDict()
        self._reference_types: dict[tuple[str, str], str] = {}
        self._recent_headers: list[str] = [options.default_header] if options.default_header else []
        self._turn = 0

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
        self._closed = True
        for task in list(self._boots):
            task.cancel()
        for task in [*self._boots, *self._reaps]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for w in self._workers:
            w.ready = False
            if w.proc is not None:
                await w.proc.close()
                w.proc = None

    # ------------------------------------------------------------ introspection

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.pid]

    def ready_workers(self) -> int:
        return sum(w.ready for w in self._workers)

    # ------------------------------------------------------------ one attempt at a request

    async def _attempt(self, op) -> Any:
        """Run `op`, moving past stale workers and retrying once after a crash."""
        if self._closed:
            return EnvFailure("the Lean pool is closed")
        self._ensure_started()
        crashes, stale = 0, 0
        while True:
            try:
                return await op()
            except _Failed as e:
                return e.result
            except _Stale:
                stale += 1
                if stale > 4 + 4 * len(self._workers):
                    return EnvFailure("the Lean workers kept restarting under this request")
            except ReplTimeout as e:
                return Timeout(e.seconds)
            except ReplError as e:
                crashes += 1
                if crashes > self.options.max_crash_retries:
                    return EnvFailure(f"Lean failed {crashes} times on this request: {e}")
            except _NoWorkers as e:
                return EnvFailure(str(e))

    async def _start_once(self, theorem: Theorem) -> StartResult:
        w = await self._pick()
        generation = w.generation
        header = theorem.header or self.options.default_header
        env = await self._header_env(w, generation, header)
        payload: dict[str, Any] = {"cmd": f"{theorem.statement} := by sorry"}
        if env is not None:
            payload["env"] = env
        resp = await self._call(w, generation, payload, self.options.tactic_timeout_s)
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
        resp = await self._call(
            handle.worker, handle.generation, payload, self.options.tactic_timeout_s
        )
        out = self._settle(handle.worker, tactic_outcome(resp))
        self._maybe_recycle(handle.worker, handle.generation)
        path = (*state.tactics, tactic)
        if isinstance(out, Opened):
            new = _Handle(handle.theorem, handle.worker, handle.generation, out.proof_state)
            return ProofState(state.theorem, out.goals, path, new)
        if isinstance(out, Finished):
            return ProofFinished(state.theorem, path, out.messages)
        return _result(out)

    def _settle(self, w: _Worker, out: Any) -> Any:
        """A "lost" answer means the worker forgot its states: retire it and try elsewhere."""
        if isinstance(out, Lost):
            self._retire(w, f"lost its state ({out.message})")
            raise _Stale()
        return out

    # ------------------------------------------------------------ rebuilding lost states

    async def _rebuild(self, state: ProofState) -> _Handle:
        """A valid handle for `state`, made by replaying its tactic path on a ready worker."""
        theorem = state.handle.theorem
        tactics = state.tactics
        done, handle = 0, None
        for k in range(len(tactics), -1, -1):
            cached = self._rebuilt.get((theorem, tactics[:k]))
            if cached is not None and cached.valid():
                done, handle = k, cached
                self._rebuilt.move_to_end((theorem, tactics[:k]))
                break
        if handle is None:
            start = await self._start_once(theorem)
            if not isinstance(start, ProofState):
                raise _Failed(
                    EnvFailure(f"rebuilding a lost state: start failed: {_describe(start)}")
                )
            handle = start.handle
            self._remember((theorem, ()), handle)
        goals = None
        for i in range(done, len(tactics)):
            payload = {"tactic": tactics[i], "proofState": handle.proof_state}
            resp = await self._call(
                handle.worker, handle.generation, payload, self.options.tactic_timeout_s
            )
            out = self._settle(handle.worker, tactic_outcome(resp))
            if not isinstance(out, Opened):
                raise _Failed(
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
            raise _Failed(
                EnvFailure("rebuilding a lost state: the replayed path gives other goals")
            )
        self.stats["rebuilds"] += 1
        return handle

    def _remember(self, key: tuple, handle: _Handle) -> None:
        self._rebuilt[key] = handle
        self._rebuilt.move_to_end(key)
        while len(self._rebuilt) > 8192:
            self._rebuilt.popitem(last=False)

    # ------------------------------------------------------------ whole-proof verification

    async def _verify_once(self, theorem: Theorem, body: str, name: str) -> Verdict:
        w = await self._pick()
        generation = w.generation
        header = theorem.header or self.options.default_header
        env = await self._header_env(w, generation, header)

        async def command(text: str, env_id: int | None, timeout: float | None = None):
            payload: dict[str, Any] = {"cmd": text}
            if env_id is not None:
                payload["env"] = env_id
            return await self._call(
                w, generation, payload, timeout or self.options.tactic_timeout_s
            )

        try:
            return await self._judge(theorem, body, name, header, env, command)
        finally:
            self._maybe_recycle(w, generation)

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

    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        self._wake = asyncio.Event()
        for w in self._workers:
            self._boot_in_background(w)

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        if wake is not None:
            wake.set()

    async def _pick(self) -> _Worker:
        deadline = time.monotonic() + self.options.start_timeout_s
        while True:
            ready = [w for w in self._workers if w.ready]
            # At start-up, wait for every first boot: states stay where they are made, so
            # the first worker up would otherwise keep every initial search for good.
            booting = not self._all_booted and any(not (w.ready or w.broken) for w in self._workers)
            if ready and (not booting or time.monotonic() >= deadline):
                self._all_booted = True
                self._turn += 1
                n = len(self._workers)
                return min(ready, key=lambda w: (w.pending, (w.index - self._turn) % n))
            if all(w.broken for w in self._workers):
                raise _NoWorkers(f"no Lean worker could start: {self._workers[0].broken}")
            if self._closed:
                raise _NoWorkers("the Lean pool is closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _NoWorkers(
                    f"no Lean worker became ready within {self.options.start_timeout_s:g} s"
                )
            wake = self._wake
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    async def _call(
        self, w: _Worker, generation: int, payload: dict, timeout: float, booting: bool = False
    ):
        """One request on worker `w`, if it is still the process of `generation`."""
        if w.generation != generation or not (w.ready or booting):
            raise _Stale()
        w.pending += 1
        try:
            async with w.lock:
                if w.generation != generation or not (w.ready or booting):
                    raise _Stale()
                try:
                    resp = await w.proc.request(payload, timeout)
                except ReplError as e:
                    # While booting, `_boot` counts the failure and starts over itself.
                    self.stats["timeouts" if isinstance(e, ReplTimeout) else "crashes"] += 1
                    if not booting:
                        self._retire(w, str(e))
                    raise
                self.stats["boot_requests" if booting else "requests"] += 1
                w.commands += 1
                return resp
        finally:
            w.pending -= 1

    async def _header_env(self, w: _Worker, generation: int, header: str, booting: bool = False):
        """The worker's environment for `header`, made once per worker (None: no header, so
        each statement gets a fresh environment). Imports go first, alone (the REPL allows
        them only in a command with no `env`); the rest of the header runs in the imports'
        environment. Both are cached apart, so headers that share imports share the import."""
        imports, rest = split_header(header)
        if not imports and not rest:
            return None
        if header not in self._recent_headers:
            self._recent_headers = [header, *self._recent_headers][:2]
        timeout = self.options.start_timeout_s
        env = None
        if imports:
            env = await self._cached_env(w, generation, imports, {"cmd": imports}, timeout, booting)
        if rest:
            payload: dict[str, Any] = {"cmd": rest} if env is None else {"cmd": rest, "env": env}
            env = await self._cached_env(w, generation, (imports, rest), payload, timeout, booting)
        return env

    async def _cached_env(self, w, generation, key, payload, timeout, booting) -> int:
        future = w.envs.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            w.envs[key] = future
            try:
                resp = await self._call(w, generation, payload, timeout, booting)
                env, problem = command_env(resp)
                if problem is not None:
                    raise _Failed(EnvFailure(f"the header does not elaborate: {problem}"))
                future.set_result(env)
            except BaseException as e:
                # A header Lean refuses stays refused on this worker (no re-import per start);
                # anything else is retried. Waiters retry rather than inherit a cancellation.
                if not isinstance(e, _Failed) and w.envs.get(key) is future:
                    del w.envs[key]
                future.set_exception(_Stale() if isinstance(e, asyncio.CancelledError) else e)
                future.exception()  # marks it retrieved; waiters re-raise it themselves
                raise
        return await asyncio.shield(future)

    def _maybe_recycle(self, w: _Worker, generation: int) -> None:
        """Retire a worker past its command or memory budget. Checked only after a search's
        own tactic or a verification, never inside a rebuild, so that a small budget slows
        searches down but cannot starve them."""
        opts = self.options
        if w.generation != generation or not w.ready:
            return
        if w.commands >= opts.max_commands_per_worker:
            self.stats["recycled_commands"] += 1
            self._retire(w, f"recycled after {w.commands} commands")
        elif opts.max_worker_rss_mb and w.commands >= w.rss_checked_at + opts.rss_check_every:
            w.rss_checked_at = w.commands
            rss_mb = w.proc.rss_bytes() / 2**20
            if rss_mb > opts.max_worker_rss_mb:
                self.stats["recycled_memory"] += 1
                self._retire(w, f"recycled at {rss_mb:.0f} MiB resident")

    def _retire(self, w: _Worker, reason: str) -> None:
        """Kill the worker's process now and boot a fresh one in the background."""
        w.generation += 1
        w.ready = False
        w.commands = w.rss_checked_at = 0
        w.envs = {}
        w.lock = asyncio.Lock()
        old, w.proc = w.proc, None
        if old is not None:
            old.kill(reason)
            self._spawn_task(old.close(), self._reaps)
        self.stats["restarts"] += 1
        self._notify()
        if not self._closed:
            self._boot_in_background(w)

    async def _warm_up(self, w: _Worker, generation: int) -> None:
        """Import the recent headers; with none, send an empty command, so that a worker is
        ready only once its process answers."""
        headers = [h for h in self._recent_headers if h.strip()]
        for header in headers:
            with contextlib.suppress(_Failed):
                await self._header_env(w, generation, header, booting=True)
        if not headers:
            await self._call(w, generation, {"cmd": ""}, self.options.start_timeout_s, True)

    def _boot_in_background(self, w: _Worker) -> None:
        self._spawn_task(self._boot(w, w.generation), self._boots)

    @staticmethod
    def _spawn_task(coro, tasks: set[asyncio.Task]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _boot(self, w: _Worker, generation: int) -> None:
        while not self._closed and w.generation == generation:
            proc = ReplProcess(
                self.launch.argv,
                cwd=self.launch.cwd,
                env=self.launch.env,
                memory_limit_mb=self.options.memory_limit_mb,
            )
            try:
                await proc.spawn()
                w.proc = proc
                await self._warm_up(w, generation)
            except asyncio.CancelledError:
                await proc.close()
                raise
            except Exception as e:
                await proc.close()
                if not isinstance(e, (ReplError, _Stale)):  # a bug: say so, do not retry it
                    w.broken = f"internal error while starting: {e!r}"
                    self._notify()
                    raise
                if w.generation != generation:
                    return  # retired meanwhile; a newer boot owns the worker
                w.proc = None
                w.boot_failures += 1
                if w.boot_failures >= self.options.max_boot_failures:
                    w.broken = f"{w.boot_failures} failed starts, the last: {e}"
                    self._notify()
                    return
                await asyncio.sleep(0.2 * w.boot_failures)
                continue
            w.boot_failures = 0
            w.ready = True
            self._notify()
            return


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
