"""`leanstar sft` end to end on CPU with the tiny Qwen2: train, save, reload, resume.

Thought records are the test fixtures of tests/test_sft_fixtures.py (real LeanDojo states and
tactics, hand-written thoughts); the tactic-only baseline trains on the bundled LeanDojo sample.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanstar.config import dump_yaml, load_config
from leanstar.jsonl import read_records
from leanstar.prompting import parse_completion, prover_prompt
from leanstar.rundir import RunDir
from leanstar.train.checkpoints import last_complete_checkpoint, trim_metrics
from leanstar.train.config import SFTConfig
from leanstar.train.sft import ResumeError, train_sft, training_args
from tests.test_sft_fixtures import LEANDOJO_SAMPLE, thought_records, write_thought_records

REPO = Path(__file__).resolve().parents[1]


def _cfg(run_dir: Path, model_dir: Path, data: list, **changes) -> SFTConfig:
    base = dict(
        run_dir=str(run_dir),
        base_model=str(model_dir),
        data=[str(d) for d in data],
        learning_rate=1e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        per_device_batch_size=2,
        global_batch_size=4,
        max_length=512,
        max_steps=2,
        save_steps=1000,
        logging_steps=1,
        seed=0,
    )
    return SFTConfig(**(base | changes))


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _losses(run_dir: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in _metrics(run_dir) if "loss" in m}


def test_thought_sft_learns_saves_reloads_and_is_idempotent(tiny_model_dir, tmp_path):
    data = write_thought_records(tmp_path / "thoughts.jsonl", limit=8)
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, tiny_model_dir, [data], max_steps=20, learning_rate=5e-3)
    model_dir = train_sft(cfg)
    assert model_dir == run_dir / "model"

    losses = _losses(run_dir)
    assert sorted(losses) == list(range(1, 21))  # every step logged once, in order
    assert losses[20] < 0.6 * losses[1], losses  # overfitting 8 examples: the loss falls

    # Outputs: the card names data and config, the run dir holds config, data counts, manifest.
    card = json.loads((model_dir / "leanstar.json").read_text())
    assert card["with_thought"] is True and card["base_model"] == str(tiny_model_dir)
    assert card["data"]["sources"][0]["path"] == str(data)
    assert card["data"]["kept"] == 8 and card["config"]["learning_rate"] == 5e-3
    readme = (model_dir / "README.md").read_text()
    assert (
        str(tiny_model_dir) in readme and str(data) in readme and "learning_rate: 0.005" in readme
    )
    assert load_config(SFTConfig, run_dir / "config.yaml") == cfg
    info = RunDir(run_dir).phase_info("sft")
    assert info["steps"] == 20 and info["examples"] == 8 and info["truncated"] == 0
    assert json.loads((run_dir / "data.json").read_text())["kept"] == 8
    assert not list((run_dir / "checkpoints").glob("checkpoint-*"))  # removed once done

    _reload_and_generate(model_dir, thought_records(1)[0].state, tiny_model_dir)

    # A second call on the finished run returns the checkpoint without training again.
    weights = model_dir / "model.safetensors"
    stamp, metrics = weights.stat().st_mtime_ns, (run_dir / "metrics.jsonl").read_text()
    assert train_sft(cfg) == model_dir
    assert weights.stat().st_mtime_ns == stamp
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    # ... but a different config is refused rather than answered with the old model.
    with pytest.raises(ResumeError, match=r"learning_rate: 0\.005 -> 0\.0001"):
        train_sft(dataclasses.replace(cfg, learning_rate=1e-4))


def _reload_and_generate(model_dir: Path, state: str, base_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name])  # it trained
    prompt = prover_prompt(state, True, tok)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=40, do_sample=False)
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert out.shape[1] > ids.shape[1] and text.strip()
    parse_completion(text)  # any text parses to a value, never an exception


def test_tactic_baseline_on_leandojo_with_packing(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, tiny_model_dir, [LEANDOJO_SAMPLE], format="tactic", packing=True)
    model_dir = train_sft(cfg)
    card = json.loads((model_dir / "leanstar.json").read_text())
    assert card["with_thought"] is False and card["format"] == "tactic"
    assert card["data"]["sources"][0]["kind"] == "LeanDojo traced steps"
    assert "state -> tactic (tactic-only baseline)" in (model_dir / "README.md").read_text()
    assert sorted(_losses(run_dir)) == [1, 2]


def test_lora_under_qsparse_is_merged_into_a_plain_sparse_checkpoint(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from leanstar.config import SparseConfig
    from leanstar.sparse.qsparse import load_model, qsparse_settings

    data = write_thought_records(tmp_path / "thoughts.jsonl", limit=4)
    qsparse = SparseConfig(enabled=True, keep_ratio=0.6)
    cfg = _cfg(
        tmp_path / "run",
        tiny_model_dir,
        [data],
        lora=True,
        lora_r=4,
        learning_rate=5e-2,
        qsparse=qsparse,
    )
    model_dir = train_sft(cfg)
    assert not (model_dir / "adapter_config.json").exists()
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert merged.keys() == base.keys()  # plain weights, no peft wrapper left
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[name], base[name])  # the adapter's update is in the weights
    assert qsparse_settings(load_model(model_dir)).keep_ratio == 0.6  # and it reloads sparse


def test_trl_arguments_follow_the_config(tmp_path):
    cfg = SFTConfig(
        data=["x"],
        per_device_batch_size=4,
        global_batch_size=32,
        report_to=["tensorboard", "wandb"],
        warmup_ratio=0.1,
        save_total_limit=0,
    )
    args = training_args(cfg, tmp_path / "run" / "checkpoints", num_processes=2)
    assert args.gradient_accumulation_steps == 4  # 32 / (4 x 2 processes)
    assert list(args.report_to) == ["tensorboard", "wandb"]
    assert args.learning_rate == 2e-5 and args.lr_scheduler_type == "cosine"
    assert args.max_length == 2048 and args.completion_only_loss is True
    assert args.save_total_limit is None and args.run_name == "run"
    assert args.get_warmup_steps(100) == 10
    assert list(training_args(SFTConfig(), tmp_path).report_to) in ([], ["none"])


def test_resume_after_a_kill_continues_from_the_saved_step(tiny_model_dir, tmp_path):
    """SIGKILL a real `leanstar sft` process between checkpoints, then resume: the run goes on
    from the last complete checkpoint and retraces the lost steps exactly."""
    data = write_thought_records(tmp_path / "thoughts.jsonl", limit=12)
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, tiny_model_dir, [data], max_steps=12, save_steps=4, seed=1)
    proc = _start_cli(cfg, tmp_path)
    try:  # kill between checkpoint 4 and 8, with steps after 4 logged
        _wait_for(lambda: max(_losses_or_empty(run_dir), default=0) >= 5, proc)
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed or saved
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not RunDir(run_dir).is_done("sft") and not (run_dir / "model").exists()
    before = _losses(run_dir)
    saved = last_complete_checkpoint(run_dir / "checkpoints")
    assert saved is not None
    step = int(saved.name.split("-")[1])
    assert step % 4 == 0 and max(before) > step

    # Resuming on other data is refused; the same data resumes.
    changed = write_thought_records(tmp_path / "other.jsonl", limit=11)
    data.rename(tmp_path / "kept.jsonl")
    changed.rename(data)
    with pytest.raises(ResumeError, match="training data changed"):
        train_sft(cfg)
    (tmp_path / "kept.jsonl").rename(data)

    train_sft(cfg)
    info = RunDir(run_dir).phase_info("sft")
    assert info["resumed_from_step"] == step and info["steps"] == 12
    after = _losses(run_dir)
    assert sorted(after) == list(range(1, 13))  # no step lost, none logged twice
    for s in range(step + 1, max(before) + 1):  # the redone steps retrace the killed run
        assert after[s] == pytest.approx(before[s], rel=1e-4), s


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_resumes(tiny_model_dir, tmp_path):
    data = write_thought_records(tmp_path / "thoughts.jsonl", limit=8)
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, tiny_model_dir, [data], max_steps=10, save_steps=1000)
    proc = _start_cli(cfg, tmp_path)
    _wait_for(lambda: max(_losses_or_empty(run_dir), default=0) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    err = _stderr(proc)
    assert proc.returncode == 130, err[-2000:]
    saved = last_complete_checkpoint(run_dir / "checkpoints")
    assert saved is not None and 2 <= int(saved.name.split("-")[1]) < 10
    assert "stopping after this step and saving a checkpoint" in err
    step = int(saved.name.split("-")[1])
    train_sft(cfg)
    assert RunDir(run_dir).phase_info("sft")["resumed_from_step"] == step


def test_incomplete_checkpoints_and_late_metrics_are_cleared(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, complete in ((5, True), (10, True), (15, False)):
        path = folder / f"checkpoint-{step}"
        path.mkdir(parents=True)
        if complete:
            (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    messages = []
    assert last_complete_checkpoint(folder, log=messages.append) == folder / "checkpoint-10"
    assert not (folder / "checkpoint-15").exists() and "killed mid-save" in messages[0]

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 14)))
    assert trim_metrics(metrics, 10) == 3
    assert [r["step"] for r in map(json.loads, metrics.read_text().splitlines())] == list(
        range(1, 11)
    )


# ---------------------------------------------------------------- helpers


def _start_cli(cfg: SFTConfig, tmp_path: Path) -> subprocess.Popen:
    path = tmp_path / "sft.yaml"
    path.write_text(dump_yaml(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Output to files, not pipes: a full pipe would stall the trainer mid-step.
    with (tmp_path / "out.log").open("w") as out, (tmp_path / "err.log").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "leanstar", "sft", "--config", str(path)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
        )


def _losses_or_empty(run_dir: Path) -> dict[int, float]:
    try:
        return {int(m["step"]): m for m in _metrics(run_dir) if "loss" in m}
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or mid-line
        return {}


def _stderr(proc: subprocess.Popen) -> str:
    return (Path(proc.args[-1]).parent / "err.log").read_text()


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"sft exited early ({proc.returncode}): {_stderr(proc)[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("sft made no progress in time")
        time.sleep(0.01)


def test_fixture_records_are_labelled(tmp_path):
    from leanstar.records import ThoughtStep

    path = write_thought_records(tmp_path / "t.jsonl", limit=3)
    records = read_records(path, ThoughtStep)
    assert len(records) == 3 and all(r.teacher == "hand-written test fixture" for r in records)


def test_qsparse_training_runs_sparse_and_saves_a_sparse_checkpoint(tiny_model_dir, tmp_path):
    """Under `qsparse.enabled` the training forward really is top-K (measured on the
    down_proj inputs during the steps, following the keep-ratio warmup), and the checkpoint
    reloads sparse through Q-Sparse's load_model."""
    import torch
    from transformers import TrainerCallback

    from leanstar.config import SparseConfig
    from leanstar.sparse.qsparse import load_model, qsparse_settings

    density: dict[int, float] = {}

    class MeasureDownProjInput(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            site = model.model.layers[0].mlp.down_proj

            def record(module, inputs, output):  # a forward hook sees the sparsified input
                x = inputs[0].detach()
                density[state.global_step + 1] = (x != 0).float().mean().item()

            self.handle = site.register_forward_hook(record)

        def on_train_end(self, args, state, control, **kwargs):
            self.handle.remove()

    data = write_thought_records(tmp_path / "thoughts.jsonl", limit=4)
    qsparse = SparseConfig(enabled=True, keep_ratio=0.5, warmup_steps=2)
    cfg = _cfg(tmp_path / "run", tiny_model_dir, [data], max_steps=3, qsparse=qsparse)
    model_dir = train_sft(cfg, callbacks=[MeasureDownProjInput()])

    # Warmup: keep-ratio 1.0 at step 1, 0.75 at step 2, the target 0.5 from step 3 on.
    assert density[1] > 0.95
    assert density[2] == pytest.approx(0.75, abs=0.03)
    assert density[3] == pytest.approx(0.5, abs=0.03)

    saved = json.loads((model_dir / "config.json").read_text())["qsparse"]
    assert saved["enabled"] is True and saved["keep_ratio"] == 0.5
    sparse = load_model(model_dir)
    dense = load_model(model_dir, dense=True)
    assert qsparse_settings(sparse).keep_ratio == 0.5 and qsparse_settings(dense) is None
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    with torch.no_grad():
        assert not torch.allclose(sparse(ids).logits, dense(ids).logits)
    assert "Q-Sparse" in (model_dir / "README.md").read_text()
    assert json.loads((model_dir / "leanstar.json").read_text())["qsparse"]["keep_ratio"] == 0.5
