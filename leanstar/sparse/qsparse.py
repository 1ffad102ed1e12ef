"""Q-Sparse model patching: every projection of a Qwen2 / Llama-style model sees only top-K inputs.

`apply_qsparse(model, cfg)` patches a Hugging Face causal LM in place. In each decoder layer:

    attention input  h  -> topk(h)  feeds q_proj, k_proj, v_proj   (one shared mask)
    o_proj input     a  -> topk(a)
    MLP input        h2 -> topk(h2) feeds gate_proj, up_proj       (one shared mask)
    down_proj input  act(gate) * up -> topk(.)                     (top-K after the activation)

`lm_head` and the embedding stay dense. Attention and MLP sites take their own keep-ratio
(`keep_ratio_attn`, `keep_ratio_mlp`, both defaulting to `keep_ratio`); K per token is
`keep_count(dim, ratio)`. The backward pass is the straight-through estimator, so the patched
model trains as it is (`leanstar.sparse.topk`).

The settings are written into `model.config.qsparse`, so `save_pretrained` stores them in the
checkpoint's config.json. **`load_model(path)` is the call that restores them**: a plain
`AutoModelForCausalLM.from_pretrained` of a Q-Sparse checkpoint gives the dense model (the
weights are ordinary; only the forward differs). Every leanstar stage loads models through
`load_model`.

The patch is a forward pre-hook on each site (no weights are renamed or copied), so a patched
model keeps its state-dict keys, its `generate`, gradient checkpointing and PEFT wrapping. Apply
it after wrapping a model with PEFT, so the LoRA branches see the sparse inputs too.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanstar.config import ConfigError, SparseConfig, coerce, to_dict
from leanstar.sparse.topk import Backend, keep_count, nm_ste, topk_ste

__all__ = [
    "CONFIG_KEY",
    "QSparseBlock",
    "ReLUSquared",
    "Sparsifier",
    "apply_qsparse",
    "check_sparse_config",
    "find_blocks",
    "load_model",
    "qsparse_settings",
    "remove_qsparse",
]

CONFIG_KEY = "qsparse"  # the field of the model config (config.json) that holds the settings
_MARK = "_is_qsparse_hook"
_DENSE_ACT = "_qsparse_dense_act"


@dataclass(frozen=True)
class Sparsifier:
    """What one site does to its input: exact top-K per token, or N of each M features."""

    keep_ratio: float
    pattern: str = "topk"
    nm_n: int = 16
    nm_m: int = 32
    backend: Backend = "auto"  # the top-K implementation (all give the same result)

    def k(self, dim: int) -> int:
        """Entries kept per token for a `dim`-wide input (for N:M: `dim * N / M`)."""
        if self.pattern == "nm":
            return dim // self.nm_m * self.nm_n
        return keep_count(dim, self.keep_ratio)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.pattern == "nm":
            return nm_ste(x, self.nm_n, self.nm_m)
        return topk_ste(x, self.k(x.shape[-1]), self.backend)


class ReLUSquared(nn.Module):
    """`relu(x) ** 2`, the Q-Sparse activation for training from scratch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


@dataclass(frozen=True)
class QSparseBlock:
    """One decoder layer's attention and MLP modules (the four sparsity sites hang off them)."""

    index: int
    attn: nn.Module
    mlp: nn.Module

    def sites(self) -> dict[str, nn.Module]:
        """Site name -> the module whose first input is sparsified."""
        return {
            "qkv": self.attn,
            "o_proj": self.attn.o_proj,
            "gate_up": self.mlp,
            "down_proj": self.mlp.down_proj,
        }


# ---------------------------------------------------------------- settings


def check_sparse_config(cfg: SparseConfig) -> None:
    """Raise `ConfigError` for settings that cannot be applied."""
    for name in ("keep_ratio", "keep_ratio_attn", "keep_ratio_mlp"):
        value = getattr(cfg, name)
        if value is not None and not 0.0 < value <= 1.0:
            raise ConfigError(f"qsparse.{name} must be in (0, 1], got {value}")
    if cfg.pattern not in ("topk", "nm"):
        raise ConfigError(f"qsparse.pattern must be topk or nm, got {cfg.pattern!r}")
    if cfg.pattern == "nm" and not 0 < cfg.nm_n <= cfg.nm_m:
        raise ConfigError(f"qsparse N:M needs 0 < nm_n <= nm_m, got {cfg.nm_n}:{cfg.nm_m}")
    if cfg.activation not in ("silu", "relu2"):
        raise ConfigError(f"qsparse.activation must be silu or relu2, got {cfg.activation!r}")


def sparsifiers(cfg: SparseConfig, backend: Backend = "auto") -> dict[str, Sparsifier]:
    """Site name -> its Sparsifier, with the per-type keep-ratio overrides resolved."""
    attn = cfg.keep_ratio if cfg.keep_ratio_attn is None else cfg.keep_ratio_attn
    mlp = cfg.keep_ratio if cfg.keep_ratio_mlp is None else cfg.keep_ratio_mlp
    if cfg.pattern == "nm":
        attn = mlp = cfg.nm_n / cfg.nm_m
    make = dict(pattern=cfg.pattern, nm_n=cfg.nm_n, nm_m=cfg.nm_m, backend=backend)
    return {
        "qkv": Sparsifier(attn, **make),
        "o_proj": Sparsifier(attn, **make),
        "gate_up": Sparsifier(mlp, **make),
        "down_proj": Sparsifier(mlp, **make),
    }


