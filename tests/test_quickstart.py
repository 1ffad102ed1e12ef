"""The README's main command, shrunk (fewer epochs and attempts) to run in about a minute."""

import json
import subprocess
import sys

from leanstar.records import REPLAY_LABEL


def test_quickstart_runs_every_stage_and_labels_its_numbers(tmp_path):
    run = tmp_path / "qs"
    cmd = [
        sys.executable,
        "-m",
        "leanstar",
        "quickstart",
        "--run_dir",
        str(run),
        "--lean.backend",
        "replay",
        "--sft_epochs",
        "3",
        "--attempts",
        "1",
        "--eval_attempts",
        "2",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"proofs checked by: {REPLAY_LABEL}" in out.stderr
    thoughts = json.loads((run / "thoughts" / "summary.json").read_text())
    assert thoughts["status"] == "complete" and thoughts["pairs"]["sampled"] == 39
    manifest = json.loads((run / "iterate" / "manifest.json").read_text())
    assert list(manifest["phases"]) == ["sft-0", "search-0", "collect-0", "sft-1"]
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["checked_by"] == REPLAY_LABEL and report["num_problems"] == 17
    assert f"[{REPLAY_LABEL}]" in out.stdout  # every printed pass rate carries its label
    assert (run / "iterate" / "traces.html").stat().st_size > 10_000
    again = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900
    )  # resumes: nothing to redo
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run / "iterate" / "manifest.json").read_text()) == manifest
