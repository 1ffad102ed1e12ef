"""The served viewer at 10,000 theorems x 64 attempts (slow: about 10 minutes on 2 cores).

    python -m pytest -m slow tests/test_traces_scale.py -s

Runs bench/bench_traces.py on a FIXTURE of that size (real LeanDojo states, made-up attempts;
about 2 GB of JSONL in the test's temp dir) with headless Chromium when present. It checks
that the index answers what a scan of the JSONL answers and that every view was drawn; the
timings are printed and saved as JSON next to the run, never asserted (they depend on the
machine and its load). docs/traces.md reports them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.traces_browser import chromium_missing

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_viewer_at_ten_thousand_theorems_by_64(tmp_path):
    figures = tmp_path / "figures.json"
    argv = [sys.executable, str(ROOT / "bench" / "bench_traces.py"), "--dir", str(tmp_path / "run"),
            "--json", str(figures), "--repeat", "3"]  # fmt: skip
    if chromium_missing() is None:
        argv.append("--browser")
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(figures.read_text())
    assert data["trajectories"] == 640_000 and data["theorems"] == 10_000
    assert {row["query"] for row in data["http"]} >= {"first page", "status = proved"}
    assert data["incremental"]["appended"] == 6_400
    if chromium_missing() is None:
        assert len(data["browser"]) == 8
