"""Chat-formatted prompt files: the validator's ``messages`` rows, checked line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.chat import ChatTask, load_prompt_file
from distill.tasks import Task, TaskFileError


def _file(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_plain_and_chat_lines_mix_in_file_order(tmp_path: Path) -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "add 1 2 ="},
        ],
        "answer": " 3",
    }
    tasks = load_prompt_file(_file(tmp_path, {"prompt": "sort 3 1 ="}, "", chat))
    assert [type(t) for t in tasks] == [Task, ChatTask]
    c = tasks[1]
    assert isinstance(c, ChatTask)
    assert c.family == "chat" and c.prompt == "add 1 2 =" and c.answer == " 3"
    assert c.as_dicts() == chat["messages"]
    # The id is the conversation's content digest: the same turns, the same id.
    again = load_prompt_file(_file(tmp_path, chat))[0]
    assert again.task_id == c.task_id and c.task_id.startswith("chat-")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"messages": []}, "non-empty list"),
        ({"messages": "hi"}, "non-empty list"),
        ({"messages": [{"role": "user"}]}, 'exactly "role" and "content"'),
        ({"messages": [{"role": "user", "content": "x", "name": "a"}]}, "exactly"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "is not one of"),
        ({"messages": [{"role": "user", "content": " "}]}, "non-empty string"),
        ({"messages": [{"role": "user", "content": 3}]}, "non-empty string"),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "last message must be the user's",
        ),
        ({"messages": [{"role": "user", "content": "q"}], "answer": 3}, '"answer" must be'),
        ({"messages": [{"role": "user", "content": "q"}], "prompt": "q"}, "unknown keys"),
        ("{not json", "invalid JSON"),
        ({"prompt": ""}, '"prompt" is empty'),
    ],
)
def test_a_bad_line_fails_the_file_naming_the_line(
    tmp_path: Path, row: object, reason: str
) -> None:
    path = _file(tmp_path, {"prompt": "fine"}, row)
    with pytest.raises(TaskFileError, match=reason) as e:
        load_prompt_file(path)
    assert e.value.line == 2 and str(e.value).startswith(f"{path}:2: ")


def test_duplicates_and_empty_files_are_refused(tmp_path: Path) -> None:
    chat = {"messages": [{"role": "user", "content": "q"}]}
    with pytest.raises(TaskFileError, match=r"duplicate prompt \(first on line 1\)"):
        load_prompt_file(_file(tmp_path, chat, chat))
    with pytest.raises(TaskFileError, match="no prompts"):
        load_prompt_file(_file(tmp_path, ""))