def qsparse_settings(model_or_config: Any, where: str = "model config") -> SparseConfig | None:
    """The Q-Sparse settings stored in a model's config, or None for a dense model."""
    config = getattr(model_or_config, "config", model_or_config)
    raw = getattr(config, CONFIG_KEY, None)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {CONFIG_KEY!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(SparseConfig)
    names = {f.name for f in dataclasses.fields(SparseConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown {CONFIG_KEY} keys {unknown} (known: {sorted(names)})")
    values = {k: coerce(v, hints[k], f"{CONFIG_KEY}.{k}", where) for k, v in raw.items()}
    cfg = SparseConfig(**values)
    check_sparse_config(cfg)
    return cfg if cfg.enabled else None


# ---------------------------------------------------------------- patching


def find_blocks(model: nn.Module) -> list[QSparseBlock]:
    """The decoder layers of a Qwen2 / Llama-style model, in order."""
    layers = [m for m in model.modules() if _has(m, "self_attn", "mlp")]
    good = [
        m
        for m in layers
        if _has(m.self_attn, "q_proj", "k_proj", "v_proj", "o_proj")
        and _has(m.mlp, "gate_proj", "up_proj", "down_proj", "act_fn")
    ]
    if not good or len(good) != len(layers):
        raise ValueError(
            "Q-Sparse needs a Qwen2 / Llama-style model: decoder layers with self_attn (q_proj, "
            "k_proj, v_proj, o_proj) and mlp (gate_proj, up_proj, down_proj, act_fn); "
            f"{type(model).__name__} has {len(layers)} layers, {len(good)} of that shape"
        )
    return [QSparseBlock(i, m.self_attn, m.mlp) for i, m in enumerate(good)]


def apply_qsparse(
    model: nn.Module, cfg: SparseConfig, *, topk_backend: Backend = "auto"
) -> nn.Module:
    """Run `model` under Q-Sparse with the settings `cfg`, in place; returns `model`.

    Calling it again replaces the previous settings (e.g. a new keep-ratio). With
    `cfg.enabled == False` it restores the dense model, like `remove_qsparse`.
    `topk_backend` picks the top-K implementation (`leanstar.sparse.topk.topk_ste`); every
    choice computes the same result, so it is not saved with the settings.
    """
    if not cfg.enabled:
        return remove_qsparse(model)
    check_sparse_config(cfg)
    blocks = find_blocks(model)
    _check_nm_dims(blocks, cfg)
    remove_qsparse(model)
    sparse = sparsifiers(cfg, topk_backend)
    for block in blocks:
        for site, module in block.sites().items():
            _attach(module, sparse[site])
        if cfg.activation == "relu2":
            block.mlp.__dict__[_DENSE_ACT] = block.mlp.act_fn
            block.mlp.act_fn = ReLUSquared()
    if hasattr(model, "config"):
        setattr(model.config, CONFIG_KEY, to_dict(cfg))
    return model


def remove_qsparse(model: nn.Module) -> nn.Module:
    """Undo `apply_qsparse`: dense forward, original activation, no settings in the config."""
    for module in model.modules():
        # Found by a mark on the hook rather than through a handle: a deep copy of a patched
        # model copies the hooks, but its handles would still point at the original's.
        for hook_id, hook in list(module._forward_pre_hooks.items()):
            if getattr(hook, _MARK, False):
                del module._forward_pre_hooks[hook_id]
                module._forward_pre_hooks_with_kwargs.pop(hook_id, None)
        module.__dict__.pop("qsparse", None)
        if _DENSE_ACT in module.__dict__:
            module.act_fn = module.__dict__.pop(_DENSE_ACT)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, CONFIG_KEY):
        delattr(config, CONFIG_KEY)
    return model


def _attach(module: nn.Module, sparsify: Sparsifier) -> None:
    def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (sparsify(args[0]), *args[1:]), kwargs
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": sparsify(kwargs["hidden_states"])}
        raise TypeError(f"Q-Sparse: cannot find the input of {type(mod).__name__}")

    setattr(pre_hook, _MARK, True)
    module.__dict__["qsparse"] = sparsify
    module.register_forward_pre_hook(pre_hook, with_kwargs=True)


def _check_nm_dims(blocks: list[QSparseBlock], cfg: SparseConfig) -> None:
    if cfg.pattern != "nm":
        return
    block = blocks[0]
    dims = {
        "hidden": block.attn.q_proj.in_features,
        "o_proj input": block.attn.o_proj.in_features,
        "intermediate": block.mlp.down_proj.in_features,
    }
    bad = {name: d for name, d in dims.items() if d % cfg.nm_m}
    if bad:
        raise ConfigError(f"qsparse N:M with nm_m={cfg.nm_m} needs dims divisible by it: {bad}")


def _has(module: nn.Module, *names: str) -> bool:
    return all(hasattr(module, n) for n in names)


# ---------------------------------------------------------------- loading


def load_model(
    path: str | Path,
    sparse: SparseConfig | None = None,
    *,
    dense: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    **from_pretrained: Any,
) -> nn.Module:
    """Load a causal LM checkpoint with its Q-Sparse settings restored.

    - a checkpoint saved from a Q-Sparse model comes back sparse, with its saved settings;
    - `sparse` (when `sparse.enabled`) overrides them, or makes a dense checkpoint sparse;
    - `dense=True` gives the dense model whatever the checkpoint says.

    `dtype` and any other keyword go to `AutoModelForCausalLM.from_pretrained`.
    """
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **from_pretrained)
    if device is not None:
        model.to(device)
    if dense:
        return remove_qsparse(model)
    settings = sparse if sparse is not None and sparse.enabled else None
    settings = settings or qsparse_settings(model, where=f"{path}/config.json")
    return apply_qsparse(model, settings) if settings else model
