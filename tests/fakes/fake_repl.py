#!/usr/bin/env python3
"""A stand-in for the Lean REPL (leanprover-community/repl) at the protocol level, for tests and
the bench. It is a separate executable, so the client code under test drives it exactly as it
drives a real REPL: JSON requests on stdin, each ended by a blank line; pretty-printed JSON
answers on stdout, each ended by a blank line.

Answers come from real transcripts (`--transcripts DIR`: the REPL's own test inputs `*.in` with
the outputs a real REPL printed, `*.expected.out`). A request is looked up by its content and by
the history of the environment / proof state it refers to, and the recorded answer is returned
with its ids renumbered into this session's own sequence, so a client may replay any recorded
path in any order, branch, and interleave theorems. Requests with no recording get
`{"message": "fake REPL: no recorded answer ..."}` unless `--synthetic` is given, which answers
anything with made-up states (for the bench and load tests only; never presented as Lean output).

Fault knobs (for the pool's fault tests): `--fault hang|crash|garbage|forget` fired on the N-th
request (`--fault-at N`) or on a request containing a text (`--fault-on TEXT`), optionally only
once across all processes (`--fault-once FILE`: fires only if FILE does not exist, and creates
it); `forget` drops every environment and proof state, as a restarted REPL would; `--slow S`
sleeps before every answer; `--startup-s S` sleeps before reading anything; `--restart-delay S`
sleeps S before reading anything if the `--fault-once` file exists (a slow replacement
process); `--grow-mb M` keeps M more MB resident after every request.

Test-only control request: `{"fake": "reset"}` forgets all environments and proof states (ids
start again at 0), so one process can replay many transcripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

ROOT = (None, None)


def split_blocks(text: str) -> list[str]:
    """The REPL's framing: a request is its lines up to a blank line, joined without newlines."""
    blocks, lines = [], []
    for line in text.split("\n"):
        if line.strip():
            lines.append(line)
        elif lines:
            blocks.append("".join(lines))
            lines = []
    if lines:
        blocks.append("".join(lines))
    return blocks


def content_key(request: dict) -> str:
    body = {k: v for k, v in request.items() if k not in ("env", "proofState")}
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def _id_sites(response: dict):
    """Where ids live in an answer: ("env", container) and ("ps", container) pairs."""
    if isinstance(response.get("env"), int):
        yield "env", response
    if isinstance(response.get("proofState"), int):
        yield "ps", response
    for field in ("sorries", "tactics"):
        for item in response.get(field) or ():
            if isinstance(item, dict) and isinstance(item.get("proofState"), int):
                yield "ps", item


def _field(kind: str) -> str:
    return "env" if kind == "env" else "proofState"


class Knowledge:
    """Recorded answers keyed by (parent key, request content). A key names an environment or
    proof state by how it was made, so it is the same in every session that makes it."""

    def __init__(self) -> None:
        self.answers: dict[tuple, tuple[dict, dict]] = {}
        self.conflicts: list[str] = []

    @classmethod
    def load(cls, directory: str | Path, only: set[str] | None = None) -> Knowledge:
        kb = cls()
        for path in sorted(Path(directory).rglob("*.in")):
            out = path.with_name(path.name[: -len(".in")] + ".expected.out")
            if not out.is_file() or (only and path.stem not in only):
                continue
            requests = [json.loads(b) for b in split_blocks(path.read_text(encoding="utf-8"))]
            responses = [json.loads(b) for b in split_blocks(out.read_text(encoding="utf-8"))]
            kb.add(path.stem, requests, responses)
        return kb

    def add(self, name: str, requests: list[dict], responses: list[dict]) -> None:
        keys: dict[tuple[str, int], tuple] = {}  # (kind, recorded id) -> key
        for request, response in zip(requests, responses):
            parent = self._parent(request, keys)
            if parent is None:  # refers to an id this transcript never made
                continue
            key = (parent, content_key(request))
            plan = self._plan(key, request, response, keys)
            old = self.answers.get(key)
            if old is None:
                self.answers[key] = (response, plan)
            elif _normalised(*old) != _normalised(response, plan):
                self.conflicts.append(f"{name}: {key[1][:80]}")

    @staticmethod
    def _parent(request: dict, keys: dict) -> tuple | None:
        env, ps = request.get("env"), request.get("proofState")
        env_key = keys.get(("env", env)) if env is not None else None
        ps_key = keys.get(("ps", ps)) if ps is not None else None
        if (env is not None and env_key is None) or (ps is not None and ps_key is None):
            return None
        return (env_key, ps_key)

    @staticmethod
    def _plan(key: tuple, request: dict, response: dict, keys: dict) -> dict:
        """For each recorded id in the answer: the key of a new object, or a reference back to
        the request's own env / proof state (a pickle answers with the id it was given)."""
        plan: dict[tuple[str, int], tuple] = {}
        new = {"env": set(), "ps": set()}
        for kind, site in _id_sites(response):
            value = site[_field(kind)]
            if request.get(_field(kind)) == value:
                plan[(kind, value)] = ("ref",)
            else:
                new[kind].add(value)
        for kind, values in new.items():
            for ordinal, value in enumerate(sorted(values)):
                plan[(kind, value)] = ("new", (key, kind, ordinal))
                keys[(kind, value)] = (key, kind, ordinal)
        return plan


