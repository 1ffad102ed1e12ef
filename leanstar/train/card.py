"""The model card of an SFT checkpoint: a README.md for people and leanstar.json for programs.

Both say what made the checkpoint: base model, data files with their weights and counts, the
prompt format (thought + tactic or tactic only), Q-Sparse settings and the resolved config.
Stages that load a prover read `leanstar.json` to know which prompt it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leanstar.config import dump_yaml, to_dict
from leanstar.prompting import PROMPT_VERSION

CARD_JSON = "leanstar.json"


def card_info(cfg: Any, stats: Any, training: dict[str, Any]) -> dict[str, Any]:
    return {
        "made_by": "leanstar sft",
        "base_model": cfg.base_model,
        "format": cfg.format,
        "with_thought": cfg.format == "thought",
        "prompt_version": PROMPT_VERSION,
        "chat_template": stats.chat_template,
        "data": stats.to_dict(),
        "training": training,
        "qsparse": to_dict(cfg.qsparse) if cfg.qsparse.enabled else None,
        "lora_merged": cfg.lora,
        "config": to_dict(cfg),
    }


def write_card(model_dir: Path, cfg: Any, stats: Any, training: dict[str, Any]) -> None:
    info = card_info(cfg, stats, training)
    (model_dir / CARD_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (model_dir / "README.md").write_text(_readme(cfg, stats, training), encoding="utf-8")


def _readme(cfg: Any, stats: Any, training: dict[str, Any]) -> str:
    what = (
        "state -> informal thought + tactic (Lean-STaR)"
        if cfg.format == "thought"
        else "state -> tactic (tactic-only baseline)"
    )
    prompt = "the tokenizer's chat template" if stats.chat_template else "the plain-text prompt"
    lines = [
        "# leanstar prover",
        "",
        f"Fine-tuned by `leanstar sft` from `{cfg.base_model}` to map {what}.",
        f"Prompt: `leanstar.prompting` version `{PROMPT_VERSION}` through {prompt}; build it "
        f"with `prover_prompt(state, with_thought={cfg.format == 'thought'}, tokenizer=...)`.",
        "",
        "## Data",
        "",
        "| file | kind | records | weight | examples |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in stats.sources:
        lines.append(f"| `{s.path}` | {s.kind} | {s.records:,} | {s.weight:g} | {s.examples:,} |")
    lines += ["", f"{stats.summary()}. Data fingerprint `{stats.fingerprint}`.", ""]
    lines += ["## Training", ""]
    lines += [f"- {key}: {value}" for key, value in training.items()]
    if cfg.qsparse.enabled:
        q = cfg.qsparse
        attn = q.keep_ratio if q.keep_ratio_attn is None else q.keep_ratio_attn
        mlp = q.keep_ratio if q.keep_ratio_mlp is None else q.keep_ratio_mlp
        lines += [
            "",
            "## Q-Sparse",
            "",
            f"Trained under Q-Sparse activation sparsity (pattern {q.pattern}; keep ratio "
            f"{attn} of attention inputs, {mlp} of MLP inputs; activation {q.activation}). "
            "The settings are stored in config.json under "
            "`qsparse`; load the checkpoint with `leanstar.sparse.qsparse.load_model(path)` to "
            "run it sparse as trained (plain `from_pretrained` gives the dense model).",
        ]
    lines += ["", "## Config", "", "```yaml", dump_yaml(cfg).rstrip(), "```", ""]
    return "\n".join(lines)
