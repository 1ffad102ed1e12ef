"""Expert iteration end to end (tiny model, replay environment, steered sampler), its resume
after real kills, and the evaluation stage."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from leanstar.config import ConfigError, LeanConfig, load_config, to_dict
from leanstar.data import load_leandojo
from leanstar.evaluate.config import EvalConfig
from leanstar.evaluate.passk import pass_at_k
from leanstar.evaluate.run import run_eval
from leanstar.jsonl import read_records
from leanstar.lean.replay import ReplayEnv
from leanstar.records import REPLAY_LABEL, ThoughtStep, Trajectory
from leanstar.search import backends
from leanstar.search.config import SearchConfig
from leanstar.train.config import IterateConfig, SFTConfig
from leanstar.train.iterate import run_iterate
from tests.fakes.prover import SteeredGenerator

REPO = Path(__file__).resolve().parents[1]
LEANDOJO = "bundled:leandojo-benchmark4-sample.json"
THEOREMS = load_leandojo(LEANDOJO)


def _config(run_dir: Path, model: Path, rounds: int = 2) -> IterateConfig:
    sft = SFTConfig(
        base_model=str(model),
        data=[LEANDOJO],
        format="tactic",
        learning_rate=1e-3,
        max_steps=4,
        per_device_batch_size=4,
        global_batch_size=4,
        max_length=512,
        save_steps=2,
        logging_steps=1,
        seed=0,
    )
    search = SearchConfig(
        theorems=LEANDOJO,
        attempts=2,
        max_steps=5,
        with_thoughts=False,
        lean=LeanConfig(backend="replay"),
    )
    return IterateConfig(run_dir=str(run_dir), rounds=rounds, sft=sft, search=search)


@pytest.fixture
def steered(monkeypatch):
    monkeypatch.setattr(
        backends, "build_generator", lambda cfg: SteeredGenerator(THEOREMS, thoughts=False)
    )


def test_two_rounds_end_to_end(tmp_path, tiny_model_dir, steered):
    cfg = _config(tmp_path / "run", tiny_model_dir)
    summary = run_iterate(cfg)
    run = tmp_path / "run"
    phases = json.loads((run / "manifest.json").read_text())["phases"]
    assert list(phases) == [
        "sft-0",
        "search-0",
        "collect-0",
        "sft-1",
        "search-1",
        "collect-1",
        "sft-2",
    ]
    r0, r1 = summary["rounds"]
    assert r0["checked_by"] == REPLAY_LABEL
    assert r0["theorems_attempted"] == 17 and r0["attempts_per_theorem"] == 2
    assert r0["theorems_proved"] >= 12  # every recorded chain is found by the steered sampler
    assert r0["newly_proved"] == r0["theorems_proved"] and r1["newly_proved"] == 0
    assert r1["proved_so_far"] == r0["theorems_proved"]
    proofs = read_records(run / "round-0" / "proofs.jsonl", ThoughtStep)
    assert len(proofs) == r0["triples_added"] > 0
    assert {p.source for p in proofs} == {"expert_iteration"} and {p.round for p in proofs} == {0}
    trajs = read_records(run / "round-1" / "trajectories.jsonl", Trajectory)
    assert {t.round for t in trajs} == {1}
    # round 1 sampled with the round-1 model, trained on the base data plus round 0's proofs
    assert trajs[0].model == summary["rounds"][1]["model"] == str(run / "round-1" / "sft" / "model")
    data = json.loads((run / "round-1" / "sft" / "data.json").read_text())
    assert [s["path"] for s in data["sources"]] == [LEANDOJO, str(run / "round-0" / "proofs.jsonl")]
    assert (run / "rounds.png").stat().st_size > 0
    assert "| 0 | replay (not checked by Lean) | 17 x 2 |" in (run / "summary.md").read_text()
    assert run_iterate(cfg) == summary  # a finished run is not redone


def test_changed_config_is_refused(tmp_path, tiny_model_dir, steered):
    cfg = _config(tmp_path / "run", tiny_model_dir, rounds=0)
    run_iterate(cfg)
    cfg.max_proofs_per_theorem = 3
    with pytest.raises(ConfigError, match="another config"):
        run_iterate(cfg)


def _stable(root: Path, rel: str) -> list:
    """Records without their timings or run-directory paths, in a canonical order."""
    rows = []
    for line in (root / rel).read_text(encoding="utf-8").replace(str(root), "RUN").splitlines():
        row = json.loads(line)
        row.pop("elapsed_s", None)
        for step in row.get("steps", []):
            step.pop("sample_s", None)
            step.pop("lean_s", None)
        rows.append(json.dumps(row, sort_keys=True))
    return sorted(rows)


def _wait_for(predicate, proc, timeout=240.0):
    start = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"driver exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}"
            )
        if time.monotonic() - start > timeout:
            raise AssertionError("kill point not reached in time")
        time.sleep(0.05)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_resume_after_kills_matches_an_uninterrupted_run(tmp_path, tiny_model_dir):
    def start(cfg_path):
        return subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "fakes" / "iterate_driver.py"),
                str(cfg_path),
                "0.02",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    paths = {}
    for name in ("straight", "killed"):
        cfg = _config(tmp_path / name, tiny_model_dir, rounds=1)
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(to_dict(cfg)))
    assert start(paths["straight"]).wait(timeout=600) == 0

    run = tmp_path / "killed"
    kill_points = [
        lambda: any((run / "round-0" / "sft" / "checkpoints").glob("checkpoint-*")),  # mid SFT
        lambda: _lines(run / "round-0" / "trajectories.jsonl") >= 10,  # mid search
        lambda: any((run / "round-1" / "sft" / "checkpoints").glob("checkpoint-*")),  # mid retrain
    ]
    for point in kill_points:
        proc = start(paths["killed"])
        _wait_for(point, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = start(paths["killed"])
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]

    straight = tmp_path / "straight"
    for rel in ("round-0/trajectories.jsonl", "round-0/proofs.jsonl"):
        assert _stable(run, rel) == _stable(straight, rel), rel
    keys = [
        (t.theorem, t.attempt)
        for t in read_records(run / "round-0" / "trajectories.jsonl", Trajectory)
    ]
    assert len(keys) == len(set(keys)) == 17 * 2  # nothing lost, nothing repeated
    for rel in ("round-0/sft/data.json", "round-1/sft/data.json"):
        assert (
            json.loads((run / rel).read_text())["fingerprint"]
            == json.loads((straight / rel).read_text())["fingerprint"]
        )
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["rounds"][0]["theorems_proved"]
        == json.loads((straight / "summary.json").read_text())["rounds"][0]["theorems_proved"]
    )


def test_eval_reports_pass_at_k_from_its_trajectories(tmp_path):
    search = SearchConfig(
        theorems=LEANDOJO,
        attempts=4,
        max_steps=5,
        with_thoughts=True,
        lean=LeanConfig(backend="replay"),
    )
    cfg = EvalConfig(run_dir=str(tmp_path / "eval"), ks=[1, 4], search=search)
    report = run_eval(cfg, generator=SteeredGenerator(THEOREMS), env=ReplayEnv(THEOREMS))
    trajs = read_records(tmp_path / "eval" / "trajectories.jsonl", Trajectory)
    by_thm = {}
    for t in trajs:
        n, c = by_thm.get(t.theorem, (0, 0))
        by_thm[t.theorem] = (n + 1, c + t.proved)
    expected = sum(pass_at_k(n, c, 1) for n, c in by_thm.values()) / len(by_thm)
    assert report.pass_at_k[1] == pytest.approx(expected)
    assert report.checked_by == REPLAY_LABEL
    data = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert data["checked_by_lean"] is False and data["num_problems"] == 17
    md = (tmp_path / "eval" / "report.md").read_text()
    assert f"[{REPLAY_LABEL}]" in md and "46.3%" in md  # beside the paper's figure
    assert (tmp_path / "eval" / "passk.png").stat().st_size > 0
    assert len((tmp_path / "eval" / "problems.jsonl").read_text().splitlines()) == 17


def test_shipped_iterate_and_eval_configs_validate():
    for path in sorted((REPO / "configs").glob("iterate-*.yaml")):
        cfg = load_config(IterateConfig, path)
        cfg.sft.validate(num_processes=8)
    for path in sorted((REPO / "configs").glob("eval-*.yaml")):
        load_config(EvalConfig, path)
