"""Opening a run's index from a command: update it with a progress bar, say what is odd."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from leanstar.traces.index import TraceIndex
from leanstar.traces.indexer import UpdateReport


@contextlib.contextmanager
def open_index(run_dir: str | Path, index_path: str, console) -> Iterator[TraceIndex]:
    """The run's index, brought up to date (a bar shows while new records are read)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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


def notify(report: UpdateReport, index: TraceIndex, console) -> None:
    if report.rebuilt:
        console.print(
            f"[yellow]{index.run_dir}: a record file was replaced or shrank; the index was rebuilt"
        )
    if report.new_trajectories:
        console.print(
            f"[dim]indexed {report.new_trajectories:,} new trajectories into {index.path}[/]"
        )
    for path in report.partial_files:
        console.print(
            f"[yellow]{index.run_dir / path}: the last line is incomplete (a writer is still "
            "running, or was killed); that record is left out until it is complete"
        )
