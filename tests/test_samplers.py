"""The vLLM and OpenAI-compatible samplers: vLLM's outputs mapped through stand-ins shaped like
`RequestOutput` (vLLM needs a GPU), the completions sampler against a fake HTTP server."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest

from leanstar.config import GeneratorConfig
from leanstar.generation import SamplingParams, make_generator
from leanstar.generation.vllm import (
    QSPARSE_CONFIG_KEY,
    VLLMGenerator,
    refuse_qsparse,
    to_sample,
    vllm_sampling_kwargs,
)

# ---------------------------------------------------------------- vLLM, through stand-ins


def completion(pieces, lps, finish="stop", text=None, ids=None):
    """A stand-in for vllm.CompletionOutput: token i is `pieces[i]` with log-prob `lps[i]`."""
    ids = ids or list(range(100, 100 + len(pieces)))
    logprobs = [
        {tid: SimpleNamespace(logprob=lp, rank=1, decoded_token=piece)}
        for tid, piece, lp in zip(ids, pieces, lps)
    ]
    text = "".join(pieces) if text is None else text
    return SimpleNamespace(
        index=0,
        text=text,
        token_ids=ids,
        cumulative_logprob=sum(lps),
        logprobs=logprobs,
        finish_reason=finish,
        stop_reason=None,
    )


def test_vllm_sampling_kwargs():
    params = SamplingParams(n=4, temperature=1.0, top_p=0.9, max_new_tokens=64, stop=("```\n",))
    assert vllm_sampling_kwargs(params) == {
        "n": 4,
        "temperature": 1.0,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["```\n"],
        "seed": None,
        "logprobs": 0,
    }
    assert vllm_sampling_kwargs(SamplingParams(seed=7))["stop"] is None


def test_vllm_output_to_sample():
    pieces = ["Use", " simp", ".\n", "```lean\n", "simp", "\n```", "<|im_end|>"]
    lps = [-0.5, -1.0, -0.25, -0.1, -2.0, -0.05, -0.01]
    text = "".join(pieces[:-1])  # vLLM leaves the end-of-sequence token out of the text
    s = to_sample(completion(pieces, lps, text=text))
    assert s.text == text and s.finish_reason == "stop"
    assert s.num_tokens == 7 and s.logprob == pytest.approx(sum(lps))
    assert s.token_ends == (3, 8, 10, 18, 22, 26, 26)
    start = text.index("simp\n```")
    assert s.logprob_of_span(start, start + 4) == pytest.approx(-2.0)


def test_vllm_stop_string_cut_from_text_but_counted():
    pieces = ["ab", "c", "STOP", "zz"]
    s = to_sample(completion(pieces, [-1.0, -1.0, -1.0, -1.0], text="abc"))
    assert s.text == "abc" and s.token_ends == (2, 3, 3, 3) and s.num_tokens == 4


def test_vllm_partial_utf8_falls_back_to_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "⊢ n + 0 = n"
    ids = tok(text, add_special_tokens=False).input_ids
    pieces = ["\ufffd"] * len(ids)  # what a detokenizer shows for split bytes
    s = to_sample(completion(pieces, [-0.1] * len(ids), text=text, ids=ids), tok)
    assert s.token_ends[-1] == len(text)
    assert list(s.token_ends) == sorted(s.token_ends)


class FakeEngine:
    """Shaped like vllm.LLM.generate: one RequestOutput per prompt, `n` outputs each."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        outs = []
        for p in prompts:
            outputs = [completion([p[:2], f" #{j}"], [-0.5, -0.25]) for j in range(params.n)]
            outs.append(SimpleNamespace(prompt=p, outputs=outputs, finished=True))
        return outs

    def get_tokenizer(self):
        return None


def test_vllm_generator_batches_in_one_call():
    engine = FakeEngine()
    gen = VLLMGenerator(GeneratorConfig(backend="vllm"), engine=engine)
    out = gen.generate(["aaa", "bbb", "ccc"], SamplingParams(n=2))
    assert len(engine.calls) == 1 and engine.calls[0][0] == ["aaa", "bbb", "ccc"]
    assert [[s.text for s in row] for row in out] == [
        ["aa #0", "aa #1"],
        ["bb #0", "bb #1"],
        ["cc #0", "cc #1"],
    ]
    assert all(s.logprob == pytest.approx(-0.75) for row in out for s in row)


