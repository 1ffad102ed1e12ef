"""The `compiled` sampler backend: a static-KV-cache decode loop, one CUDA graph per step, for
dense and Q-Sparse Qwen2 checkpoints on one GPU (in the manner of gpt-fast).

`Decoder` owns a `DecodeModel` (decode_model.py) and puts sampling into the graph too: a step
is model forward -> temperature / top-p / Gumbel-max sampling -> next token, its position and
its log-probability written to device buffers. The host only replays the graph and, every
`CHECK_EVERY` steps, looks whether every row has hit an end-of-sequence token or a stop string.
A graph is captured per (rows, sampling mode), on first use. Without CUDA the same step runs
eagerly with the PyTorch twins of the kernels (or, as the tests do, the Triton kernels under
`TRITON_INTERPRET=1`): slow, but the same step, which is how the tests check it against
transformers `generate`.

Log-probabilities are those of the model's own distribution (log-softmax of the raw logits),
as in the transformers backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from leanstar.config import GeneratorConfig, SparseConfig
from leanstar.generation.base import Sample, SamplingParams
from leanstar.sparse.decode_model import DecodeModel, Keep, Weights

CHECK_EVERY = 16  # decode steps between the host's stop checks
SEQ_ROUND = 256  # cache lengths are rounded up to this, so new graphs are rarely needed


def default_impl(device: torch.device) -> str:
    """The op set: Triton kernels on a GPU when Triton imports, else the PyTorch twins (the
    Triton interpreter is for tests: it is far too slow to sample with)."""
    if device.type != "cuda":
        return "torch"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "torch"
    return "triton"


def sampling_mode(params: SamplingParams) -> str:
    if params.temperature <= 0:
        return "greedy"
    return "top_p" if params.top_p < 1.0 else "sample"


class Decoder:
    """Batched token generation over a `DecodeModel`; CUDA graphs when the weights are on a GPU."""

    def __init__(
        self, weights: Weights, keep: Keep | None, max_batch: int, impl: str, tune: bool = True
    ) -> None:
        self.weights, self.keep, self.max_batch, self.impl = weights, keep, max_batch, impl
        self.device = weights.embed.device
        self.use_graphs = self.device.type == "cuda"
        self.model: DecodeModel | None = None
        self._rng = torch.Generator(device=self.device)
        self.tuning: dict[tuple[str, int], dict[bool, float]] = {}  # site -> {compact: us}
        if tune and self.use_graphs and keep is not None and impl == "triton":
            self.tune()

    def tune(self) -> None:
        """Time, on this GPU, each selection site's candidate plans (as the decode step calls
        them: fused into add + RMSNorm, alone after attention, fused into act * up) and the
        sparse GEMV's candidate tiles for each projection that reads the site. At batch 1 a
        site wider than COMPACT_MAX_WIDTH is timed both ways, with and without the compacted
        list of kept inputs (selection + the GEMVs reading it), and takes the faster."""
        from leanstar.sparse.decode_model import compact_modes, set_compacts
        from leanstar.sparse.kernels import tune_gemv, tune_select_site

        s, k, dtype = self.weights.shape, self.keep, self.weights.embed.dtype
        sites = [  # (kind, width, K, [(output width, K) of each projection reading it])
            ("add_rmsnorm", s.hidden, k.qkv, [(s.qkv_dim, k.qkv), (2 * s.intermediate, k.gate_up)]),
            ("select", s.heads * s.head_dim, k.o, [(s.hidden, k.o)]),
            ("act_mul", s.intermediate, k.down, [(s.hidden, k.down)]),
        ]
        for rows in sorted({1, min(self.max_batch, 16)}):
            for kind, n, kept, readers in sites:
                site_us = {}
                for compact in compact_modes(rows, n):
                    try:
                        plan, times = tune_select_site(
                            kind, rows, n, dtype, kept / n, compact, k.relu2
                        )
                        gemvs = [
                            tune_gemv(rows, n, m, dtype, km / n, gather=compact)[1]
                            for m, km in readers
                        ]
                    except Exception as e:  # noqa: BLE001 - the site keeps the default path
                        print(
                            f"tuning failed for {kind} n={n} rows={rows} compact={compact}: {e!r}"
                        )
                        continue
                    site_us[compact] = times.get(plan, math.nan) + sum(gemvs)
                if len(site_us) == 2 and not any(math.isnan(us) for us in site_us.values()):
                    set_compacts(kind, n, dtype, site_us[True] < site_us[False])
                    self.tuning[(kind, n)] = site_us

    def _ensure(self, max_seq: int) -> DecodeModel:
        if self.model is None or self.model.max_seq < max_seq:
            seq = -(-max_seq // SEQ_ROUND) * SEQ_ROUND
            seq = min(seq, self.weights.shape.max_positions)
            self.model = None  # free the old cache first
            self.model = DecodeModel(self.weights, self.keep, self.max_batch, seq, self.impl)
            b = self.max_batch
            self.history = torch.zeros(b, seq, dtype=torch.long, device=self.device)
            self.history_logp = torch.zeros(b, seq, dtype=torch.float32, device=self.device)
            self.step_idx = torch.zeros((), dtype=torch.long, device=self.device)
            self.inv_temp = torch.ones((), dtype=torch.float32, device=self.device)
            self.top_p = torch.ones((), dtype=torch.float32, device=self.device)
            self.graphs: dict[tuple[int, str], torch.cuda.CUDAGraph] = {}
            self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        return self.model

    # ------------------------------------------------------------ one step

    def _sample(self, rows: int, mode: str) -> None:
        """From `model.logits`: pick the next tokens, record them, advance the positions."""
        m = self.model
        logits = m.logits[:rows]
        if mode == "greedy":
            nxt = logits.argmax(-1)
        else:
            z = logits * self.inv_temp
            if mode == "top_p":
                z = _top_p_filter(z, self.top_p)
            u = torch.rand(
                z.shape, device=z.device, generator=None if self.use_graphs else self._rng
            )
            nxt = (z - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)
        logp = torch.log_softmax(logits, -1).gather(1, nxt[:, None])
        m.tokens[:rows] = nxt
        m.pos[:rows] += 1
        col = self.step_idx.expand(rows, 1)
        self.history[:rows].scatter_(1, col, nxt[:, None])
        self.history_logp[:rows].scatter_(1, col, logp)
        self.step_idx += 1

    def _step(self, rows: int, mode: str) -> None:
        self.model.step(rows)
        self._sample(rows, mode)

    def _graph(self, rows: int, mode: str) -> torch.cuda.CUDAGraph:
        key = (rows, mode)
        if key not in self.graphs:
            m = self.model
            saved = m.pos.clone(), m.tokens.clone(), self.step_idx.clone()
            m.pos.zero_()  # the warm-up writes cache position 0 (prefill overwrites it)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up: compiles the Triton kernels
                for _ in range(2):
                    self._step(rows, mode)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                self._step(rows, mode)
            m.pos.copy_(saved[0])
            m.tokens.copy_(saved[1])
            self.step_idx.copy_(saved[2])
            self.graphs[key] = graph
        return self.graphs[key]

    # ------------------------------------------------------------ a batch of rows

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        max_new_tokens: int,
        mode: str,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        done=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` continuations of each prompt, decoded together (len(prompts) * n <= max_batch).

        Returns (tokens, logprobs), each (len(prompts) * n, steps) on the CPU, rows grouped by
        prompt. `done(tokens) -> bool` (tokens: the rows so far, on the CPU) may end decoding
        early; it is asked every `CHECK_EVERY` steps.
        """
        rows = len(prompts) * n
        if rows > self.max_batch:
            raise ValueError(f"{rows} rows > max_batch {self.max_batch}")
        longest = max(len(p) for p in prompts)
        m = self._ensure(longest + max_new_tokens)
        # Captured first: capturing runs warm-up steps, which draw random numbers, and a seeded
        # call must not draw differently the first time (on a GPU it did: samples shifted).
        graph = self._graph(rows, mode) if self.use_graphs and max_new_tokens > 1 else None
        if seed is not None:
            self._rng.manual_seed(seed)
            if self.use_graphs:
                torch.cuda.manual_seed(seed)
        self.inv_temp.fill_(1.0 / temperature if temperature > 0 else 1.0)
        self.top_p.fill_(top_p)
        self.step_idx.zero_()
        for i, ids in enumerate(prompts):
            first = i * n
            ids_t = torch.as_tensor(list(ids), dtype=torch.long, device=self.device)
            m.logits[first] = m.prefill(first, ids_t)
            for r in range(first + 1, first + n):
                m.copy_row(first, r, len(ids))
                m.logits[r] = m.logits[first]
        self._sample(rows, mode)
        steps = 1
        while steps < max_new_tokens:
            if graph is not None:
                graph.replay()
            else:
                self._step(rows, mode)
            steps += 1
            if (
                done is not None
                and steps % CHECK_EVERY == 0
                and done(self.history[:rows, :steps].cpu())
            ):
                break
        return self.history[:rows, :steps].cpu(), self.history_logp[:rows, :steps].cpu()


def _top_p_filter(z: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Logits outside the smallest set of top tokens whose probability reaches `top_p` -> -inf."""
    sorted_z, order = z.sort(-1, descending=True)
    probs = sorted_z.softmax(-1)
    drop = (probs.cumsum(-1) - probs) > top_p
    sorted_z = sorted_z.masked_fill(drop, float("-inf"))
    return torch.full_like(z, float("-inf")).scatter(-1, order, sorted_z)


# ---------------------------------------------------------------- the Generator backend


def keep_from_config(cfg: SparseConfig | None, shape) -> Keep | None:
    if cfg is None or not cfg.enabled:
        return None
    if cfg.pattern != "topk":
        raise NotImplementedError(
            f"compiled decoder: Q-Sparse pattern {cfg.pattern!r} has no kernel; use pattern=topk"
        )
    attn = cfg.keep_ratio_attn if cfg.keep_ratio_attn is not None else cfg.keep_ratio
    mlp = cfg.keep_ratio_mlp if cfg.keep_ratio_mlp is not None else cfg.keep_ratio
    return Keep.from_ratios(shape, attn, mlp, relu2=cfg.activation == "relu2")


class CompiledGenerator:
    """`Generator` over `Decoder`: tokenises, batches rows, cuts at EOS / stop strings."""

    name = "compiled"

    def __init__(
        self, cfg: GeneratorConfig, sparse: SparseConfig | None = None, impl: str | None = None
    ) -> None:
        from transformers import AutoTokenizer

        from leanstar.generation.loading import load_causal_lm
        from leanstar.sparse.decode_model import Shape
        from leanstar.sparse.qsparse import qsparse_settings

        self.cfg = cfg
        device = torch.device(
            cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        dtype = _dtype(cfg.dtype, device)
        self._tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        hf = load_causal_lm(cfg.model, dtype=str(dtype).removeprefix("torch."))
        if hf.config.model_type != "qwen2":
            raise NotImplementedError(
                f"compiled decoder: {cfg.model} is a {hf.config.model_type!r} model, not qwen2"
            )
        if sparse is None or not sparse.enabled:
            sparse = qsparse_settings(hf, where=f"{cfg.model}/config.json")
        keep = keep_from_config(sparse, Shape.from_hf(hf.config))
        weights = Weights.from_hf(hf, transposed=keep is not None, device=device, dtype=dtype)
        eos = {self._tokenizer.eos_token_id} | set(_as_list(hf.generation_config.eos_token_id))
        self._eos = sorted(e for e in eos if e is not None)
        del hf
        self.keep = keep
        self.decoder = Decoder(weights, keep, max(1, cfg.batch_size), impl or default_impl(device))
        self._seeds = torch.Generator().manual_seed(cfg.seed)

    @property
    def tokenizer(self):
        return self._tokenizer

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        from leanstar.generation.hf import build_sample

        ids = [self._tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        per_batch = max(1, self.decoder.max_batch // params.n)
        out: list[list[Sample]] = []
        for start in range(0, len(ids), per_batch):
            chunk = ids[start : start + per_batch]
            seed = (
                params.seed
                if params.seed is not None
                else int(torch.randint(0, 2**31 - 1, (1,), generator=self._seeds))
            )
            tokens, logps = self.decoder.generate(
                chunk, params.n, params.max_new_tokens, sampling_mode(params),
                params.temperature, params.top_p, seed, done=lambda t: self._all_done(t, params),
            )  # fmt: skip
            samples = [
                build_sample(self._tokenizer, self._eos, tokens[r], logps[r], params)
                for r in range(tokens.shape[0])
            ]
            out += [samples[i * params.n : (i + 1) * params.n] for i in range(len(chunk))]
        return out

    def _all_done(self, tokens: torch.Tensor, params: SamplingParams) -> bool:
        for row in tokens.tolist():
            cut = next((i for i, t in enumerate(row) if t in self._eos), None)
            if cut is not None:
                continue
            if not params.stop:
                return False
            text = self._tokenizer.decode(row, skip_special_tokens=True)
            if not any(s in text for s in params.stop):
                return False
        return True

    def close(self) -> None:
        self.decoder = None


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
