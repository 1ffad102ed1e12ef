"""Where a run keeps its records, and how a run (or one of its rounds) is named on the CLI.

    RUN_DIR/trajectories.jsonl              a search or eval run
    RUN_DIR/round-K/trajectories.jsonl      an expert-iteration run, one file per round
    RUN_DIR/round-K/proofs.jsonl            steps kept for training in round K
    RUN_DIR/**/theorems.jsonl               the theorems searched (statements), when written

Every `trajectories.jsonl` under RUN_DIR is read, at any depth; a record's round is its
`round` field, never its folder name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRAJECTORIES = "trajectories.jsonl"
THEOREMS = "theorems.jsonl"
PROOFS = "proofs.jsonl"


@dataclass(frozen=True)
class RunFiles:
    root: Path
    trajectories: list[Path]
    theorems: list[Path]
    proofs: list[Path]


def discover(run_dir: str | Path) -> RunFiles:
    """The record files of a run, in a stable order (round-2 before round-10)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")

    def find(name: str) -> list[Path]:
        return sorted(
            (p for p in root.rglob(name) if p.is_file() and not _hidden(p, root)),
            key=lambda p: _natural(p.relative_to(root).as_posix()),
        )

    return RunFiles(root, find(TRAJECTORIES), find(THEOREMS), find(PROOFS))


def parse_run_spec(spec: str) -> tuple[Path, int | None]:
    """`RUN_DIR` or `RUN_DIR:K` (round K of the run)."""
    m = re.fullmatch(r"(.+):(\d+)", spec)
    if m and not Path(spec).exists():
        return Path(m.group(1)), int(m.group(2))
    return Path(spec), None


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _natural(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
