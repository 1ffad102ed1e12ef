"""A Qwen2 decoder for fast sampling: static KV cache, fused decode kernels, one CUDA graph per
step, dense or Q-Sparse projections.

The decode step is written once and runs on either op set: the Triton kernels (`kernels.py`,
`attention_kernels.py`; on a GPU, or on a CPU under `TRITON_INTERPRET=1`) or their PyTorch
twins (`torch_ops.py`). Per layer it runs: residual add + RMSNorm (+ top-K) -> q/k/v projection
-> bias + rotary + cache write -> split-KV attention (+ top-K) -> o projection -> residual add +
RMSNorm (+ top-K) -> gate/up projection -> activation * up (+ top-K) -> down projection.
Dense projections are cuBLAS `F.linear` on the usual (out, in) weight; Q-Sparse ones are the
sparse GEMV on the transposed (in, out) weight, accumulating into an fp32 workspace that is
zeroed once per step. `lm_head` stays dense, as in Q-Sparse.

Prefill (the prompt, one prompt at a time) runs the step's ops over all the prompt's tokens at
once: the same norm + top-K and activation + top-K ops (so the same kernels on a GPU, and the
same rounding steps), with dense matmuls for the projections and SDPA for causal attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from leanstar.sparse import torch_ops


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float = 1e-6
    rope_theta: float = 1e6
    max_positions: int = 32768

    @classmethod
    def from_hf(cls, config) -> Shape:
        rope = getattr(config, "rope_parameters", None) or {}
        scaling = rope.get("rope_type", "default") if rope else "default"
        legacy = getattr(config, "rope_scaling", None)
        if scaling != "default" or (legacy and legacy.get("rope_type", "default") != "default"):
            raise NotImplementedError(f"compiled decoder: rope type {scaling!r} not supported")
        if getattr(config, "use_sliding_window", False):
            raise NotImplementedError("compiled decoder: sliding-window attention not supported")
        heads = config.num_attention_heads
        return cls(
            vocab=config.vocab_size,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=config.num_key_value_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            eps=config.rms_norm_eps,
            rope_theta=rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)),
            max_positions=config.max_position_embeddings,
        )

    @property
    def qkv_dim(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim


# Published shapes (config.json of Qwen/Qwen2-0.5B and Qwen/Qwen2-7B), for random-init benches.
QWEN2_0_5B = Shape(151936, 896, 4864, 24, 14, 2, 64, 1e-6, 1e6, 131072)
QWEN2_7B = Shape(152064, 3584, 18944, 28, 28, 4, 128, 1e-6, 1e6, 131072)


SITES = ("qkv", "o", "gate_up", "down")  # the four top-K sites of a layer
# The selection op that produces each site's input (q/k/v and gate/up: after add + RMSNorm).
SELECTED_BY = dict(qkv="add_rmsnorm", o="select", gate_up="add_rmsnorm", down="act_mul")

# Batch-1 sites at most this wide hand the GEMV a compacted list of kept inputs. Measured on
# an H100 (bench/RESULTS.md): for 3584-wide inputs (Qwen2-7B q/k/v, o, gate/up) compacting +
# the gather GEMV beat masked rows; for the 18944-wide down-projection input the compaction
# made the one-program-per-row selection far slower (87 vs 60 us fused, density 0.5, run 2).
# Wider sites compact if `Decoder.tune` measured that faster on this GPU (`set_compacts`).
COMPACT_MAX_WIDTH = 8192
_COMPACTS: dict[tuple[str, int, torch.dtype], bool] = {}


def compacts(kind: str, n: int, dtype: torch.dtype) -> bool:
    """Whether batch-1 selection site `kind` (kernels.KINDS), `n` wide, compacts its kept
    inputs for the GEMV."""
    return _COMPACTS.get((kind, n, dtype), n <= COMPACT_MAX_WIDTH)


def set_compacts(kind: str, n: int, dtype: torch.dtype, compact: bool) -> None:
    _COMPACTS[(kind, n, dtype)] = compact


def compact_modes(rows: int, n: int) -> list[bool]:
    """How a selection site of `rows` rows, `n` wide, may run: with the compacted list (batch 1,
    up to COMPACT_MAX_WIDTH wide), without it (batches), or either, to be timed (wider, batch 1)."""
    if rows > 1:
        return [False]
    return [True] if n <= COMPACT_MAX_WIDTH else [False, True]


@dataclass(frozen=True)
class Keep:
    """Inputs each projection keeps per token (Q-Sparse K); None everywhere = dense."""

    qkv: int
    o: int
    gate_up: int
    down: int
    relu2: bool = False

    @classmethod
    def from_ratios(cls, shape: Shape, attn: float, mlp: float, relu2: bool = False) -> Keep:
        kept_features = torch_ops.kept_features
        return cls(
            qkv=kept_features(attn, shape.hidden),
            o=kept_features(attn, shape.heads * shape.head_dim),
            gate_up=kept_features(mlp, shape.hidden),
            down=kept_features(mlp, shape.intermediate),
            relu2=relu2,
        )

    def counts(self) -> dict[str, int]:
        return dict(qkv=self.qkv, o=self.o, gate_up=self.gate_up, down=self.down)


@dataclass
class Layer:
    """One layer's tensors. Projection weights are (out, in) when dense, (in, out) when sparse."""

    in_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor
    o: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


