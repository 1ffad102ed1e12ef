"""The LeanDojo backend: the `ProofEnv` interface over `lean_dojo.Dojo` (the `dojo` extra).

LeanDojo (PyPI `lean-dojo`) runs a theorem of a *traced* repository in its own Lean process:
`with Dojo(theorem, timeout=...) as (dojo, initial_state)`, then `dojo.run_tac(state, tactic)`
answers `TacticState`, `ProofFinished`, `LeanError` or `ProofGivenUp`; a crash raises
`DojoCrashError` (exit 137: out of memory), a start failure `DojoInitError`, and a tactic past
the timeout `DojoTacticTimeoutError`. Its calls block, so they run in threads.

The mapping onto our results is one to one:

    TacticState(pp)            -> ProofState(goals=pp)
    ProofFinished(message)     -> ProofFinished(messages=(message,) if any)
    LeanError(error)           -> LeanError(error)
    ProofGivenUp()             -> LeanError("... gave up: the proof contains `sorry`")
    DojoTacticTimeoutError     -> Timeout(tactic_timeout_s)      (the session is discarded)
    DojoCrashError             -> retried once on a fresh session, then EnvFailure
    DojoInitError (at start)   -> EnvFailure

One session (one Lean process) per theorem, at most `num_workers` open at once; the least
recently used idle one is closed to make room. A state whose session is gone is rebuilt by
replaying its tactic path in a fresh session, as in the REPL pool. `verify` replays the whole
proof in a fresh session after the textual screen: LeanDojo checks the proof term's type, no
`sorry` and no metavariables, and adds it to the kernel before it answers ProofFinished; it
has no `#print axioms`, so the verdict says that axioms were not listed.

`lean_dojo` is imported only here, and only when this backend is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from leanstar.config import LeanConfig
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
from leanstar.lean.screen import screen_proof
from leanstar.records import Theorem, Verdict

LABEL = "LeanDojo"


class _Session:
    """One entered Dojo (one Lean process) for one theorem."""

    def __init__(self, dojo_cm: Any) -> None:
        self.cm = dojo_cm
        self.dojo: Any = None
        self.initial: Any = None
        self.alive = False
        self.lock = asyncio.Lock()

    async def enter(self) -> Any:
        self.dojo, initial = await asyncio.to_thread(self.cm.__enter__)
        self.alive = True
        return initial

    async def exit(self) -> None:
        if self.alive:
            self.alive = False
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.cm.__exit__, None, None, None)


@dataclass(frozen=True, eq=False)
class _DojoHandle:
    theorem: Theorem
    session: _Session
    state: Any  # lean_dojo.TacticState


class _Crashed(Exception):
    pass


class DojoEnv:
    """A `ProofEnv` over LeanDojo. `dojo_factory(theorem, repo, commit, file_path, timeout)`
    makes the `Dojo` context manager (default: `lean_dojo.Dojo` on `lean_dojo.Theorem`; tests
    pass a stand-in that answers with LeanDojo's own result types and exceptions)."""

    label = LABEL

    def __init__(
        self,
        repo: str = "",
        commit: str = "",
        *,
        tactic_timeout_s: float = 600.0,
        max_sessions: int = 1,
        allow_native_decide: bool = False,
        dojo_factory: Any = None,
    ) -> None:
        import lean_dojo  # the `dojo` extra

        self._ld = lean_dojo
        self.repo, self.commit = repo, commit
        self.timeout = tactic_timeout_s
        self.allow_native_decide = allow_native_decide
        self._factory = dojo_factory or _real_dojo
        self._sessions: OrderedDict[Theorem, _Session] = OrderedDict()
        self._max_sessions = max(1, max_sessions)
        self._replays: dict[tuple, _DojoHandle] = {}
        self._opening: dict[Theorem, asyncio.Lock] = {}

    @classmethod
    def from_config(cls, cfg: LeanConfig, dojo_factory: Any = None) -> DojoEnv:
        from leanstar.lean.factory import default_workers

        return cls(
            cfg.dojo_repo,
            cfg.dojo_commit,
            tactic_timeout_s=cfg.tactic_timeout_s,
            max_sessions=cfg.num_workers or default_workers(),
            allow_native_decide=cfg.allow_native_decide,
            dojo_factory=dojo_factory,
        )

    # ------------------------------------------------------------ the ProofEnv interface

    async def start(self, theorem: Theorem) -> StartResult:
        try:
            session, initial = await self._open(theorem, fresh=False)
        except self._ld.DojoInitError as e:
            return EnvFailure(f"LeanDojo could not start {theorem.name!r}: {e}")
        except self._ld.DojoTacticTimeoutError:
            return Timeout(self.timeout)
        except self._ld.DojoCrashError as e:
            return EnvFailure(f"LeanDojo crashed while starting: {_crash(e)}")
        except ValueError as e:
            return EnvFailure(str(e))
        return self._state(theorem, session, initial, ())

    async def run_tactic(self, state: ProofState, tactic: str) -> TacticResult:
        if not isinstance(state.handle, _DojoHandle):
            return EnvFailure("this proof state was not made by this LeanDojo environment")
        finding = screen_proof(tactic, allow_native_decide=self.allow_native_decide)
        if finding is not None:
            return LeanError(f"not sent to Lean: {finding.reason}")
        for attempt in range(2):
            try:
                handle = await self._live_handle(state)
                if not isinstance(handle, _DojoHandle):
                    return handle
                return await self._run(handle, state.tactics, tactic)
            except _Crashed as e:
                if attempt == 1:
                    return EnvFailure(f"LeanDojo crashed twice on this request: {e}")
        raise AssertionError("unreachable")

    async def verify(self, theorem: Theorem, tactics: tuple[str, ...]) -> Verdict:
        finding = screen_proof(
            assemble_proof(tactics), allow_native_decide=self.allow_native_decide
        )
        if finding is not None:
            return Verdict(False, finding.reason, LABEL)
        if not tactics:
            return Verdict(False, "the proof has no tactics", LABEL)
        try:
            session, initial = await self._open(theorem, fresh=True)
        except (self._ld.DojoInitError, self._ld.DojoCrashError, ValueError) as e:
            return Verdict(False, f"could not be checked: LeanDojo could not start: {e}", LABEL)
        except self._ld.DojoTacticTimeoutError:
            return Verdict(False, "could not be checked: LeanDojo timed out starting", LABEL)
        try:
            handle: Any = _DojoHandle(theorem, session, initial)
            for i, tactic in enumerate(tactics):
                try:
                    result = await self._run(handle, tactics[:i], tactic)
                except _Crashed as e:
                    return Verdict(False, f"could not be checked: LeanDojo crashed: {e}", LABEL)
                last = i == len(tactics) - 1
                if isinstance(result, ProofFinished):
                    if not last:
                        return Verdict(
                            False, f"goals closed at tactic {i + 1} of {len(tactics)}", LABEL
                        )
                    return Verdict(
                        True,
                        "checked by LeanDojo: proof finished (type checked, no sorry, no "
                        "metavariables, added to the kernel); axioms not listed by LeanDojo",
                        LABEL,
                    )
                if not isinstance(result, ProofState):
                    return Verdict(False, f"tactic {i + 1}: {_describe(result)}", LABEL)
                handle = result.handle
            return Verdict(False, "goals remain after the last tactic", LABEL)
        finally:
            await session.exit()

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.exit()

    # ------------------------------------------------------------ sessions

    def _target(self, theorem: Theorem) -> tuple[str, str, str]:
        """(repository, commit, file path) of a theorem: from the config, else from the
        `leandojo:URL@COMMIT` source that LeanDojo records carry."""
        url, commit = self.repo, self.commit
        if not url and (theorem.source or "").startswith("leandojo:"):
            url, _, commit = theorem.source.removeprefix("leandojo:").rpartition("@")
        if not url or not commit or not theorem.file_path:
            raise ValueError(
                f"theorem {theorem.name!r}: LeanDojo needs a repository, a commit and a file "
                "path (set lean.dojo_repo and lean.dojo_commit, or load LeanDojo records)"
            )
        return url, commit, theorem.file_path

    async def _open(self, theorem: Theorem, fresh: bool) -> tuple[_Session, Any]:
        """A session for `theorem` and its initial state: the open one (LeanDojo states branch
        freely, so every search of a theorem can share it), or a new one."""
        if fresh:
            return await self._enter(theorem)
        async with self._opening.setdefault(theorem, asyncio.Lock()):
            session = self._sessions.get(theorem)
            if session is not None and session.alive:
                self._sessions.move_to_end(theorem)
                return session, session.initial
            await self._make_room()
            session, initial = await self._enter(theorem)
            self._sessions[theorem] = session
            return session, initial

    async def _enter(self, theorem: Theorem) -> tuple[_Session, Any]:
        url, commit, file_path = self._target(theorem)
        session = _Session(self._factory(theorem, url, commit, file_path, int(self.timeout)))
        initial = await session.enter()
        if not isinstance(initial, self._ld.TacticState):
            await session.exit()
            kind = type(initial).__name__
            raise self._ld.DojoInitError(f"initial state is a {kind}, not a tactic state")
        session.initial = initial
        return session, initial

    async def _make_room(self) -> None:
        while len(self._sessions) >= self._max_sessions:
            for key, session in list(self._sessions.items()):
                if not session.lock.locked():
                    del self._sessions[key]
                    await session.exit()
                    break
            else:
                await asyncio.sleep(0.05)

    async def _live_handle(self, state: ProofState) -> Any:
        handle: _DojoHandle = state.handle
        if handle.session.alive:
            return handle
        cached = self._replays.get((handle.theorem, state.tactics))
        if cached is not None and cached.session.alive:
            return cached
        start = await self.start(handle.theorem)
        if not isinstance(start, ProofState):
            return EnvFailure(f"rebuilding a lost state: start failed: {_describe(start)}")
        current: Any = start
        for i, tactic in enumerate(state.tactics):
            current = await self._run(current.handle, state.tactics[:i], tactic)
            if not isinstance(current, ProofState):
                return EnvFailure(
                    f"rebuilding a lost state: tactic {i + 1} of its path now gives {_describe(current)}"
                )
        self._replays[(handle.theorem, state.tactics)] = current.handle
        while len(self._replays) > 8192:  # oldest first (dicts keep insertion order)
            del self._replays[next(iter(self._replays))]
        return current.handle

    def _state(self, theorem: Theorem, session: _Session, ts: Any, path: tuple[str, ...]):
        return ProofState(theorem.name, ts.pp, path, _DojoHandle(theorem, session, ts))

    async def _run(self, handle: _DojoHandle, path: tuple[str, ...], tactic: str) -> TacticResult:
        ld, session = self._ld, handle.session
        async with session.lock:
            if not session.alive:
                raise _Crashed("the session closed under this request")
            try:
                result = await asyncio.to_thread(session.dojo.run_tac, handle.state, tactic)
            except ld.DojoTacticTimeoutError:
                await session.exit()
                return Timeout(self.timeout)
            except ld.DojoCrashError as e:
                await session.exit()
                raise _Crashed(_crash(e)) from None
        new_path = (*path, tactic)
        if isinstance(result, ld.TacticState):
            return self._state(handle.theorem, session, result, new_path)
        if isinstance(result, ld.ProofFinished):
            return ProofFinished(
                handle.theorem.name, new_path, (result.message,) if result.message else ()
            )
        if isinstance(result, ld.LeanError):
            return LeanError(result.error)
        if isinstance(result, ld.ProofGivenUp):
            return LeanError("LeanDojo gave up: the proof contains `sorry`")
        return EnvFailure(f"LeanDojo returned an unknown result {type(result).__name__}")


def _real_dojo(theorem: Theorem, repo: str, commit: str, file_path: str, timeout: int) -> Any:
    import lean_dojo

    target = lean_dojo.Theorem(lean_dojo.LeanGitRepo(repo, commit), file_path, theorem.name)
    return lean_dojo.Dojo(target, timeout=timeout)


def _crash(e: Exception) -> str:
    return "out of memory (exit 137)" if getattr(e, "is_out_of_memory", False) else str(e)


def _describe(result: Any) -> str:
    if isinstance(result, (LeanError, EnvFailure)):
        return result.message
    if isinstance(result, Timeout):
        return f"timed out after {result.seconds:g} s"
    return type(result).__name__
