"""Training under Q-Sparse: the hook the SFT stage calls, and an optional keep-ratio warmup.

    model = load_model(path)                       # leanstar.sparse.qsparse
    callbacks = prepare_qsparse_training(model, cfg.qsparse)
    trainer = SFTTrainer(model=model, callbacks=callbacks, ...)

`prepare_qsparse_training` applies Q-Sparse (the straight-through estimator makes the patched
model trainable as it is) and, when `cfg.warmup_steps > 0`, returns a `KeepRatioWarmup`
callback that lowers the keep-ratios linearly from 1.0 to their targets over the first steps.
The settings live in `model.config.qsparse`, so every checkpoint the trainer saves reloads as
the sparse model through `load_model`.
"""

from __future__ import annotations

import dataclasses

from torch import nn
from transformers import TrainerCallback

from leanstar.config import SparseConfig
from leanstar.sparse.qsparse import apply_qsparse

__all__ = ["KeepRatioWarmup", "prepare_qsparse_training", "warmup_config"]


def warmup_config(cfg: SparseConfig, step: int) -> SparseConfig:
    """The settings at optimizer step `step` of a linear warmup from keep-ratio 1.0."""
    if cfg.warmup_steps <= 0 or step >= cfg.warmup_steps or cfg.pattern != "topk":
        return cfg
    frac = step / cfg.warmup_steps

    def lerp(target: float | None) -> float | None:
        return None if target is None else 1.0 + (target - 1.0) * frac

    return dataclasses.replace(
        cfg,
        keep_ratio=lerp(cfg.keep_ratio),
        keep_ratio_attn=lerp(cfg.keep_ratio_attn),
        keep_ratio_mlp=lerp(cfg.keep_ratio_mlp),
    )


def prepare_qsparse_training(model: nn.Module, cfg: SparseConfig) -> list:
    """Apply Q-Sparse for training; returns the Trainer callbacks it needs (maybe none).

    With `cfg.enabled == False` this does nothing and returns no callbacks.
    """
    if not cfg.enabled:
        return []
    apply_qsparse(model, warmup_config(cfg, 0))
    return [KeepRatioWarmup(model, cfg)] if cfg.warmup_steps > 0 and cfg.pattern == "topk" else []


class KeepRatioWarmup(TrainerCallback):
    """Anneals the keep-ratios during warmup (a `transformers.TrainerCallback`).

    It holds the unwrapped model (not the one the trainer may wrap for DDP), so the settings it
    writes into `model.config.qsparse` are the ones saved with each checkpoint. A checkpoint
    saved mid-warmup records the keep-ratios it was trained at; a resumed run picks up the
    schedule at its global step.
    """

    def __init__(self, model: nn.Module, cfg: SparseConfig) -> None:
        self.model = model
        self.cfg = cfg

    def on_train_begin(self, args, state, control, **kwargs):
        apply_qsparse(self.model, warmup_config(self.cfg, state.global_step))
        return control

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step <= self.cfg.warmup_steps:
            apply_qsparse(self.model, warmup_config(self.cfg, state.global_step))
        return control
