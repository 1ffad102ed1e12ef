"""Tokens/s of SFT training steps: `leanstar sft` against plain TRL SFTTrainer, side by side.

Both sides train the same model from the same checkpoint on the same examples with the same
settings (batch, max length, learning-rate schedule, seed, precision), so they see the same
batches; only the code around TRL differs. "Ours" is `leanstar.train.sft.train_sft`, the entry
point `leanstar sft` runs (our data pipeline, run directory, metrics file, signal handling);
"plain TRL" is `trl.SFTTrainer` given the raw prompt-completion rows. Runs alternate (ours
then TRL, TRL then ours, ...) and each side's figure is the median over all its timed steps of
    (tokens of the step) / (wall time of the step),
tokens being the non-padding tokens TRL counts, after `--warmup` untimed steps per run. On CPU
the same is also given per CPU-second of the process, which other work on a shared machine
disturbs less, and torch uses one thread (`--threads`). The goal of issue 5 is ours >= 0.95x
plain TRL.

    python bench/bench_sft.py          # CPU: the tiny random Qwen2 of the tests, fp32
    python bench/bench_sft.py --gpu    # one CUDA GPU: Qwen2-0.5B shape, random init, bf16;
                                       # also prints peak memory (under 90 s on an H100)

The thoughts in the data are a fixed bench sentence, not teacher output; the states and tactics
are the bundled LeanDojo Benchmark 4 sample.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's leanstar

REQUIRED = ("torch", "transformers", "trl", "datasets", "accelerate")

BENCH_THOUGHT = (
    "The goal follows from the hypotheses once the definitions are unfolded; the next tactic "
    "should expose that structure so the remaining obligation closes by a standard lemma."
)


@dataclass
class Timer:
    """Wall time and TRL's token count at the end of every step (a TrainerCallback)."""

    cuda: bool
    times: dict[int, float] = field(default_factory=dict)
    cpu_times: dict[int, float] = field(default_factory=dict)  # CPU seconds of this process
    tokens: dict[int, float] = field(default_factory=dict)

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class _Timer(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if timer.cuda:
                    import torch

                    torch.cuda.synchronize()
                timer.times[state.global_step] = time.perf_counter()
                timer.cpu_times[state.global_step] = time.process_time()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "num_tokens" in logs:
                    timer.tokens[state.global_step] = float(logs["num_tokens"])

        return _Timer()

    def steps(self, warmup: int, last: int, cpu: bool = False) -> list[tuple[float, float]]:
        """(tokens, seconds) of each step warmup+1 .. last; wall or CPU seconds."""
        clock = self.cpu_times if cpu else self.times
        return [
            (self.tokens[i] - self.tokens[i - 1], clock[i] - clock[i - 1])
            for i in range(warmup + 1, last + 1)
        ]


@dataclass
class Run:
    steps: list[tuple[float, float]]  # (tokens, wall seconds) per timed step
    cpu_steps: list[tuple[float, float]]  # (tokens, CPU seconds of the process) per step
    peak_gib: float

    @property
    def tokens(self) -> float:
        return sum(t for t, _ in self.steps)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gpu", action="store_true", help="Qwen2-0.5B shape in bf16 on one CUDA GPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=None, help="runs per side (alternating)")
    p.add_argument("--batch", type=int, default=None, help="examples per step")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU: torch threads (1 keeps a shared machine fair)"
    )
    args = p.parse_args()
    missing = [m for m in REQUIRED if not _importable(m)]
    if missing:
        print(f"bench_sft: missing packages {missing}; pip install them (see docs/sft.md)")
        return 2
    steps = args.steps or (10 if args.gpu else 20)
    repeats = args.repeats or (2 if args.gpu else 8)
    batch = args.batch or (16 if args.gpu else 4)
    if not args.gpu:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        return run(Path(tmp), args.gpu, steps, args.warmup, repeats, batch)


def run(tmp: Path, gpu: bool, steps: int, warmup: int, repeats: int, batch: int) -> int:
    import torch

    if gpu and not torch.cuda.is_available():
        print("bench_sft: --gpu needs a CUDA GPU and none is visible")
        return 2
    model_dir, what = _make_model(tmp, gpu)
    data = _write_data(tmp / "thoughts.jsonl")
    results: dict[str, list[Run]] = {"ours": [], "plain TRL": []}
    for r in range(repeats):
        order = [("ours", _run_ours), ("plain TRL", _run_trl)]
        for side, fn in order if r % 2 == 0 else order[::-1]:  # neither side always goes first
            if gpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            timer = Timer(cuda=gpu)
            fn(
                tmp / f"{side.replace(' ', '-')}-{r}",
                model_dir,
                data,
                gpu,
                steps + warmup,
                batch,
                timer,
            )
            peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan")
            last = steps + warmup
            results[side].append(
                Run(timer.steps(warmup, last), timer.steps(warmup, last, cpu=True), peak)
            )
            gc.collect()
    _report(results, what, gpu, steps, warmup, batch)
    return 0


# ---------------------------------------------------------------- the two sides


def _settings(gpu: bool, max_steps: int, batch: int) -> dict:
    return dict(
        learning_rate=2e-5,
        lr_scheduler="cosine",
        warmup_ratio=0.03,
        per_device_batch_size=batch,
        global_batch_size=batch,
        max_length=1024,
        max_steps=max_steps,
        bf16=gpu,
        dtype="bfloat16" if gpu else "float32",
        gradient_checkpointing=False,
        seed=0,
        logging_steps=1,
        save_steps=10**6,
    )


