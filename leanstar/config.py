"""Stage configs: dataclass defaults, then a YAML file, then command-line flags.

Every stage has one dataclass config (in its own package, e.g. `leanstar.search.config`);
this module holds the loader they share and the building blocks several stages nest
(`GeneratorConfig`, `LeanConfig`, `SparseConfig`). Nested dataclasses map to nested YAML
mappings and to dotted flags (`--generator.temperature 0.7`).

Every field carries a help string (`metadata={"help": ...}`); unknown keys and values of the
wrong type are `ConfigError`s that name the key, the file and the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

C = TypeVar("C")

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and where it came from."""


def option(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with a help string (and a default factory for mutable defaults)."""
    metadata = {"help": help, **metadata}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def nested(cls: type, help: str) -> Any:  # noqa: A002
    """A field holding a nested config section."""
    return field(default_factory=cls, metadata={"help": help})


# ---------------------------------------------------------------- shared sections


@dataclass
class GeneratorConfig:
    """How prover (or teacher) samples are drawn."""

    backend: Literal["transformers", "vllm", "openai", "compiled"] = option(
        "transformers",
        "sampler backend: transformers (CPU / small GPU), vllm (production), openai "
        "(an OpenAI-compatible completions server such as `vllm serve`), compiled (the "
        "static-cache decode loop for Q-Sparse checkpoints, one GPU)",
    )
    model: str = option("runs/tiny-model", "checkpoint directory or Hugging Face model id")
    temperature: float = option(0.7, "sampling temperature")
    top_p: float = option(1.0, "nucleus sampling threshold")
    max_new_tokens: int = option(256, "new tokens per sample (thought + tactic)")
    stop: list[str] = option([], "extra stop strings")
    seed: int = option(0, "sampling seed")
    batch_size: int = option(32, "prompts per sampler call (transformers backend)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "weights dtype")
    device: str = option(
        "auto", "torch device for the transformers backend (auto: cuda if present)"
    )
    base_url: str = option("", "server URL for the openai backend, e.g. http://localhost:8000/v1")
    api_key_env: str = option(
        "OPENAI_API_KEY", "environment variable holding the API key (the key is never written)"
    )
    gpu_memory_utilization: float = option(0.85, "vllm: fraction of GPU memory to use")
    tensor_parallel_size: int = option(1, "vllm: GPUs per engine")


@dataclass
class LeanConfig:
    """Which environment judges tactics, and how its processes are bounded."""

    backend: Literal["auto", "repl", "dojo", "replay"] = option(
        "auto",
        "proof environment: repl (Lean REPL, default when a toolchain is set up), dojo "
        "(LeanDojo), replay (recorded LeanDojo states, not checked by Lean), auto (repl if "
        "`leanstar lean doctor` finds one, else replay with a one-line notice)",
    )
    project_dir: str = option(
        "",
        "Lake project with Mathlib and the REPL built ('' = this checkout's root if it holds "
        "lakefile.lean, else the current directory)",
    )
    repl_path: str = option(
        "", "path to the REPL binary ('' = .lake/packages/REPL/.lake/build/bin/repl)"
    )
    repl_command: str = option(
        "",
        "command line that starts one REPL process, overriding project_dir/repl_path "
        "('' = `lake env <repl_path>` in project_dir); e.g. a REPL built elsewhere",
    )
    header: str = option(
        "import Mathlib\n\nset_option maxHeartbeats 400000\n\n"
        "open BigOperators Real Nat Topology Rat\n",
        "default header (imports, options, opens) for theorems that bring none (its imports "
        "match miniF2F's, so both share one import per Lean process)",
    )
    num_workers: int = option(0, "Lean processes in the pool (0 = CPU cores less one)")
    tactic_timeout_s: float = option(
        60.0, "wall-clock limit per tactic; the process is killed past it"
    )
    start_timeout_s: float = option(
        600.0, "wall-clock limit to start a process and import the header"
    )
    verify_timeout_s: float = option(
        300.0, "wall-clock limit for the whole-proof check of one proof"
    )
    memory_limit_mb: int = option(
        16384,
        "address-space cap per Lean process, mmapped Mathlib .olean files included (0 = none)",
    )
    max_commands_per_worker: int = option(
        1000, "recycle a worker after this many commands (at least 5x its rebuild replays)"
    )
    max_worker_rss_mb: int = option(12000, "recycle a worker whose resident memory grows past this")
    allow_native_decide: bool = option(
        False, "accept proofs that use native_decide (they are recorded as such)"
    )
    replay_data: str = option(
        "", "LeanDojo JSON for the replay backend ('' = the bundled Benchmark 4 sample)"
    )
    dojo_repo: str = option(
        "",
        "dojo backend: URL or local path of the traced repository ('' = the url in each "
        "theorem's LeanDojo source)",
    )
    dojo_commit: str = option("", "dojo backend: commit of the traced repository")


@dataclass
class SparseConfig:
    """Q-Sparse top-K activation sparsity (Wang et al. 2024); see `leanstar.sparse.qsparse`."""

    enabled: bool = option(False, "run the model under Q-Sparse")
    keep_ratio: float = option(0.5, "fraction of input features each projection keeps (per token)")
    keep_ratio_attn: float | None = option(None, "override for q/k/v and o_proj inputs")
    keep_ratio_mlp: float | None = option(None, "override for gate/up and down_proj inputs")
    pattern: Literal["topk", "nm"] = option(
        "topk", "topk: exact per-token top-K; nm: the N largest of each M features (keep N/M)"
    )
    nm_n: int = option(16, "N for the N:M pattern")
    nm_m: int = option(32, "M for the N:M pattern")
    activation: Literal["silu", "relu2"] = option(
        "silu", "MLP activation: silu (fine-tuning a pretrained model), relu2 (from scratch)"
    )
    warmup_steps: int = option(
        0,
        "training only: lower the keep-ratios linearly from 1.0 to their targets over this "
        "many optimizer steps (0 = the targets from the first step)",
    )


# ---------------------------------------------------------------- loading


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None
) -> C:
    """Build `cls` from its defaults, then the YAML file at `path`, then `key=value` overrides."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        data, lines = _read_yaml(Path(path))
    cfg = _build(cls, data, prefix="", where=str(path) if path else "defaults", lines=lines)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        _set_dotted(cfg, key.strip(), raw, where="command line")
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config (nested sections as dicts), ready for YAML or JSON."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def iter_fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every leaf field of a config class as (dotted name, field, resolved type)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if _is_section(tp):
            yield from iter_fields(tp, prefix=f"{name}.")
        else:
            yield name, f, tp


def type_name(tp: Any) -> str:
    """A short human name for a field type, for `--help` and errors."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(tp)) + "}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return type_name(args[0]) + " or none"
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    lines: dict[str, int] = {}
    _collect_lines(node, "", lines)
    return data, lines


def _collect_lines(node: Any, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            out[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, f"{key}.", out)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _build(cls: type[C], data: dict[str, Any], prefix: str, where: str, lines: dict[str, int]) -> C:
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        loc = _loc(where, lines, dotted)
        if key not in names:
            guess = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix + guess[0]!r}?)" if guess else ""
            raise ConfigError(f"{loc}: unknown key {dotted!r} for {cls.__name__}{hint}")
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{loc}: {dotted!r} must be a mapping (a section of {tp.__name__})"
                )
            kwargs[key] = _build(tp, value, f"{dotted}.", where, lines)
        else:
            kwargs[key] = coerce(value, tp, dotted, loc)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {cls.__name__}: {e}") from None


def _loc(where: str, lines: dict[str, int], dotted: str) -> str:
    return f"{where}:{lines[dotted]}" if dotted in lines else where


def _set_dotted(cfg: Any, key: str, raw: str, where: str) -> None:
    *path, last = key.split(".")
    target = cfg
    for i, part in enumerate(path):
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise ConfigError(f"{where}: unknown section {'.'.join(path[: i + 1])!r}")
        target = getattr(target, part)
    hints = typing.get_type_hints(type(target))
    if last not in hints:
        fields = [f.name for f in dataclasses.fields(target)]
        guess = difflib.get_close_matches(last, fields, n=1)
        hint = f" (did you mean {'.'.join([*path, guess[0]])!r}?)" if guess else ""
        raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    tp = hints[last]
    if _is_section(tp):
        raise ConfigError(f"{where}: {key!r} is a section; set its keys as {key}.NAME")
    setattr(target, last, coerce(parse_flag_value(raw, tp), tp, key, where))


def parse_flag_value(raw: str, tp: Any) -> Any:
    """A command-line string as the value YAML would give, except that str fields stay verbatim."""
    if tp is str or (
        typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp))
    ):
        return raw
    if raw.strip().lower() in ("none", "null", "~", ""):
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def coerce(value: Any, tp: Any, key: str, loc: str) -> Any:
    """Check `value` against the field type `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, loc)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{loc}: {key!r}: expected {type_name(tp)}, got {value!r}"
        )
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{loc}: {key!r} must be one of {type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # a flag such as `--keep_ratios 1.0,0.5`
            value = [parse_flag_value(v.strip(), item_tp) for v in value.split(",") if v.strip()]
        elif not isinstance(value, list) and value is not None:
            value = [value]  # one item given where a list is expected (`--ks 8`)
        if not isinstance(value, list):
            raise ConfigError(f"{loc}: {key!r} must be a list, got {value!r}")
        return [coerce(v, item_tp, f"{key}[{i}]", loc) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{loc}: {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(
                f"{loc}: {key!r} must be one of {[m.value for m in tp]}, got {value!r}"
            ) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{loc}: {key!r} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-5` (no dot) as a string
        raise ConfigError(f"{loc}: {key!r} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{loc}: {key!r} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{loc}: {key!r} must be a string, got {value!r}")
    raise ConfigError(f"{loc}: {key!r}: unsupported field type {tp!r}")