@dataclass
class Weights:
    shape: Shape
    embed: torch.Tensor
    final_norm: torch.Tensor
    lm_head: torch.Tensor
    layers: list[Layer]
    transposed: bool

    @classmethod
    def from_hf(cls, model, transposed: bool, device, dtype) -> Weights:
        """Take a transformers Qwen2ForCausalLM's tensors (fusing q/k/v and gate/up)."""
        shape = Shape.from_hf(model.config)
        inner = model.model

        def prep(t):
            t = t.detach().to(device=device, dtype=dtype)
            return t.t().contiguous() if transposed else t.contiguous()

        layers = []
        for block in inner.layers:
            at, mlp = block.self_attn, block.mlp
            layers.append(
                Layer(
                    in_norm=block.input_layernorm.weight.detach().to(device, dtype),
                    post_norm=block.post_attention_layernorm.weight.detach().to(device, dtype),
                    qkv=prep(torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight])),
                    qkv_bias=torch.cat([at.q_proj.bias, at.k_proj.bias, at.v_proj.bias])
                    .detach()
                    .to(device, dtype),
                    o=prep(at.o_proj.weight),
                    gate_up=prep(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    down=prep(mlp.down_proj.weight),
                )
            )
        embed = inner.embed_tokens.weight.detach().to(device, dtype)
        head = model.lm_head.weight.detach().to(device, dtype)
        final = inner.norm.weight.detach().to(device, dtype)
        return cls(shape, embed, final, head, layers, transposed)

    @classmethod
    def random(cls, shape: Shape, transposed: bool, device, dtype, seed: int = 0) -> Weights:
        """Random-init weights (normal, std 0.02, as transformers initialises Qwen2), built on
        `device` directly; for benchmarks of the published shapes."""
        gen = torch.Generator(device=device).manual_seed(seed)

        def mat(out_f, in_f):
            size = (in_f, out_f) if transposed else (out_f, in_f)
            return (
                torch.randn(size, generator=gen, device=device, dtype=dtype) * 0.02
            ).contiguous()

        def vec(n, scale=0.0):
            return 1.0 + scale * torch.randn(n, generator=gen, device=device, dtype=dtype)

        s = shape
        layers = [
            Layer(
                in_norm=vec(s.hidden, 0.1),
                post_norm=vec(s.hidden, 0.1),
                qkv=mat(s.qkv_dim, s.hidden),
                qkv_bias=0.02 * torch.randn(s.qkv_dim, generator=gen, device=device, dtype=dtype),
                o=mat(s.hidden, s.heads * s.head_dim),
                gate_up=mat(2 * s.intermediate, s.hidden),
                down=mat(s.hidden, s.intermediate),
            )
            for _ in range(s.layers)
        ]
        embed = torch.randn(s.vocab, s.hidden, generator=gen, device=device, dtype=dtype) * 0.02
        head = torch.randn(s.vocab, s.hidden, generator=gen, device=device, dtype=dtype) * 0.02
        return cls(s, embed, vec(s.hidden, 0.1), head, layers, transposed)

    def with_layout(self, transposed: bool) -> Weights:
        """These weights in the other projection layout (a copy; norms and lm_head shared)."""
        if transposed == self.transposed:
            return self

        def flip(t):
            return t.t().contiguous()

        layers = [
            Layer(
                layer.in_norm,
                layer.post_norm,
                flip(layer.qkv),
                layer.qkv_bias,
                flip(layer.o),
                flip(layer.gate_up),
                flip(layer.down),
            )  # fmt: skip
            for layer in self.layers
        ]
        return Weights(self.shape, self.embed, self.final_norm, self.lm_head, layers, transposed)


