"""`leanstar lean doctor` (what is installed) and `leanstar lean setup` (install it).

The Lake project at the repository root pins one mutually compatible set (PINNED_* below, the
same as `lean-toolchain` and `lakefile.lean`): Lean, Mathlib and the REPL at v4.24.0, the
version the bundled miniF2F statements (yangky11/miniF2F-lean4) were written for.

`inspect` only looks at files and PATH (fast: the `auto` backend calls it on every run);
`doctor` adds versions read from the tools. `setup` installs elan if missing, the pinned
toolchain, Mathlib's build cache and the REPL, then proves a one-line theorem through the REPL
backend. Everything it needs comes from the network (GitHub and Mathlib's cache), so it checks
first and stops at once, saying why, where there is none.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from leanstar.config import LeanConfig

PINNED_LEAN = "v4.24.0"
PINNED_TOOLCHAIN = f"leanprover/lean4:{PINNED_LEAN}"
PINNED_MATHLIB = "v4.24.0"
PINNED_REPL = "v4.24.0"
REPL_BINARY = Path(".lake/packages/REPL/.lake/build/bin/repl")
MATHLIB_OLEAN = Path(".lake/packages/mathlib/.lake/build/lib/lean/Mathlib.olean")
ELAN_INSTALLER = "https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh"
NETWORK_HOSTS = ("github.com", "raw.githubusercontent.com")


class LeanSetupError(RuntimeError):
    """No usable Lean setup (the message says what is missing and what to run)."""


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class LeanInstall:
    """What `inspect` found. `usable`: the REPL backend can run."""

    project_dir: Path
    elan: str | None
    lake: str | None
    repl_binary: Path | None
    mathlib_built: bool
    toolchain_pin: str | None
    checks: tuple[Check, ...]

    @property
    def usable(self) -> bool:
        return self.lake is not None and self.repl_binary is not None and self.mathlib_built

    def check(self, what: str) -> Check:
        return next(c for c in self.checks if c.what == what)

    def summary(self) -> str:
        if self.usable:
            return f"Lean REPL ready ({self.toolchain_pin or 'unknown toolchain'})"
        missing = [c.what for c in self.checks if not c.ok]
        return "no usable Lean setup: missing " + ", ".join(missing)


def repo_root() -> Path:
    """The directory holding the Lake project: this checkout's root if it has a lakefile."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "lakefile.lean").is_file() else Path.cwd()


def project_dir(cfg: LeanConfig) -> Path:
    return Path(cfg.project_dir).expanduser().resolve() if cfg.project_dir else repo_root()


def _elan_home() -> Path:
    return Path(os.environ.get("ELAN_HOME", Path.home() / ".elan"))


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = _elan_home() / "bin" / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def inspect(cfg: LeanConfig) -> LeanInstall:
    """What is present, from files and PATH only (no subprocess, no network)."""
    root = project_dir(cfg)
    pin_file = root / "lean-toolchain"
    pin = pin_file.read_text().strip() if pin_file.is_file() else None
    elan, lake = find_tool("elan"), find_tool("lake")
    repl = Path(cfg.repl_path).expanduser() if cfg.repl_path else root / REPL_BINARY
    repl_ok = repl.is_file() and os.access(repl, os.X_OK)
    mathlib = (root / MATHLIB_OLEAN).is_file()
    toolchain_dir = _elan_home() / "toolchains" / (pin or "").replace("/", "--").replace(":", "---")
    checks = (
        Check("Lake project", (root / "lakefile.lean").is_file(), str(root)),
        Check("toolchain pin", pin is not None, pin or f"no lean-toolchain in {root}"),
        Check("elan", elan is not None, elan or "not found on PATH or in ~/.elan/bin"),
        Check("lake", lake is not None, lake or "not found on PATH or in ~/.elan/bin"),
        Check(
            "Lean toolchain",
            toolchain_dir.is_dir() or (lake is not None and elan is None),
            str(toolchain_dir) if toolchain_dir.is_dir() else f"{pin} is not installed",
        ),
        Check(
            "Mathlib build",
            mathlib,
            str(root / MATHLIB_OLEAN) if mathlib else "not built or fetched",
        ),
        Check("REPL binary", repl_ok, str(repl) if repl_ok else f"not built ({repl})"),
    )
    return LeanInstall(root, elan, lake, repl if repl_ok else None, mathlib, pin, checks)


def _version(argv: list[str], cwd: Path) -> str:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def doctor_main(cfg) -> int:
    install = inspect(cfg.lean)
    print(f"leanstar lean doctor — project {install.project_dir}")
    print(f"  pinned: Lean {PINNED_LEAN}, Mathlib {PINNED_MATHLIB}, REPL {PINNED_REPL}")
    for check in install.checks:
        print(f"  [{'ok' if check.ok else '--'}] {check.what}: {check.detail}")
    if install.elan:
        print(f"  elan version: {_version([install.elan, '--version'], install.project_dir)}")
    if install.lake and install.check("Lean toolchain").ok:
        print(f"  lake version: {_version([install.lake, '--version'], install.project_dir)}")
    if install.usable:
        print(f"Ready: the REPL backend will be used ({install.summary()}).")
        return 0
    if install.elan is None and install.lake is None:
        print("No Lean toolchain is installed on this machine (neither elan nor lake was found).")
    else:
        print(f"Lean is only partly set up: {install.summary()}.")
    print(
        "Proofs will be checked by the replay environment only, labelled "
        '"replay (not checked by Lean)". Run `leanstar lean setup` on a machine with network '
        "access to install Lean, Mathlib and the REPL."
    )
    return 1


