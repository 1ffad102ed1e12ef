"""One REPL process, owned: started by us, bounded in time and memory, killed by its own PID.

`ReplProcess` sends one request at a time and reads one answer. The REPL has no timeout of its
own, so a request that runs past its limit gets the whole process group SIGKILLed (the group we
made with `start_new_session`; never a process we did not start), and the read ends. A process
that dies, or answers with something that is not JSON, is killed the same way and reported as a
typed exception; the pool decides what to do next.

Orphans are prevented three ways: `close()` kills the group; an `atexit` hook kills every group
still registered when the interpreter exits (Ctrl-C included); and on Linux each child asks the
kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), which covers a parent that was
itself SIGKILLed. A REPL run under `lake env` is a grandchild: it is in the same group, and it
also exits on its own when its stdin closes with our end of the pipe.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import sys
import tempfile
from typing import Any

from leanstar.lean.protocol import ProtocolError, Response, decode_response, encode_request

SEPARATOR = b"\n\n"
STREAM_LIMIT = 256 * 2**20  # largest answer accepted (an `infotree` can be big)

_LIVE_GROUPS: set[int] = set()  # process groups we started and have not yet reaped


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def _kill_all_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        _kill_group(pgid)
    _LIVE_GROUPS.clear()


def live_groups() -> frozenset[int]:
    """Process groups started by this interpreter and not yet reaped (for tests and doctor)."""
    return frozenset(_LIVE_GROUPS)


try:
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - exotic libc
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _child_setup(memory_limit_bytes: int) -> None:
    """Runs in the child between fork and exec: die with the parent; cap the address space."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if memory_limit_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))


class ReplError(Exception):
    """The process can no longer be used; it has been killed."""


class ReplTimeout(ReplError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s; the process was killed")
        self.seconds = seconds


class ReplCrashed(ReplError):
    """The process exited (or closed its output) without answering."""


class ReplProtocolError(ReplError):
    """The process answered with something the protocol does not allow."""


class ReplProcess:
    def __init__(
        self,
        argv: list[str] | tuple[str, ...],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        memory_limit_mb: int = 0,
    ) -> None:
        self.argv, self.cwd, self.env = tuple(argv), cwd, env
        self.memory_limit_mb = memory_limit_mb
        self.requests = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: Any = None
        self._timed_out = False
        self._dead_reason: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._dead_reason is None

    async def spawn(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        limit = self.memory_limit_mb * 2**20
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._stderr,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(limit),
                limit=STREAM_LIMIT,
            )
        except OSError as e:
            self._dead_reason = f"could not start {self.argv[0]!r}: {e}"
            raise ReplCrashed(self._dead_reason) from None
        _LIVE_GROUPS.add(self._proc.pid)

    async def request(self, payload: dict[str, Any], timeout: float) -> Response:
        """Send one request and wait for its answer, at most `timeout` seconds."""
        if not self.alive:
            raise ReplCrashed(self._dead_reason or "the process was not started")
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        self.requests += 1
        try:
            proc.stdin.write(encode_request(payload))
        except (BrokenPipeError, ConnectionResetError):
            raise await self._died() from None
        timer = asyncio.get_running_loop().call_later(timeout, self._on_timeout)
        try:
            raw = await proc.stdout.readuntil(SEPARATOR)
        except asyncio.IncompleteReadError:
            if self._timed_out:
                raise ReplTimeout(timeout) from None
            raise await self._died() from None
        except asyncio.LimitOverrunError:
            self.kill("answer too large")
            raise ReplProtocolError(f"answer larger than {STREAM_LIMIT >> 20} MiB") from None
        finally:
            timer.cancel()
        if proc.stdin.transport.get_write_buffer_size() > 2**20:
            await proc.stdin.drain()
        try:
            return decode_response(raw)
        except ProtocolError as e:
            self.kill(f"protocol error: {e}")
            raise ReplProtocolError(str(e)) from None

    def _on_timeout(self) -> None:
        self._timed_out = True
        self.kill("timed out")

    async def _died(self) -> ReplCrashed:
        code = None
        if self._proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                code = await asyncio.wait_for(self._proc.wait(), 1.0)
        tail = self.stderr_tail()
        self.kill("crashed")
        what = f"exit status {code}" if code is not None else "closed its output"
        if code is not None and code < 0:
            what = f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
        return ReplCrashed(f"Lean process {what}" + (f": {tail}" if tail else ""))

    def stderr_tail(self, size: int = 600) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            end = self._stderr.tell()
            self._stderr.seek(max(0, end - size))
            return self._stderr.read().decode("utf-8", "replace").strip()
        return ""

    def kill(self, reason: str = "killed") -> None:
        """SIGKILL our process group (idempotent, synchronous)."""
        if self._dead_reason is None:
            self._dead_reason = reason
        if self._proc is not None and self._proc.pid in _LIVE_GROUPS:
            _kill_group(self._proc.pid)

    async def close(self) -> None:
        self.kill("closed")
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                await self._proc.wait()
            _LIVE_GROUPS.discard(self._proc.pid)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (0 if it cannot be read)."""
        if self._proc is None:
            return 0
        import psutil

        try:
            root = psutil.Process(self._proc.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return 0
