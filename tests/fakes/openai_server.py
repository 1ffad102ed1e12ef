"""A fake OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It speaks real HTTP/1.1 (keep-alive, Content-Length bodies) on 127.0.0.1 so the `openai`
client, its connection pool and our retry code are exercised as they would be against a
`vllm serve` endpoint. It implements

    POST /v1/chat/completions   (messages -> choices[i].message.content)
    POST /v1/completions        (prompt   -> choices[i].text, optional logprobs)

and answers with whatever `responder(path, body)` returns (a string, or a list of strings for
`n > 1`). Knobs, all settable while the server runs:

    latency_s                 fixed delay before every answer (asyncio.sleep: 64+ concurrent
                              requests cost no threads)
    rate_429 / rate_500 / rate_malformed
                              probability of a 429 (with Retry-After), a 500, or a 200 whose
                              body is not valid JSON; drawn from a seeded RNG
    fail_next(kind, count)    scripted failures for the next requests, in arrival order:
                              "400", "429", "500", "503", "malformed", "hang" (never
                              answers), "disconnect" (closes the socket without a response)
    api_key                   when set, requests without `Authorization: Bearer <key>` get a 401

Every request is recorded (`requests`: path, headers, parsed body, arrival time) unless
`record=False` (benchmarks); `max_in_flight` is the most requests it ever held at once. Run standalone for a benchmark in another process:

    python -m tests.fakes.openai_server --latency 0.2     # prints "listening on URL", then serves
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Responder = Callable[[str, dict], "str | list[str]"]
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
FAILURE_KINDS = ("400", "429", "500", "503", "malformed", "hang", "disconnect")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
_REASONS |= {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


def default_responder(path: str, body: dict) -> str:
    """Echo something short and recognisable."""
    if path == CHAT_PATH:
        return "fake answer to: " + str(body.get("messages", [{}])[-1].get("content", ""))[:40]
    return " fake completion"


@dataclass
class FakeOpenAIServer:
    responder: Responder = default_responder
    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_malformed: float = 0.0
    retry_after_s: float | None = 0.05
    api_key: str | None = None
    record: bool = True
    seed: int = 0
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._script: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._started = threading.Event()

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Serve from a background thread (its own event loop); returns once listening."""
        self._thread = threading.Thread(target=self._run_thread, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._thread = None

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_thread(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._listen())
        self._started.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        """Serve in the current event loop (the standalone entry point); says where first."""
        await self._listen()
        print(f"listening on {self.base_url}", flush=True)
        async with self._server:
            await self._server.serve_forever()

    # ------------------------------------------------------------ knobs
    def fail_next(self, kind: str, count: int = 1) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; choose from {FAILURE_KINDS}")
        with self._lock:
            self._script.extend([kind] * count)

    def bodies(self, path: str = CHAT_PATH) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def _next_outcome(self) -> str:
        with self._lock:
            if self._script:
                return self._script.popleft()
            draw = self._rng.random()
        for kind, rate in (("429", self.rate_429), ("500", self.rate_500)):
            if draw < rate:
                return kind
            draw -= rate
        return "malformed" if draw < self.rate_malformed else "ok"

    # ------------------------------------------------------------ HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a client went away, or the server is shutting down
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection should close."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = headers.get("connection", "").lower() != "close"
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        if self.record:
            with self._lock:
                self.requests.append(RecordedRequest(path, headers, body, time.monotonic()))
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload, extra = await self._respond(method, path, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1
        if status is None:  # "disconnect": drop the connection without answering
            return False
        self._write(writer, status, payload, extra, keep_alive)
        await writer.drain()
        return keep_alive

    async def _respond(
        self, method: str, path: str, headers: dict, body: Any
    ) -> tuple[int | None, bytes, dict[str, str]]:
        if method != "POST" or path not in (CHAT_PATH, COMPLETIONS_PATH):
            return 404, _error(f"no route {method} {path}"), {}
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error("invalid api key", "invalid_api_key"), {}
        if not isinstance(body, dict):
            return 400, _error("request body is not a JSON object"), {}
        outcome = self._next_outcome()
        with self._lock:
            self.outcomes[outcome] += 1
        if outcome == "hang":
            await asyncio.sleep(3600)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if outcome == "disconnect":
            return None, b"", {}
        if outcome == "429":
            extra = {} if self.retry_after_s is None else {"Retry-After": f"{self.retry_after_s:g}"}
            return 429, _error("rate limit reached", "rate_limit_exceeded"), extra
        if outcome == "400":
            return 400, _error("this model's maximum context length is exceeded"), {}
        if outcome in ("500", "503"):
            return int(outcome), _error("the server had an error"), {}
        if outcome == "malformed":
            return 200, b'{"id": "cmpl-broken", "choices": [{"mess', {}
        return 200, json.dumps(self._completion(path, body)).encode(), {}

    def _completion(self, path: str, body: dict) -> dict:
        answer = self.responder(path, body)
        texts = [answer] * int(body.get("n") or 1) if isinstance(answer, str) else list(answer)
        prompt_chars = len(json.dumps(body.get("messages", body.get("prompt", ""))))
        completion_tokens = sum(_count_tokens(t) for t in texts)
        usage = {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": completion_tokens,
            "total_tokens": max(1, prompt_chars // 4) + completion_tokens,
        }
        common = {"model": body.get("model", "fake"), "created": int(time.time()), "usage": usage}
        if path == CHAT_PATH:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for i, text in enumerate(texts)
            ]
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "choices": choices,
                **common,
            }
        choices = [
            {"index": i, "text": text, "finish_reason": "stop", "logprobs": _logprobs(text, body)}
            for i, text in enumerate(texts)
        ]
        return {"id": "cmpl-fake", "object": "text_completion", "choices": choices, **common}

    @staticmethod
    def _write(writer, status: int, payload: bytes, extra: dict[str, str], keep_alive: bool):
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in extra.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def _logprobs(text: str, body: dict) -> dict | None:
    """Completions-style logprobs (one "token" per whitespace-separated word) when asked."""
    if body.get("logprobs") is None:
        return None
    tokens = text.split(" ")
    return {
        "tokens": tokens,
        "token_logprobs": [-0.1] * len(tokens),
        "top_logprobs": None,
        "text_offset": [],
    }


def _error(message: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": "fake_error", "code": code}}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--answer", default=" fake completion", help="text of every answer")
    parser.add_argument(
        "--responder", default="", help="MODULE:FUNCTION(path, body) -> text, instead of --answer"
    )
    args = parser.parse_args()
    if args.responder:
        module_name, _, attr = args.responder.partition(":")
        responder = getattr(importlib.import_module(module_name), attr)
    else:
        responder = lambda path, body: args.answer  # noqa: E731
    server = FakeOpenAIServer(
        responder=responder,
        latency_s=args.latency,
        port=args.port,
        record=False,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve_forever())


if __name__ == "__main__":
    main()
