"""SFT examples: from training files to token ids with a completion mask, with counts.

    thought records (JSONL of ThoughtStep) ──► state -> thought + tactic   (format: thought)
    LeanDojo Benchmark 4 JSON (traced steps) ──► state -> tactic           (format: tactic)

Several files mix by weight: a file of weight 2.5 contributes every example twice plus a seeded
half of them once more. Each example becomes TRL's prompt-completion form: a conversation
(user turn, assistant turn) when the tokenizer has a chat template, plain strings otherwise.

Tokenising is done here, with the same rules as TRL's SFTTrainer (the chat template renders the
prompt with its generation prompt and the whole conversation; the completion starts where the two
token sequences part; plain text gets the EOS token appended), so that every example's length is
known before training: examples cut by `max_length` and examples whose prompt alone fills it are
counted and reported, never dropped silently. TRL then builds the labels from `completion_mask`
(prompt tokens are -100), truncates and packs.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leanstar.data.bundled import resolve
from leanstar.data.leandojo import load_leandojo, traced_steps
from leanstar.jsonl import JsonlError, iter_json_lines
from leanstar.prompting import plain_prompt, prover_messages, prover_target
from leanstar.records import SchemaError, ThoughtStep, from_json

THOUGHTS = "thought records"
LEANDOJO = "LeanDojo traced steps"


class DataError(ValueError):
    """A training file that cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class Example:
    """One training pair before rendering: the prover sees `state`, must write `target`."""

    state: str
    target: str
    with_thought: bool
    source: int  # index of the data file it came from


@dataclass
class SourceStats:
    path: str
    kind: str
    records: int
    weight: float
    examples: int = 0
    empty_thoughts: int = 0


@dataclass
class DataStats:
    """What the training data holds, and what `max_length` did to it."""

    sources: list[SourceStats]
    max_length: int
    chat_template: bool
    examples: int = 0  # after mixing, before length checks
    kept: int = 0
    truncated: int = 0  # kept, completion cut at max_length
    dropped_prompt_too_long: int = 0  # the prompt alone fills max_length: nothing to learn
    dropped_overlong: int = 0  # longer than max_length, dropped because drop_overlong
    boundary_mismatch: int = 0  # prompt tokens not a prefix of prompt + completion tokens
    prompt_tokens: int = 0  # of kept examples, after truncation
    completion_tokens: int = 0  # of kept examples, after truncation (the tokens with loss)
    longest: int = 0  # longest example before truncation, in tokens
    fingerprint: str = ""  # of the rendered examples in training order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.kept:,} examples kept of {self.examples:,}"]
        if self.truncated:
            parts.append(f"{self.truncated:,} truncated to {self.max_length} tokens")
        if self.dropped_prompt_too_long:
            parts.append(
                f"{self.dropped_prompt_too_long:,} dropped (prompt alone >= {self.max_length} tokens)"
            )
        if self.dropped_overlong:
            parts.append(f"{self.dropped_overlong:,} dropped (longer than {self.max_length})")
        parts.append(
            f"{self.completion_tokens:,} completion tokens with loss, "
            f"{self.prompt_tokens:,} prompt tokens masked"
        )
        return "; ".join(parts)


@dataclass
class Tokenized:
    input_ids: list[list[int]] = field(default_factory=list)
    prompt_lens: list[int] = field(default_factory=list)  # where the completion starts
    boundary_mismatch: int = 0  # rows whose prompt tokens are not a prefix of the whole


# ---------------------------------------------------------------- reading files


def file_kind(path: Path) -> str:
    """THOUGHTS for a JSONL file of records, LEANDOJO for a JSON list, by the first byte."""
    if not path.is_file():
        raise DataError(f"{path}: training file not found")
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return LEANDOJO
    if head.startswith(b"{"):
        return THOUGHTS
    raise DataError(
        f"{path}: neither thought records (JSONL objects) nor LeanDojo JSON (a list); "
        "it starts with " + (repr(head[:20].decode(errors="replace")) if head else "nothing")
    )


