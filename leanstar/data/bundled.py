"""Paths of the data files shipped inside the package (see bundled/README.md for provenance)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "bundled"

LEANDOJO_SAMPLE = "leandojo-benchmark4-sample.json"
MINIF2F = "minif2f-lean4-v4.24.jsonl"
MINIF2F_DEEPSEEK = "minif2f-deepseek.jsonl"


def bundled_path(name: str) -> Path:
    """The path of a bundled file; `name` may also be written as `bundled:NAME`."""
    name = name.removeprefix("bundled:")
    path = BUNDLED_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in BUNDLED_DIR.iterdir() if p.suffix in {".json", ".jsonl"})
        raise FileNotFoundError(f"no bundled file {name!r}; bundled data files: {available}")
    return path


def resolve(path: str) -> Path:
    """A user-given data path: `bundled:NAME` or a file on disk."""
    return bundled_path(path) if path.startswith("bundled:") else Path(path)
