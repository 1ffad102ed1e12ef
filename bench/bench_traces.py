"""Trace viewer at scale: how fast `leanstar traces serve` answers at 10,000 theorems x 64.

    python bench/bench_traces.py                       # 10,000 x 64, HTTP timings
    python bench/bench_traces.py --browser             # plus headless Chromium timings
    python bench/bench_traces.py --theorems 500 --attempts 16   # a quick look

Writes a fixture run (synthetic attempts over the bundled real LeanDojo states; see
leanstar/traces/fixture.py), builds the index from scratch, serves it on 127.0.0.1 and times
the first page and each filter: over HTTP from Python (cold, then the median of --repeat), and
with --browser as the viewer itself draws them in headless Chromium (navigation or filter
change until the table is drawn). Side by side in the same run, the same question answered
by reading the JSONL from start to end, which is what a viewer without an index would do.
The numbers depend on the machine and its load: both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leanstar.traces.digest import digest  # noqa: E402
from leanstar.traces.fixture import FixtureSpec, write_fixture_run  # noqa: E402
from leanstar.traces.index import TraceIndex  # noqa: E402
from leanstar.traces.runfiles import discover  # noqa: E402
from leanstar.traces.server import start_server  # noqa: E402

QUERIES = (  # (label, query string of /api/theorems)
    ("first page", ""),
    ("status = proved", "status=proved"),
    ("status = failed", "status=failed"),
    ("status = rejected", "status=rejected"),
    ("split = test", "split=test"),
    ("round 0, not attempted", "round=0&status=not_attempted"),
    ("search: common word 'goal'", "q=goal"),
    ("search: 'rpow'", "q=rpow"),
    ("search + status + split", "q=rewrite&status=failed&split=train"),
    ("sort: shortest proof", "sort=shortest"),
    ("sort: most proved, page 100", "sort=proved&page=100"),
)


def machine() -> str:
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}; {os.cpu_count()} logical CPUs; load average {load}"


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(first call seconds, median of the next `repeat` calls, first result)."""
    t0 = time.perf_counter()
    first = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return cold, statistics.median(warm) if warm else cold, first


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def scan_baseline(run: Path) -> tuple[float, int]:
    """The 'search + status + split' query answered by reading every JSONL line: theorems of
    split train, proved in no round, whose thoughts or tactics hold a word starting 'rewrite'."""
    t0 = time.perf_counter()
    split, proved, mentions = {}, set(), set()
    for path in discover(run).trajectories:
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    continue
                d = digest(json.loads(line), f"{path}:{number}")
                split.setdefault(d.theorem, d.split)
                if d.proved:
                    proved.add(d.theorem)
                if any(t.startswith("rewrite") for t in d.tokens):
                    mentions.add(d.theorem)
    hits = {t for t in mentions - proved if split[t] == "train"}
    return time.perf_counter() - t0, len(hits)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--theorems", type=int, default=10_000)
    p.add_argument("--attempts", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--dir", default="/tmp/leanstar-bench-traces", help="fixture run directory")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--browser", action="store_true", help="also time the viewer in Chromium")
    p.add_argument("--json", default="", help="write the figures to this JSON file")
    p.add_argument(
        "--reuse-index",
        action="store_true",
        help="update the index instead of deleting it first (a previous run's incremental step makes it rebuild anyway)",
    )
    p.add_argument("--no-scan", action="store_true", help="skip the JSONL-scan baseline")
    args = p.parse_args()

    run = Path(args.dir)
    spec = FixtureSpec(theorems=args.theorems, attempts=args.attempts, rounds=args.rounds,
                       layout="flat" if args.rounds == 1 else "rounds")  # fmt: skip
    figures: dict[str, object] = {"machine_start": machine(), "spec": vars(spec)}
    print(f"machine: {figures['machine_start']}")
    stamp = run / "bench-spec.json"
    if not (stamp.exists() and json.loads(stamp.read_text()) == vars(spec)):
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        stats = write_fixture_run(run, spec)
        stamp.write_text(json.dumps(vars(spec)))
        print(f"fixture: {stats.trajectories:,} trajectories, {stats.bytes / 1e9:.2f} GB "
              f"of JSONL in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    size = sum(p.stat().st_size for p in run.rglob("trajectories.jsonl"))
    figures["jsonl_bytes"] = size

    index_path = run / "traces-index.sqlite"
    if not args.reuse_index:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index_path}{suffix}").unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    with TraceIndex(run) as index:
        report = index.update()
        meta = index.meta()
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    figures.update(index_build_s=build_s, index_build_cpu_s=build_cpu,
                   index_bytes=index_path.stat().st_size,
                   trajectories=meta["trajectories"], theorems=meta["theorems"])  # fmt: skip
    print(f"index: {report.new_trajectories:,} trajectories of {meta['theorems']:,} theorems in "
          f"{build_s:.0f} s wall ({build_cpu:.0f} s CPU); {size / 1e9:.2f} GB JSONL -> "
          f"{index_path.stat().st_size / 1e6:.0f} MB index")  # fmt: skip

    server = start_server(run, index_path, port=0, refresh_s=0)
    rows = []
    try:
        for label, query in QUERIES:
            cold, warm, page = timed(
                lambda q=query: fetch(f"{server.url}api/theorems?{q}"), args.repeat
            )
            rows.append((label, cold, warm, page["total"]))
        name = fetch(f"{server.url}api/theorems?sort=proved")["rows"][0]["name"]
        enc = urllib.parse.quote(name)
        cold, warm, thm = timed(lambda: fetch(f"{server.url}api/theorem?name={enc}"), args.repeat)
        rows.append((f"theorem page ({len(thm['attempts'])} attempts)", cold, warm, 1))
        tid = thm["attempts"][0]["tid"]
        cold, warm, _ = timed(lambda: fetch(f"{server.url}api/trajectory?tid={tid}"), args.repeat)
        rows.append(("one trajectory", cold, warm, 1))
        cold, warm, _ = timed(lambda: fetch(f"{server.url}api/summary"), args.repeat)
        rows.append(("summary plots (cold = from the index)", cold, warm, 1))
        figures["http"] = [
            dict(zip(("query", "cold_s", "warm_median_s", "total"), r, strict=True)) for r in rows
        ]
        print(f"\nHTTP /api/theorems and friends, {meta['theorems']:,} theorems x "
              f"{args.attempts} attempts ({meta['trajectories']:,} trajectories):")  # fmt: skip
        print(f"  {'query':44s} {'first (ms)':>11s} {'median (ms)':>12s} {'theorems':>9s}")
        for label, cold, warm, total in rows:
            print(f"  {label:44s} {cold * 1e3:11.1f} {warm * 1e3:12.1f} {total:9,}")

        if not args.no_scan:
            figures["scan_baseline_s"] = side_by_side(run, rows)
        figures["incremental"] = incremental(run, args.attempts)
        if args.browser:
            figures["browser"] = browser_timings(server.url)
    finally:
        server.shutdown()
        server.server_close()
    figures["machine_end"] = machine()
    print(f"\nmachine at the end: {figures['machine_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def side_by_side(run: Path, rows: list[tuple[str, float, float, int]]) -> float:
    """The 'search + status + split' query answered by a JSONL scan; both must agree."""
    _, cold, warm, total = next(r for r in rows if r[0] == "search + status + split")
    scan_s, scan_hits = scan_baseline(run)
    if scan_hits != total:
        raise SystemExit(f"the index found {total} theorems, the scan {scan_hits}")
    print(f"\nside by side, 'search + status + split' answered by reading the JSONL:"
          f"\n  JSONL scan: {scan_s:.1f} s ({scan_hits:,} theorems); index over HTTP: "
          f"{cold * 1e3:.1f} ms first, {warm * 1e3:.1f} ms median -> {scan_s / warm:,.0f}x")  # fmt: skip
    return scan_s


def incremental(run: Path, attempts: int) -> dict[str, float]:
    """Append 100 theorems' attempts to the run and time the index update that picks them up."""
    extra = run.with_name(run.name + "-extra")
    spec = FixtureSpec(theorems=100, attempts=attempts, seed=7, write_theorems=False)
    stats = write_fixture_run(extra, spec)
    target = discover(run).trajectories[-1]
    lines = (extra / "trajectories.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    lines = [ln.replace('"theorem":"', '"theorem":"appended.') for ln in lines]
    size = target.stat().st_size
    with target.open("a", encoding="utf-8") as f:
        f.writelines(lines)
    shutil.rmtree(extra)
    t0 = time.perf_counter()
    with TraceIndex(run) as index:
        added = index.update().new_trajectories
    took = time.perf_counter() - t0
    with target.open("r+b") as f:
        f.truncate(size)  # the fixture as it was, for the next run of this benchmark
    print(f"\nincremental update: {added:,} appended trajectories indexed in {took:.2f} s "
          f"({stats.trajectories:,} written)")  # fmt: skip
    return {"appended": added, "seconds": took}


def browser_timings(url: str) -> list[dict[str, object]]:
    from tests.traces_browser import Browser, chromium_missing

    reason = chromium_missing()
    if reason:
        print(f"\nbrowser: skipped ({reason})")
        return []
    out = []
    with Browser() as b:
        first = b.open(url)
        out.append({"view": "first page (navigation start -> table drawn)", "ms": first["at"]})
        for label, value in (("status", "proved"), ("split", "test"), ("status", "failed"),
                             ("sort", "shortest")):  # fmt: skip
            t = b.choose(label, value)
            out.append({"view": f"filter {label} = {value}", "ms": t["ms"]})
        for words in ("rewrite", "simp"):
            t = b.search(words)
            out.append({"view": f"search '{words}'", "ms": t["ms"]})
        t = b.act(lambda: b.one("#theorems tbody a").click())
        out.append({"view": "open a theorem (its attempts and one trajectory)", "ms": t["ms"]})
    print("\nheadless Chromium, from the action to the view drawn:")
    for row in out:
        print(f"  {row['view']:52s} {row['ms']:8.1f} ms")
    return out


if __name__ == "__main__":
    sys.exit(main())
