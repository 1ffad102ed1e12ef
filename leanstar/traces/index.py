"""An SQLite index over a run's trajectory files, built incrementally, queried page by page.

The JSONL files stay the source of truth: the index keeps, per trajectory, the byte offset of
its line plus the few facts that tables and filters need, and the run's `Ledger` counts. It
grows by reading only the bytes appended since the last update (a line still being written is
left for the next one), one transaction per batch, so a killed indexer loses nothing and a
viewer can refresh while a search is still running. A file that shrank or was replaced makes
the index start over. Text search is an FTS5 table of token sets, one document per theorem
and round per batch (round -1: the theorem's name, statement and initial goal).

Rounds are kept as bit masks on each theorem (bit K = round K), which keeps every filter of
the theorem table a single scan of one row per theorem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leanstar.jsonl import JsonlError
from leanstar.records import REPLAY_LABEL
from leanstar.traces.digest import digest, tokenize
from leanstar.traces.ledger import Cell, Ledger

if TYPE_CHECKING:
    from leanstar.traces.indexer import UpdateReport

FORMAT = "leanstar-traces-index/1"
INDEX_NAME = "traces-index.sqlite"
MAX_ROUND = 62  # rounds are bits of a signed 64-bit mask
BATCH = 4000  # trajectories per transaction
CHUNK = 8 << 20  # bytes read at a time
STATUSES = ("any", "proved", "failed", "not_attempted", "rejected", "error")
SORTS = ("order", "name", "proved", "attempts", "shortest")

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE files(id INTEGER PRIMARY KEY, path TEXT UNIQUE, kind TEXT, inode INT, offset INT,
  lines INT, records INT, partial INT);
CREATE TABLE theorems(id INTEGER PRIMARY KEY, name TEXT UNIQUE, split TEXT DEFAULT '',
  statement TEXT DEFAULT '', goal TEXT DEFAULT '', attempted INT DEFAULT 0, proved INT DEFAULT 0,
  lean_proved INT DEFAULT 0, rejected INT DEFAULT 0, errored INT DEFAULT 0);
CREATE TABLE cells(theorem_id INT, round INT, attempts INT, proved INT, proved_replay INT,
  rejected INT, errors INT, steps INT, best_len INT, PRIMARY KEY(theorem_id, round))
  WITHOUT ROWID;
CREATE TABLE trajectories(id INTEGER PRIMARY KEY, theorem_id INT, round INT, attempt INT,
  outcome TEXT, checked_by TEXT, verdict_ok INT, proof_len INT, n_steps INT, n_failed INT,
  thought_chars INT, elapsed_s REAL, file_id INT, offset INT, length INT, line INT);
CREATE INDEX trajectories_theorem ON trajectories(theorem_id, round, attempt);
CREATE TABLE tactics(round INT, head TEXT, uses INT, fails INT, in_proofs INT,
  with_thought INT, in_proofs_with_thought INT, PRIMARY KEY(round, head)) WITHOUT ROWID;
CREATE TABLE errors(round INT, kind TEXT, n INT, PRIMARY KEY(round, kind)) WITHOUT ROWID;
CREATE TABLE hist(round INT, metric TEXT, bin INT, n INT, PRIMARY KEY(round, metric, bin))
  WITHOUT ROWID;
CREATE TABLE sums(round INT, metric TEXT, n INT, total INT, PRIMARY KEY(round, metric))
  WITHOUT ROWID;
CREATE TABLE outcomes(round INT, outcome TEXT, replay INT, n INT,
  PRIMARY KEY(round, outcome, replay)) WITHOUT ROWID;
CREATE TABLE checkers(round INT, checked_by TEXT, n INT, PRIMARY KEY(round, checked_by))
  WITHOUT ROWID;
CREATE TABLE no_thought(round INT PRIMARY KEY, n INT);
CREATE TABLE docs(id INTEGER PRIMARY KEY, theorem_id INT, round INT);
CREATE VIRTUAL TABLE fts USING fts5(body, content='', tokenize='unicode61 remove_diacritics 0');
"""
DATA_TABLES = [
    "files",
    "theorems",
    "cells",
    "trajectories",
    "tactics",
    "errors",
    "hist",
    "sums",
    "outcomes",
    "checkers",
    "no_thought",
    "docs",
]


