"""What a keep-ratio costs: mean token loss of one model, dense and under Q-Sparse, on one text.

`score(model, sequences)` is the mean cross-entropy (nats per scored token) over sequences from
`leanstar.sparse.texts.encode`, batched by a token budget, summed exactly (padding and context
tokens are never scored). `compare_keep_ratios` scores the same sequences at several keep-ratios
on the same weights, measuring the activated parameters in the same forward passes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leanstar.config import SparseConfig
from leanstar.sparse.measure import ActivationMeter, ActivationReport
from leanstar.sparse.qsparse import apply_qsparse, qsparse_settings
from leanstar.sparse.texts import IGNORE

__all__ = ["LossResult", "batches", "compare_keep_ratios", "ratio_config", "score"]

Sequences = list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class LossResult:
    """Mean token loss of one setting; `keep_ratio` 1.0 is the dense model."""

    label: str
    keep_ratio: float
    loss: float
    tokens: int
    activation: ActivationReport | None = None

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf


def batches(sequences: Sequences, batch_tokens: int, pad_id: int) -> Iterator[dict]:
    """Right-padded batches of at most `batch_tokens` (padded) tokens, longest sequences first."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    group: list[int] = []
    for i in order:
        width = len(sequences[group[0]][0]) if group else len(sequences[i][0])
        if group and (len(group) + 1) * width > batch_tokens:
            yield _pad([sequences[j] for j in group], pad_id)
            group = []
        group.append(i)
    if group:
        yield _pad([sequences[j] for j in group], pad_id)


def _pad(rows: Sequences, pad_id: int) -> dict:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        ids[r, : len(row_ids)] = torch.tensor(row_ids)
        labels[r, : len(row_labels)] = torch.tensor(row_labels)
        mask[r, : len(row_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@torch.inference_mode()
def score(
    model: nn.Module,
    sequences: Sequences,
    batch_tokens: int = 4096,
    pad_id: int = 0,
    meter: ActivationMeter | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[float, int]:
    """(mean loss in nats per scored token, scored tokens) of `model` on `sequences`."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches(sequences, batch_tokens, pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        if meter is not None:
            meter.token_mask = batch["attention_mask"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=IGNORE,
            reduction="sum",
        )
        total += loss.item()
        count += int((targets != IGNORE).sum())
        if on_batch is not None:
            on_batch(batch["input_ids"].shape[0])
    if count == 0:
        raise ValueError("no tokens to score")
    return total / count, count


def ratio_config(base: SparseConfig | None, keep_ratio: float) -> SparseConfig:
    """Uniform top-K at `keep_ratio` on every site, keeping the base's activation."""
    base = base or SparseConfig()
    return dataclasses.replace(
        base,
        enabled=True,
        keep_ratio=keep_ratio,
        keep_ratio_attn=None,
        keep_ratio_mlp=None,
        pattern="topk",
        warmup_steps=0,
    )


def compare_keep_ratios(
    model: nn.Module,
    sequences: Sequences,
    keep_ratios: list[float],
    batch_tokens: int = 4096,
    pad_id: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[LossResult]:
    """Score `model` at each keep-ratio (1.0 = dense), plus its own saved settings if it has any.

    The model's own Q-Sparse settings are restored afterwards.
    """
    own = qsparse_settings(model)
    settings = [(f"keep {r:g}" if r < 1 else "dense", r, ratio_config(own, r)) for r in keep_ratios]
    if own is not None and own not in [s for _, _, s in settings]:
        ratio = own.nm_n / own.nm_m if own.pattern == "nm" else own.keep_ratio
        settings.append(("checkpoint's own", ratio, own))
    results = []
    try:
        for label, ratio, cfg in settings:
            apply_qsparse(model, cfg)
            with ActivationMeter(model) as meter:
                loss, tokens = score(model, sequences, batch_tokens, pad_id, meter, on_batch)
            results.append(LossResult(label, ratio, loss, tokens, meter.report()))
    finally:
        apply_qsparse(model, own or SparseConfig(enabled=False))
    return results
