"""Theorems to prove: miniF2F (either published Lean 4 layout), leanstar theorem files, Hub sets.

Accepted row layouts, told apart by their fields:
- yangky11/miniF2F-lean4 as bundled: `name, split, header, formal_statement` (ends `:= by sorry`);
- DeepSeek-Prover-V1.5: `name, split, header, formal_statement` (ends `:= by`),
  `informal_prefix`, `goal`;
- leanstar's own theorem records (`"schema": "theorem/1"`).
Statements are stored without their proof (`Theorem.statement` ends before `:=`), so the
verifier re-attaches our trusted statement to whatever proof body the model writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from leanstar.data.bundled import resolve
from leanstar.records import SchemaError, Theorem, from_json

_PROOF_TAIL = re.compile(r"\s*:=\s*(by\b\s*(sorry\s*)?)?\Z")


class TheoremFormatError(ValueError):
    """A theorem file row that cannot be read; names the file, line and field."""


def parse_statement(formal_statement: str) -> str:
    """The declaration without its placeholder proof: `theorem t : P := by sorry` -> `theorem t : P`."""
    stripped = _PROOF_TAIL.sub("", formal_statement)
    if stripped == formal_statement.rstrip():
        raise ValueError("statement does not end in ':=', ':= by' or ':= by sorry'")
    return stripped


def load_theorems(source: str, split: str | None = None) -> list[Theorem]:
    """Theorems from a JSONL file, `bundled:NAME`, or `hf:DATASET_ID` (a Hugging Face dataset
    with miniF2F-style columns; needs network access the first time)."""
    if source.startswith("hf:"):
        rows = _hub_rows(source.removeprefix("hf:"), split)
        theorems = [_row_to_theorem(row, source, i + 1) for i, row in enumerate(rows)]
    else:
        path = resolve(source)
        if not path.is_file():
            raise FileNotFoundError(f"theorem file not found: {path}")
        theorems = [_row_to_theorem(row, str(path), n) for n, row in _jsonl_rows(path)]
    if split:
        theorems = [t for t in theorems if t.split == split]
    return theorems


def _jsonl_rows(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise TheoremFormatError(f"{path}:{number}: not valid JSON ({e})") from None


def _hub_rows(dataset_id: str, split: str | None) -> list[dict]:
    import datasets  # heavy import: only for Hub sources

    ds = datasets.load_dataset(dataset_id)
    names = [split] if split and split in ds else list(ds)
    return [dict(row, split=row.get("split", name)) for name in names for row in ds[name]]


def _row_to_theorem(row: object, where: str, line: int) -> Theorem:
    loc = f"{where}:{line}"
    if not isinstance(row, dict):
        raise TheoremFormatError(f"{loc}: expected a JSON object")
    if "schema" in row:
        try:
            return from_json(row, Theorem)
        except SchemaError as e:
            raise TheoremFormatError(f"{loc}: {e}") from None
    for key in ("name", "formal_statement"):
        if not isinstance(row.get(key), str):
            raise TheoremFormatError(f"{loc}: field {key!r} missing or not a string")
    try:
        statement = parse_statement(row["formal_statement"])
    except ValueError as e:
        raise TheoremFormatError(f"{loc}: field 'formal_statement': {e}") from None
    return Theorem(
        name=row["name"],
        statement=statement,
        header=row.get("header", ""),
        split=row.get("split", ""),
        source=Path(where).name if not where.startswith("hf:") else where,
        informal=row.get("informal_prefix", ""),
        goal=row.get("goal"),
        file_path=row.get("path"),
    )
