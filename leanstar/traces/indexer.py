"""Bringing a run's index up to date: read only the bytes appended since the last update.

Each batch of new lines is one transaction that also moves the file's recorded offset, so a
killed indexer loses nothing and never counts a record twice. A last line without its newline
(a writer mid-line) is left for the next update. A file that shrank, was replaced or vanished
makes the index start over, because its counts can no longer be trusted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leanstar.jsonl import JsonlError
from leanstar.records import SchemaError, Theorem, from_json
from leanstar.traces.digest import Digest, digest, tokenize
from leanstar.traces.index import BATCH, CHUNK, DATA_TABLES, MAX_ROUND, TraceIndex
from leanstar.traces.ledger import Ledger
from leanstar.traces.runfiles import PROOFS, THEOREMS, discover


@dataclass
class UpdateReport:
    new_trajectories: int = 0
    new_theorems: int = 0
    rebuilt: bool = False
    partial_files: list[str] = field(default_factory=list)


class Indexer:
    """One incremental update: rebuild when a file was replaced, then read every new tail."""

    def __init__(self, index: TraceIndex, progress: Callable[[int, int], None] | None) -> None:
        self.index = index
        self.db = index.db
        self.progress = progress
        self.report = UpdateReport()
        self.theorem_ids: dict[str, int] = {}
        self.goals: set[int] = set()  # theorems whose goal is known

    def run(self) -> UpdateReport:
        files = discover(self.index.run_dir)
        known = {
            p: (i, ino, off)
            for i, p, ino, off in self.db.execute("SELECT id, path, inode, offset FROM files")
        }
        if self._replaced(known, files.trajectories + files.theorems + files.proofs):
            self._reset()
            known = {}
            self.report.rebuilt = True
        self._load_theorems()
        todo = []
        for path in files.theorems + files.trajectories + files.proofs:
            rel = path.relative_to(self.index.run_dir).as_posix()
            size = path.stat().st_size
            offset = known.get(rel, (0, 0, 0))[2]
            if size > offset:
                todo.append((path, rel, offset, size))
        total, done = sum(s - o for *_, o, s in todo), 0
        for path, rel, offset, _ in todo:
            kind = {THEOREMS: "theorems", PROOFS: "proofs"}.get(path.name, "trajectories")
            for read in self._read_tail(path, rel, kind, offset):
                done += read
                if self.progress:
                    self.progress(done, total)
        self.report.partial_files = [
            p for (p,) in self.db.execute("SELECT path FROM files WHERE partial = 1")
        ]
        return self.report

    def _replaced(self, known: dict[str, tuple[int, int, int]], paths: list[Path]) -> bool:
        on_disk = {p.relative_to(self.index.run_dir).as_posix(): p for p in paths}
        for rel, (_, inode, offset) in known.items():
            path = on_disk.get(rel)
            if path is None:
                return True
            st = path.stat()
            if st.st_ino != inode or st.st_size < offset:
                return True
        return False

    def _reset(self) -> None:
        with self.db:
            for table in DATA_TABLES:
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO fts(fts) VALUES ('delete-all')")
            self._bump_version()

    def _load_theorems(self) -> None:
        for i, name, has_goal in self.db.execute("SELECT id, name, goal != '' FROM theorems"):
            self.theorem_ids[name] = i
            if has_goal:
                self.goals.add(i)

    # -- reading new bytes ------------------------------------------------------
    def _read_tail(self, path: Path, rel: str, kind: str, offset: int) -> Iterator[int]:
        """Index the complete lines after `offset`, one transaction per batch; yields the
        bytes each batch consumed. A last line without its newline is left for later."""
        file_id, line_no = self._file_row(path, rel, kind)
        batch: list[tuple[bytes, int, int, int]] = []
        flushed = offset
        with path.open("rb") as f:
            f.seek(offset)
            carry = b""
            while chunk := f.read(CHUNK):
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                pos = offset
                for raw in data[:cut].split(b"\n")[:-1]:
                    line_no += 1
                    if raw.strip():
                        batch.append((raw, pos, len(raw), line_no))
                    pos += len(raw) + 1
                    if len(batch) >= BATCH:
                        self._flush(kind, file_id, path, batch, pos, line_no, partial=False)
                        batch = []
                        yield pos - flushed
                        flushed = pos
                offset += cut
        self._flush(kind, file_id, path, batch, offset, line_no, partial=bool(carry.strip()))
        yield offset - flushed + len(carry)

    def _file_row(self, path: Path, rel: str, kind: str) -> tuple[int, int]:
        row = self.db.execute("SELECT id, lines FROM files WHERE path = ?", (rel,)).fetchone()
        if row:
            return row
        with self.db:
            cur = self.db.execute(
                "INSERT INTO files(path, kind, inode, offset, lines, records, partial) "
                "VALUES (?, ?, ?, 0, 0, 0, 0)",
                (rel, kind, path.stat().st_ino),
            )
        return cur.lastrowid, 0

    def _flush(self, kind, file_id, path, batch, offset, lines, *, partial: bool) -> None:
        with self.db:
            if kind == "trajectories":
                self._add_trajectories(file_id, path, batch)
            elif kind == "theorems":
                self._add_theorem_records(path, batch)
            self.db.execute(
                "UPDATE files SET offset = ?, lines = ?, records = records + ?, partial = ? "
                "WHERE id = ?",
                (offset, lines, len(batch), int(partial), file_id),
            )
            self._bump_version()

    def _bump_version(self) -> None:
        self.db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")

    # -- trajectories ------------------------------------------------------------
    def _add_trajectories(self, file_id: int, path: Path, batch) -> None:
        delta = Ledger()
        rows, docs = [], {}
        for raw, start, length, line in batch:
            d = _parse_digest(raw, f"{path}:{line}")
            delta.add(d)
            tid = self._theorem_id(d)
            rows.append((
                tid, d.round, d.attempt, d.outcome, d.checked_by,
                None if d.verdict_ok is None else int(d.verdict_ok), d.proof_len, len(d.steps),
                d.n_failed, d.thought_chars, d.elapsed_s, file_id, start, length, line,
            ))  # fmt: skip
            docs.setdefault((tid, d.round), set()).update(d.tokens)
        self.db.executemany(
            "INSERT INTO trajectories(theorem_id, round, attempt, outcome, checked_by, "
            "verdict_ok, proof_len, n_steps, n_failed, thought_chars, elapsed_s, file_id, "
            "offset, length, line) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        for (tid, rnd), tokens in docs.items():
            self._add_doc(tid, rnd, tokens)
        self._store(delta)
        self.report.new_trajectories += len(rows)

    def _theorem_id(self, d: Digest) -> int:
        tid = self.theorem_ids.get(d.theorem)
        if tid is None:
            cur = self.db.execute(
                "INSERT INTO theorems(name, split, goal) VALUES (?, ?, ?)",
                (d.theorem, d.split, d.goal),
            )
            tid = self.theorem_ids[d.theorem] = cur.lastrowid
            self._add_doc(tid, -1, tokenize(d.theorem) | tokenize(d.goal))
            self.report.new_theorems += 1
            if d.goal:
                self.goals.add(tid)
        elif d.goal and tid not in self.goals:
            self.db.execute("UPDATE theorems SET goal = ? WHERE id = ?", (d.goal, tid))
            self._add_doc(tid, -1, tokenize(d.goal))
            self.goals.add(tid)
        return tid

    def _add_doc(self, theorem_id: int, rnd: int, tokens: set[str]) -> None:
        if not tokens:
            return
        cur = self.db.execute(
            "INSERT INTO docs(theorem_id, round) VALUES (?, ?)", (theorem_id, rnd)
        )
        self.db.execute(
            "INSERT INTO fts(rowid, body) VALUES (?, ?)", (cur.lastrowid, " ".join(tokens))
        )

    def _store(self, delta: Ledger) -> None:
        x = self.db.executemany
        cells, masks = [], {}
        for (name, rnd), c in delta.cells.items():
            tid = self.theorem_ids[name]
            cells.append((tid, rnd, c.attempts, c.proved, c.proved_replay, c.rejected,
                          c.errors, c.steps, c.best_len))  # fmt: skip
            bit = 1 << rnd
            m = masks.setdefault(tid, [0, 0, 0, 0, 0])
            m[0] |= bit
            m[1] |= bit if c.proved else 0
            m[2] |= bit if c.proved > c.proved_replay else 0
            m[3] |= bit if c.rejected else 0
            m[4] |= bit if c.errors else 0
        x(
            "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "attempts = attempts + excluded.attempts, proved = proved + excluded.proved, "
            "proved_replay = proved_replay + excluded.proved_replay, "
            "rejected = rejected + excluded.rejected, errors = errors + excluded.errors, "
            "steps = steps + excluded.steps, best_len = CASE WHEN best_len IS NULL "
            "THEN excluded.best_len WHEN excluded.best_len IS NULL THEN best_len "
            "ELSE min(best_len, excluded.best_len) END",
            cells,
        )
        x(
            "UPDATE theorems SET attempted = attempted | ?, proved = proved | ?, "
            "lean_proved = lean_proved | ?, rejected = rejected | ?, errored = errored | ? "
            "WHERE id = ?",
            [(*m, tid) for tid, m in masks.items()],
        )
        for name, split in delta.splits.items():
            self.db.execute(
                "UPDATE theorems SET split = ? WHERE id = ? AND split = ''",
                (split, self.theorem_ids[name]),
            )
        add = "ON CONFLICT DO UPDATE SET n = n + excluded.n"
        x(
            "INSERT INTO tactics VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "uses = uses + excluded.uses, fails = fails + excluded.fails, "
            "in_proofs = in_proofs + excluded.in_proofs, "
            "with_thought = with_thought + excluded.with_thought, "
            "in_proofs_with_thought = in_proofs_with_thought + excluded.in_proofs_with_thought",
            [(r, h, *c) for (r, h), c in delta.tactics.items()],
        )
        x(f"INSERT INTO errors VALUES (?,?,?) {add}", [(*k, n) for k, n in delta.errors.items()])
        x(f"INSERT INTO hist VALUES (?,?,?,?) {add}", [(*k, n) for k, n in delta.hist.items()])
        x(
            "INSERT INTO sums VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n, "
            "total = total + excluded.total",
            [(*k, n, t) for k, (n, t) in delta.sums.items()],
        )
        x(
            f"INSERT INTO outcomes VALUES (?,?,?,?) {add}",
            [(r, o, int(rep), n) for (r, o, rep), n in delta.outcomes.items()],
        )
        x(
            f"INSERT INTO checkers VALUES (?,?,?) {add}",
            [(*k, n) for k, n in delta.checkers.items()],
        )
        x(f"INSERT INTO no_thought VALUES (?,?) {add}", list(delta.no_thought_steps.items()))

    # -- theorem records -----------------------------------------------------------
    def _add_theorem_records(self, path: Path, batch) -> None:
        for raw, _, _, line in batch:
            where = f"{path}:{line}"
            try:
                thm = from_json(json.loads(raw), Theorem)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise JsonlError(f"{where}: not valid JSON ({e})") from None
            except SchemaError as e:
                raise JsonlError(f"{where}: {e}") from None
            self._upsert_theorem(thm)

    def _upsert_theorem(self, thm: Theorem) -> None:
        tid = self.theorem_ids.get(thm.name)
        goal = thm.goal or ""
        if tid is None:
            cur = self.db.execute(
                "INSERT INTO theorems(name, split, statement, goal) VALUES (?, ?, ?, ?)",
                (thm.name, thm.split, thm.statement, goal),
            )
            tid = self.theorem_ids[thm.name] = cur.lastrowid
            self.report.new_theorems += 1
        else:
            self.db.execute(
                "UPDATE theorems SET statement = ?, split = CASE WHEN ? != '' THEN ? ELSE split "
                "END, goal = CASE WHEN goal = '' THEN ? ELSE goal END WHERE id = ?",
                (thm.statement, thm.split, thm.split, goal, tid),
            )
        if goal:
            self.goals.add(tid)
        text = " ".join((thm.name, thm.statement, goal))
        self._add_doc(tid, -1, tokenize(text))


def _parse_digest(raw: bytes, where: str) -> Digest:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JsonlError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise JsonlError(f"{where}: expected a JSON object")
    d = digest(obj, where)
    if not 0 <= d.round <= MAX_ROUND:
        raise JsonlError(f"{where}: trajectory.round: {d.round} is outside 0..{MAX_ROUND}")
    return d
