"""Configs of `leanstar traces report|serve|show|compare`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import option

Status = Literal["any", "proved", "failed", "not_attempted", "rejected", "error"]
INDEX_HELP = (
    "SQLite index of the run, built and updated on demand ('' = RUN_DIR/traces-index.sqlite)"
)


@dataclass
class TracesReportConfig:
    run_dir: str = option("", "run directory to report on", positional=True)
    out: str = option("", "HTML file to write ('' = RUN_DIR/traces.html)")
    index: str = option("", INDEX_HELP)
    round: int = option(-1, "only this round (-1 = every round)")
    split: str = option("", "only theorems of this split ('' = all)")
    status: Status = option("any", "only theorems with this status in the chosen rounds")
    query: str = option("", "only theorems whose statement, thoughts or tactics hold these words")
    max_trajectories: int = option(
        5000, "refuse to embed more trajectories than this (filter, or use `traces serve`)"
    )
    title: str = option("", "page title ('' = the run directory's name)")


@dataclass
class TracesServeConfig:
    run_dir: str = option("", "run directory to serve", positional=True)
    port: int = option(8765, "port on 127.0.0.1 (0 = any free port)")
    index: str = option("", INDEX_HELP)
    refresh_s: float = option(
        5.0, "look for records appended to the run this often while serving (0 = never)"
    )


@dataclass
class TracesShowConfig:
    run_dir: str = option("", "run directory", positional=True)
    theorem: str = option(
        "", "theorem to show, or a unique part of its name ('' = the run summary)", positional=True,
        nargs="?",
    )  # fmt: skip
    round: int = option(-1, "only attempts of this round (-1 = every round)")
    attempt: int = option(-1, "attempt number to show (-1 = a proof from the latest round, if any)")
    index: str = option("", INDEX_HELP)
    limit: int = option(30, "theorems listed in the run summary")


@dataclass
class TracesCompareConfig:
    run_a: str = option("", "earlier run directory, or RUN:K for round K", positional=True)
    run_b: str = option(
        "", "later run directory or RUN:K ('' = each round of RUN_A against the one before)",
        positional=True, nargs="?",
    )  # fmt: skip
    out: str = option("", "also write the tables to this HTML file")
    top: int = option(15, "tactics listed in the tactic-shift table")
    names: int = option(20, "theorem names listed per table in the terminal")
