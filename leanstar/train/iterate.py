"""`leanstar iterate`: expert iteration — sample proofs, keep what Lean accepts, retrain.

    runs/NAME/
      config.yaml, manifest.json        resolved config; phases finished (resume points)
      round-0/sft/model                 the round-0 prover (SFT on thoughts, or init_checkpoint)
      round-k/trajectories.jsonl        round k's samples on the training theorems (model k)
      round-k/proofs.jsonl              (state, thought, tactic) triples of verified proofs
      round-(k+1)/sft/model             trained on the base data + proofs of rounds 0..k
      summary.json, summary.md, rounds.png

Phases run in order (sft-0, search-0, collect-0, sft-1, search-1, ...), each marked done in
the manifest only when complete. A killed run resumes in the phase it was in: the search skips
the attempts already written, SFT resumes from its last checkpoint, and collection is redone
from the round's trajectories (it is deterministic), so no attempt is lost or repeated and no
record duplicated.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from leanstar.config import ConfigError, to_dict
from leanstar.jsonl import JsonlWriter, read_records, write_json_atomic, write_text_atomic
from leanstar.records import ThoughtStep, Trajectory
from leanstar.rundir import RunDir
from leanstar.train.collect import collect
from leanstar.train.config import IterateConfig

PROOFS = "proofs.jsonl"


def round_dir(run: RunDir, k: int) -> Path:
    return run.path / f"round-{k}"


def main(cfg: IterateConfig) -> int:
    summary = run_iterate(cfg)
    print(summary_markdown(summary))
    return 0


def run_iterate(cfg: IterateConfig) -> dict:
    """Run (or resume) every phase; returns the run's summary."""
    _check(cfg)
    run = RunDir(cfg.run_dir).lock()
    try:
        _check_same_config(run, cfg)
        run.save_config(cfg)
        model = _phase(
            run, "sft-0", lambda: _train(cfg, run, 0, cfg.sft.data, cfg.sft.data_weights)
        )
        from leanstar.search.backends import build_generator
        from leanstar.search.runner import SearchSession

        with SearchSession() as session:
            for k in range(cfg.rounds):
                search_cfg = _round_search(cfg, run, k, model)
                if not run.is_done(f"search-{k}"):
                    _close_generator(session)
                    session.generator = build_generator(search_cfg)
                _phase(run, f"search-{k}", lambda s=search_cfg, k=k: _search(session, s, k))
                _phase(run, f"collect-{k}", lambda k=k: _collect(cfg, run, k))
                model = _phase(run, f"sft-{k + 1}", lambda k=k, m=model: _retrain(cfg, run, k, m))
            _close_generator(session)
        summary = summarize(cfg, run)
        write_json_atomic(run / "summary.json", summary)
        write_text_atomic(run / "summary.md", summary_markdown(summary))
        _plot(summary, run)
        return summary
    finally:
        run.unlock()


def _check(cfg: IterateConfig) -> None:
    if cfg.rounds < 0:
        raise ConfigError(f"rounds must be >= 0, got {cfg.rounds}")
    if not cfg.init_checkpoint and not cfg.sft.data:
        raise ConfigError("give init_checkpoint, or sft.data (thought records) to train round 0")
    if cfg.max_proofs_per_theorem < 1:
        raise ConfigError("max_proofs_per_theorem must be >= 1")


def _check_same_config(run: RunDir, cfg: IterateConfig) -> None:
    """A run directory belongs to one config: resuming with other settings would mix rounds."""
    import yaml

    saved = run / "config.yaml"
    if saved.exists():
        before = yaml.safe_load(saved.read_text(encoding="utf-8"))
        if before != to_dict(cfg):
            changed = sorted(
                k for k in set(before) | set(to_dict(cfg)) if before.get(k) != to_dict(cfg).get(k)
            )
            raise ConfigError(
                f"{run.path} was made with another config (differs in {changed}); "
                "use a new run_dir or the original config"
            )


def _phase(run: RunDir, name: str, work):
    """Run `work` unless the manifest says it is done; its result is kept in the manifest."""
    info = run.phase_info(name)
    if info is not None:
        return info.get("result")
    started = time.perf_counter()
    result = work()
    run.mark_done(name, result=result, seconds=round(time.perf_counter() - started, 2))
    return result


# ---------------------------------------------------------------- phases


def _train(cfg: IterateConfig, run: RunDir, k: int, data: list[str], weights: list[float]) -> str:
    if k == 0 and cfg.init_checkpoint:
        return cfg.init_checkpoint
    from leanstar.train.sft import train_sft

    sft = dataclasses.replace(
        cfg.sft, run_dir=str(round_dir(run, k) / "sft"), data=list(data), data_weights=list(weights)
    )
    return str(train_sft(sft))


def _round_search(cfg: IterateConfig, run: RunDir, k: int, model: str):
    generator = dataclasses.replace(cfg.search.generator, model=model)
    return dataclasses.replace(cfg.search, run_dir=str(round_dir(run, k)), generator=generator)


