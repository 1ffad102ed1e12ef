"""A search's run directory: what is already done, and where new results go.

    RUN_DIR/
      config.yaml          the resolved config (RunDir)
      manifest.json        phase "search" marked done once every attempt is written
      theorems.jsonl       the Theorem records searched (for the trace viewer)
      trajectories.jsonl   one Trajectory per finished attempt, appended as it finishes
      summary.json         counts over the whole file, and this session's timings

Resuming re-reads `trajectories.jsonl` (raw JSON, not full records, so a large file stays
quick) for the (theorem, attempt) keys already written and skips them. A run directory is
never resumed with settings that would change its results, nor with another checker: the
numbers in it must all mean the same thing.
"""

from __future__ import annotations

from leanstar.jsonl import JsonlWriter, iter_json_lines
from leanstar.records import Theorem, TrajectoryOutcome
from leanstar.rundir import RunDir
from leanstar.search.config import SearchConfig

TRAJECTORIES = "trajectories.jsonl"
THEOREMS = "theorems.jsonl"
SUMMARY = "summary.json"

# Settings that change what a trajectory means; a run directory keeps them fixed.
RESULT_KEYS = (
    "theorems",
    "split",
    "strategy",
    "with_thoughts",
    "max_steps",
    "max_resamples",
    "theorem_time_s",
    "candidates",
    "max_expansions",
    "score",
    "generator.model",
    "generator.temperature",
    "generator.top_p",
    "generator.max_new_tokens",
    "generator.stop",
)


class ResumeConflict(ValueError):
    """The run directory holds results made with other settings or another checker."""


class Written:
    """What `trajectories.jsonl` already holds, folded as it grows."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, int]] = set()
        self.outcomes: dict[str, int] = {o.value: 0 for o in TrajectoryOutcome}
        self.proved: set[str] = set()
        self.theorems: set[str] = set()
        self.checked_by: set[str] = set()

    def add(self, theorem: str, attempt: int, outcome: str, checked_by: str) -> None:
        self.keys.add((theorem, attempt))
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.theorems.add(theorem)
        self.checked_by.add(checked_by)
        if outcome == TrajectoryOutcome.PROVED.value:
            self.proved.add(theorem)


def read_written(rd: RunDir) -> Written:
    written = Written()
    path = rd / TRAJECTORIES
    for number, obj in iter_json_lines(path):
        try:
            written.add(obj["theorem"], obj["attempt"], obj["outcome"], obj["checked_by"])
        except (KeyError, TypeError):
            raise ResumeConflict(f"{path}:{number}: not a trajectory record") from None
    return written


def check_resumable(rd: RunDir, cfg: SearchConfig, written: Written, checked_by: str) -> None:
    configs = rd.saved_and_current_config(cfg) if written.keys else None
    if configs is not None:
        saved, now = configs
        changed = [k for k in RESULT_KEYS if k in saved and saved[k] != now.get(k)]
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]!r} -> {now.get(k)!r}" for k in changed)
            raise ResumeConflict(
                f"{rd.path} holds {len(written.keys)} trajectories made with other settings "
                f"({diffs}); use a new run_dir, or restore those settings to resume"
            )
    others = written.checked_by - {checked_by}
    if others:
        raise ResumeConflict(
            f"{rd.path} holds trajectories checked by {sorted(others)}, but this run is "
            f"checked by {checked_by!r}; results of different checkers are never mixed: use a "
            "new run_dir"
        )


def record_theorems(rd: RunDir, theorems: list[Theorem]) -> None:
    """Append to theorems.jsonl the theorems it does not list yet."""
    path = rd / THEOREMS
    listed = {obj.get("name") for _, obj in iter_json_lines(path)}
    new = [t for t in theorems if t.name not in listed]
    if new:
        with JsonlWriter(path) as writer:
            writer.write_all(new)