def test_vllm_refuses_a_qsparse_checkpoint(tmp_path):
    from leanstar.sparse.qsparse import CONFIG_KEY

    assert CONFIG_KEY == QSPARSE_CONFIG_KEY
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", CONFIG_KEY: {}}))
    with pytest.raises(ValueError, match="Q-Sparse checkpoint; vLLM would sample from the dense"):
        refuse_qsparse(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    refuse_qsparse(str(tmp_path))
    refuse_qsparse("Qwen/Qwen2-0.5B")  # a Hub id: nothing local to read


@pytest.mark.vllm
def test_real_vllm_on_tiny_model(tiny_model_dir):
    pytest.importorskip("vllm")
    gen = make_generator(
        GeneratorConfig(backend="vllm", model=str(tiny_model_dir), gpu_memory_utilization=0.3)
    )
    out = gen.generate(
        ["⊢ True", "⊢ 1 = 1"], SamplingParams(n=3, temperature=1.0, max_new_tokens=8)
    )
    assert [len(row) for row in out] == [3, 3]
    for s in (s for row in out for s in row):
        assert s.num_tokens == len(s.token_logprobs) <= 8
        assert s.logprob == pytest.approx(sum(s.token_logprobs))


# ---------------------------------------------------------------- OpenAI-compatible server

HAVE_FAKE_SERVER = importlib.util.find_spec("tests.fakes.openai_server") is not None
needs_server = pytest.mark.skipif(
    not HAVE_FAKE_SERVER, reason="tests/fakes/openai_server.py (thoughts helper) not merged yet"
)


@pytest.fixture
def server():
    from tests.fakes.openai_server import FakeOpenAIServer

    answers = ["Try simp.\n```lean\nsimp\n```", "```lean\nrfl\n```", "no idea"]
    with FakeOpenAIServer(responder=lambda path, body: answers[: body.get("n", 1)]) as srv:
        yield srv


def _openai(server, **kw):
    cfg = GeneratorConfig(backend="openai", base_url=server.base_url, model="prover", **kw)
    return make_generator(cfg)


@needs_server
def test_openai_completions_samples_and_request(server):
    gen = _openai(server, batch_size=4)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=32, stop=("\n\n",))
    out = gen.generate(["state A", "state B"], params)
    assert [[s.text for s in row] for row in out] == [
        ["Try simp.\n```lean\nsimp\n```", "```lean\nrfl\n```", "no idea"]
    ] * 2
    for s in (s for row in out for s in row):
        assert s.finish_reason == "stop"
        assert s.num_tokens == len(s.token_logprobs) and s.logprob == pytest.approx(
            sum(s.token_logprobs)
        )
        assert list(s.token_ends) == sorted(s.token_ends) and s.token_ends[-1] <= len(s.text)
    bodies = sorted(server.bodies("/v1/completions"), key=lambda b: b["prompt"])
    assert [b["prompt"] for b in bodies] == ["state A", "state B"]
    assert bodies[0] | {"prompt": None} == {
        "model": "prover",
        "prompt": None,
        "n": 3,
        "temperature": 1.0,
        "top_p": 0.95,
        "max_tokens": 32,
        "stop": ["\n\n"],
        "logprobs": 0,
    }
    gen.close()


@needs_server
def test_openai_retries_server_errors(server):
    gen = _openai(server)
    server.fail_next("500")
    server.fail_next("429")
    out = gen.generate(["s"], SamplingParams(n=1))
    assert out[0][0].text.startswith("Try simp.")
    assert server.outcomes["500"] == 1 and server.outcomes["429"] == 1
    gen.close()


@needs_server
def test_openai_api_key_from_environment(server, monkeypatch):
    server.api_key = "sk-test"
    monkeypatch.setenv("LEANSTAR_TEST_KEY", "sk-test")
    gen = _openai(server, api_key_env="LEANSTAR_TEST_KEY")
    assert gen.generate(["s"], SamplingParams())[0][0].text
    gen.close()


def test_openai_needs_base_url():
    with pytest.raises(ValueError, match="base_url"):
        make_generator(GeneratorConfig(backend="openai", base_url=""))