def _search(session, search_cfg, k: int) -> dict:
    summary = session.run(search_cfg, round=k)
    if not summary.complete:
        raise RuntimeError(f"round {k}: the search stopped before every attempt was written")
    return summary.to_dict()


def _close_generator(session) -> None:
    if session.generator is not None:
        session.generator.close()
        session.generator = None


def _collect(cfg: IterateConfig, run: RunDir, k: int) -> dict:
    trajectories = read_records(round_dir(run, k) / "trajectories.jsonl", Trajectory)
    got = collect(
        trajectories,
        round=k,
        max_proofs=cfg.max_proofs_per_theorem,
        drop_multiline=cfg.drop_multiline_tactics,
    )
    path = round_dir(run, k) / PROOFS
    tmp = path.with_name(f".{PROOFS}.tmp")
    tmp.unlink(missing_ok=True)
    with JsonlWriter(tmp) as writer:
        writer.write_all(got.steps)
    tmp.replace(path)  # the round's proofs appear whole or not at all
    thoughts = [len(s.thought) for s in got.steps]
    return {
        "triples": len(got.steps),
        "proofs_kept": got.proofs_kept,
        "theorems_proved": sorted(got.theorems_proved),
        "multiline_dropped": got.multiline_dropped,
        "mean_thought_chars": sum(thoughts) / len(thoughts) if thoughts else 0.0,
    }


def _retrain(cfg: IterateConfig, run: RunDir, k: int, model: str) -> str:
    """Round k+1's model: the base data plus every round's proofs so far."""
    data, weights = list(cfg.sft.data), list(cfg.sft.data_weights) or [1.0] * len(cfg.sft.data)
    for j in range(k + 1):
        proofs = round_dir(run, j) / PROOFS
        if read_records(proofs, ThoughtStep):
            data.append(str(proofs))
            weights.append(1.0)
    if not data:
        return model  # nothing to train on: the next round keeps this round's model
    base = cfg.sft.base_model if cfg.retrain_from == "base" else model
    train_cfg = dataclasses.replace(cfg, sft=dataclasses.replace(cfg.sft, base_model=base))
    return _train(train_cfg, run, k + 1, data, weights)


# ---------------------------------------------------------------- summary


def summarize(cfg: IterateConfig, run: RunDir) -> dict:
    phases = run.manifest()["phases"]
    rounds, proved_so_far = [], set()
    for k in range(cfg.rounds):
        search = phases[f"search-{k}"]["result"]
        got = phases[f"collect-{k}"]["result"]
        proved = set(got["theorems_proved"])
        new = proved - proved_so_far
        proved_so_far |= proved
        rounds.append(
            {
                "round": k,
                "model": search["model"],
                "checked_by": search["checked_by"],
                "theorems_attempted": search["theorems"],
                "attempts_per_theorem": search["attempts_per_theorem"],
                "theorems_proved": len(proved),
                "newly_proved": len(new),
                "proved_so_far": len(proved_so_far),
                "triples_added": got["triples"],
                "mean_thought_chars": round(got["mean_thought_chars"], 1),
                "search_s": phases[f"search-{k}"]["seconds"],
                "train_next_s": phases[f"sft-{k + 1}"]["seconds"],
                "sampler": search.get("session", {}).get("sampler", {}),
            }
        )
    return {
        "run_dir": str(run.path),
        "rounds": rounds,
        "round0_model": phases["sft-0"]["result"],
        "round0_train_s": phases["sft-0"]["seconds"],
        "final_model": phases[f"sft-{cfg.rounds}"]["result"]
        if cfg.rounds
        else phases["sft-0"]["result"],
    }


def summary_markdown(summary: dict) -> str:
    lines = [
        f"# Expert iteration: {summary['run_dir']}",
        "",
        f"round-0 model: `{summary['round0_model']}` (trained in {summary['round0_train_s']:.0f} s)",
        "",
        "| round | checked by | attempted | proved | new | proved so far | triples added | "
        "mean thought chars | search s | next train s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["rounds"]:
        lines.append(
            f"| {r['round']} | {r['checked_by']} | {r['theorems_attempted']} x {r['attempts_per_theorem']} | "
            f"{r['theorems_proved']} | {r['newly_proved']} | {r['proved_so_far']} | {r['triples_added']} | "
            f"{r['mean_thought_chars']} | {r['search_s']:.0f} | {r['train_next_s']:.0f} |"
        )
    lines += ["", f"final model: `{summary['final_model']}`"]
    return "\n".join(lines) + "\n"


def _plot(summary: dict, run: RunDir) -> None:
    from leanstar.evaluate.report import plot_rounds

    rounds = summary["rounds"]
    if not rounds:
        return
    rates = {r["round"]: r["theorems_proved"] / max(1, r["theorems_attempted"]) for r in rounds}
    plot_rounds(rates, rounds[0]["checked_by"], run / "rounds.png")
