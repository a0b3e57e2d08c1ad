"""Prompt datasets: JSONL, Parquet and ``save_to_disk`` folders, good rows and bad ones.

The Parquet files are written by pyarrow and the dataset folders by ``datasets`` itself, so the
reader meets the real on-disk formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.prompts import PromptFileError, dataset_digest, load_prompt_file
from subnet.chat import ChatMessage

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 2 2 ="}]
GOOD: list[dict[str, Any]] = [
    {"prompt": "say hi", "answer": "hi"},
    {"prompt": "tell a story"},
    {"messages": CHAT, "answer": " 4"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> Path:
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


WRITERS = {
    "jsonl": lambda d, rows: write_jsonl(d / "p.jsonl", rows),
    "parquet": lambda d, rows: write_parquet(d / "p.parquet", rows),
    "dataset": lambda d, rows: write_dataset(d / "ds", rows),
}


def _full(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables have every column in every row (null where a row has none)."""
    return [{"prompt": None, "messages": None, "answer": None, **r} for r in rows]


@pytest.mark.parametrize("kind", list(WRITERS))
def test_good_rows_from_every_format(tmp_path: Path, kind: str) -> None:
    rows = GOOD if kind == "jsonl" else _full(GOOD)
    f = load_prompt_file(WRITERS[kind](tmp_path, rows), family="mine")
    assert f.kind == kind and f.skipped == 0 and f.chat
    assert [(t.prompt, t.answer) for t in f.tasks[:2]] == [("say hi", "hi"), ("tell a story", None)]
    chat = f.tasks[2]
    assert chat.messages == (ChatMessage("system", "be brief"), ChatMessage("user", "add 2 2 ="))
    assert chat.prompt == "" and chat.answer == " 4" and chat.content == chat.messages
    assert all(t.family == "mine" and t.task_id.startswith("mine-") for t in f.tasks)
    assert len({t.digest for t in f.tasks}) == 3
    assert f.digest == dataset_digest(f.path) and len(f.digest) == 64


def test_the_same_prompt_has_the_same_digest_in_every_format(tmp_path: Path) -> None:
    digests = [
        [t.digest for t in load_prompt_file(w(tmp_path, _full(GOOD))).tasks]
        for w in WRITERS.values()
    ]
    assert digests[0] == digests[1] == digests[2]


def test_tables_keep_only_their_prompt_columns_and_drop_null_turn_fields(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": 1, "messages": [{"role": "user", "content": "a", "name": "x"}], "source": "s"},
        {"id": 2, "messages": [{"role": "user", "content": "b", "name": None}], "source": "s"},
    ]
    # the first row's "name" is a real field the turn format does not take; the second only
    # has it because the table's struct type is the union over rows
    with pytest.raises(PromptFileError, match=r"p\.parquet row 1: .*unsupported keys \['name'\]"):
        load_prompt_file(write_parquet(tmp_path / "p.parquet", rows))
    rows[0]["messages"][0].pop("name")
    f = load_prompt_file(write_parquet(tmp_path / "q.parquet", rows))
    assert [t.messages[0].content for t in f.tasks] == ["a", "b"]


BAD_JSONL = [
    ("{not json", "invalid JSON"),
    ('["prompt"]', "expected an object, got list"),
    ('{"answer": "x"}', 'exactly one of "prompt" and "messages"'),
    ('{"prompt": "q", "messages": []}', 'exactly one of "prompt" and "messages"'),
    ('{"prompt": ""}', '"prompt" is empty'),
    ('{"prompt": "   "}', '"prompt" is empty'),
    ('{"prompt": 3}', '"prompt" must be a string, got int'),
    ('{"prompt": "q", "answer": 4}', '"answer" must be a string, got int'),
    ('{"prompt": "q", "extra": 1}', "unknown keys"),
    ('{"prompt": "ok"}', "duplicate prompt \\(first at line 1\\)"),
    (
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}',
        "last turn",
    ),
    ('{"messages": [{"role": "wizard", "content": "hi"}]}', "role must be one of"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_JSONL)