def _run_ours(run_dir: Path, model_dir: Path, data: Path, gpu: bool, max_steps, batch, timer):
    from leanstar.train.config import SFTConfig
    from leanstar.train.sft import train_sft

    s = _settings(gpu, max_steps, batch)
    cfg = SFTConfig(run_dir=str(run_dir), base_model=str(model_dir), data=[str(data)], **s)
    train_sft(cfg, callbacks=[timer.callback()])


def _run_trl(run_dir: Path, model_dir: Path, data: Path, gpu: bool, max_steps, batch, timer):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from leanstar.jsonl import read_records
    from leanstar.prompting import prover_messages, prover_target
    from leanstar.records import ThoughtStep

    s = _settings(gpu, max_steps, batch)
    rows = [
        {
            "prompt": prover_messages(r.state, True),
            "completion": [{"role": "assistant", "content": prover_target(r.tactic, r.thought)}],
        }
        for r in read_records(data, ThoughtStep)
    ]
    dtype = torch.bfloat16 if gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    names = {f for f in SFTConfig.__dataclass_fields__}
    warmup = {"warmup_ratio": 0.03} if "warmup_ratio" in names else {"warmup_steps": 0.03}
    ckpt = {"activation_checkpointing": False} if "activation_checkpointing" in names else {}
    args = SFTConfig(
        output_dir=str(run_dir),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        learning_rate=s["learning_rate"],
        lr_scheduler_type=s["lr_scheduler"],
        max_steps=max_steps,
        max_length=s["max_length"],
        bf16=gpu,
        gradient_checkpointing=False,
        seed=0,
        data_seed=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        **warmup,
        **ckpt,
    )
    tok = AutoTokenizer.from_pretrained(model_dir)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[timer.callback()],
    )
    trainer.train()


# ---------------------------------------------------------------- model, data, report


def _make_model(tmp: Path, gpu: bool, device: str = "cuda") -> tuple[Path, str]:
    from leanstar.models import QWEN2_0_5B, build_tiny_qwen2, build_tokenizer

    if not gpu:
        return build_tiny_qwen2(tmp / "model"), "tiny random Qwen2 (2 layers, hidden 64), fp32"
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer()
    config = Qwen2Config(
        **QWEN2_0_5B,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it trains: seconds, not a minute on CPU
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    out = tmp / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    del model
    return out, f"Qwen2-0.5B-shaped random init ({n:.0f}M parameters), bf16 weights + bf16 autocast"


def _write_data(path: Path) -> Path:
    from leanstar.data import load_leandojo, traced_steps
    from leanstar.jsonl import JsonlWriter
    from leanstar.records import ThoughtStep

    steps = traced_steps(load_leandojo("bundled:leandojo-benchmark4-sample.json"))
    with JsonlWriter(path) as w:
        for s in steps:
            w.write(ThoughtStep(s.state_before, BENCH_THOUGHT, s.tactic, teacher="bench fixture"))
    return path


def _report(results, what: str, gpu: bool, steps: int, warmup: int, batch: int) -> None:
    import torch
    import transformers
    import trl

    device = torch.cuda.get_device_name() if gpu else f"CPU {_cpu_name()}"
    threads = "" if gpu else f", {torch.get_num_threads()} torch threads"
    if not gpu and hasattr(os, "getloadavg"):  # other work on the machine skews absolute figures
        threads += f", load average {os.getloadavg()[0]:.1f} at the end"
    print(f"\nbench_sft: {what}")
    print(
        f"machine: {device}{threads}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}"
    )
    print(
        f"batch {batch} examples/step, {warmup} warm-up + {steps} timed steps per run, "
        f"{len(results['ours'])} runs per side, order alternating; thought format, bundled states"
    )
    print(
        "\nmedian: over all timed steps of (step tokens / step time); mean: all tokens / all "
        "time; then each run's mean"
    )
    ratios = {"wall": _table(results, "steps", gpu)}
    if not gpu:
        print(
            "\nthe same per CPU-second of this process (insensitive to other work on the machine):"
        )
        ratios["cpu"] = _table(results, "cpu_steps", gpu)
    tokens = {side: sorted({round(r.tokens) for r in runs}) for side, runs in results.items()}
    if tokens["ours"] != tokens["plain TRL"]:
        print(f"warning: the sides trained on different token counts {tokens}: not like for like")
    print(f"\nratio ours / plain TRL (medians, wall clock): {ratios['wall']:.3f}x (goal >= 0.95x)")
    if "cpu" in ratios:
        print(f"ratio ours / plain TRL (medians, CPU time):   {ratios['cpu']:.3f}x")


def _table(results: dict[str, list[Run]], attr: str, gpu: bool) -> float:
    """Print one tokens/s table; returns the ratio of the medians, ours / plain TRL."""
    unit = "tokens/s" if attr == "steps" else "tokens/CPU-s"
    print(f"\n{'side':<10} {'median':>9} {'mean':>9}  {unit + ' per run':<40} {'peak GiB':>8}")
    medians = {}
    for side, runs in results.items():
        steps = [step for run in runs for step in getattr(run, attr)]
        medians[side] = statistics.median(t / s for t, s in steps)
        mean = sum(t for t, _ in steps) / sum(s for _, s in steps)
        each = " ".join(
            f"{sum(t for t, _ in getattr(r, attr)) / sum(s for _, s in getattr(r, attr)):,.0f}"
            for r in runs
        )
        peak = f"{max(r.peak_gib for r in runs):.2f}" if gpu else "n/a"
        print(f"{side:<10} {medians[side]:>9,.0f} {mean:>9,.0f}  {each:<40} {peak:>8}")
    return medians["ours"] / medians["plain TRL"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "unknown"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
