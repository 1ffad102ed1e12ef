from dataclasses import dataclass
from pathlib import Path

import pytest

from leanstar import cli
from leanstar.config import ConfigError, GeneratorConfig, load_config, nested, option

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    temperature: float = option(0.7, "t")
    stop: list[str] = option([], "s")


@dataclass
class Outer:
    name: str = option("x", "n")
    steps: int = option(5, "k")
    flag: bool = option(False, "f")
    maybe: float | None = option(None, "m")
    inner: Inner = nested(Inner, "i")


def test_defaults_then_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 9\ninner:\n  temperature: 1\n  stop: [a, b]\n")
    cfg = load_config(
        Outer, path, ["inner.temperature=0.25", "flag=true", "maybe=none", "name=123"]
    )
    assert cfg.steps == 9
    assert cfg.inner.temperature == 0.25 and isinstance(cfg.inner.temperature, float)
    assert cfg.inner.stop == ["a", "b"]
    assert cfg.flag is True and cfg.maybe is None
    assert cfg.name == "123"  # str fields keep flag text verbatim


def test_mutable_defaults_are_not_shared():
    a, b = Outer(), Outer()
    a.inner.stop.append("x")
    assert b.inner.stop == []


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 3\ninner:\n  temprature: 0.5\n")
    with pytest.raises(
        ConfigError,
        match=r"bad\.yaml:3: unknown key 'inner\.temprature'.*did you mean 'inner\.temperature'",
    ):
        load_config(Outer, path)


def test_wrong_types_are_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsteps: 2.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:2: 'steps' must be an integer, got 2\.5"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="'flag' must be true or false"):
        load_config(Outer, None, ["flag=maybe"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Outer, None, []) if False else load_config(
            Outer, _write(tmp_path, "inner: 3\n")
        )
    with pytest.raises(ConfigError, match="unknown key 'inner.nope'"):
        load_config(Outer, None, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(GeneratorConfig, None, ["backend=llama"])


def test_non_mapping_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, _write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, _write(tmp_path, "a: [1,\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def _write(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def _commands():
    for name, entry in cli.COMMANDS.items():
        if isinstance(entry, cli.Command):
            yield name, entry
        else:
            for sub, cmd in entry.items():
                yield f"{name}-{sub}", cmd


def test_every_shipped_config_loads():
    """Each YAML in configs/ is named after its command (`sft-paper.yaml` is for `leanstar sft`)."""
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert files, "configs/ holds no YAML files"
    commands = dict(_commands())
    for path in files:
        matches = [
            name for name in commands if path.stem == name or path.stem.startswith(name + "-")
        ]
        assert matches, f"{path.name}: name does not start with a command ({sorted(commands)})"
        cmd = commands[max(matches, key=len)]
        try:
            config_cls = cli._load(cmd.config)
        except cli.NotBuilt:
            pytest.fail(f"{path.name}: its command's config class is not built")
        load_config(config_cls, path)


@dataclass
class Lists:
    xs: list[int] = option([1], "x")
    ws: list[float] = option([], "w")
    names: list[str] = option([], "n")


def test_list_flags():
    cfg = load_config(Lists, None, ["xs=1,2", "ws=0.5", "names=a, b"])
    assert cfg.xs == [1, 2] and cfg.ws == [0.5] and cfg.names == ["a", "b"]
    assert load_config(Lists, None, ["xs=[3, 4]"]).xs == [3, 4]
    with pytest.raises(ConfigError, match=r"'xs\[1\]' must be an integer, got 'b'"):
        load_config(Lists, None, ["xs=1,b"])
