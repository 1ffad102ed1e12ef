"""The local teacher: the prover's transformers sampler, with the tiny random model."""

import asyncio
import json

from leanstar import cli
from leanstar.config import GeneratorConfig
from leanstar.generation.base import Sample
from leanstar.jsonl import read_records
from leanstar.prompting import teacher_answer, teacher_messages
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.local_teacher import LocalTeacher
from leanstar.thoughts.store import ThoughtReject


def test_tiny_model_end_to_end_every_answer_unparsable(tiny_model_dir, tmp_path):
    """The tiny random model writes nonsense: the honest outcome is every answer rejected as
    unparsable, counted in the summary, and an empty (but valid) dataset."""
    run_dir = tmp_path / "run"
    argv = ["thoughts", "--teacher", "local", "--run_dir", str(run_dir),
            "--generator.model", str(tiny_model_dir), "--generator.max_new_tokens", "16",
            "--generator.batch_size", "4", "--max_pairs", "6", "--progress", "false"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_dir"]["accepted"] == 0
    assert summary["run_dir"]["rejected_by_reason"]["unparsable"] == 6
    assert summary["this_run"]["completion_tokens"] > 0
    rejects = read_records(run_dir / "rejects.jsonl", ThoughtReject)
    assert len(rejects) == 6 and all(r.teacher == str(tiny_model_dir) for r in rejects)
    assert all(r.usage["prompt_tokens"] > 500 for r in rejects)  # the whole few-shot prompt
    import datasets

    assert len(datasets.load_from_disk(str(run_dir / "dataset"))) == 0
    assert cli.main(argv) == 0  # resumed: everything is done, nothing is sampled again
    assert len(read_records(run_dir / "rejects.jsonl", ThoughtReject)) == 6


class ScriptedGenerator:
    """A Generator that answers like a good teacher and remembers its batches."""

    name = "scripted"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.batches = []

    def generate(self, prompts, params):
        self.batches.append(list(prompts))
        return [[Sample(teacher_answer("Close it.", "simp"), 0.0, 5, "stop")] for _ in prompts]

    def close(self):
        pass


def test_requests_are_batched_through_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = ThoughtsConfig(teacher="local", generator=GeneratorConfig(batch_size=4))
    generator = ScriptedGenerator(tok)
    teacher = LocalTeacher(cfg, generator=generator)

    async def ask_many():
        messages = [teacher_messages(f"⊢ {i} = {i}", "simp") for i in range(10)]
        return await asyncio.gather(*(teacher.complete(m) for m in messages))

    answers = asyncio.run(ask_many())
    assert [len(b) for b in generator.batches] == [4, 4, 2]
    assert all(p.startswith("<|im_start|>system\n") for b in generator.batches for p in b)
    assert answers[0].text == teacher_answer("Close it.", "simp")
    assert answers[0].completion_tokens == 5 and answers[0].prompt_tokens > 100
