"""Activated parameters, measured: how much of each weight matrix a forward pass really uses.

A linear layer `y = x W^T + b` whose input has `a` non-zero entries (of `in_features`) touches
`a * out_features` weights plus the bias; the rest of `W` multiplies zeros and need not be read.
The paper calls the weights touched per token the *activated parameters*. `ActivationMeter`
counts the non-zero inputs every projection actually receives (forward pre-hooks that run after
the Q-Sparse hooks), per token, over real text, so the figure it reports is what the model did,
not what its config says. Padding positions are left out when a token mask is given.

The embedding is a table lookup (one row per token) and is not counted; `lm_head` stays dense
and is reported on its own line and in the second total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from leanstar.sparse.qsparse import find_blocks

__all__ = ["ActivationMeter", "ActivationReport", "LinearActivation"]

PROJECTIONS = {
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}


@dataclass
class LinearActivation:
    """What one linear layer received: non-zero inputs summed over the tokens counted."""

    name: str
    in_features: int
    out_features: int
    weight_params: int
    bias_params: int
    nonzero_inputs: int = 0
    tokens: int = 0

    @property
    def params(self) -> int:
        return self.weight_params + self.bias_params

    @property
    def input_density(self) -> float:
        """Mean fraction of non-zero input features per token."""
        return self.nonzero_inputs / (self.tokens * self.in_features) if self.tokens else 0.0

    @property
    def activated_params(self) -> float:
        """Mean weights (and biases) touched per token."""
        return self.input_density * self.weight_params + self.bias_params


@dataclass
class ActivationReport:
    """Per-layer and overall activated-parameter fractions of one measured run."""

    layers: list[list[LinearActivation]]
    lm_head: LinearActivation | None
    tokens: int
    total_params: int = 0
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def fraction(linears: list[LinearActivation]) -> float:
        total = sum(lin.params for lin in linears)
        return sum(lin.activated_params for lin in linears) / total if total else 0.0

    def layer_fraction(self, i: int) -> float:
        return self.fraction(self.layers[i])

    def projections(self) -> list[LinearActivation]:
        return [lin for layer in self.layers for lin in layer]

    @property
    def decoder_fraction(self) -> float:
        """Activated fraction of all decoder-layer projections (lm_head excluded)."""
        return self.fraction(self.projections())

    @property
    def with_lm_head_fraction(self) -> float:
        head = [self.lm_head] if self.lm_head is not None else []
        return self.fraction(self.projections() + head)

    def site_density(self, i: int, short: str) -> float:
        """Input density of layer `i`'s projection named like `q_proj`."""
        return next(lin.input_density for lin in self.layers[i] if lin.name.endswith(short))


class ActivationMeter:
    """Counts the non-zero inputs of every projection and of `lm_head` while active.

        with ActivationMeter(model) as meter:
            for batch in batches:
                meter.token_mask = batch["attention_mask"]   # optional: skip padding
                model(**batch)
        report = meter.report()

    Enter it after `apply_qsparse`, so its hooks run after the sparsifying ones.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.token_mask: torch.Tensor | None = None
        self._handles: list = []
        self._layers: list[list[LinearActivation]] = []
        self._lm_head: LinearActivation | None = None

    def __enter__(self) -> ActivationMeter:
        self._layers, self._lm_head = [], None
        for block in find_blocks(self.model):
            row = []
            for part, names in PROJECTIONS.items():
                parent = block.attn if part == "attn" else block.mlp
                for name in names:
                    label = f"layers.{block.index}.{part}.{name}"
                    row.append(self._watch(label, getattr(parent, name)))
            self._layers.append(row)
        get_head = getattr(self.model, "get_output_embeddings", None)
        head = get_head() if get_head is not None else None
        if isinstance(head, nn.Linear):
            self._lm_head = self._watch("lm_head", head)
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def report(self) -> ActivationReport:
        tokens = self._lm_head.tokens if self._lm_head else self._layers[0][0].tokens
        total = sum(p.numel() for p in self.model.parameters())
        return ActivationReport(self._layers, self._lm_head, tokens, total_params=total)

    def _watch(self, name: str, linear: nn.Module) -> LinearActivation:
        weight = linear.weight
        bias = getattr(linear, "bias", None)
        stat = LinearActivation(
            name,
            in_features=weight.shape[1],
            out_features=weight.shape[0],
            weight_params=weight.numel(),
            bias_params=bias.numel() if bias is not None else 0,
        )

        def count(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            nonzero = (x != 0).sum(-1)
            mask = self.token_mask
            if mask is not None and mask.shape == nonzero.shape:
                keep = mask.to(device=nonzero.device, dtype=torch.bool)
                stat.nonzero_inputs += int(nonzero[keep].sum())
                stat.tokens += int(keep.sum())
            else:
                stat.nonzero_inputs += int(nonzero.sum())
                stat.tokens += nonzero.numel()

        self._handles.append(linear.register_forward_pre_hook(count))
        return stat
