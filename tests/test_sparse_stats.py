"""Activated-parameter measurement, text loading, loss scoring and the two `sparse` commands."""

from __future__ import annotations

import json

import pytest
import torch

from leanstar.config import SparseConfig
from leanstar.sparse.measure import ActivationMeter
from leanstar.sparse.qsparse import apply_qsparse, qsparse_settings
from leanstar.sparse.quality import compare_keep_ratios, score
from leanstar.sparse.texts import IGNORE, ScoredText, TextError, encode, load_texts

IDS = torch.arange(2 * 12).reshape(2, 12) % 128


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2)
    return Qwen2ForCausalLM(
        Qwen2Config(**shape, num_attention_heads=4, num_key_value_heads=2)
    ).eval()


def sparse(keep: float, **kw) -> SparseConfig:
    return SparseConfig(enabled=True, keep_ratio=keep, **kw)


@torch.no_grad()
def test_measured_activation_matches_configured_ratios():
    model = apply_qsparse(qwen2(), sparse(0.5, keep_ratio_mlp=0.25))
    with ActivationMeter(model) as meter:
        model(IDS)
    report = meter.report()
    assert report.tokens == IDS.numel()
    for i in range(2):
        assert report.site_density(i, "q_proj") == 32 / 64
        assert report.site_density(i, "o_proj") == 32 / 64
        assert report.site_density(i, "up_proj") == 16 / 64
        assert report.site_density(i, "down_proj") == 40 / 160
    # Hand count: q,k,v,o at 1/2 of their weights (+ q/k/v biases), gate,up,down at 1/4.
    attn_w = 64 * 64 + 2 * (64 * 32) + 64 * 64
    attn_b = 64 + 32 + 32
    mlp_w = 3 * 64 * 160
    expected = (attn_w / 2 + attn_b + mlp_w / 4) / (attn_w + attn_b + mlp_w)
    assert report.layer_fraction(0) == pytest.approx(expected)
    assert report.decoder_fraction == pytest.approx(expected)
    assert report.lm_head.input_density == 1.0
    assert report.with_lm_head_fraction > report.decoder_fraction


@torch.no_grad()
def test_dense_model_measures_fully_active_and_padding_is_skipped():
    model = qwen2()
    mask = torch.ones_like(IDS)
    mask[1, 7:] = 0
    with ActivationMeter(model) as meter:
        meter.token_mask = mask
        model(IDS, attention_mask=mask)
    report = meter.report()
    assert report.tokens == int(mask.sum())
    assert report.decoder_fraction > 0.999
    assert not model.model.layers[0].mlp.down_proj._forward_pre_hooks  # hooks removed on exit


def test_load_texts_sources(tmp_path):
    states = load_texts("")
    assert len(states) == 40 and "⊢" in states[0].text and states[0].context == ""

    records = tmp_path / "thoughts.jsonl"
    rows = [
        {
            "schema": "thought_step/1",
            "state": "⊢ 1 + 1 = 2",
            "thought": "compute",
            "tactic": "norm_num",
        },
        {"text": "plain words", "context": "before"},
        {"schema": "theorem/1", "name": "t", "statement": "theorem t : 1 = 1", "informal": "one"},
    ]
    records.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = load_texts(str(records))
    assert got[0].context.startswith("Lean 4 proof state:") and "⊢ 1 + 1 = 2" in got[0].context
    assert got[0].text == "compute\n```lean\nnorm_num\n```"
    assert got[1] == ScoredText("plain words", "before")
    assert got[2].text == "one\ntheorem t : 1 = 1"

    plain = tmp_path / "notes.txt"
    plain.write_text("theorem foo : True := trivial\n", encoding="utf-8")
    assert load_texts(str(plain)) == [ScoredText("theorem foo : True := trivial\n")]


