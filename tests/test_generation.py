import pytest

from leanstar.config import GeneratorConfig
from leanstar.generation import SamplingParams, make_generator
from leanstar.generation.base import Sample


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return make_generator(GeneratorConfig(model=str(tiny_model_dir), batch_size=2, seed=1))


def test_shapes_and_logprobs(gen):
    prompts = ["⊢ 1 = 1", "x : ℕ\n⊢ x = x", "⊢ True"]
    out = gen.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=12))
    assert [len(o) for o in out] == [2, 2, 2]
    for samples in out:
        for s in samples:
            assert s.finish_reason in ("stop", "length")
            assert s.num_tokens == len(s.token_logprobs) <= 12
            assert s.logprob == pytest.approx(sum(s.token_logprobs))
            assert all(lp <= 0 for lp in s.token_logprobs)
            assert list(s.token_ends) == sorted(s.token_ends)
            assert not s.token_ends or s.token_ends[-1] <= len(s.text)


def test_greedy_is_deterministic_and_batch_independent(gen):
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    alone = gen.generate(["⊢ True"], params)[0][0]
    batched = gen.generate(["x : ℕ\n⊢ x + 0 = x", "⊢ True"], params)[1][0]
    assert alone.text == batched.text
    assert alone.logprob == pytest.approx(batched.logprob, abs=1e-4)


def test_seeded_sampling_repeats_and_unseeded_varies(gen):
    seeded = SamplingParams(n=3, temperature=1.0, max_new_tokens=10, seed=123)
    assert [s.text for s in gen.generate(["⊢ True"], seeded)[0]] == [
        s.text for s in gen.generate(["⊢ True"], seeded)[0]
    ]
    free = SamplingParams(n=1, temperature=1.0, max_new_tokens=10)
    texts = {gen.generate(["⊢ True"], free)[0][0].text for _ in range(4)}
    assert len(texts) > 1  # resampling after a failed tactic must not repeat the same sample


def test_stop_string_is_cut_and_counted(gen):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=30, seed=5)
    free = gen.generate(["⊢ True"], params)[0]
    # pick a character that occurs in a sampled text, then stop on it
    text = next(s.text for s in free if len(s.text) > 3)
    stop = text[2]
    stopped = gen.generate(
        ["⊢ True"], SamplingParams(n=4, temperature=1.0, max_new_tokens=30, seed=5, stop=(stop,))
    )[0]
    for s in stopped:
        assert stop not in s.text
    assert any(s.finish_reason == "stop" for s in stopped)


def test_logprob_of_span():
    s = Sample("ab```lean\nsimp\n```", -6.0, 3, "stop", (-1.0, -2.0, -3.0), (2, 10, 18))
    assert s.logprob_of_span(10, 14) == -3.0
    assert s.logprob_of_span(0, 18) == -6.0
    assert s.logprob_of_span(1, 3) == -3.0


def test_sampler_restores_qsparse_from_checkpoint(tmp_path, tiny_model_dir):
    from leanstar.config import SparseConfig
    from leanstar.sparse.qsparse import load_model, qsparse_settings

    model = load_model(tiny_model_dir, SparseConfig(enabled=True, keep_ratio=0.5))
    model.save_pretrained(tmp_path / "sparse")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "sparse")
    gen = make_generator(GeneratorConfig(model=str(tmp_path / "sparse")))
    settings = qsparse_settings(gen.model)
    assert settings is not None and settings.keep_ratio == 0.5
