"""`leanstar traces report RUN_DIR`: one self-contained HTML file to read a run's traces.

The page holds the viewer and the data it shows (theorems, every trajectory of them, the
summary and the round comparisons), so it opens from disk with no server and no network. For
runs too big to embed, filter (`--round`, `--split`, `--status`, `--query`) or use `traces
serve`. A filtered report says so at the top, and its summary counts only what it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leanstar.traces.compare import rounds_html
from leanstar.traces.digest import digest, tokenize
from leanstar.traces.index import TheoremQuery, TraceIndex
from leanstar.traces.ledger import Ledger
from leanstar.traces.session import command
from leanstar.traces.summary import checker_counts, summary_html


class ReportTooLarge(ValueError):
    """More trajectories than a report may embed."""


def report_data(
    index: TraceIndex,
    rounds: list[int] | None = None,
    split: str = "",
    status: str = "any",
    query: str = "",
    max_trajectories: int = 5000,
) -> dict[str, Any]:
    """Everything the viewer needs, as JSON-ready data, for the theorems the filters keep."""
    filtered = rounds is not None or split or status != "any" or query.strip()
    names = _matching(index, TheoremQuery(rounds=rounds, split=split, status=status, text=query))
    info = index.theorem_info()
    theorems, trajectories, led = [], {}, Ledger()
    total = 0
    for name in names:
        t = index.theorem(name)
        attempts = [a for a in t["attempts"] if rounds is None or a["round"] in rounds]
        total += len(attempts)
        if total > max_trajectories:
            raise ReportTooLarge(_too_large(index, max_trajectories))
        trajs = index.trajectories(name, rounds)
        tokens: dict[str, set[str]] = {"-1": tokenize(" ".join((name, *info[name].values())))}
        for tr in trajs:
            trajectories[tr["tid"]] = tr
            bag = tokens.setdefault(str(tr["round"]), set())
            for step in tr["steps"]:
                bag |= tokenize(step.get("thought")) | tokenize(step.get("tactic"))
            if filtered:
                led.add(digest(tr, tr["source"]))
        theorems.append({
            "name": name,
            "split": info[name]["split"],
            "statement": info[name]["statement"],
            "goal": info[name]["goal"],
            "rounds": {r: c for r, c in t["rounds"].items() if rounds is None or int(r) in rounds},
            "tokens": {r: sorted(v) for r, v in tokens.items()},
            "attempts": attempts,
        })  # fmt: skip
    meta = index.meta()
    if filtered:
        meta.update(
            _subset_meta(led, len(theorems), len(trajectories), rounds, split, status, query)
        )
    else:
        led = index.ledger()
    return {
        "meta": meta,
        "theorems": theorems,
        "trajectories": trajectories,
        "summary_html": summary_html(led),
        "rounds_html": rounds_html(led),
    }


def _matching(index: TraceIndex, query: TheoremQuery) -> list[str]:
    query.per_page, names = 1000, []
    while True:
        page = index.theorem_page(query)
        names += [r["name"] for r in page["rows"]]
        if len(names) >= page["total"] or not page["rows"]:
            return names
        query.page += 1


def _subset_meta(led, n_theorems, n_trajectories, rounds, split, status, query) -> dict[str, Any]:
    filters = [
        f"round {rounds[0]}" if rounds else "",
        f"split {split}" if split else "",
        f"status {status}" if status != "any" else "",
        f"words “{query}”" if query.strip() else "",
    ]
    return {
        "rounds": led.rounds() if rounds is None else rounds,
        "theorems": n_theorems,
        "trajectories": n_trajectories,
        "checkers": dict(checker_counts(led)),
        "subset": "This report holds part of the run ("
        + ", ".join(f for f in filters if f)
        + "); its summary and comparisons count only what it holds.",
    }


def _too_large(index: TraceIndex, limit: int) -> str:
    return (
        f"{index.run_dir}: the chosen theorems have more than {limit:,} trajectories, too many "
        "to embed in one page. Narrow them (--round, --split, --status, --query), raise "
        "--max_trajectories, or browse the whole run with `leanstar traces serve "
        f"{index.run_dir}`."
    )


@command
def main(cfg: Any) -> int:
    from rich.console import Console

    from leanstar.jsonl import write_text_atomic
    from leanstar.traces.page import viewer_page
    from leanstar.traces.session import open_index

    console = Console(stderr=True)
    with open_index(cfg.run_dir, cfg.index, console) as index:
        try:
            data = report_data(
                index,
                rounds=None if cfg.round < 0 else [cfg.round],
                split=cfg.split,
                status=cfg.status,
                query=cfg.query,
                max_trajectories=cfg.max_trajectories,
            )
        except ReportTooLarge as e:
            console.print(f"[red]{e}")
            return 2
    out = Path(cfg.out) if cfg.out else Path(cfg.run_dir) / "traces.html"
    title = cfg.title or f"{Path(cfg.run_dir).resolve().name} · leanstar traces"
    write_text_atomic(out, viewer_page(title, data))
    size = out.stat().st_size / 1e6
    console.print(
        f"wrote {out} ({len(data['theorems']):,} theorems, {len(data['trajectories']):,} "
        f"trajectories, {size:.1f} MB); it opens from disk, without a server or network"
    )
    return 0
