"""Append-only JSONL storage for records: each record one line, written whole, flushed.

A process killed mid-write can leave a partial last line. Readers report it (a
`TruncatedTail` warning and `ReadReport.truncated`) rather than dropping it silently, and a
writer reopening the file moves the partial bytes to `<file>.partial` before appending, so
the next record never fuses with a fragment. Any bad line before the last is an error that
names the file and line.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from leanstar.records import SchemaError, from_json, to_json

R = TypeVar("R")


class JsonlError(ValueError):
    """A line of a JSONL file that cannot be read; the message names the file and line."""


class TruncatedTail(UserWarning):
    """The last line of a JSONL file is incomplete (a writer was killed mid-line)."""


@dataclass
class ReadReport:
    """What a read found besides the records."""

    records: int = 0
    truncated: bool = False
    truncated_line: int | None = None


def iter_json_lines(
    path: str | Path, report: ReadReport | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, parsed object) for each line of `path`; only a partial last line is
    tolerated (and reported)."""
    path = Path(path)
    report = report if report is not None else ReadReport()
    if not path.exists():
        return
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        report.records += 1
        yield number, _parse_line(raw, path, number)
    if tail.strip():
        # A last line without its newline is complete only if it parses; a writer always ends
        # lines with "\n", so even a parseable fragment is reported.
        report.truncated = True
        report.truncated_line = len(complete) + 1
        warnings.warn(
            f"{path}:{report.truncated_line}: incomplete last line ({len(tail)} bytes) skipped; "
            "a writer was probably killed mid-write",
            TruncatedTail,
            stacklevel=2,
        )


def read_records(path: str | Path, cls: type[R], report: ReadReport | None = None) -> list[R]:
    """All records of type `cls` in `path` (an absent file holds none)."""
    out = []
    for number, obj in iter_json_lines(path, report):
        try:
            out.append(from_json(obj, cls))
        except SchemaError as e:
            raise JsonlError(f"{path}:{number}: {e}") from None
    return out


def _parse_line(raw: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JsonlError(f"{path}:{number}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise JsonlError(f"{path}:{number}: expected a JSON object")
    return obj


class JsonlWriter:
    """Appends records to a JSONL file: one `os.write` per line on an O_APPEND descriptor.

    Each line is handed to the OS whole as soon as it is written, so a killed process loses at
    most the line being written. `fsync_every_s` bounds what a machine crash can lose.
    """

    def __init__(self, path: str | Path, fsync_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync_every_s = fsync_every_s
        self._last_sync = time.monotonic()

    def write(self, record: Any) -> None:
        obj = record if isinstance(record, dict) else to_json(record)
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write on a full disk or a signal
            written += os.write(self._fd, data[written:])
        if time.monotonic() - self._last_sync >= self._fsync_every_s:
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def write_all(self, records: Iterable[Any]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _repair_tail(path: Path) -> None:
    """Move a partial last line aside so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        # Find the start of the partial line by scanning back in blocks.
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                pos = start + cut + 1
                break
            pos = start
        f.seek(pos)
        fragment = f.read()
        with path.with_name(path.name + ".partial").open("ab") as side:
            side.write(fragment + b"\n")
        f.truncate(pos)
    warnings.warn(
        f"{path}: moved an incomplete last line ({len(fragment)} bytes) to {path.name}.partial",
        TruncatedTail,
        stacklevel=3,
    )


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Replace `path` with `obj` as JSON, atomically (write a temp file, fsync, rename)."""
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