def test_a_bad_jsonl_line_names_file_line_and_reason(tmp_path: Path, bad: str, reason: str) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", ['{"prompt": "ok"}', "", bad])
    with pytest.raises(PromptFileError, match=reason) as info:
        load_prompt_file(path)
    assert info.value.row == 3 and str(info.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize("kind", ["parquet", "dataset"])
def test_a_bad_table_row_names_file_row_and_reason(tmp_path: Path, kind: str) -> None:
    rows = _full([{"prompt": "ok"}, {"prompt": "fine"}, {"answer": "orphan"}])
    path = WRITERS[kind](tmp_path, rows)
    with pytest.raises(PromptFileError, match='exactly one of "prompt" and "messages"') as info:
        load_prompt_file(path)
    assert info.value.row == 3 and str(info.value).startswith(f"{path} row 3: ")


@pytest.mark.parametrize("kind", list(WRITERS))
def test_bad_rows_are_skipped_only_when_asked_and_then_counted(tmp_path: Path, kind: str) -> None:
    rows = [*GOOD, {"prompt": "say hi"}, {"prompt": "  "}, {"messages": [{"role": "user"}]}]
    path = WRITERS[kind](tmp_path, rows if kind == "jsonl" else _full(rows))
    with pytest.raises(PromptFileError, match="duplicate prompt"):
        load_prompt_file(path)
    f = load_prompt_file(path, skip_bad_rows=True)
    assert len(f.tasks) == 3 and f.skipped == 3
    assert [r.split(": ", 1)[1] for r in f.reasons] == [
        f"duplicate prompt (first at {'line' if kind == 'jsonl' else 'row'} 1)",
        '"prompt" is empty',
        "messages[0]: missing content",
    ]


def test_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="no such file"):
        load_prompt_file(tmp_path / "nope.jsonl")
    (tmp_path / "p.csv").write_text("prompt\nhi\n")
    with pytest.raises(PromptFileError, match="unknown format"):
        load_prompt_file(tmp_path / "p.csv")
    for text in ["", "\n  \n"]:
        (tmp_path / "e.jsonl").write_text(text)
        with pytest.raises(PromptFileError, match=r"no prompts \(the file is empty\)"):
            load_prompt_file(tmp_path / "e.jsonl")
    write_jsonl(tmp_path / "b.jsonl", ["{", "{"])
    with pytest.raises(PromptFileError, match=r"no prompts \(all 2 rows are bad\)"):
        load_prompt_file(tmp_path / "b.jsonl", skip_bad_rows=True)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe")
    with pytest.raises(PromptFileError, match="cannot read"):
        load_prompt_file(tmp_path / "bin.jsonl")
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PromptFileError, match="cannot read Parquet"):
        load_prompt_file(tmp_path / "x.parquet")
    write_parquet(tmp_path / "cols.parquet", [{"text": "hi"}])
    with pytest.raises(PromptFileError, match=r"no \"prompt\" or \"messages\" column"):
        load_prompt_file(tmp_path / "cols.parquet")


def test_dataset_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptFileError, match="not a datasets save_to_disk folder"):
        load_prompt_file(tmp_path / "empty")
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(GOOD[:2]),
            "test": datasets.Dataset.from_list(GOOD[:1]),
        }
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(PromptFileError, match=r"DatasetDict: point at one split's folder"):
        load_prompt_file(tmp_path / "dd")
    f = load_prompt_file(tmp_path / "dd" / "train")
    assert [t.prompt for t in f.tasks] == ["say hi", "tell a story"]


def test_a_selected_and_shuffled_dataset_reads_in_its_own_order(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_list([{"prompt": f"p{i}"} for i in range(10)])
    ds.select([7, 3, 5]).save_to_disk(str(tmp_path / "sel"))
    assert [t.prompt for t in load_prompt_file(tmp_path / "sel").tasks] == ["p7", "p3", "p5"]


def test_digest_follows_the_bytes(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", GOOD)
    before = load_prompt_file(a).digest
    write_jsonl(a, [*GOOD, {"prompt": "one more"}])
    assert load_prompt_file(a).digest != before
    d = write_dataset(tmp_path / "ds", _full(GOOD))
    assert dataset_digest(d) == dataset_digest(d) != before
