"""The pool's Lean processes: booting, picking one, one request at a time, retiring, recycling.

`Workers` owns N `Worker`s, each one `ReplProcess` at a time. A worker's `generation` goes up
whenever its process is replaced, so anything made in an older process (a proof state, an
environment) is known to be stale without asking it. A worker is `ready` once its process has
answered: the recent headers imported, or, with none, an empty command. A retired worker gets a
fresh lock, so requests queued on the old process wake as soon as it is killed and move on
instead of waiting for the replacement to boot. See `pool.py` for what the searches ask of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from leanstar.config import LeanConfig
from leanstar.lean.env import EnvFailure
from leanstar.lean.interpret import command_env
from leanstar.lean.process import ReplError, ReplProcess, ReplTimeout


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


# A worker is recycled for its command budget only once replays are at most this fraction's
# inverse of its commands (see `Workers.maybe_recycle`).
REPLAY_SHARE_LIMIT = 5


class Stale(Exception):
    """The worker a request was meant for has restarted since."""


class NoWorkers(Exception):
    """No worker is ready and none will be (all broken, closed, or the start timed out)."""


class Failed(Exception):
    """A request ends with this result (e.g. a rebuild that Lean refused)."""

    def __init__(self, result: Any) -> None:
        self.result = result


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.proc: ReplProcess | None = None
        self.lock = asyncio.Lock()
        self.ready = False
        self.broken: str | None = None
        self.pending = 0
        self.commands = 0  # answered by this process, replays included
        self.replayed = 0  # of those, replays of states lost elsewhere (rebuilds)
        self.rss_checked_at = 0
        self.boot_failures = 0
        self.envs: dict[tuple, asyncio.Future] = {}


def split_header(header: str) -> tuple[str, str]:
    """(the leading `import` lines, the rest), each stripped."""
    lines = header.strip().splitlines()
    n = 0
    while n < len(lines) and (lines[n].startswith("import ") or not lines[n].strip()):
        n += 1
    imports = "\n".join(line.strip() for line in lines[:n] if line.strip())
    return imports, "\n".join(lines[n:]).strip()


class Workers:
    """N REPL processes; see the module docstring."""

    def __init__(self, launch: Launch, options: PoolOptions, stats: Counter[str]) -> None:
        self.launch, self.options, self.stats = launch, options, stats
        self.all = [Worker(i) for i in range(max(1, options.num_workers))]
        self.closed = False
        self._started = self._all_booted = False
        self._wake: asyncio.Event | None = None
        self._boots: set[asyncio.Task] = set()  # cancelled on close
        self._reaps: set[asyncio.Task] = set()  # killed processes being reaped; awaited on close
        self._recent_headers: list[str] = [options.default_header] if options.default_header else []
        self._turn = 0

    async def close(self) -> None:
        self.closed = True
        for task in list(self._boots):
            task.cancel()
        for task in [*self._boots, *self._reaps]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for w in self.all:
            w.ready = False
            if w.proc is not None:
                await w.proc.close()
                w.proc = None

    def ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        self._wake = asyncio.Event()
        for w in self.all:
            self._boot_in_background(w)

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        if wake is not None:
            wake.set()

    async def pick(self) -> Worker:
        deadline = time.monotonic() + self.options.start_timeout_s
        while True:
            ready = [w for w in self.all if w.ready]
            # At start-up, wait for every first boot: states stay where they are made, so
            # the first worker up would otherwise keep every initial search for good.
            booting = not self._all_booted and any(not (w.ready or w.broken) for w in self.all)
            if ready and (not booting or time.monotonic() >= deadline):
                self._all_booted = True
                self._turn += 1
                n = len(self.all)
                return min(ready, key=lambda w: (w.pending, (w.index - self._turn) % n))
            if all(w.broken for w in self.all):
                raise NoWorkers(f"no Lean worker could start: {self.all[0].broken}")
            if self.closed:
                raise NoWorkers("the Lean pool is closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoWorkers(
                    f"no Lean worker became ready within {self.options.start_timeout_s:g} s"
                )
            wake = self._wake
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    async def call(
        self,
        w: Worker,
        generation: int,
        payload: dict,
        timeout: float,
        booting: bool = False,
        replay: bool = False,
    ):
        """One request on worker `w`, if it is still the process of `generation`. `replay`:
        it rebuilds a state lost elsewhere (counted apart, see `maybe_recycle`)."""
        if w.generation != generation or not (w.ready or booting):
            raise Stale()
        w.pending += 1
        try:
            async with w.lock:
                if w.generation != generation or not (w.ready or booting):
                    raise Stale()
                try:
                    resp = await w.proc.request(payload, timeout)
                except ReplError as e:
                    # While booting, `_boot` counts the failure and starts over itself.
                    self.stats["timeouts" if isinstance(e, ReplTimeout) else "crashes"] += 1
                    if not booting:
                        self.retire(w, str(e))
                    raise
                self.stats["boot_requests" if booting else "requests"] += 1
                w.commands += 1
                w.replayed += replay
                return resp
        finally:
            w.pending -= 1

    async def header_env(self, w: Worker, generation: int, header: str, booting: bool = False):
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
                resp = await self.call(w, generation, payload, timeout, booting)
                env, problem = command_env(resp)
                if problem is not None:
                    raise Failed(EnvFailure(f"the header does not elaborate: {problem}"))
                future.set_result(env)
            except BaseException as e:
                # A header Lean refuses stays refused on this worker (no re-import per start);
                # anything else is retried. Waiters retry rather than inherit a cancellation.
                if not isinstance(e, Failed) and w.envs.get(key) is future:
                    del w.envs[key]
                future.set_exception(Stale() if isinstance(e, asyncio.CancelledError) else e)
                future.exception()  # marks it retrieved; waiters re-raise it themselves
                raise
        return await asyncio.shield(future)

    def maybe_recycle(self, w: Worker, generation: int) -> None:
        """Retire a worker past its command or memory budget. Checked only after a search's
        own tactic or a verification, never inside a rebuild, so that a small budget slows
        searches down but cannot starve them.

        The command budget is `max_commands_per_worker`, or REPLAY_SHARE_LIMIT times the
        commands this process spent rebuilding lost states, whichever is larger: a recycle
        drops every live state on the worker, and with hundreds of live attempts per worker
        rebuilding them could eat the whole budget and trigger the next recycle (measured on
        the fake REPL: 4.7x slower at 256 live attempts per worker, 11x at 512). So replays
        stay at most 1/REPLAY_SHARE_LIMIT of a process's commands; `max_worker_rss_mb` still
        bounds its memory."""
        opts = self.options
        if w.generation != generation or not w.ready:
            return
        if w.commands >= max(opts.max_commands_per_worker, REPLAY_SHARE_LIMIT * w.replayed):
            self.stats["recycled_commands"] += 1
            self.retire(w, f"recycled after {w.commands} commands")
        elif opts.max_worker_rss_mb and w.commands >= w.rss_checked_at + opts.rss_check_every:
            w.rss_checked_at = w.commands
            rss_mb = w.proc.rss_bytes() / 2**20
            if rss_mb > opts.max_worker_rss_mb:
                self.stats["recycled_memory"] += 1
                self.retire(w, f"recycled at {rss_mb:.0f} MiB resident")

    def retire(self, w: Worker, reason: str) -> None:
        """Kill the worker's process now and boot a fresh one in the background."""
        w.generation += 1
        w.ready = False
        w.commands = w.rss_checked_at = w.replayed = 0
        w.envs = {}
        w.lock = asyncio.Lock()
        old, w.proc = w.proc, None
        if old is not None:
            old.kill(reason)
            self._spawn_task(old.close(), self._reaps)
        self.stats["restarts"] += 1
        self._notify()
        if not self.closed:
            self._boot_in_background(w)

    async def _warm_up(self, w: Worker, generation: int) -> None:
        """Import the recent headers; with none, send an empty command, so that a worker is
        ready only once its process answers."""
        headers = [h for h in self._recent_headers if h.strip()]
        for header in headers:
            with contextlib.suppress(Failed):
                await self.header_env(w, generation, header, booting=True)
        if not headers:
            await self.call(w, generation, {"cmd": ""}, self.options.start_timeout_s, True)

    def _boot_in_background(self, w: Worker) -> None:
        self._spawn_task(self._boot(w, w.generation), self._boots)

    @staticmethod
    def _spawn_task(coro, tasks: set[asyncio.Task]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _boot(self, w: Worker, generation: int) -> None:
        while not self.closed and w.generation == generation:
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
                if not isinstance(e, (ReplError, Stale)):  # a bug: say so, do not retry it
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