def pick_ops(impl: str) -> SimpleNamespace:
    """The op set: "triton" (kernels) or "torch" (twins)."""
    if impl == "torch":
        mod = torch_ops
        return SimpleNamespace(**{n: getattr(mod, n) for n in _OPS})
    from leanstar.sparse import attention_kernels, kernels

    ops = {n: getattr(kernels, n, None) or getattr(attention_kernels, n) for n in _OPS}
    return SimpleNamespace(**ops)


_OPS = (
    "select_topk",
    "sparse_gemv",
    "add_rmsnorm_select",
    "act_mul_select",
    "rope_qkv_cache",
    "decode_attention",
)


class DecodeModel:
    """Static buffers + the decode step for up to `max_batch` rows and `max_seq` positions.

    Inputs of a step live in `self.tokens` / `self.pos` (per row: the token and its position);
    it writes that token's k/v at `pos` in the caches and the next-token `self.logits`.
    """

    def __init__(
        self, weights: Weights, keep: Keep | None, max_batch: int, max_seq: int, impl: str
    ) -> None:
        if keep is not None and not weights.transposed:
            raise ValueError("Q-Sparse decoding needs the transposed (in, out) weight layout")
        s, w = weights.shape, weights
        if max_seq > s.max_positions:
            raise ValueError(f"max_seq {max_seq} > the model's {s.max_positions} positions")
        self.weights, self.shape, self.keep = weights, s, keep
        self.ops = pick_ops(impl)
        self.max_batch, self.max_seq = max_batch, max_seq
        dev, dt = w.embed.device, w.embed.dtype
        self.device, self.dtype = dev, dt

        def buf(*size, dtype=dt):
            return torch.zeros(*size, device=dev, dtype=dtype)

        b = max_batch
        self.tokens = buf(b, dtype=torch.long)
        self.pos = buf(b, dtype=torch.int32)
        self.h = buf(b, s.hidden)
        self.x = buf(b, s.hidden)
        self.q = buf(b, s.heads, s.head_dim)
        self.attn = buf(b, s.heads * s.head_dim)
        self.xo = buf(b, s.heads * s.head_dim)
        self.act = buf(b, s.intermediate)
        self.logits = buf(b, s.vocab, dtype=torch.float32)
        cache = (s.layers, b, s.kv_heads, max_seq, s.head_dim)
        self.k_cache, self.v_cache = buf(*cache), buf(*cache)
        self.cos, self.sin = rope_tables(s, max_seq, dev, dt)
        widths = [s.qkv_dim, s.hidden, 2 * s.intermediate, s.hidden]
        self._acc_offsets = [sum(widths[:i]) for i in range(4)]
        self._acc_widths = widths
        self.workspace = buf(b, s.layers * sum(widths), dtype=torch.float32) if keep else None
        if keep is not None:
            # Per (layer, site, row): the last top-K threshold, where the next search starts.
            self.select_state = buf(s.layers, len(SITES), b, dtype=torch.int32)
            # Batch 1: the kept inputs of each compacting site, listed for the gather GEMV.
            widths = dict(qkv=s.hidden, o=s.heads * s.head_dim, gate_up=s.hidden)
            widths["down"] = s.intermediate
            self.compact = {
                site: (buf(1, k, dtype=torch.int32), buf(1, k))
                for site, k in keep.counts().items()
                if compacts(SELECTED_BY[site], widths[site], dt)
            }

    # ------------------------------------------------------------ decode step

    def _acc(self, layer: int, which: int, rows: int) -> torch.Tensor:
        start = layer * sum(self._acc_widths) + self._acc_offsets[which]
        return self.workspace[:rows, start : start + self._acc_widths[which]]

    def _sel(self, layer: int, site: str, rows: int) -> dict:
        """Selection keywords of one site: its warm-start state, and at batch 1 its list."""
        if self.keep is None:
            return {}
        state = self.select_state[layer, SITES.index(site), :rows]
        return dict(state=state, compact=self.compact.get(site) if rows == 1 else None)

    def _project(self, x, weight, bias, layer, site, sel) -> torch.Tensor:
        if self.keep is None:
            return F.linear(x, weight, bias)
        out = self._acc(layer, SITES.index(site), x.shape[0])
        return self.ops.sparse_gemv(x, weight, out, compact=sel.get("compact"))

    def step(self, rows: int) -> torch.Tensor:
        """One token for rows [0, rows): reads `tokens`, `pos`; writes caches and `logits`."""
        ops, s, w, keep = self.ops, self.shape, self.weights, self.keep
        k = keep.counts() if keep is not None else dict.fromkeys(SITES)
        h, pos, x = self.h[:rows], self.pos[:rows], self.x[:rows]
        torch.index_select(w.embed, 0, self.tokens[:rows], out=h)
        if keep is not None:
            self.workspace[:rows].zero_()
        delta = None
        for i, layer in enumerate(w.layers):
            sel = self._sel(i, "qkv", rows)
            x = ops.add_rmsnorm_select(h, delta, layer.in_norm, s.eps, k["qkv"], x, **sel)
            qkv = self._project(x, layer.qkv, layer.qkv_bias, i, "qkv", sel)
            q = self.q[:rows]
            kc, vc = self.k_cache[i, :rows], self.v_cache[i, :rows]
            bias = layer.qkv_bias if keep is not None else None
            ops.rope_qkv_cache(qkv, bias, self.cos, self.sin, pos, q, kc, vc)
            attn = ops.decode_attention(q, kc, vc, pos, self.attn[:rows])
            sel = self._sel(i, "o", rows)
            if keep is not None:
                attn = ops.select_topk(attn, k["o"], self.xo[:rows], **sel)
            o = self._project(attn, layer.o, None, i, "o", sel)
            sel = self._sel(i, "gate_up", rows)
            x = ops.add_rmsnorm_select(h, o, layer.post_norm, s.eps, k["gate_up"], x, **sel)
            gate_up = self._project(x, layer.gate_up, None, i, "gate_up", sel)
            sel = self._sel(i, "down", rows)
            relu2 = bool(keep and keep.relu2)
            act = ops.act_mul_select(gate_up, k["down"], self.act[:rows], relu2, **sel)
            delta = self._project(act, layer.down, None, i, "down", sel)
        x = ops.add_rmsnorm_select(h, delta, w.final_norm, s.eps, None, x)
        self.logits[:rows] = F.linear(x, w.lm_head).float()
        return self.logits[:rows]

    # ------------------------------------------------------------ prefill

    @torch.no_grad()
    def prefill(self, row: int, ids: torch.Tensor) -> torch.Tensor:
        """Run prompt `ids` (T,) through the model into cache row `row`; sets `pos[row]` to the
        last prompt position T-1 and returns that token's logits (fp32)."""
        s, w, keep = self.shape, self.weights, self.keep
        t = ids.shape[0]
        if t >= self.max_seq:
            raise ValueError(f"prompt of {t} tokens does not fit {self.max_seq} cache positions")
        positions = torch.arange(t, device=self.device)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        ops, kept = self.ops, keep.counts() if keep is not None else dict.fromkeys(SITES)
        relu2 = bool(keep and keep.relu2)
        h = w.embed[ids]
        x = torch.empty_like(h)
        act = torch.empty(t, s.intermediate, device=self.device, dtype=self.dtype)
        group = s.heads // s.kv_heads
        delta = None
        for i, layer in enumerate(w.layers):
            x = ops.add_rmsnorm_select(h, delta, layer.in_norm, s.eps, kept["qkv"], x)
            qkv = self._dense(x, layer.qkv, layer.qkv_bias).view(t, -1, s.head_dim)
            q = torch_ops.rotate(qkv[:, : s.heads], cos, sin)
            k = torch_ops.rotate(qkv[:, s.heads : s.heads + s.kv_heads], cos, sin)
            v = qkv[:, s.heads + s.kv_heads :]
            self.k_cache[i, row, :, :t] = k.transpose(0, 1)
            self.v_cache[i, row, :, :t] = v.transpose(0, 1)
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1),
                k.transpose(0, 1).repeat_interleave(group, 0),
                v.transpose(0, 1).repeat_interleave(group, 0),
                is_causal=True,
            )
            attn = attn.transpose(0, 1).reshape(t, -1)
            if keep is not None:
                attn = ops.select_topk(attn, kept["o"])
            o = self._dense(attn, layer.o, None)
            x = ops.add_rmsnorm_select(h, o, layer.post_norm, s.eps, kept["gate_up"], x)
            gate_up = self._dense(x, layer.gate_up, None)
            act = ops.act_mul_select(gate_up, kept["down"], act, relu2)
            delta = self._dense(act, layer.down, None)
        last = ops.add_rmsnorm_select(h[-1:], delta[-1:], w.final_norm, s.eps, None, x[-1:])
        self.pos[row] = t - 1
        return F.linear(last, w.lm_head).float()[0]

    def _dense(self, x, weight, bias):
        return F.linear(x, weight.t() if self.weights.transposed else weight, bias)

    def copy_row(self, src: int, dst: int, length: int) -> None:
        """Share a prefilled prompt: copy row `src`'s cache (first `length` positions)."""
        self.k_cache[:, dst, :, :length] = self.k_cache[:, src, :, :length]
        self.v_cache[:, dst, :, :length] = self.v_cache[:, src, :, :length]
        self.pos[dst] = self.pos[src]


def rope_tables(shape: Shape, max_seq: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (max_seq, head_dim/2) as fp32 holding dtype-rounded values, as Qwen2 uses."""
    d = shape.head_dim
    inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    angles = torch.arange(max_seq, dtype=torch.float)[:, None] * inv_freq[None, :]
    return (
        angles.cos().to(dtype).float().to(device),
        angles.sin().to(dtype).float().to(device),
    )


def weight_bytes_per_token(weights: Weights, keep: Keep | None) -> float:
    """Bytes a batch-1 decode step must read: kept fraction of each projection + dense lm_head."""
    s = weights.shape
    e = weights.embed.element_size()
    per_layer = [
        (s.hidden, s.qkv_dim, keep and keep.qkv),
        (s.heads * s.head_dim, s.hidden, keep and keep.o),
        (s.hidden, 2 * s.intermediate, keep and keep.gate_up),
        (s.intermediate, s.hidden, keep and keep.down),
    ]
    total = sum(m * (k if k else n) * e for n, m, k in per_layer) * s.layers
    return total + s.vocab * s.hidden * e