def _normalised(response: dict, plan: dict) -> str:
    def mark(kind: str, value: int) -> str:
        entry = plan[(kind, value)]
        return "ref" if entry[0] == "ref" else f"{kind}#{entry[1][2]}"

    copy = json.loads(json.dumps(response))
    for kind, site in _id_sites(copy):
        site[_field(kind)] = mark(kind, site[_field(kind)])
    return json.dumps(copy, sort_keys=True, ensure_ascii=False)


class Session:
    """One REPL process's environments and proof states."""

    def __init__(self, kb: Knowledge, synthetic: bool) -> None:
        self.kb, self.synthetic = kb, synthetic
        self.reset()

    def reset(self) -> None:
        self.env_keys: list[tuple] = []
        self.ps_keys: list[tuple] = []
        self.goals: dict[int, str] = {}  # synthetic states' goals

    def answer(self, request: dict) -> dict:
        if request.get("fake") == "reset":
            self.reset()
            return {"message": "fake REPL: reset"}
        env, ps = request.get("env"), request.get("proofState")
        if env is not None and not (isinstance(env, int) and 0 <= env < len(self.env_keys)):
            return {"message": "Unknown environment."}
        if ps is not None and not (isinstance(ps, int) and 0 <= ps < len(self.ps_keys)):
            return {"message": "Unknown proof state."}
        parent = (
            self.env_keys[env] if env is not None else None,
            self.ps_keys[ps] if ps is not None else None,
        )
        found = self.kb.answers.get((parent, content_key(request)))
        if found is not None:
            return self._renumber(request, *found)
        if self.synthetic:
            return self._synthetic(request, parent)
        return {"message": f"fake REPL: no recorded answer for {content_key(request)[:200]}"}

    def _renumber(self, request: dict, response: dict, plan: dict) -> dict:
        fresh: dict[tuple[str, int], int] = {}
        for (kind, value), entry in sorted(plan.items(), key=lambda kv: kv[0]):
            if entry[0] == "ref":
                fresh[(kind, value)] = request[_field(kind)]
                continue
            table = self.env_keys if kind == "env" else self.ps_keys
            fresh[(kind, value)] = len(table)
            table.append(entry[1])
        out = json.loads(json.dumps(response))
        for kind, site in _id_sites(out):
            site[_field(kind)] = fresh[(kind, site[_field(kind)])]
        return out

    def _new(self, kind: str, key: tuple) -> int:
        table = self.env_keys if kind == "env" else self.ps_keys
        table.append(key)
        return len(table) - 1

    def _synthetic(self, request: dict, parent: tuple) -> dict:
        key = (parent, content_key(request))
        if "cmd" in request:
            out: dict = {"env": self._new("env", key)}
            if "sorry" in request["cmd"]:
                ps = self._new("ps", key)
                self.goals[ps] = "⊢ synthetic"
                out["sorries"] = [{"proofState": ps, "goal": self.goals[ps]}]
            return out
        if "tactic" in request:
            tactic = request["tactic"]
            if tactic.startswith("fail"):
                return {"message": "Lean error:\nsynthetic failure"}
            ps = self._new("ps", key)
            if tactic.startswith("close"):
                return {"proofStatus": "Completed", "proofState": ps, "goals": []}
            before = self.goals.get(request["proofState"], "⊢ synthetic")
            self.goals[ps] = f"⊢ g{zlib.crc32((before + tactic).encode()):08x}"
            return {
                "proofStatus": "Incomplete: open goals remain",
                "proofState": ps,
                "goals": [self.goals[ps]],
            }
        return {"message": "fake REPL: unsupported synthetic request"}


