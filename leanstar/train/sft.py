"""`leanstar sft`: fine-tune the prover with TRL's SFTTrainer; resumable, idempotent.

    RUN_DIR/
      config.yaml      the resolved config (a resumed or finished run must be given the same)
      data.json        examples per file, truncated / dropped by max_length, tokens, fingerprint
      metrics.jsonl    one line per Trainer log: loss, learning rate, grad norm, tokens seen
      checkpoints/     Trainer checkpoints, the resume points (TensorBoard logs in runs/)
      model/           the final HF checkpoint + tokenizer + README.md + leanstar.json
      manifest.json    phase "sft" once model/ is complete

TRL trains: this module builds the data (`leanstar.train.data`), TRL's config from ours, and
the callbacks that log metrics and stop cleanly on Ctrl-C. Several GPUs or nodes go through
`accelerate launch -m leanstar sft ...` (see docs/sft.md); nothing here is distributed by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leanstar.config import ConfigError
from leanstar.jsonl import write_json_atomic
from leanstar.rundir import RunDir, RunDirBusy
from leanstar.train.callbacks import MetricsLog, StopOnSignal
from leanstar.train.card import write_card
from leanstar.train.checkpoints import (
    checkpoint_step,
    last_complete_checkpoint,
    remove_checkpoints,
    trim_metrics,
)
from leanstar.train.config import SFTConfig
from leanstar.train.data import DataError, build_dataset

PHASE = "sft"
# Keys that may change between a killed run and its resumption without changing what is trained.
RESUME_SAFE = {"report_to", "logging_steps", "save_steps", "save_total_limit", "keep_checkpoints"}


class ResumeError(RuntimeError):
    """A run directory that holds a different run (config or data) than the one asked for."""


def main(cfg: SFTConfig) -> int:
    try:
        model_dir = train_sft(cfg)
    except (DataError, ConfigError, ResumeError, RunDirBusy) as e:
        print(f"leanstar sft: {e}", file=sys.stderr)
        return 2
    print(f"leanstar sft: model saved to {model_dir}")
    return 0


def train_sft(cfg: SFTConfig, callbacks: Sequence[Any] = ()) -> Path:
    """Train (or resume, or find finished) the run in `cfg.run_dir`; returns RUN_DIR/model.

    A finished run with the same config is returned as it is; a killed one resumes from its
    last complete checkpoint. Every process of a distributed launch calls this.
    """
    from accelerate import PartialState

    state = PartialState()
    cfg.validate(state.num_processes)
    run = RunDir(cfg.run_dir)
    if run.is_done(PHASE):
        check_config(run, cfg, strict=True)
        model_dir = run / "model"
        if not (model_dir / "config.json").is_file():
            raise ResumeError(f"{run.path}: marked done but {model_dir} holds no checkpoint")
        _say(state, f"{run.path}: already trained with this config; using {model_dir}")
        return model_dir
    if state.is_main_process:
        run.lock()
    try:
        return _train(cfg, run, state, list(callbacks))
    finally:
        run.unlock()


def _train(cfg: SFTConfig, run: RunDir, state: Any, callbacks: list[Any]) -> Path:
    resume, resume_step = _find_resume_point(cfg, run, state)
    tokenizer = load_tokenizer(cfg)
    dataset, stats = _prepare_data(cfg, run, tokenizer, state, resume_step)
    # TRL's arguments first: under DeepSpeed ZeRO-3 they make from_pretrained shard the weights.
    args = training_args(cfg, run / "checkpoints", state.num_processes)
    model = load_model(cfg)
    stop = StopOnSignal() if state.num_processes == 1 else None
    extra = [MetricsLog(run / "metrics.jsonl"), *([stop] if stop else []), *callbacks]
    trainer = build_trainer(cfg, model, tokenizer, dataset, extra, args=args)
    started = time.monotonic()
    with stop or contextlib.nullcontext():
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop is not None and stop.fired:
        raise KeyboardInterrupt  # a checkpoint was saved at the step where the signal came
    training = _summary(trainer, result, stats, resume_step, time.monotonic() - started, state)
    model_dir = save_final(trainer, cfg, run, stats, training, state)
    if state.is_main_process:
        run.mark_done(PHASE, model="model", **training)
        if not cfg.keep_checkpoints:
            remove_checkpoints(run / "checkpoints")
    state.wait_for_everyone()
    return model_dir


def _find_resume_point(cfg: SFTConfig, run: RunDir, state: Any) -> tuple[Path | None, int | None]:
    """The last complete checkpoint (partial ones removed) and its step; checks the config."""
    ckpt_dir = run / "checkpoints"
    if state.is_main_process:
        resume = last_complete_checkpoint(ckpt_dir, log=lambda m: _say(state, m))
        check_config(run, cfg, strict=resume is not None)
        run.save_config(cfg)
    state.wait_for_everyone()
    resume = last_complete_checkpoint(ckpt_dir)
    return resume, (checkpoint_step(resume) if resume else None)  # read now: rotation deletes it


def _prepare_data(cfg: SFTConfig, run: RunDir, tokenizer, state: Any, resume_step: int | None):
    dataset, stats = build_dataset(
        cfg.data,
        tokenizer,
        fmt=cfg.format,
        weights=cfg.data_weights,
        max_length=cfg.max_length,
        drop_overlong=cfg.drop_overlong,
        seed=cfg.seed,
        progress=state.is_main_process,
    )
    if state.is_main_process:
        _check_data(run, stats.fingerprint, resume_step is not None)
        write_json_atomic(run / "data.json", stats.to_dict())
        _say(state, f"data: {stats.summary()}")
        if stats.boundary_mismatch:
            _say(state, f"note: {stats.boundary_mismatch} prompts tokenise differently alone")
        if resume_step is not None:
            trim_metrics(run / "metrics.jsonl", resume_step)
            _say(state, f"resuming from step {resume_step}")
    return dataset, stats


# ---------------------------------------------------------------- model, tokenizer, trainer


def load_tokenizer(cfg: SFTConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cfg.base_model, trust_remote_code=cfg.trust_remote_code)


def load_model(cfg: SFTConfig):
    """The base model in `cfg.dtype`, dense: Q-Sparse goes on once the trainer is built.

    A base that was itself trained under Q-Sparse is loaded dense too (its `qsparse` settings
    are dropped from the config), so a run with `qsparse.enabled: false` never saves a model
    that claims a sparsity it was not trained with.
    """
    from leanstar.sparse.qsparse import load_model as load_causal_lm
    from leanstar.sparse.qsparse import qsparse_settings, remove_qsparse

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = load_causal_lm(cfg.base_model, dtype=cfg.dtype, **kwargs)
    if qsparse_settings(model) and not cfg.qsparse.enabled:
        print(
            f"leanstar sft: note: {cfg.base_model} was trained under Q-Sparse; it trains dense "
            "here because qsparse.enabled is false",
            flush=True,
        )
    return remove_qsparse(model)


def training_args(cfg: SFTConfig, output_dir: str | Path, num_processes: int = 1):
    """TRL's SFTConfig for our config: the one place where our names meet theirs."""
    from trl import SFTConfig as TRLConfig

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        run_name=Path(output_dir).parent.name,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps(num_processes),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_length=cfg.max_length,
        packing=cfg.packing,
        completion_only_loss=True,
        bf16=cfg.bf16,
        fp16=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit or None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=list(cfg.report_to) or "none",
        include_num_input_tokens_seen="non_padding",
    )
    # Names that moved between transformers releases (4.56 .. 5.x are supported).
    names = {f.name for f in dataclasses.fields(TRLConfig)}
    if "warmup_ratio" in names:  # before 5.0; since then a warmup_steps below 1 is a ratio
        kwargs["warmup_ratio"] = cfg.warmup_ratio
    else:
        kwargs["warmup_steps"] = cfg.warmup_ratio
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else None
    kwargs[checkpointing or "gradient_checkpointing"] = cfg.gradient_checkpointing
    return TRLConfig(**kwargs)


