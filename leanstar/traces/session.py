"""What the `traces` commands share: opening a run's index with a progress bar, saying what is
odd about the run, and turning bad input into one clear line instead of a traceback."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from leanstar.jsonl import JsonlError
from leanstar.traces.index import TraceIndex
from leanstar.traces.indexer import UpdateReport


class CommandError(Exception):
    """A problem the user can fix (a wrong path, a bad record); printed without a traceback."""


def command(main: Callable[[Any], int]) -> Callable[[Any], int]:
    """A `main(cfg)` whose input errors print as one line and exit with status 2."""

    @functools.wraps(main)
    def wrapper(cfg: Any) -> int:
        try:
            return main(cfg)
        except (CommandError, JsonlError, OSError) as e:
            Console(stderr=True).print(Text(f"leanstar traces: {e}", "red"))
            return 2

    return wrapper


@contextlib.contextmanager
def open_index(run_dir: str | Path, index_path: str, console: Console) -> Iterator[TraceIndex]:
    """The run's index, brought up to date (a bar shows while new records are read)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    if not run_dir:
        raise CommandError("give the run directory")
    if not Path(run_dir).is_dir():
        raise CommandError(f"{run_dir}: no such run directory")
    index = TraceIndex(run_dir, index_path or None)
    try:
        columns = (TextColumn("indexing {task.description}"), BarColumn(), DownloadColumn(),
                   TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(str(run_dir), total=None)
            report = index.update(
                progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        notify(report, index, console)
        yield index
    finally:
        index.close()


def notify(report: UpdateReport, index: TraceIndex, console: Console) -> None:
    if report.rebuilt:
        console.print(Text(f"{index.run_dir}: a record file was replaced or shrank; the index "
                           "was rebuilt", "yellow"))  # fmt: skip
    if report.new_trajectories:
        console.print(Text(f"indexed {report.new_trajectories:,} new trajectories into "
                           f"{index.path}", "dim"))  # fmt: skip
    for path in report.partial_files:
        console.print(Text(f"{index.run_dir / path}: the last line is incomplete (a writer is "
                           "still running, or was killed); that record is left out until it is "
                           "complete", "yellow"))  # fmt: skip
    if not index.meta()["trajectories"]:
        console.print(Text(f"{index.run_dir}: no trajectory records yet (no trajectories.jsonl "
                           "under it, at any depth)", "yellow"))  # fmt: skip