class Faults:
    def __init__(self, args: argparse.Namespace) -> None:
        self.kind, self.at, self.on, self.once = (
            args.fault,
            args.fault_at,
            args.fault_on,
            args.fault_once,
        )

    def fires(self, count: int, raw: str) -> bool:
        if self.kind is None:
            return False
        hit = (self.at is not None and count == self.at) or (self.on is not None and self.on in raw)
        if not hit:
            return False
        if self.once:
            try:
                os.close(os.open(self.once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False
        return True


def read_request(stdin) -> str | None:
    lines: list[str] = []
    while True:
        line = stdin.readline()
        if not line:
            return "".join(lines) if lines else None
        text = line.decode("utf-8").rstrip("\r\n")
        if text.strip():
            lines.append(text)
        elif lines:
            return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transcripts", action="append", default=[], help="transcript folder")
    p.add_argument("--only", default="", help="comma-separated transcript names to load")
    p.add_argument("--synthetic", action="store_true", help="make up answers to the unknown")
    p.add_argument("--compact", action="store_true", help="one-line answers (the bench)")
    p.add_argument("--fault", choices=["hang", "crash", "garbage", "forget"])
    p.add_argument("--fault-at", type=int)
    p.add_argument("--fault-on")
    p.add_argument("--fault-once")
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--startup-s", type=float, default=0.0)
    p.add_argument("--restart-delay", type=float, default=0.0)
    p.add_argument("--grow-mb", type=float, default=0.0)
    args = p.parse_args(argv)

    only = {name for name in args.only.split(",") if name} or None
    kb = Knowledge()
    for folder in args.transcripts:
        loaded = Knowledge.load(folder, only)
        for key, value in loaded.answers.items():
            kb.answers.setdefault(key, value)
    session, faults = Session(kb, args.synthetic), Faults(args)
    hoard: list[bytes] = []
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if args.startup_s:
        time.sleep(args.startup_s)
    if args.restart_delay and args.fault_once and os.path.exists(args.fault_once):
        time.sleep(args.restart_delay)
    count = 0
    while (raw := read_request(stdin)) is not None:
        count += 1
        if faults.fires(count, raw):
            if faults.kind == "hang":
                time.sleep(10**6)
            if faults.kind == "crash":
                sys.stderr.write("fake REPL: crashing as told (--fault crash)\n")
                sys.stderr.flush()
                os._exit(134)
            if faults.kind == "garbage":
                stdout.write(b"this is not JSON, as told (--fault garbage)\n\n")
                stdout.flush()
                continue
            session.reset()  # forget
        if args.grow_mb:
            hoard.append(b"x" * int(args.grow_mb * 2**20))
        if args.slow:
            time.sleep(args.slow)
        try:
            request = json.loads(raw)
        except json.JSONDecodeError as e:
            response: dict = {"message": f"fake REPL: could not parse JSON: {e}"}
        else:
            response = session.answer(request) if isinstance(request, dict) else {"message": "?"}
        text = json.dumps(response, ensure_ascii=False, indent=None if args.compact else 1)
        stdout.write(text.encode("utf-8") + b"\n\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