def lora_config(cfg: SFTConfig):
    from peft import LoraConfig

    targets = cfg.lora_target_modules
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


def build_trainer(cfg: SFTConfig, model, tokenizer, dataset, callbacks=(), *, args=None):
    """TRL's SFTTrainer on our prepared dataset (input_ids + completion_mask), with Q-Sparse
    applied after PEFT wrapping (so LoRA branches see the sparse inputs too)."""
    from trl import SFTTrainer

    from leanstar.sparse.schedule import prepare_qsparse_training

    trainer = SFTTrainer(
        model=model,
        args=args or training_args(cfg, Path(cfg.run_dir) / "checkpoints"),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.lora else None,
        callbacks=list(callbacks),
    )
    for callback in prepare_qsparse_training(trainer.model, cfg.qsparse):
        trainer.add_callback(callback)
    return trainer


# ---------------------------------------------------------------- saving


def save_final(trainer, cfg: SFTConfig, run: RunDir, stats, training: dict, state) -> Path:
    """Write RUN_DIR/model whole: saved to model.partial, carded, then renamed."""
    final, partial = run / "model", run / "model.partial"
    if state.is_main_process and partial.exists():
        shutil.rmtree(partial)
    state.wait_for_everyone()
    if cfg.lora:
        adapter = run / "adapter"
        trainer.save_model(str(adapter))  # gathers shards under DeepSpeed / FSDP
        if state.is_main_process:
            _merge_lora(cfg, adapter, partial, trainer.processing_class)
    else:
        trainer.save_model(str(partial))
    if state.is_main_process:
        (partial / "training_args.bin").unlink(missing_ok=True)
        write_card(partial, cfg, stats, training)
        if final.exists():  # a run killed after the rename, before mark_done
            shutil.rmtree(final)
        os.replace(partial, final)
    state.wait_for_everyone()
    return final


