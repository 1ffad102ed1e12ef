"""The run summary: what this invocation did, and what the run directory now holds.

Directory counts are read back from the files, not from memory, so a run resumed five times
still reports its totals, and every quality filter is listed, zeros included.
"""

from __future__ import annotations

import collections
from typing import Any

from leanstar.thoughts.filters import Reason
from leanstar.thoughts.plan import Plan
from leanstar.thoughts.progress import Prices
from leanstar.thoughts.runner import Tally
from leanstar.thoughts.store import Stored


def build_summary(
    *,
    teacher: str,
    prompt_version: str,
    input_path: str,
    plan: Plan,
    tally: Tally,
    stored: Stored,
    elapsed_s: float,
    prices: Prices,
    status: str,
    error: str = "",
) -> dict[str, Any]:
    """`status`: complete (every pair has an outcome), incomplete (some got no answer; the
    next run asks again), stopped (a fatal error, in `error`), interrupted."""
    reasons = collections.Counter(r.reason for r in stored.rejected)
    done = stored.done_keys
    open_failures = {f.key for f in stored.failures} - done
    usage = [r.usage for r in stored.accepted] + [r.usage for r in stored.rejected]
    prompt = sum(u.get("prompt_tokens", 0) for u in usage)
    completion = sum(u.get("completion_tokens", 0) for u in usage)
    return {
        "status": status,
        "error": error,
        "teacher": teacher,
        "prompt_version": prompt_version,
        "input": input_path,
        "pairs": {
            "sampled": plan.sampled,
            "duplicate_pairs": plan.duplicate_pairs,
            "done_before": plan.done_before,
            "to_do": len(plan.todo),
        },
        "this_run": {
            "answered": tally.answered,
            "failed": tally.failed,
            "requests": tally.requests,
            "retries": dict(sorted(tally.retries.items())),
            "prompt_tokens": tally.prompt_tokens,
            "completion_tokens": tally.completion_tokens,
            "cost_usd": round(prices.cost(tally.prompt_tokens, tally.completion_tokens), 6),
            "elapsed_s": round(elapsed_s, 3),
            "answers_per_s": round(tally.answered / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        },
        "run_dir": {
            "accepted": len(stored.accepted),
            "rejected": len(stored.rejected),
            "rejected_by_reason": {r.value: reasons.get(r.value, 0) for r in Reason},
            "failed_not_yet_answered": len(open_failures),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": round(prices.cost(prompt, completion), 6),
        },
    }


def render_summary(summary: dict[str, Any]) -> Any:
    """A rich table of the summary, for the terminal."""
    from rich.table import Table

    pairs, run, stored = summary["pairs"], summary["this_run"], summary["run_dir"]
    table = Table(title=f"thought synthesis: {summary['status']}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("teacher", f"{summary['teacher']} ({summary['prompt_version']})"),
        ("pairs sampled", pairs["sampled"]),
        ("  same (state, tactic) again, asked once", pairs["duplicate_pairs"]),
        ("  done by earlier runs", pairs["done_before"]),
        ("  to do in this run", pairs["to_do"]),
        ("answered in this run", run["answered"]),
        ("failed in this run (retried next time)", run["failed"]),
        ("requests / retries", f"{run['requests']} / {sum(run['retries'].values())}"),
        ("answers per second, start-up included", f"{run['answers_per_s']:.2f}"),
        ("accepted (run dir)", stored["accepted"]),
        ("rejected (run dir)", stored["rejected"]),
        *((f"  {name}", n) for name, n in stored["rejected_by_reason"].items()),
        (
            "tokens prompt / completion (run dir)",
            f"{stored['prompt_tokens']} / {stored['completion_tokens']}",
        ),
        ("cost (run dir)", f"${stored['cost_usd']:.4f}"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    return table