def read_thoughts(path: Path) -> list[ThoughtStep]:
    """ThoughtStep records of a JSONL file, each checked; errors name the file and line."""
    out = []
    for line, obj in iter_json_lines(path):
        try:
            record = from_json(obj, ThoughtStep)
        except SchemaError as e:
            raise DataError(f"{path}:{line}: {e}") from None
        for name in ("state", "tactic"):
            if not getattr(record, name).strip():
                raise DataError(f"{path}:{line}: field {name!r} is empty")
        out.append(record)
    return out


def load_source(spec: str, index: int, fmt: str) -> tuple[SourceStats, list[Example]]:
    """The examples of one training file, in file order."""
    path = resolve(spec)
    kind = file_kind(path)
    if kind == THOUGHTS:
        try:
            records = read_thoughts(path)
        except JsonlError as e:
            raise DataError(str(e)) from None
        with_thought = fmt == "thought"
        examples = [
            Example(
                r.state,
                prover_target(r.tactic, r.thought if with_thought else None),
                with_thought,
                index,
            )
            for r in records
        ]
        empty = sum(1 for r in records if not r.thought.strip()) if with_thought else 0
        stats = SourceStats(spec, kind, len(records), 1.0, empty_thoughts=empty)
        return stats, examples
    if fmt == "thought":
        raise DataError(
            f"{spec}: LeanDojo traced steps have no thoughts; train the tactic-only baseline with "
            "`format: tactic`, or give thought records (from `leanstar thoughts`)"
        )
    steps = traced_steps(load_leandojo(path))
    examples = [Example(s.state_before, prover_target(s.tactic), False, index) for s in steps]
    return SourceStats(spec, kind, len(steps), 1.0), examples


def mix(per_source: list[list[Example]], weights: list[float], seed: int) -> list[Example]:
    """Weight w: floor(w) copies of every example plus a seeded sample of the fraction."""
    out: list[Example] = []
    for i, (examples, weight) in enumerate(zip(per_source, weights, strict=True)):
        whole, frac = divmod(weight, 1.0)
        out.extend(examples * int(whole))
        extra = round(frac * len(examples))
        if extra:
            rng = random.Random(f"{seed}:{i}")  # str seeds hash the same in every process
            picks = sorted(rng.sample(range(len(examples)), extra))
            out.extend(examples[j] for j in picks)
    return out


def load_examples(
    data: list[str], weights: list[float], fmt: str, seed: int
) -> tuple[list[Example], list[SourceStats]]:
    """Every training file read, checked and mixed."""
    weights = list(weights) or [1.0] * len(data)
    sources, per_source = [], []
    for i, spec in enumerate(data):
        stats, examples = load_source(spec, i, fmt)
        if not examples:
            raise DataError(f"{spec}: holds no training examples")
        stats.weight = weights[i]
        per_source.append(examples)
        sources.append(stats)
    mixed = mix(per_source, weights, seed)
    counts = Counter(e.source for e in mixed)
    for i, stats in enumerate(sources):
        stats.examples = counts[i]
    if not mixed:
        raise DataError("the data mixture is empty (are all data_weights 0?)")
    return mixed, sources


# ---------------------------------------------------------------- rendering and tokens


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(example: Example, chat: bool) -> dict[str, Any]:
    """TRL's prompt-completion form: conversational with a chat template, else plain text."""
    if chat:
        return {
            "prompt": prover_messages(example.state, example.with_thought),
            "completion": [{"role": "assistant", "content": example.target}],
        }
    return {
        "prompt": plain_prompt(example.state, example.with_thought),
        "completion": example.target,
    }


