"""Resume points of an SFT run: the Trainer's checkpoints, and the metrics logged after them.

The Trainer writes `checkpoint-N/` in place, with `trainer_state.json` last, so a run killed
while saving leaves a directory that looks like the newest checkpoint but cannot be loaded.
`last_complete_checkpoint` removes such directories and returns the newest whole one; the
metrics lines logged after it are trimmed so the resumed run neither loses nor repeats a step.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from leanstar.jsonl import iter_json_lines, write_text_atomic

STATE_FILE = "trainer_state.json"  # written last by transformers' Trainer._save_checkpoint
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` directory in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def is_complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file()


def last_complete_checkpoint(folder: Path, log=print) -> Path | None:
    """The newest whole checkpoint in `folder`; partial ones (a kill mid-save) are removed."""
    best = None
    for step, path in checkpoints(folder):
        if is_complete(path):
            best = path
        else:
            log(f"removing incomplete checkpoint {path} (step {step}; the run was killed mid-save)")
            shutil.rmtree(path)
    return best


def checkpoint_step(path: Path) -> int:
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))["global_step"]


def remove_checkpoints(folder: Path) -> int:
    """Delete every `checkpoint-N` directory (after the final model is safely saved)."""
    found = checkpoints(folder)
    for _, path in found:
        shutil.rmtree(path)
    return len(found)


def trim_metrics(path: Path, step: int) -> int:
    """Drop metric lines logged after `step` (work the resumed run redoes); returns how many."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for _, obj in iter_json_lines(path):
        if obj.get("step", 0) <= step:
            kept.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        else:
            dropped += 1
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped
