"""The transformers sampler: `model.generate` on CPU or one GPU. Used by tests and small runs.

Log-probabilities are those of the model's own distribution (log-softmax of the raw logits,
before temperature and top-p), summed over the sample's tokens up to and including the stop.
`Sample.token_ends` gives each token's end offset in `text`, so a caller can score a part of
the completion (e.g. only the tactic).
"""

from __future__ import annotations

from leanstar.config import GeneratorConfig
from leanstar.generation.base import Sample, SamplingParams


class HFGenerator:
    name = "transformers"

    def __init__(self, cfg: GeneratorConfig) -> None:
        import torch
        from transformers import AutoTokenizer

        from leanstar.generation.loading import load_causal_lm

        self.cfg = cfg
        self.device = (
            cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self._tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self.model = load_causal_lm(cfg.model, dtype=cfg.dtype).to(self.device).eval()
        self._rng = torch.Generator(device="cpu").manual_seed(cfg.seed)

    @property
    def tokenizer(self):
        return self._tokenizer

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        step = max(1, self.cfg.batch_size)
        for i in range(0, len(prompts), step):
            out.extend(self._generate_batch(prompts[i : i + step], params))
        return out

    def _generate_batch(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        import torch

        tok = self._tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        seed = (
            params.seed
            if params.seed is not None
            else int(torch.randint(0, 2**31 - 1, (1,), generator=self._rng))
        )
        torch.manual_seed(seed)
        sample = params.temperature > 0
        with torch.no_grad():
            gen = self.model.generate(
                **enc,
                do_sample=sample,
                temperature=params.temperature if sample else None,
                top_p=params.top_p if sample else None,
                top_k=0 if sample else None,
                max_new_tokens=params.max_new_tokens,
                num_return_sequences=params.n,
                stop_strings=list(params.stop) or None,
                tokenizer=tok if params.stop else None,
                pad_token_id=tok.pad_token_id,
                return_dict_in_generate=True,
                output_logits=True,
            )
        new = gen.sequences[:, enc.input_ids.shape[1] :]
        logits = torch.stack(gen.logits, dim=1).float()  # (batch*n, new, vocab)
        logps = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        samples = [self._sample(new[j], logps[j], params) for j in range(new.shape[0])]
        return [samples[k * params.n : (k + 1) * params.n] for k in range(len(prompts))]

    def _sample(self, ids, logps, params: SamplingParams) -> Sample:
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {
            self._tokenizer.eos_token_id
        }
        return build_sample(self._tokenizer, eos, ids, logps, params)

    def close(self) -> None:
        self.model = None


def build_sample(tok, eos, ids, logps, params: SamplingParams) -> Sample:
    """One `Sample` from a row of new token ids and their log-probs (1-D tensors): cut at
    the first end-of-sequence id in `eos` or the first stop string. Shared by the samplers."""
    ids, logps = ids.tolist(), logps.tolist()
    cut = next((i for i, t in enumerate(ids) if t in eos), None)
    kept = ids if cut is None else ids[:cut]
    text = tok.decode(kept, skip_special_tokens=True)
    ends = _token_ends(tok, kept)
    stop_at = min((text.find(s) for s in params.stop if s in text), default=-1)
    if stop_at >= 0:
        # Count the tokens up to the one that completes the stop string, as vLLM does.
        stop_end = stop_at + len(next(s for s in params.stop if text.find(s) == stop_at))
        counted = next(i + 1 for i, e in enumerate(ends) if e >= stop_end)
        text, finish = text[:stop_at], "stop"
    elif cut is not None:
        counted, finish = cut + 1, "stop"  # the end-of-sequence token is part of the sample
    else:
        counted, finish = len(kept), "length"
    token_ends = (min(e, len(text)) for e in ends[:counted])
    return Sample.of_tokens(text, finish, tuple(logps[:counted]), token_ends)


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _token_ends(tok, ids: list[int]) -> list[int]:
    """End offset of each token in the decoded text (prefix decoding keeps multi-byte
    characters split across tokens intact)."""
    return [len(tok.decode(ids[: i + 1], skip_special_tokens=True)) for i in range(len(ids))]
