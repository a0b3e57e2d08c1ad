"""Chat-formatted prompt files, rendered with the teacher's own chat template.

A real teacher is an instruct model: it sees its prompts through its chat template, and so do
the validators that score a miner. A prompt file line is either ``{"prompt": str, "answer":
str?}`` (used as plain text, as before) or, in the validator's prompt-source format,
``{"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...], "answer":
str?}``. A chat prompt becomes token ids exactly the way Hugging Face renders it for
generation: ``apply_chat_template(messages, add_generation_prompt=True)`` to text, then the
teacher's tokenizer without adding special tokens again (the template writes BOS itself when
the model wants one). The last turn must be the user's: the teacher writes the answer.

Every bad line fails the whole file with an error naming the file, the line and the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.tasks import Task, TaskFileError, parse_jsonl_line

ROLES = ("system", "user", "assistant")
CHAT_FAMILY = "chat"


@dataclass(frozen=True)
class ChatTask(Task):
    """A task whose prompt is a conversation; ``prompt`` is its last user turn (for logs)."""

    messages: tuple[tuple[str, str], ...] = ()  # (role, content) per turn

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def _chat_line(obj: dict[str, Any], path: str | Path, lineno: int) -> ChatTask:
    def bad(reason: str) -> TaskFileError:
        return TaskFileError(path, lineno, reason)

    unknown = sorted(set(obj) - {"messages", "answer"})
    if unknown:
        raise bad(f"unknown keys {unknown}; allowed with messages: messages, answer")
    turns = obj["messages"]
    if not isinstance(turns, list) or not turns:
        raise bad('"messages" must be a non-empty list of {"role", "content"} objects')
    messages: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise bad(f'messages[{i}] must be an object with exactly "role" and "content"')
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise bad(f"messages[{i}].role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise bad(f"messages[{i}].content must be a non-empty string")
        messages.append((role, content))
    if messages[-1][0] != "user":
        raise bad("the last message must be the user's (the teacher writes the answer)")
    answer = obj.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise bad(f'"answer" must be a string, got {type(answer).__name__}')
    canonical = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(f"{CHAT_FAMILY}\x00{canonical}".encode()).hexdigest()
    return ChatTask(
        CHAT_FAMILY, messages[-1][1], answer, f"{CHAT_FAMILY}-{digest[:16]}", tuple(messages)
    )


def load_prompt_file(path: str | Path) -> list[Task]:
    """Plain and chat prompts from a JSONL file (both kinds may be mixed), in file order.

    Raises TaskFileError naming the line on any bad line or a duplicate prompt, or if the
    file has no prompts.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TaskFileError(path, 0, f"cannot read: {e}") from e
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskFileError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from e
        if isinstance(obj, dict) and "messages" in obj:
            task: Task = _chat_line(obj, path, lineno)
        else:
            task = parse_jsonl_line(line, path, lineno)
        if task.task_id in first_line:
            raise TaskFileError(
                path, lineno, f"duplicate prompt (first on line {first_line[task.task_id]})"
            )
        first_line[task.task_id] = lineno
        tasks.append(task)
    if not tasks:
        raise TaskFileError(path, 0, "no prompts (the file is empty)")
    return tasks


def render_chat(model_dir: str | Path, tasks: Sequence[ChatTask]) -> list[list[int]]:
    """Prompt ids of chat tasks through ``model_dir``'s chat template (generation prompt on).

    Raises ValueError if the model has no chat template (the caller names the model).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"{model_dir}: the tokenizer has no chat template, so chat-formatted prompts "
            "cannot be rendered (add chat_template to tokenizer_config.json, or use "
            '"prompt" lines)'
        )
    out = []
    for t in tasks:
        text = tok.apply_chat_template(t.as_dicts(), add_generation_prompt=True, tokenize=False)
        out.append(list(tok(text, add_special_tokens=False)["input_ids"]))
    return out
