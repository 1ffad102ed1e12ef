"""`leanstar eval`: search a theorem set with the evaluation protocol, then report pass@k.

    runs/NAME/
      trajectories.jsonl, theorems.jsonl   the search (resumable, as `leanstar search`)
      problems.jsonl                       per problem: attempts, proofs found, split
      report.md, report.json, passk.png    pass@k for every k <= n, beside the paper's figures

Every figure names what checked the proofs; results from the replay environment carry
"replay (not checked by Lean)" beside each number.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from leanstar.evaluate.config import EvalConfig
from leanstar.evaluate.report import EvalReport, build_report, markdown, plot_pass_at_k
from leanstar.jsonl import read_records, write_json_atomic, write_text_atomic
from leanstar.records import Trajectory


def main(cfg: EvalConfig) -> int:
    from leanstar.search.runner import USER_ERRORS

    try:
        report = run_eval(cfg)
    except USER_ERRORS as e:
        print(f"leanstar eval: {e}", file=sys.stderr)
        return 2
    print(markdown(report, cfg.ks))
    print(f"report: {Path(cfg.run_dir) / 'report.md'}")
    return 0


def run_eval(cfg: EvalConfig, generator=None, env=None) -> EvalReport:
    """Search (or resume) into `cfg.run_dir`, then write the report files."""
    from leanstar.search.runner import run_search

    search_cfg = dataclasses.replace(cfg.search, run_dir=cfg.run_dir)
    summary = run_search(search_cfg, generator=generator, env=env)
    if not summary.complete:
        raise RuntimeError(
            "the search stopped before every attempt was written; run the same command again"
        )
    return write_report(cfg, summary.model)


def write_report(cfg: EvalConfig, model: str) -> EvalReport:
    out = Path(cfg.run_dir)
    trajectories = read_records(out / "trajectories.jsonl", Trajectory)
    report = build_report(
        trajectories, model=model, theorems=cfg.search.theorems, strategy=cfg.search.strategy
    )
    lines = [json.dumps(dataclasses.asdict(p), ensure_ascii=False) for p in report.problems]
    write_text_atomic(out / "problems.jsonl", "\n".join(lines) + "\n")
    write_json_atomic(out / "report.json", report.to_json())
    write_text_atomic(out / "report.md", markdown(report, cfg.ks))
    plot_pass_at_k(report, out / "passk.png")
    return report
