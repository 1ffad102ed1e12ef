"""`leanstar sparse stats` and `leanstar sparse eval`: what Q-Sparse activates, and what it costs.

    leanstar sparse stats runs/prover [--qsparse.enabled --qsparse.keep_ratio 0.5]
    leanstar sparse eval runs/prover --keep_ratios "[1.0, 0.6, 0.5]" [--text FILE]

Both load the checkpoint with `load_model` (so a Q-Sparse checkpoint runs with its own
settings), tokenize the text (`leanstar.sparse.texts`) and run real forward passes; every figure
printed is measured on those passes, on the device named in the output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from leanstar.sparse.config import SparseEvalConfig, SparseRunConfig, SparseStatsConfig

__all__ = ["eval_main", "stats_main"]


def _setup(cfg: SparseRunConfig, sparse=None):
    """(model, sequences, pad id, device name) for a run config."""
    import torch
    from transformers import AutoTokenizer

    from leanstar.sparse.qsparse import load_model
    from leanstar.sparse.texts import encode, load_texts

    device = (
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    dtype = (
        cfg.dtype
        if cfg.dtype != "auto"
        else ("bfloat16" if device.startswith("cuda") else "float32")
    )
    path = Path(cfg.model)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (no config.json)")
    texts = load_texts(cfg.text)
    tokenizer = AutoTokenizer.from_pretrained(path)
    sequences = encode(tokenizer, texts, cfg.max_length, cfg.max_tokens)
    model = load_model(path, sparse, dtype=dtype, device=device).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return model, sequences, pad, f"{device} ({dtype})"


def _source(cfg: SparseRunConfig) -> str:
    return cfg.text or "Lean proof states of the bundled LeanDojo sample"


def _progress(console, total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    )


class UsageError(ValueError):
    """Bad input for a `sparse` command; printed as one line, exit status 2."""


def _guarded(name: str, run, cfg) -> int:
    from leanstar.config import ConfigError
    from leanstar.sparse.texts import TextError

    try:
        return run(cfg)
    except (UsageError, ConfigError, TextError, FileNotFoundError) as e:
        print(f"leanstar sparse {name}: {e}", file=sys.stderr)
        return 2


def stats_main(cfg: SparseStatsConfig) -> int:
    return _guarded("stats", _stats, cfg)


def eval_main(cfg: SparseEvalConfig) -> int:
    return _guarded("eval", _eval, cfg)


def _stats(cfg: SparseStatsConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from leanstar.sparse.measure import ActivationMeter
    from leanstar.sparse.qsparse import qsparse_settings
    from leanstar.sparse.quality import score

    console = Console()
    model, sequences, pad, where = _setup(cfg, cfg.qsparse)
    settings = qsparse_settings(model)
    with _progress(console, len(sequences), "measuring") as bar:
        task = bar.add_task("", total=len(sequences))
        with ActivationMeter(model) as meter:
            loss, _ = score(
                model, sequences, cfg.batch_tokens, pad, meter, lambda n: bar.advance(task, n)
            )
    report = meter.report()

    table = Table(title="activated fraction per layer (non-zero inputs per token, measured)")
    for col in ("layer", "q/k/v in", "o_proj in", "gate/up in", "down_proj in", "params activated"):
        table.add_column(col, justify="right")
    for i in range(len(report.layers)):
        d = [report.site_density(i, s) for s in ("q_proj", "o_proj", "gate_proj", "down_proj")]
        table.add_row(str(i), *(f"{x:.1%}" for x in d), f"{report.layer_fraction(i):.1%}")
    console.print(table)
    mode = "dense (no Q-Sparse settings)" if settings is None else _describe(settings)
    activated = sum(lin.activated_params for lin in report.projections())
    total = sum(lin.params for lin in report.projections())
    head = (
        f"; {report.with_lm_head_fraction:.2%} with the dense lm_head"
        if report.lm_head is not None
        else ""
    )
    lines = [
        f"model      {cfg.model}",
        f"settings   {mode}",
        f"measured   {report.tokens} token positions of {_source(cfg)}, on {where}; "
        f"mean token loss {loss:.4f}",
        f"activated  {report.decoder_fraction:.2%} of the decoder projections "
        f"({activated / 1e6:.3g}M of {total / 1e6:.3g}M parameters per token){head}",
        f"           (model: {report.total_params / 1e6:.3g}M parameters; the embedding is a "
        "lookup and is not counted)",
    ]
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    return 0


def _describe(s) -> str:
    if s.pattern == "nm":
        what = f"Q-Sparse {s.nm_n}:{s.nm_m}"
    else:
        attn = s.keep_ratio if s.keep_ratio_attn is None else s.keep_ratio_attn
        mlp = s.keep_ratio if s.keep_ratio_mlp is None else s.keep_ratio_mlp
        what = f"Q-Sparse top-K, keep attn {attn:g}, mlp {mlp:g}"
    return f"{what}, activation {s.activation}"


def _eval(cfg: SparseEvalConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from leanstar.sparse.quality import compare_keep_ratios

    bad = [r for r in cfg.keep_ratios if not 0 < r <= 1]
    if bad or not cfg.keep_ratios:
        raise UsageError(f"keep_ratios must be in (0, 1], got {cfg.keep_ratios}")
    console = Console()
    model, sequences, pad, where = _setup(cfg)
    ratios = sorted(set(cfg.keep_ratios), reverse=True)
    with _progress(console, 0, "scoring") as bar:
        task = bar.add_task("", total=len(sequences) * (len(ratios) + 1))
        results = compare_keep_ratios(
            model, sequences, ratios, cfg.batch_tokens, pad, lambda n: bar.advance(task, n)
        )
    dense = next((r for r in results if r.keep_ratio == 1.0 and r.label == "dense"), None)

    table = Table(title=f"mean token loss, {cfg.model}")
    for col in ("setting", "params activated", "loss (nats/token)", "perplexity", "vs dense"):
        table.add_column(col, justify="right")
    for r in results:
        delta = f"{r.loss - dense.loss:+.4f}" if dense is not None else "-"
        act = f"{r.activation.decoder_fraction:.1%}" if r.activation else "-"
        table.add_row(r.label, act, f"{r.loss:.4f}", f"{r.perplexity:.2f}", delta)
    console.print(table)
    console.print(
        f"{results[0].tokens} scored tokens of {_source(cfg)}, on {where}; params activated: "
        "decoder projections, measured in the same passes",
        soft_wrap=True,
        highlight=False,
    )
    if cfg.out:
        _write_results(Path(cfg.out), cfg, results, where)
        console.print(f"results written to {cfg.out}", soft_wrap=True)
    return 0


def _write_results(path: Path, cfg: SparseEvalConfig, results, where: str) -> None:
    from leanstar.jsonl import write_json_atomic

    rows = [
        {
            "setting": r.label,
            "keep_ratio": r.keep_ratio,
            "loss": r.loss,
            "perplexity": r.perplexity,
            "tokens": r.tokens,
            "activated_fraction": r.activation.decoder_fraction if r.activation else None,
        }
        for r in results
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"config": asdict(cfg), "device": where, "results": rows})
    json.loads(path.read_text())  # fail loudly here rather than in a reader later
