"""Training-step time under Q-Sparse against dense: same model, same batch, side by side.

One training step = forward, backward and an AdamW update on a random-init Qwen2 of a given
shape (no download). Dense and Q-Sparse steps alternate on the same model (the hooks are put on
and taken off between steps), so both see the same machine state; the figure is the ratio of
median step times. The goal in issue 8 is at most 1.25x dense. On a GPU with Triton, Q-Sparse
uses the Triton top-K selection, and a third variant with the PyTorch top-K is timed in the same
loop for comparison.

    python bench/bench_qsparse_train.py                  # CPU: SmolLM2 layers, 8 of them
    python bench/bench_qsparse_train.py --device cuda    # GPU: Qwen2-0.5B shape, bf16, < 60 s

Prints the machine, the shape and both medians, then the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's leanstar

from leanstar.config import SparseConfig
from leanstar.models import QWEN2_0_5B
from leanstar.sparse.qsparse import apply_qsparse, remove_qsparse

SHAPES = {
    "tiny": dict(
        vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
    ),
    # SmolLM2-135M's layer shape, 8 of its 30 layers and an 8k vocabulary: a CPU step takes
    # seconds, and (as in the full model) the decoder layers, not lm_head, dominate the time.
    "smollm2-8l": dict(
        vocab_size=8192, hidden_size=576, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    ),
    "smollm2": dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
    ),
    "qwen2-0.5b": QWEN2_0_5B,
}  # fmt: skip

DEFAULTS = {
    "cpu": dict(shape="smollm2-8l", batch=4, seq=128, steps=6, dtype="float32"),
    "cuda": dict(shape="qwen2-0.5b", batch=8, seq=512, steps=20, dtype="bfloat16"),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--shape", choices=sorted(SHAPES), help="model shape (default per device)")
    p.add_argument("--batch", type=int, help="sequences per step")
    p.add_argument("--seq", type=int, help="tokens per sequence")
    p.add_argument("--steps", type=int, help="timed steps of each kind")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each kind first")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="weights and compute dtype")
    p.add_argument("--keep", type=float, default=0.5, help="Q-Sparse keep-ratio (default 0.5)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        help="also time top-K alone against each site's matmul (default: on for cuda)",
    )
    args = p.parse_args()
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    if args.breakdown is None:
        args.breakdown = kind == "cuda"
    for key, value in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**SHAPES[args.shape])
    with torch.device(args.device):
        model = Qwen2ForCausalLM(config).to(getattr(torch, args.dtype))
    if args.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()  # renamed in transformers 5.24
    return model.train()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step(model, opt, ids: torch.Tensor, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def timed(device: str, fn, *fn_args, reps: int = 10) -> float:
    """Median seconds of `fn(*fn_args)` over `reps` runs, after one warm-up run."""
    fn(*fn_args)
    out = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn(*fn_args)
        sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def uses_triton(args: argparse.Namespace) -> bool:
    """Whether `topk_ste`'s auto backend takes the Triton selection on this device."""
    import importlib.util

    return args.device.startswith("cuda") and importlib.util.find_spec("triton") is not None


def breakdown(model, args: argparse.Namespace) -> None:
    """Forward cost of the exact top-K (PyTorch, and Triton where it runs) vs the site matmul."""
    from leanstar.sparse.topk import keep_count, topk_ste

    cfg = model.config
    tokens = args.batch * args.seq
    dtype = getattr(torch, args.dtype)
    kv = model.model.layers[0].self_attn.k_proj.out_features
    sites = {
        "qkv (hidden)": (cfg.hidden_size, cfg.hidden_size + 2 * kv),
        "gate/up (hidden)": (cfg.hidden_size, 2 * cfg.intermediate_size),
        "down (intermediate)": (cfg.intermediate_size, cfg.hidden_size),
    }
    print(f"per-call forward time, one site, a batch of {tokens} tokens:")
    for name, (dim, out) in sites.items():
        x = torch.randn(tokens, dim, device=args.device, dtype=dtype)
        w = torch.randn(out, dim, device=args.device, dtype=dtype)
        k = keep_count(dim, args.keep)
        mm = timed(args.device, torch.matmul, x, w.T)
        line = f"  {name:20s} matmul {mm * 1e3:7.3f} ms"
        for backend in ("torch", "triton") if uses_triton(args) else ("torch",):
            t = timed(args.device, topk_ste, x, k, backend)
            line += f"   top-K {backend} {t * 1e3:7.3f} ms ({t / mm:.2f}x)"
        print(line)


def run_steps(model, args: argparse.Namespace) -> dict[str, float]:
    """Median step time of each variant, the variants interleaved step by step."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)
    ids = ids.to(args.device)
    cfg = SparseConfig(enabled=True, keep_ratio=args.keep)
    variants = {"dense": None, "qsparse": "auto"}
    if uses_triton(args):
        variants["qsparse, torch top-K"] = "torch"
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.warmup + args.steps):
        for name, backend in variants.items():
            if backend is None:
                remove_qsparse(model)
            else:
                apply_qsparse(model, cfg, topk_backend=backend)
            t = step(model, opt, ids, args.device)
            if i >= args.warmup:
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    args = parse_args()
    model = build(args)
    medians = run_steps(model, args)
    n = sum(p.numel() for p in model.parameters())
    tokens = args.batch * args.seq
    top_k = "Triton selection" if uses_triton(args) else "PyTorch"
    print(f"machine : {machine(args.device)}")
    print(
        f"model   : random-init Qwen2, shape {args.shape} ({n / 1e6:.1f}M params), {args.dtype}, "
        f"batch {args.batch} x {args.seq} tokens, AdamW, {args.steps} timed steps each"
    )
    print(f"Q-Sparse: keep {args.keep} on every projection; 'qsparse' uses the {top_k} top-K")
    dense = medians["dense"]
    for name, t in medians.items():
        ratio = "" if name == "dense" else f"   {t / dense:.3f}x dense (goal <= 1.25x)"
        print(f"  {name:22s} {t * 1e3:8.1f} ms/step ({tokens / t:>9,.0f} tokens/s){ratio}")
    if args.breakdown:
        breakdown(model, args)


if __name__ == "__main__":
    main()
