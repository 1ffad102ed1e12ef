"""Export accepted thoughts as a Hugging Face `datasets` dataset (saved to disk, optionally
pushed to the Hub).

One row per `ThoughtStep`, with the same columns as its JSON form (`schema`, `state`,
`thought`, `tactic`, `theorem`, `source`, `teacher`, `round`, `prompt_version`, `key`,
`usage`), so `leanstar.records.from_json(row, ThoughtStep)` rebuilds each record exactly and
SFT can read either the JSONL file or the dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from leanstar.jsonl import read_records
from leanstar.records import ThoughtStep, to_json

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def features():
    from datasets import Features, Value

    text = Value("string")
    return Features(
        {
            "schema": text,
            "state": text,
            "thought": text,
            "tactic": text,
            "theorem": text,
            "source": text,
            "teacher": text,
            "round": Value("int64"),
            "prompt_version": text,
            "key": text,
            "usage": {k: Value("int64") for k in USAGE_KEYS},
        }
    )


def export_dataset(records_path: Path, out_dir: Path, push_to_hub: str = ""):
    """Write the records of `records_path` to `out_dir` (replaced whole, never half-written);
    returns the dataset."""
    import datasets

    rows = [_row(r) for r in read_records(records_path, ThoughtStep)]
    columns = features()
    # Column-wise, so that an empty file still gives a dataset with every column.
    ds = datasets.Dataset.from_dict(
        {name: [row[name] for row in rows] for name in columns}, features=columns
    )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    datasets.disable_progress_bars()  # ours is the only progress display
    # An empty dataset saved with the default sharding has no data file and cannot be loaded
    # back (datasets 5.2); one explicit shard keeps it readable.
    ds.save_to_disk(str(tmp), num_shards=1 if len(ds) == 0 else None)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    if push_to_hub:
        ds.push_to_hub(push_to_hub)
    return ds


def _row(record: ThoughtStep) -> dict:
    row = to_json(record)
    row["usage"] = {k: int(record.usage.get(k, 0)) for k in USAGE_KEYS}
    return row