class IndexBusy(RuntimeError):
    """Another process is updating the index."""


@dataclass
class TheoremQuery:
    """One page of the theorem table. `rounds` None = every round."""

    rounds: list[int] | None = None
    split: str = ""
    status: str = "any"
    text: str = ""
    sort: str = "order"
    page: int = 1
    per_page: int = 50

    def check(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.sort not in SORTS:
            raise ValueError(f"sort must be one of {SORTS}, got {self.sort!r}")
        if self.page < 1 or not 1 <= self.per_page <= 1000:
            raise ValueError("page must be >= 1 and per_page in 1..1000")


def default_index_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / INDEX_NAME


class TraceIndex:
    """The index of one run. One instance per thread; any number of readers, one writer."""

    def __init__(self, run_dir: str | Path, path: str | Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"{self.run_dir}: no such run directory")
        self.path = Path(path) if path else default_index_path(self.run_dir)
        self.db = _connect(self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> TraceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ updating
    def update(
        self, progress: Callable[[int, int], None] | None = None, wait: bool = True
    ) -> UpdateReport:
        """Index what the run's files gained since the last update. `progress(done, total)`
        is called with bytes; raises IndexBusy when `wait` is False and another writer runs."""
        with self._writer_lock(wait):
            from leanstar.traces.indexer import Indexer

            return Indexer(self, progress).run()

    @contextlib.contextmanager
    def _writer_lock(self, wait: bool) -> Iterator[None]:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise IndexBusy(f"{self.path}: another process is updating the index") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # ------------------------------------------------------------------ reading
    def meta(self) -> dict[str, Any]:
        q = self.db.execute
        rounds = [r for (r,) in q("SELECT DISTINCT round FROM cells ORDER BY round")]
        splits = [
            s for (s,) in q("SELECT DISTINCT split FROM theorems WHERE split != '' ORDER BY 1")
        ]
        checkers: dict[str, int] = {}
        for label, n in q("SELECT checked_by, SUM(n) FROM checkers GROUP BY 1 ORDER BY 2 DESC"):
            checkers[label] = n
        files = [
            {"path": p, "kind": k, "records": n, "partial": bool(part)}
            for p, k, n, part in q("SELECT path, kind, records, partial FROM files ORDER BY id")
        ]
        return {
            "run_dir": str(self.run_dir),
            "name": self.run_dir.resolve().name,
            "rounds": rounds,
            "splits": splits,
            "theorems": q("SELECT COUNT(*) FROM theorems").fetchone()[0],
            "trajectories": q("SELECT COALESCE(SUM(n), 0) FROM outcomes").fetchone()[0],
            "checkers": checkers,
            "replay_label": REPLAY_LABEL,
            "files": files,
            "version": self.meta_version(),
        }

    def theorem_page(self, query: TheoremQuery) -> dict[str, Any]:
        """{total, page, per_page, rows}: one page of theorems matching the query."""
        query.check()
        mask = self._mask(query.rounds)
        where, params = self._where(query, mask)
        total = self.db.execute(f"SELECT COUNT(*) FROM theorems t WHERE {where}", params)
        total = total.fetchone()[0]
        offset = (query.page - 1) * query.per_page
        ids = [i for (i,) in self.db.execute(*self._page_sql(query, where, params, offset))]
        return {
            "total": total,
            "page": query.page,
            "per_page": query.per_page,
            "rows": self._rows(ids, query.rounds),
        }

    def _where(self, query: TheoremQuery, mask: int) -> tuple[str, list[Any]]:
        clauses, params = ["1"], []
        if query.split:
            clauses.append("t.split = ?")
            params.append(query.split)
        status = {
            "proved": "(t.proved & :m) != 0",
            "failed": "(t.attempted & :m) != 0 AND (t.proved & :m) = 0",
            "not_attempted": "(t.attempted & :m) = 0",
            "rejected": "(t.rejected & :m) != 0",
            "error": "(t.errored & :m) != 0",
        }.get(query.status)
        if status:
            clauses.append(status.replace(":m", str(mask)))
        tokens = sorted(tokenize(query.text))
        if query.text.strip() and not tokens:
            clauses.append("0")  # only symbols: nothing is indexed for them
        if tokens:
            clauses.append(f"t.id IN ({self._text_sql(tokens, query.rounds)})")
            params.extend(f'"{tok}"*' for tok in tokens)
        return " AND ".join(clauses), params

    def _text_sql(self, tokens: list[str], rounds: list[int] | None) -> str:
        in_rounds = "" if rounds is None else f" AND (d.round = -1 OR d.round IN ({_ints(rounds)}))"
        one = (
            "SELECT d.theorem_id FROM docs d WHERE d.id IN "
            f"(SELECT rowid FROM fts WHERE fts MATCH ?){in_rounds}"
        )
        return " INTERSECT ".join([one] * len(tokens))

    def _page_sql(self, query: TheoremQuery, where: str, params: list[Any], offset: int):
        tail = f" LIMIT {query.per_page} OFFSET {offset}"
        if query.sort in ("order", "name"):
            order = "t.id" if query.sort == "order" else "t.name"
            return f"SELECT t.id FROM theorems t WHERE {where} ORDER BY {order}{tail}", params
        agg = {
            "proved": "SUM(c.proved) DESC, t.id",
            "attempts": "SUM(c.attempts) DESC, t.id",
            "shortest": "MIN(c.best_len) IS NULL, MIN(c.best_len), t.id",
        }[query.sort]
        in_rounds = "" if query.rounds is None else f" AND c.round IN ({_ints(query.rounds)})"
        sql = (
            f"SELECT t.id FROM theorems t LEFT JOIN cells c ON c.theorem_id = t.id{in_rounds} "
            f"WHERE {where} GROUP BY t.id ORDER BY {agg}{tail}"
        )
        return sql, params

    def _rows(self, ids: list[int], rounds: list[int] | None) -> list[dict[str, Any]]:
        if not ids:
            return []
        cells: dict[int, dict[int, Cell]] = {i: {} for i in ids}
        sql = f"SELECT * FROM cells WHERE theorem_id IN ({_ints(ids)})"
        for tid, rnd, *values in self.db.execute(sql):
            cells[tid][rnd] = Cell(*values)
        info = {
            i: (name, split, goal)
            for i, name, split, goal in self.db.execute(
                f"SELECT id, name, split, substr(goal, 1, 400) FROM theorems "
                f"WHERE id IN ({_ints(ids)})"
            )
        }
        return [theorem_row(*info[i], cells[i], rounds) for i in ids]

    def theorem(self, name: str, text: str = "") -> dict[str, Any] | None:
        """A theorem with its per-round cells and every attempt (not the steps)."""
        row = self.db.execute(
            "SELECT id, name, split, statement, goal FROM theorems WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        tid, name, split, statement, goal = row
        cells = {
            rnd: Cell(*values)
            for _, rnd, *values in self.db.execute(
                "SELECT * FROM cells WHERE theorem_id = ?", (tid,)
            )
        }
        attempts = [
            attempt_row(*r)
            for r in self.db.execute(
                "SELECT id, round, attempt, outcome, checked_by, verdict_ok, proof_len, n_steps, "
                "n_failed, thought_chars, elapsed_s FROM trajectories WHERE theorem_id = ? "
                "ORDER BY round, attempt, id",
                (tid,),
            )
        ]
        out = theorem_row(name, split, goal, cells, None)
        out.update(statement=statement, goal=goal, attempts=attempts)
        if tokenize(text):
            wanted = tokenize(text)
            out["matches"] = [
                a["tid"] for a in attempts if _matches(wanted, self.trajectory(a["tid"]))
            ]
        return out

    def find_theorems(self, fragment: str, limit: int = 20) -> list[str]:
        """Theorem names containing `fragment` (case-insensitive), shortest first."""
        rows = self.db.execute(
            "SELECT name FROM theorems WHERE instr(lower(name), lower(?)) > 0 "
            "ORDER BY length(name), name LIMIT ?",
            (fragment, limit),
        )
        return [n for (n,) in rows]

    def trajectory(self, tid: int) -> dict[str, Any]:
        """The full trajectory record, read from its line in the run, plus its index id.

        The line is checked as on indexing (`digest`) and against what the index recorded
        for it, so a file rewritten since it was indexed is an error, never a wrong view."""
        row = self.db.execute(
            "SELECT f.path, t.offset, t.length, t.line, th.name, t.round, t.attempt "
            "FROM trajectories t JOIN files f ON f.id = t.file_id "
            "JOIN theorems th ON th.id = t.theorem_id WHERE t.id = ?",
            (tid,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no trajectory {tid} in {self.path}")
        path, offset, length, line, name, rnd, attempt = row
        with open(self.run_dir / path, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
        where = f"{self.run_dir / path}:{line}"
        try:
            obj = json.loads(raw)
            d = digest(obj, where)
        except (json.JSONDecodeError, UnicodeDecodeError, JsonlError) as e:
            raise JsonlError(f"{where}: {e} (the file changed since it was indexed?)") from None
        if (d.theorem, d.round, d.attempt) != (name, rnd, attempt):
            raise JsonlError(
                f"{where}: the file changed since it was indexed; run again to reindex"
            )
        obj["tid"] = tid
        obj["source"] = f"{path}:{line}"
        return obj

    def trajectories(self, name: str, rounds: list[int] | None = None) -> list[dict[str, Any]]:
        """Every trajectory of a theorem (in `rounds`), in round and attempt order."""
        sql = (
            "SELECT t.id FROM trajectories t JOIN theorems th ON th.id = t.theorem_id "
            "WHERE th.name = ?"
        )
        if rounds is not None:
            sql += f" AND t.round IN ({_ints(rounds)})"
        ids = [i for (i,) in self.db.execute(sql + " ORDER BY t.round, t.attempt, t.id", (name,))]
        return [self.trajectory(i) for i in ids]

    def proofs(self, name: str) -> list[dict[str, Any]]:
        """The first proof of each round in which the theorem was proved (side-by-side view)."""
        rows = self.db.execute(
            "SELECT t.round, MIN(t.attempt), COUNT(*) FROM trajectories t "
            "JOIN theorems th ON th.id = t.theorem_id WHERE th.name = ? AND t.outcome = 'proved' "
            "GROUP BY t.round ORDER BY t.round",
            (name,),
        ).fetchall()
        out = []
        for rnd, attempt, count in rows:
            (tid,) = self.db.execute(
                "SELECT t.id FROM trajectories t JOIN theorems th ON th.id = t.theorem_id "
                "WHERE th.name = ? AND t.round = ? AND t.attempt = ? AND t.outcome = 'proved' "
                "ORDER BY t.id LIMIT 1",
                (name, rnd, attempt),
            ).fetchone()
            out.append({"round": rnd, "proofs": count, "trajectory": self.trajectory(tid)})
        return out

    def ledger(self) -> Ledger:
        """The run's counts, loaded from the index."""
        led = Ledger()
        q = self.db.execute
        names = dict(q("SELECT id, name FROM theorems"))
        for tid, rnd, *values in q("SELECT * FROM cells"):
            led.cells[(names[tid], rnd)] = Cell(*values)
        led.splits = {n: s for n, s in q("SELECT name, split FROM theorems WHERE split != ''")}
        for rnd, head, *counts in q("SELECT * FROM tactics"):
            led.tactics[(rnd, head)] = counts
        for rnd, kind, n in q("SELECT * FROM errors"):
            led.errors[(rnd, kind)] = n
        for rnd, metric, b, n in q("SELECT * FROM hist"):
            led.hist[(rnd, metric, b)] = n
        for rnd, metric, n, total in q("SELECT * FROM sums"):
            led.sums[(rnd, metric)] = [n, total]
        for rnd, outcome, replay, n in q("SELECT * FROM outcomes"):
            led.outcomes[(rnd, outcome, bool(replay))] = n
        for rnd, label, n in q("SELECT * FROM checkers"):
            led.checkers[(rnd, label)] = n
        for rnd, n in q("SELECT * FROM no_thought"):
            led.no_thought_steps[rnd] = n
        return led

    def theorem_names(self) -> list[str]:
        return [n for (n,) in self.db.execute("SELECT name FROM theorems ORDER BY id")]

    def theorem_info(self) -> dict[str, dict[str, str]]:
        """name -> {split, statement, goal} for every theorem."""
        rows = self.db.execute("SELECT name, split, statement, goal FROM theorems ORDER BY id")
        return {n: {"split": s, "statement": st, "goal": g} for n, s, st, g in rows}

    def meta_version(self) -> int:
        """Grows with every batch indexed: a cache key for anything derived from the index."""
        return int(self._meta_value("version") or 0)

    def _mask(self, rounds: list[int] | None) -> int:
        if rounds is None:
            return (1 << (MAX_ROUND + 1)) - 1
        return sum(1 << r for r in rounds if 0 <= r <= MAX_ROUND)

    def _meta_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None


def theorem_row(
    name: str, split: str, goal: str, cells: dict[int, Cell], rounds: list[int] | None
) -> dict[str, Any]:
    """A theorem-table row: per-round cells and totals over `rounds` (all when None)."""
    chosen = [c for r, c in cells.items() if rounds is None or r in rounds]
    best = [c.best_len for c in chosen if c.best_len is not None]
    return {
        "name": name,
        "split": split,
        "goal": goal,
        "rounds": {str(r): cell_json(c) for r, c in sorted(cells.items())},
        "attempts": sum(c.attempts for c in chosen),
        "proved": sum(c.proved for c in chosen),
        "proved_replay": sum(c.proved_replay for c in chosen),
        "steps": sum(c.steps for c in chosen),
        "best_len": min(best) if best else None,
    }


def cell_json(c: Cell) -> dict[str, Any]:
    return {
        "status": c.status,
        "attempts": c.attempts,
        "proved": c.proved,
        "proved_replay": c.proved_replay,
        "replay_only": c.replay_only,
        "rejected": c.rejected,
        "errors": c.errors,
        "steps": c.steps,
        "best_len": c.best_len,
    }


def attempt_row(
    tid, rnd, attempt, outcome, checked_by, verdict_ok, proof_len, n_steps, n_failed, chars, secs
) -> dict[str, Any]:
    return {
        "tid": tid,
        "round": rnd,
        "attempt": attempt,
        "outcome": outcome,
        "checked_by": checked_by,
        "replay": checked_by == REPLAY_LABEL,
        "verdict_ok": None if verdict_ok is None else bool(verdict_ok),
        "proof_len": proof_len,
        "n_steps": n_steps,
        "n_failed": n_failed,
        "thought_chars": chars,
        "elapsed_s": secs,
    }


def _matches(wanted: set[str], trajectory: dict[str, Any]) -> bool:
    have: set[str] = set()
    for step in trajectory.get("steps", []):
        have |= tokenize(step.get("thought"))
        have |= tokenize(step.get("tactic"))
    return all(any(h.startswith(w) for h in have) for w in wanted)


def _ints(values: list[int]) -> str:
    return ",".join(str(int(v)) for v in values) or "NULL"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=60.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as e:
        raise OSError(f"{path}: cannot open the trace index ({e}); pass --index PATH") from None
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA mmap_size=268435456")  # reads straight from the page cache
    with _schema_lock:
        have = db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone()
        if have:
            fmt = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if fmt and fmt[0] == FORMAT:
                return db
            _drop_all(db)
        db.executescript(SCHEMA)
        db.execute("INSERT INTO meta VALUES ('format', ?), ('version', '0')", (FORMAT,))
        db.commit()
    return db


_schema_lock = threading.Lock()


def _drop_all(db: sqlite3.Connection) -> None:
    names = db.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'fts_%' "
        "AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (name,) in names:
        db.execute(f"DROP TABLE IF EXISTS {name}")
    db.commit()
