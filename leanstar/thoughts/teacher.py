"""The `Teacher` interface: chat messages in, one answer out, failures sorted by what to do.

Backends (each imported only when chosen):
    openai  leanstar.thoughts.openai_teacher  any OpenAI-compatible chat API (OpenAI, vllm serve)
    local   leanstar.thoughts.local_teacher   a Hugging Face model through leanstar.generation

A backend does not retry: it raises `Retryable` (the driver backs off and asks again, counting
each retry), `Refused` (this request cannot succeed; recorded, the run goes on) or `Fatal` (no
request can succeed, e.g. a wrong API key; the run stops).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from leanstar.thoughts.config import ThoughtsConfig

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class TeacherError(Exception):
    kind = "error"


class Retryable(TeacherError):
    """Worth asking again: rate limit, server error, timeout, dropped connection, bad body."""

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


class Refused(TeacherError):
    """This request cannot succeed as sent (e.g. HTTP 400: prompt too long)."""

    kind = "refused"


class Fatal(TeacherError):
    """No request can succeed (bad key, unknown model, broken local model): stop the run."""

    kind = "fatal"


class Teacher(Protocol):
    name: str  # the model id written into every record

    async def complete(self, messages: Messages, seed: int | None = None) -> Answer: ...

    def estimate_tokens(self, messages: Messages) -> int:
        """Prompt + completion tokens a request may use, before sending it (for budgets)."""
        ...

    async def aclose(self) -> None: ...


BACKENDS = {
    "openai": "leanstar.thoughts.openai_teacher:OpenAITeacher",
    "local": "leanstar.thoughts.local_teacher:LocalTeacher",
}


def make_teacher(cfg: ThoughtsConfig) -> Teacher:
    module_name, _, class_name = BACKENDS[cfg.teacher].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(cfg)


def rough_token_count(messages: Messages) -> int:
    """About 3 characters per token: an upper-leaning guess for budgeting, not for billing."""
    return sum(len(m["content"]) for m in messages) // 3 + 4 * len(messages)