def _merge_lora(cfg: SFTConfig, adapter: Path, out: Path, tokenizer) -> None:
    """Base + adapter merged into plain weights, so the checkpoint loads without peft."""
    from peft import PeftModel

    from leanstar.sparse.qsparse import apply_qsparse

    _leave_zero3()
    merged = PeftModel.from_pretrained(load_model(cfg), str(adapter)).merge_and_unload()
    apply_qsparse(merged, cfg.qsparse)  # records the settings in config.json (no-op if dense)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _leave_zero3() -> None:
    """Training is over: let the main process load the base whole, not ZeRO-3 partitioned."""
    try:
        from transformers.integrations.deepspeed import (
            is_deepspeed_zero3_enabled,
            unset_hf_deepspeed_config,
        )
    except ImportError:
        return
    if is_deepspeed_zero3_enabled():
        unset_hf_deepspeed_config()


def _summary(trainer, result, stats, resume_step, wall_s: float, state) -> dict[str, Any]:
    """What the manifest and the model card say about training (`this_session`: since the
    last start, which after a resume is not the whole run)."""
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return {
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "last_logged_loss": round(losses[-1], 6) if losses else None,
        "mean_loss_this_session": round(result.training_loss, 6),
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "examples": stats.kept,
        "truncated": stats.truncated,
        "dropped": stats.dropped_prompt_too_long + stats.dropped_overlong,
        "resumed_from_step": resume_step,
        "processes": state.num_processes,
        "device": str(trainer.args.device),
        "wall_s_this_session": round(wall_s, 1),
    }


# ---------------------------------------------------------------- run directory checks


def check_config(run: RunDir, cfg: SFTConfig, strict: bool) -> None:
    """Refuse to resume or reuse a run directory that was made with another config."""
    configs = run.saved_and_current_config(cfg) if strict else None
    if configs is None:
        return
    old, new = configs
    changed = sorted(
        k for k in old.keys() | new.keys() if k not in RESUME_SAFE and old.get(k) != new.get(k)
    )
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ResumeError(
            f"{run.path} holds a run with another config ({diffs}); use a new run_dir, or "
            "give the same config to resume it"
        )


def _check_data(run: RunDir, fingerprint: str, resuming: bool) -> None:
    path = run / "data.json"
    if not resuming or not path.exists():
        return
    old = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    if old != fingerprint:
        raise ResumeError(
            f"{run.path}: the training data changed since the run started (fingerprint {old} "
            f"-> {fingerprint}); resuming would mix two datasets. Use a new run_dir."
        )


def _say(state, message: str) -> None:
    if state.is_main_process:
        print(f"leanstar sft: {message}", flush=True)