def test_bad_text_sources_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"schema": "thought_step/1", "state": "s"}\n', encoding="utf-8")
    with pytest.raises(TextError, match=r"bad.jsonl:2: a thought_step record needs the field"):
        load_texts(str(bad))
    bad.write_text('{"text": "ok"}\n{"what": 1}\n', encoding="utf-8")
    with pytest.raises(TextError, match=r"bad.jsonl:2: cannot tell"):
        load_texts(str(bad))
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(TextError, match=r"bad.jsonl:1: not valid JSON"):
        load_texts(str(bad))
    with pytest.raises(TextError, match="no such file"):
        load_texts(str(tmp_path / "missing.txt"))


class CharTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 128 for c in text]


def test_encode_masks_context_and_cuts_windows():
    seqs = encode(CharTokenizer(), [ScoredText("abcdef", "xy")], max_length=3)
    assert [ids for ids, _ in seqs] == [[120, 121, 97], [98, 99, 100], [101, 102]]
    assert seqs[0][1] == [IGNORE, IGNORE, 97]
    capped = encode(CharTokenizer(), [ScoredText("abcdefgh")] * 3, max_length=4, max_tokens=5)
    assert len(capped) == 2  # 3 + 3 scored tokens reach the cap of 5


@torch.no_grad()
def test_score_is_exact_and_independent_of_batching():
    model = qwen2()
    ids = IDS[0].tolist()
    loss, n = score(model, [(ids, ids)])
    assert n == len(ids) - 1
    assert loss == pytest.approx(model(IDS[:1], labels=IDS[:1]).loss.item(), abs=1e-5)
    seqs = [(ids[: 5 + i], ids[: 5 + i]) for i in range(6)]
    big = score(model, seqs, batch_tokens=4096)
    small = score(model, seqs, batch_tokens=12)
    assert big[1] == small[1] and big[0] == pytest.approx(small[0], abs=1e-5)


def test_compare_keep_ratios_restores_the_model_settings():
    model = apply_qsparse(qwen2(), sparse(0.7))
    seqs = [(IDS[0].tolist(), IDS[0].tolist()), (IDS[1].tolist(), IDS[1].tolist())]
    results = compare_keep_ratios(model, seqs, [1.0, 0.5])
    assert [r.label for r in results] == ["dense", "keep 0.5", "checkpoint's own"]
    assert results[1].activation.site_density(0, "q_proj") == 0.5
    assert qsparse_settings(model) == sparse(0.7)
    apply_qsparse(model, SparseConfig(enabled=False))
    assert results[0].loss == pytest.approx(score(model, seqs)[0], abs=1e-6)


def test_cli_stats_and_eval_on_tiny_model(tiny_model_dir, tmp_path, capsys):
    from leanstar.cli import main

    code = main(
        [
            "sparse",
            "stats",
            str(tiny_model_dir),
            "--qsparse.enabled",
            "--qsparse.keep_ratio",
            "0.5",
            "--max_tokens",
            "300",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "keep attn 0.5" in out and "50.0%" in out
    result = tmp_path / "eval.json"
    code = main(
        [
            "sparse",
            "eval",
            str(tiny_model_dir),
            "--keep_ratios",
            "1.0,0.5",
            "--max_tokens",
            "300",
            "--out",
            str(result),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "keep 0.5" in out and "dense" in out
    rows = json.loads(result.read_text())["results"]
    assert [r["keep_ratio"] for r in rows] == [1.0, 0.5]
    assert rows[1]["activated_fraction"] == pytest.approx(0.5, abs=0.01)


def test_cli_bad_input_is_one_line_and_status_2(tiny_model_dir, tmp_path, capsys):
    from leanstar.cli import main

    assert main(["sparse", "eval", str(tmp_path / "nothing")]) == 2
    assert "not a checkpoint directory" in capsys.readouterr().err
    assert main(["sparse", "eval", str(tiny_model_dir), "--keep_ratios", "0,1"]) == 2
    assert "keep_ratios must be in (0, 1]" in capsys.readouterr().err
    assert main(["sparse", "stats", str(tiny_model_dir), "--text", str(tmp_path / "x.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
