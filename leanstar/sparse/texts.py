"""Text to score a model on: where it comes from, and how it becomes token sequences.

A `ScoredText` is a `context` the model reads without being scored and a `text` it is scored
on. `load_texts(source)` reads:

- `""`: the Lean proof states of the bundled LeanDojo Benchmark 4 sample (the default);
- a LeanDojo JSON file (`.json`, or `bundled:NAME.json`): its traced `state_before` strings;
- a JSONL file of leanstar records: `thought_step` (scored on thought + tactic after the prover
  prompt), `traced_step` (scored on the tactic block), `theorem` (informal statement, goal and
  formal statement), or plain objects with `text` (and optionally `context`);
- any other file: plain UTF-8 text, one document.

`encode` tokenizes them into sequences of at most `max_length` tokens (a longer document is cut
into consecutive windows), with labels -100 where a token is context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ScoredText", "TextError", "encode", "lean_states", "load_texts", "record_text"]

IGNORE = -100


class TextError(ValueError):
    """A text source that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ScoredText:
    text: str
    context: str = ""


def load_texts(source: str) -> list[ScoredText]:
    """The texts of `source` (see the module docstring); raises TextError on bad input."""
    from leanstar.data.bundled import LEANDOJO_SAMPLE, resolve

    if not source:
        return lean_states(f"bundled:{LEANDOJO_SAMPLE}")
    path = resolve(source)
    if not path.is_file():
        raise TextError(f"{source}: no such file")
    if path.suffix == ".json":
        return lean_states(source)
    if path.suffix == ".jsonl":
        return _jsonl_texts(path)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise TextError(f"{path}: the file is empty")
    return [ScoredText(text)]


def lean_states(source: str) -> list[ScoredText]:
    """The `state_before` of every traced tactic of a LeanDojo-format file."""
    from leanstar.data import load_leandojo, traced_steps

    steps = traced_steps(load_leandojo(source))
    if not steps:
        raise TextError(f"{source}: no traced tactics (no proof states to score)")
    return [ScoredText(s.state_before) for s in steps]


def record_text(obj: dict, where: str) -> ScoredText:
    """One JSONL object as the text to score (see the module docstring)."""
    from leanstar.prompting import plain_prompt, prover_target

    kind = str(obj.get("schema", "")).partition("/")[0]
    try:
        if kind == "thought_step":
            return ScoredText(
                prover_target(obj["tactic"], obj["thought"]), plain_prompt(obj["state"])
            )
        if kind == "traced_step":
            context = plain_prompt(obj["state_before"], with_thought=False)
            return ScoredText(prover_target(obj["tactic"]), context)
        if kind == "theorem":
            parts = [obj.get("informal", ""), obj.get("goal") or "", obj["statement"]]
            return ScoredText("\n".join(p.strip() for p in parts if p and p.strip()))
        if "text" in obj:
            return ScoredText(str(obj["text"]), str(obj.get("context", "")))
    except KeyError as e:
        raise TextError(
            f"{where}: a {kind or 'text'} record needs the field {e.args[0]!r}"
        ) from None
    raise TextError(
        f"{where}: cannot tell what to score: expected a thought_step, traced_step or theorem "
        "record, or an object with a 'text' field"
    )


def _jsonl_texts(path: Path) -> list[ScoredText]:
    out = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise TextError(f"{path}:{number}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise TextError(f"{path}:{number}: expected a JSON object")
            out.append(record_text(obj, f"{path}:{number}"))
    if not out:
        raise TextError(f"{path}: no records")
    return out


def encode(
    tokenizer, texts: list[ScoredText], max_length: int, max_tokens: int = 0
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) sequences; stops once `max_tokens` scored tokens are reached (0: all)."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    out: list[tuple[list[int], list[int]]] = []
    scored = 0
    for item in texts:
        ctx = tokenizer.encode(item.context, add_special_tokens=False) if item.context else []
        body = tokenizer.encode(item.text, add_special_tokens=False)
        ids, labels = ctx + body, [IGNORE] * len(ctx) + body
        for start in range(0, len(ids), max_length):
            window_ids, window_labels = (
                ids[start : start + max_length],
                labels[start : start + max_length],
            )
            n = sum(
                1 for t in window_labels[1:] if t != IGNORE
            )  # the first token is never predicted
            if n == 0:
                continue
            out.append((window_ids, window_labels))
            scored += n
            if max_tokens and scored >= max_tokens:
                return out
    return out
