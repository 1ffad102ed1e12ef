"""`leanstar quickstart`: the whole pipeline on the bundled sample, on CPU, in a few minutes.

    tiny model -> thoughts (local teacher) -> SFT -> one expert-iteration round -> eval -> traces

Everything runs on bundled data with a tiny random Qwen2 built here, so it needs no GPU and
no network. It shows the mechanics, not a good prover: the tiny model learns the bundled
tactics by heart and "proves" the theorems it was trained on.

Proofs are checked by Lean when `leanstar lean doctor` finds a toolchain (then the theorems
are miniF2F problems, which the tiny model will not prove); otherwise by the replay
environment, said in one line and beside every number. Each stage keeps its own resumable run
directory under RUN_DIR, so running the command again continues where it stopped.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from leanstar.config import GeneratorConfig, LeanConfig, nested, option
from leanstar.records import REPLAY_LABEL

LEANDOJO = "bundled:leandojo-benchmark4-sample.json"
MINIF2F = "bundled:minif2f-lean4-v4.24.jsonl"


@dataclass
class QuickstartConfig:
    run_dir: str = option("runs/quickstart", "run directory for every stage of the demo")
    lean: LeanConfig = nested(LeanConfig, "proof checking (auto: Lean if set up, else replay)")
    min_thoughts: int = option(
        16, "train the thought format only if the teacher gave at least this many accepted thoughts"
    )
    sft_epochs: float = option(80.0, "epochs over the bundled sample (the tiny model memorises it)")
    attempts: int = option(4, "attempts per theorem in the expert-iteration round")
    eval_attempts: int = option(8, "attempts per theorem in the evaluation")
    minif2f_limit: int = option(
        8, "with Lean: miniF2F problems per stage (valid for training, test for eval)"
    )


def main(cfg: QuickstartConfig) -> int:
    import torch

    # The tiny model's matrices are a few dozen wide: one thread is faster than several, and
    # spinning OpenMP threads slow to a crawl on a machine shared with other work.
    torch.set_num_threads(1)
    root = Path(cfg.run_dir)
    lean = _resolve_lean(cfg.lean)
    say(f"proofs checked by: {'Lean' if lean.backend == 'repl' else REPLAY_LABEL}")

    model = _step("1/6 tiny model", lambda: _tiny_model(root / "tiny-model"))
    accepted = _step("2/6 thought synthesis (local tiny teacher)", lambda: _thoughts(root, model))
    with_thoughts = accepted >= cfg.min_thoughts
    if not with_thoughts:
        say(
            f"the tiny teacher wrote {accepted} usable thought(s) (it is untrained); training the "
            "tactic-only baseline instead. With a real teacher (configs/thoughts-paper.yaml) the "
            "same pipeline trains on thoughts."
        )
    iterate_summary = _step(
        "3-4/6 SFT and one expert-iteration round",
        lambda: _iterate(cfg, root, model, lean, with_thoughts),
    )
    report = _step(
        "5/6 evaluation",
        lambda: _evaluate(cfg, root, iterate_summary["final_model"], lean, with_thoughts),
    )
    html = _step("6/6 trace report", lambda: _traces(root / "iterate"))
    _final(iterate_summary, report, html, root)
    return 0


def say(line: str) -> None:
    print(f"[quickstart] {line}", file=sys.stderr, flush=True)


def _step(title: str, work):
    say(title)
    return work()


def _resolve_lean(cfg: LeanConfig) -> LeanConfig:
    """Decide once between Lean and replay, so every stage uses the same checker."""
    if cfg.backend != "auto":
        return cfg
    from leanstar.lean.setup import inspect

    usable = bool(cfg.repl_command) or inspect(cfg).usable
    if not usable:
        say(
            "no Lean toolchain found (`leanstar lean doctor` says why): using the replay environment"
        )
    return replace(cfg, backend="repl" if usable else "replay")


def _tiny_model(out: Path) -> str:
    if not (out / "config.json").exists():
        from leanstar.models import build_tiny_qwen2

        build_tiny_qwen2(out)
    return str(out)


def _thoughts(root: Path, model: str) -> int:
    from leanstar.thoughts.config import ThoughtsConfig
    from leanstar.thoughts.driver import main as thoughts_main

    cfg = ThoughtsConfig(
        run_dir=str(root / "thoughts"),
        input=LEANDOJO,
        teacher="local",
        generator=GeneratorConfig(model=model, temperature=0.7, max_new_tokens=64, batch_size=8),
    )
    summary = root / "thoughts" / "summary.json"
    if not summary.exists() or json.loads(summary.read_text())["status"] != "complete":
        thoughts_main(cfg)
    return json.loads(summary.read_text())["run_dir"]["accepted"]


def _search_theorems(cfg: QuickstartConfig, lean: LeanConfig, split: str) -> dict:
    if lean.backend == "replay":
        return dict(theorems=LEANDOJO, split="", limit=0)
    return dict(theorems=MINIF2F, split=split, limit=cfg.minif2f_limit)


def _iterate(
    cfg: QuickstartConfig, root: Path, model: str, lean: LeanConfig, with_thoughts: bool
) -> dict:
    from leanstar.search.config import SearchConfig
    from leanstar.train.config import IterateConfig, SFTConfig
    from leanstar.train.iterate import run_iterate

    data = [str(root / "thoughts" / "thoughts.jsonl")] if with_thoughts else [LEANDOJO]
    sft = SFTConfig(
        base_model=model,
        data=data,
        format="thought" if with_thoughts else "tactic",
        learning_rate=3e-3,
        warmup_ratio=0.1,
        epochs=cfg.sft_epochs,
        per_device_batch_size=4,
        global_batch_size=8,
        max_length=1024,
        save_steps=100,
        logging_steps=50,
        seed=0,
    )
    search = SearchConfig(
        **_search_theorems(cfg, lean, "valid"),
        attempts=cfg.attempts,
        max_steps=5,
        theorem_time_s=60.0,
        with_thoughts=with_thoughts,
        generator=GeneratorConfig(temperature=1.0, max_new_tokens=128, batch_size=32),
        lean=lean,
    )
    it = IterateConfig(run_dir=str(root / "iterate"), rounds=1, sft=sft, search=search)
    return run_iterate(it)


def _evaluate(cfg: QuickstartConfig, root: Path, model: str, lean: LeanConfig, with_thoughts: bool):
    from leanstar.evaluate.config import EvalConfig
    from leanstar.evaluate.run import run_eval
    from leanstar.search.config import SearchConfig

    search = SearchConfig(
        **_search_theorems(cfg, lean, "test"),
        attempts=cfg.eval_attempts,
        max_steps=50,
        theorem_time_s=120.0,
        with_thoughts=with_thoughts,
        generator=GeneratorConfig(model=model, temperature=0.7, max_new_tokens=128, batch_size=32),
        lean=lean,
    )
    return run_eval(
        EvalConfig(run_dir=str(root / "eval"), ks=[1, cfg.eval_attempts], search=search)
    )


def _traces(run_dir: Path) -> Path:
    from leanstar.traces.config import TracesReportConfig
    from leanstar.traces.report import main as report_main

    out = run_dir / "traces.html"
    report_main(TracesReportConfig(run_dir=str(run_dir), out=str(out)))
    return out


def _final(iterate_summary: dict, report, html: Path, root: Path) -> None:
    from leanstar.evaluate.report import markdown
    from leanstar.train.iterate import summary_markdown

    print()
    print(summary_markdown(iterate_summary))
    print(markdown(report, ks=[1]))
    if report.replay:
        print(
            "These theorems are the ones the tiny model was trained on, checked by replay: the "
            "figures show the pipeline working end to end, not a prover's ability."
        )
    print(f"trace viewer (open in a browser): {html}")
    print(
        f"everything is under {root}/ ; `leanstar traces serve {root / 'iterate'}` serves it live"
    )
