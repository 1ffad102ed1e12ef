"""Teacher backend: any OpenAI-compatible chat-completions API, through the `openai` package.

The API key is read from the environment variable named by `generator.api_key_env` and lives
only inside the client: it is never put in a config dump, a record, a log line or an error
message (error texts are scrubbed of it before they leave this module). With
`api_key_env: ""` no key is sent (a local `vllm serve` without `--api-key`).

The client's own retries are off (`max_retries=0`): the driver retries, so it can count every
retry and honour its request and token budgets.
"""

from __future__ import annotations

import json
import os

from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.teacher import (
    Answer,
    Fatal,
    Messages,
    Refused,
    Retryable,
    rough_token_count,
)

NO_KEY = "EMPTY"  # what vLLM's docs use when the server has no --api-key


class OpenAITeacher:
    def __init__(self, cfg: ThoughtsConfig) -> None:
        import openai

        gen = cfg.generator
        self.name = gen.model
        self._gen = gen
        self._effort = cfg.reasoning_effort
        self._key = _read_key(gen.api_key_env)
        self._httpx = _httpx()
        self._client = openai.AsyncOpenAI(
            base_url=gen.base_url or None,
            api_key=self._key,
            max_retries=0,
            timeout=cfg.request_timeout_s,
            http_client=_http_client(self._httpx, cfg.concurrency),
        )

    def estimate_tokens(self, messages: Messages) -> int:
        return rough_token_count(messages) + self._gen.max_new_tokens

    async def complete(self, messages: Messages, seed: int | None = None) -> Answer:
        import openai

        body = {"model": self._gen.model, "messages": messages}
        if self._effort:  # a reasoning model: it refuses sampling settings, stop and seed
            body["reasoning_effort"] = self._effort
            body["max_completion_tokens"] = self._gen.max_new_tokens
        else:
            body["temperature"] = self._gen.temperature
            body["top_p"] = self._gen.top_p
            body["max_tokens"] = self._gen.max_new_tokens
            if self._gen.stop:
                body["stop"] = list(self._gen.stop)
            if seed is not None:
                body["seed"] = seed
        try:
            # `client.post` with a plain JSON body, as the openai README shows for endpoints it
            # has no types for: the typed `chat.completions.create` walks every message through
            # its TypedDict transformer, which measured 0.8 ms of CPU per request, about 40% of
            # the client's time at 300 requests/s. Status errors are raised the same way.
            response = await self._client.post(
                "/chat/completions", body=body, cast_to=self._httpx.Response
            )
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APITimeoutError as e:
            raise _timeout_or_dropped(e) from None
        except openai.APIConnectionError as e:
            raise Retryable("connection", self._redact(f"connection error: {e}")) from None
        return self._answer(response.content)

    def _answer(self, content: bytes) -> Answer:
        try:
            data = json.loads(content)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            detail = f"{type(e).__name__}: {e}"
            raise Retryable("malformed", self._redact(f"unreadable response ({detail})")) from None
        usage = data.get("usage") or {}
        # A server that reports no usage is counted as 0 tokens, never guessed.
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        return Answer(str(text), prompt, completion, choice.get("finish_reason") or "stop")

    def _status_error(self, e) -> Exception:
        status = e.status_code
        message = self._redact(f"HTTP {status}: {_message(e)}")
        if status == 429:
            return Retryable("rate_limit", message, _retry_after(e.response.headers))
        if status >= 500 or status in (408, 409):
            return Retryable("server_error", message, _retry_after(e.response.headers))
        if status in (401, 403, 404):
            hint = {
                401: "check the key in the variable named by generator.api_key_env",
                403: "the key may lack access to this model",
                404: "check generator.base_url and generator.model",
            }[status]
            return Fatal(f"{message} ({hint})")
        return Refused(message)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[api key]") if self._key != NO_KEY else text

    async def aclose(self) -> None:
        await self._client.close()


def _httpx():
    """The HTTP library the installed `openai` is built on (httpx2 in openai 3, httpx before)."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _timeout_or_dropped(e: Exception) -> Retryable:
    """The aiohttp transport reports a dropped connection as a timeout; the exception chain
    tells them apart, so the retry counts say what happened."""
    link: BaseException | None = e
    while link is not None:
        if isinstance(link, ConnectionError) or type(link).__name__ in _DROPPED:
            return Retryable("connection", f"connection lost: {type(link).__name__}: {link}")
        link = link.__cause__ or link.__context__
    return Retryable("timeout", "no answer within the request timeout")


_DROPPED = {"ServerDisconnectedError", "ClientOSError", "ClientConnectionResetError"}


def _http_client(httpx, concurrency: int):
    """The openai package's aiohttp transport when aiohttp is installed (a third of the CPU
    per request of its default httpx transport, measured by bench/bench_thoughts.py), else
    its httpx client; either way with a warm connection per request in flight (httpx keeps
    only 100 by default)."""
    import openai

    pool = max(concurrency, 10) + 8
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    try:
        import aiohttp  # noqa: F401

        return openai.DefaultAioHttpClient(limits=limits)
    except (ImportError, RuntimeError):
        return openai.DefaultAsyncHttpxClient(limits=limits)


def _read_key(env_name: str) -> str:
    if not env_name:
        return NO_KEY
    key = os.environ.get(env_name, "")
    if not key:
        raise Fatal(
            f"the openai teacher reads its API key from ${env_name} (generator.api_key_env), "
            "which is not set; for a server without keys set generator.api_key_env to ''"
        )
    return key


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(e, "message", e))


def _retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds form; dates are ignored)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            continue
    return None
