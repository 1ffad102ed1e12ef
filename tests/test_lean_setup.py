"""The Lake project's pins, `leanstar lean doctor` / `setup`, and choosing the environment."""

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_repl_argv

from leanstar.config import LeanConfig
from leanstar.lean import setup
from leanstar.lean.config import LeanDoctorConfig, LeanSetupConfig
from leanstar.lean.factory import make_env
from leanstar.lean.pool import ReplPool
from leanstar.lean.replay import ReplayEnv
from leanstar.records import REPLAY_LABEL

ROOT = Path(__file__).resolve().parents[1]


def test_the_pins_agree():
    assert (ROOT / "lean-toolchain").read_text().strip() == setup.PINNED_TOOLCHAIN
    lakefile = (ROOT / "lakefile.lean").read_text()
    tags = dict(re.findall(r'require (\w+) from git\s+"[^"]+" @ "([^"]+)"', lakefile))
    assert tags == {"mathlib": setup.PINNED_MATHLIB, "REPL": setup.PINNED_REPL}
    assert setup.PINNED_LEAN == setup.PINNED_MATHLIB == setup.PINNED_REPL == "v4.24.0"
    assert (ROOT / "lean_env" / "LeanstarEnv.lean").is_file()


def test_bundled_minif2f_is_written_for_the_pinned_version():
    from leanstar.data import load_theorems

    theorems = load_theorems("bundled:minif2f-lean4-v4.24.jsonl")
    assert len(theorems) == 488 and all(t.header.startswith("import Mathlib") for t in theorems)


@pytest.fixture
def no_lean(monkeypatch, tmp_path):
    """A machine with no elan and no lake anywhere (whatever this one has)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("ELAN_HOME", str(tmp_path / "no-elan"))
    return tmp_path


def test_doctor_says_plainly_that_no_toolchain_is_installed(no_lean, capsys):
    code = setup.doctor_main(LeanDoctorConfig())
    out = capsys.readouterr().out
    assert code == 1
    assert "No Lean toolchain is installed on this machine" in out
    assert "replay (not checked by Lean)" in out and "leanstar lean setup" in out
    assert "[--] elan" in out and "[ok] Lake project" in out and "v4.24.0" in out


def test_doctor_runs_from_the_command_line():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "leanstar", "lean", "doctor"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode in (0, 1) and "leanstar lean doctor" in out.stdout
    if out.returncode == 1:
        assert "replay (not checked by Lean)" in out.stdout


def test_setup_fails_fast_without_network(no_lean, monkeypatch, capsys):
    monkeypatch.setattr(setup, "network_reachable", lambda *a, **k: "github.com:443 unreachable")

    def no_subprocess(*a, **k):
        raise AssertionError("setup must not run anything when it cannot succeed")

    monkeypatch.setattr(subprocess, "call", no_subprocess)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert setup.setup_main(LeanSetupConfig()) == 1
    err = capsys.readouterr().err
    assert "no network" in err and "elan" in err and "github.com:443 unreachable" in err


def test_setup_without_a_project(tmp_path, capsys):
    cfg = LeanSetupConfig(lean=LeanConfig(project_dir=str(tmp_path)))
    assert setup.setup_main(cfg) == 1
    assert "no Lake project" in capsys.readouterr().err


def test_network_probe_reports_why():
    problem = setup.network_reachable(("host.invalid",), timeout=2)
    assert problem is not None and "host.invalid" in problem


def fake_install(tmp_path) -> LeanConfig:
    """A project that looks set up: lakefile, toolchain pin, Mathlib olean, REPL and lake."""
    project = tmp_path / "project"
    (project / setup.MATHLIB_OLEAN).parent.mkdir(parents=True)
    (project / setup.MATHLIB_OLEAN).write_bytes(b"")
    (project / setup.REPL_BINARY).parent.mkdir(parents=True)
    (project / "lakefile.lean").write_text("-- test\n")
    (project / "lean-toolchain").write_text(setup.PINNED_TOOLCHAIN + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for exe in (project / setup.REPL_BINARY, bin_dir / "lake"):
        exe.write_text("#!/bin/sh\nexit 1\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return LeanConfig(project_dir=str(project)), bin_dir


def test_inspect_finds_a_complete_setup(tmp_path, monkeypatch):
    cfg, bin_dir = fake_install(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("ELAN_HOME", str(tmp_path / "no-elan"))
    install = setup.inspect(cfg)
    assert install.usable and install.toolchain_pin == setup.PINNED_TOOLCHAIN
    pool = make_env(LeanConfig(**{**cfg.__dict__, "backend": "repl", "num_workers": 2}))
    assert isinstance(pool, ReplPool)
    assert pool.launch.argv == (str(bin_dir / "lake"), "env", str(install.repl_binary))
    assert pool.launch.cwd == str(install.project_dir) and pool.label == "Lean REPL (Lean v4.24.0)"


# ---------------------------------------------------------------- choosing the environment


def test_auto_falls_back_to_replay_with_one_line(no_lean):
    lines = []
    env = make_env(LeanConfig(backend="auto"), notice=lines.append)
    assert isinstance(env, ReplayEnv) and env.label == REPLAY_LABEL
    assert len(lines) == 1 and "no Lean toolchain found" in lines[0]
    assert REPLAY_LABEL in lines[0]


def test_auto_uses_the_repl_when_a_command_is_given(no_lean):
    cfg = LeanConfig(backend="auto", repl_command=" ".join(fake_repl_argv()), num_workers=1)
    env = make_env(cfg, notice=lambda line: pytest.fail(line))
    assert isinstance(env, ReplPool) and env.label.startswith("Lean REPL (")
    asyncio.run(env.close())


def test_repl_without_a_setup_says_what_to_do(no_lean):
    with pytest.raises(setup.LeanSetupError, match="leanstar lean setup"):
        make_env(LeanConfig(backend="repl"))


def test_replay_and_dojo_backends(tmp_path):
    env = make_env(LeanConfig(backend="replay"))
    assert isinstance(env, ReplayEnv) and env.knows("ENNReal.le_rpow_one_div_iff")
    from leanstar.lean.dojo import DojoEnv

    dojo = make_env(LeanConfig(backend="dojo", dojo_repo="r", dojo_commit="c", num_workers=3))
    assert isinstance(dojo, DojoEnv) and dojo.repo == "r" and dojo.commit == "c"