# ---------------------------------------------------------------- setup


def network_reachable(hosts: tuple[str, ...] = NETWORK_HOSTS, timeout: float = 4.0) -> str | None:
    """None if every host answers on port 443, else why not."""
    for host in hosts:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError as e:
            return f"{host}:443 unreachable ({e})"
    return None


def _run(argv: list[str], cwd: Path, step: str) -> None:
    print(f"$ {' '.join(argv)}", flush=True)
    code = subprocess.call(argv, cwd=cwd)
    if code != 0:
        raise LeanSetupError(f"{step} failed (exit status {code}): {' '.join(argv)}")


def setup_main(cfg) -> int:
    try:
        _setup(cfg)
    except LeanSetupError as e:
        print(f"leanstar lean setup: {e}", file=sys.stderr)
        return 1
    return 0


def _setup(cfg) -> None:
    root = project_dir(cfg.lean)
    if not (root / "lakefile.lean").is_file():
        raise LeanSetupError(f"no Lake project (lakefile.lean) in {root}; set lean.project_dir")
    before = inspect(cfg.lean)
    needs_network = before.elan is None or not before.mathlib_built or before.repl_binary is None
    if needs_network:
        problem = network_reachable()
        if problem is not None:
            missing = ", ".join(c.what for c in before.checks if not c.ok)
            raise LeanSetupError(
                f"no network: {problem}. Setup downloads elan, the Lean toolchain, Mathlib's "
                f"build cache and the REPL from GitHub, and this machine cannot reach it "
                f"(missing here: {missing}). Run `leanstar lean setup` where there is network "
                f"access, or copy a built project there and point lean.project_dir at it."
            )
    elan = before.elan or _install_elan()
    _run([elan, "toolchain", "install", PINNED_TOOLCHAIN], root, "installing the toolchain")
    lake = find_tool("lake")
    if lake is None:
        raise LeanSetupError("elan installed, but `lake` is still not found; open a new shell")
    if not cfg.skip_cache:
        _run([lake, "exe", "cache", "get"], root, "fetching Mathlib's build cache")
    _run([lake, "build", "repl"], root, "building the REPL")
    _run([lake, "build"], root, "building the project (Mathlib from cache)")
    after = inspect(cfg.lean)
    if not after.usable:
        raise LeanSetupError(f"setup finished but Lean is still unusable: {after.summary()}")
    _self_check(cfg.lean)


def _install_elan() -> str:
    import tempfile
    import urllib.request

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "elan-init.sh"
        print(f"downloading {ELAN_INSTALLER}", flush=True)
        urllib.request.urlretrieve(ELAN_INSTALLER, script)
        _run(["sh", str(script), "-y", "--default-toolchain", "none"], Path(tmp), "installing elan")
    elan = find_tool("elan")
    if elan is None:
        raise LeanSetupError(f"elan was installed but not found in {_elan_home() / 'bin'}")
    return elan


SELF_CHECK_STATEMENT = "theorem leanstar_self_check : (2 : ℕ) + 2 = 4"


def _self_check(lean: LeanConfig) -> None:
    """Prove a one-line theorem through the REPL backend, whole-proof check included."""
    import asyncio

    from leanstar.lean.env import ProofFinished, ProofState
    from leanstar.lean.factory import make_env
    from leanstar.records import Theorem

    theorem = Theorem("leanstar_self_check", SELF_CHECK_STATEMENT, header="import Mathlib")

    async def check():
        env = make_env(_one_worker(lean, backend="repl"))
        try:
            state = await env.start(theorem)
            if not isinstance(state, ProofState):
                return f"start failed: {state}"
            done = await env.run_tactic(state, "norm_num")
            if not isinstance(done, ProofFinished):
                return f"`norm_num` did not finish the proof: {done}"
            verdict = await env.verify(theorem, ("norm_num",))
            return None if verdict.ok else f"the whole-proof check refused: {verdict.reason}"
        finally:
            await env.close()

    print("self-check: proving `(2 : ℕ) + 2 = 4` by `norm_num` through the REPL", flush=True)
    problem = asyncio.run(check())
    if problem is not None:
        raise LeanSetupError(f"self-check failed: {problem}")
    print("self-check passed: Lean, Mathlib and the REPL work.")


def _one_worker(lean: LeanConfig, backend: str) -> LeanConfig:
    from dataclasses import replace

    return replace(lean, backend=backend, num_workers=1)
