"""Stand-ins that speak real protocols, for tests and benches (see fake_repl.py)."""

from __future__ import annotations

import sys
from pathlib import Path

FAKE_REPL = Path(__file__).with_name("fake_repl.py")
FIXTURES = Path(__file__).parents[1] / "fixtures"
V433 = FIXTURES / "repl" / "v4.33.0-rc2"
V415 = FIXTURES / "repl" / "v4.15.0"
HANDWRITTEN = FIXTURES / "repl" / "handwritten"


def fake_repl_argv(*options: str, transcripts=(V433,)) -> tuple[str, ...]:
    """The command line of one fake REPL process answering from `transcripts`."""
    folders = [arg for folder in transcripts for arg in ("--transcripts", str(folder))]
    return (sys.executable, str(FAKE_REPL), *folders, *options)