def tokenize(rows: list[dict[str, Any]], tokenizer: Any, batch_size: int = 512) -> Tokenized:
    """Token ids of prompt + completion and the prompt length of each row (TRL's rules)."""
    out = Tokenized()
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if isinstance(batch[0]["prompt"], list):
            prompts = _chat_ids(tokenizer, [r["prompt"] for r in batch], generation_prompt=True)
            full = _chat_ids(tokenizer, [r["prompt"] + r["completion"] for r in batch])
        else:
            eos = tokenizer.eos_token or ""
            prompts = tokenizer([r["prompt"] for r in batch])["input_ids"]
            texts = [r["prompt"] + _with_eos(r["completion"], eos) for r in batch]
            full = tokenizer(texts)["input_ids"]
        for p, ids in zip(prompts, full, strict=True):
            common = _common_prefix(p, ids)
            out.input_ids.append(list(ids))
            out.prompt_lens.append(common)
            out.boundary_mismatch += common < len(p)
    return out


def _chat_ids(tokenizer: Any, conversations: list, generation_prompt: bool = False) -> list:
    enc = tokenizer.apply_chat_template(
        conversations, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return enc["input_ids"]


def _with_eos(text: str, eos: str) -> str:
    return text if not eos or text.endswith(eos) else text + eos


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def fingerprint(rows: list[dict[str, Any]]) -> str:
    """A short hash of the rendered examples in order: resuming on other data is refused."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the training set


def build_dataset(
    data: list[str],
    tokenizer: Any,
    *,
    fmt: str = "thought",
    weights: list[float] | None = None,
    max_length: int = 2048,
    drop_overlong: bool = False,
    seed: int = 0,
    progress: bool = False,
    batch_size: int = 512,
):
    """A `datasets.Dataset` of `input_ids` + `completion_mask` ready for SFTTrainer, and stats.

    Examples whose prompt alone reaches `max_length` are dropped (no completion token would
    survive truncation); longer examples are kept for TRL to truncate, or dropped with
    `drop_overlong`. Both are counted in the returned DataStats. Token ids go into Arrow arrays
    batch by batch, so a large dataset never sits in memory as Python lists.
    """
    import pyarrow as pa
    from datasets import Dataset

    examples, sources = load_examples(data, weights or [], fmt, seed)
    chat = has_chat_template(tokenizer)
    rows = [render(e, chat) for e in examples]
    stats = DataStats(sources, max_length, chat, examples=len(rows), fingerprint=fingerprint(rows))
    ids_type, mask_type = pa.list_(pa.int32()), pa.list_(pa.int8())
    chunks: list[pa.RecordBatch] = []
    for start in _progress(range(0, len(rows), batch_size), progress, len(rows), batch_size):
        tok = tokenize(rows[start : start + batch_size], tokenizer, batch_size)
        stats.boundary_mismatch += tok.boundary_mismatch
        ids, masks = [], []
        for seq, plen in zip(tok.input_ids, tok.prompt_lens, strict=True):
            if _count(stats, len(seq), plen, drop_overlong):
                ids.append(seq)
                masks.append([0] * plen + [1] * (len(seq) - plen))
        arrays = [pa.array(ids, type=ids_type), pa.array(masks, type=mask_type)]
        chunks.append(pa.RecordBatch.from_arrays(arrays, names=["input_ids", "completion_mask"]))
    if not stats.kept:
        raise DataError(f"no example fits max_length {max_length}: {stats.summary()}")
    return Dataset(pa.Table.from_batches(chunks)), stats


def _progress(starts: range, show: bool, total: int, step: int):
    """`starts`, with a rich progress bar over the examples when `show` and the data is large."""
    if not show or total < 10 * step:
        yield from starts
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("tokenising", total=total)
        for start in starts:
            yield start
            bar.advance(task, min(step, total - start))


def _count(stats: DataStats, length: int, prompt_len: int, drop_overlong: bool) -> bool:
    """Record one example in `stats`; False if it is dropped."""
    stats.longest = max(stats.longest, length)
    if prompt_len >= stats.max_length:
        stats.dropped_prompt_too_long += 1
        return False
    if length > stats.max_length:
        if drop_overlong:
            stats.dropped_overlong += 1
            return False
        stats.truncated += 1
    kept = min(length, stats.max_length)
    stats.kept += 1
    stats.prompt_tokens += prompt_len
    stats.completion_tokens += kept - prompt_len
    return True
