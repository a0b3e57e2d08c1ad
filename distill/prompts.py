"""Prompt datasets from local files: JSONL, Parquet, and Hugging Face ``save_to_disk`` folders.

Validators mix them with the synthetic families (``neurons/validator/prompts.py``); the
distillation tools read the same files (``subnet distill targets --prompts FILE``). Every row is
one prompt::

    {"prompt": "text"}                                   or
    {"messages": [{"role": "user", "content": "..."}]}   (chat turns; the last is the user's)
    + optional "answer": "ground truth"                   (compared exactly, after strip)

A bad row (bad JSON, neither or both of prompt/messages, malformed turns, non-string answer, a
duplicate of an earlier row) is an error naming the file, the row and the reason: a partly read
dataset would silently change what validators ask. With ``skip_bad_rows`` the bad rows are
left out instead, and counted (:attr:`PromptFile.skipped`, with the first reasons kept).

JSONL objects may hold only those keys (a typo like ``"promt"`` is caught); Parquet files and
dataset folders are tables, whose other columns are not read. Files are read whole: a dataset
is expected to fit in memory (the validator keeps every row).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.tasks import Task, content_key, task_id
from subnet.chat import PromptError, parse_messages

COLUMNS = ("prompt", "messages", "answer")
KINDS = ("jsonl", "parquet", "dataset")
MAX_REASONS = 5  # bad-row reasons kept when they are skipped


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file, the row and the reason.

    ``row`` is the line number of a JSONL file or the 1-based row of a table; 0 is the file
    as a whole.
    """

    def __init__(self, path: str | Path, row: int, reason: str, unit: str = "line") -> None:
        where = f"{path}:{row}" if unit == "line" else f"{path} row {row}"
        where = str(path) if row == 0 else where
        super().__init__(f"{where}: {reason}")
        self.path, self.row, self.reason = str(path), row, reason


@dataclass(frozen=True)
class PromptFile:
    """A loaded dataset: its prompts in file order and what identifies it."""

    path: str
    kind: str  # one of KINDS
    digest: str  # sha256 over the file's bytes (a folder: every file's name and bytes)
    tasks: tuple[Task, ...]
    rows: tuple[int, ...]  # where each task is: its JSONL line or 1-based table row
    skipped: int = 0  # bad rows left out (skip_bad_rows)
    reasons: tuple[str, ...] = ()  # the first MAX_REASONS of them

    @property
    def unit(self) -> str:
        return "line" if self.kind == "jsonl" else "row"

    def where(self, index: int) -> str:
        """``path:line`` or ``path row N`` of the index-th task (for error messages)."""
        row = self.rows[index]
        return f"{self.path}:{row}" if self.kind == "jsonl" else f"{self.path} row {row}"

    @property
    def chat(self) -> bool:
        """Whether any prompt is chat turns (the model then needs a chat template)."""
        return any(t.messages for t in self.tasks)


def file_kind(path: str | Path) -> str:
    """``dataset`` for a folder, else by suffix; PromptFileError for anything else."""
    p = Path(path)
    if p.is_dir():
        return "dataset"
    if not p.exists():
        raise PromptFileError(path, 0, "no such file or folder")
    if p.suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if p.suffix in (".parquet", ".pq"):
        return "parquet"
    raise PromptFileError(
        path, 0, "unknown format: expected .jsonl, .parquet or a datasets save_to_disk folder"
    )


def parse_row(obj: Any, family: str) -> Task:
    """One row as a Task; ValueError (PromptError) with the reason (no location)."""
    if not isinstance(obj, Mapping):
        raise PromptError(f"expected an object, got {type(obj).__name__}")
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (messages is None):
        raise PromptError('a row needs exactly one of "prompt" and "messages"')
    answer = obj.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise PromptError(f'"answer" must be a string, got {type(answer).__name__}')
    if prompt is not None:
        if not isinstance(prompt, str):
            raise PromptError(f'"prompt" must be a string, got {type(prompt).__name__}')
        if not prompt.strip():
            raise PromptError('"prompt" is empty')
        return Task(family, prompt, answer, task_id(family, content_key(prompt)))
    turns = parse_messages(messages)
    return Task(family, "", answer, task_id(family, content_key(turns)), turns)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PromptFileError(path, 0, f"cannot read: {e}") from e
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            reason = f"invalid JSON ({getattr(e, 'msg', e)})"
            yield i, PromptError(reason)
            continue
        if isinstance(obj, dict):
            unknown = sorted(set(obj) - set(COLUMNS))
            if unknown:
                yield i, PromptError(f"unknown keys {unknown}; allowed: prompt, messages, answer")
                continue
        yield i, obj


def _table_rows(
    columns: list[str], read: Callable[[list[str]], list[dict[str, Any]]], path: Path
) -> Iterator[tuple[int, Any]]:
    """Rows of a table's prompt columns. A column of turns is a list of structs, whose fields
    are the union over all rows: a field a turn does not have reads as null and is dropped."""
    present = [c for c in COLUMNS if c in columns]
    if "prompt" not in present and "messages" not in present:
        raise PromptFileError(path, 0, f'no "prompt" or "messages" column (columns: {columns})')
    for i, row in enumerate(read(present), start=1):
        turns = row.get("messages")
        if isinstance(turns, list):
            row["messages"] = [
                {k: v for k, v in t.items() if v is not None} if isinstance(t, dict) else t
                for t in turns
            ]
        yield i, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise PromptFileError(path, 0, f"cannot read Parquet: {e}") from e
    yield from _table_rows(table.column_names, lambda cols: table.select(cols).to_pylist(), path)


def _dataset_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import datasets
    import pyarrow as pa

    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as e:
        raise PromptFileError(path, 0, f"not a datasets save_to_disk folder: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        raise PromptFileError(
            path, 0, f"a DatasetDict: point at one split's folder (splits: {sorted(ds)})"
        )
    yield from _table_rows(ds.column_names, lambda cols: ds.select_columns(cols).to_list(), path)


def dataset_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    try:
        for f in files:
            if p.is_dir():
                h.update(f.relative_to(p).as_posix().encode() + b"\0")
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    except OSError as e:
        raise PromptFileError(path, 0, f"cannot read: {e}") from e
    return h.hexdigest()


def load_prompt_file(
    path: str | Path, *, family: str | None = None, skip_bad_rows: bool = False
) -> PromptFile:
    """Every prompt of a JSONL, Parquet or ``save_to_disk`` dataset, validated.

    ``family`` labels the tasks (default: the file's name). Raises PromptFileError on the first
    bad row, or, with ``skip_bad_rows``, leaves bad rows out and counts them; a file with no
    usable prompt is always an error.
    """
    p = Path(path)
    kind = file_kind(p)
    unit = "line" if kind == "jsonl" else "row"
    label = family or p.name
    rows = {"jsonl": _jsonl_rows, "parquet": _parquet_rows, "dataset": _dataset_rows}[kind](p)
    tasks: list[Task] = []
    first: dict[str, int] = {}
    skipped, reasons = 0, list[str]()
    for i, obj in rows:
        try:
            if isinstance(obj, PromptError):
                raise obj
            task = parse_row(obj, label)
            if task.digest in first:
                raise PromptError(f"duplicate prompt (first at {unit} {first[task.digest]})")
        except PromptError as e:
            if not skip_bad_rows:
                raise PromptFileError(p, i, str(e), unit) from None
            skipped += 1
            if len(reasons) < MAX_REASONS:
                reasons.append(str(PromptFileError(p, i, str(e), unit)))
            continue
        first[task.digest] = i
        tasks.append(task)
    if not tasks:
        what = f"all {skipped} rows are bad" if skipped else "the file is empty"
        raise PromptFileError(p, 0, f"no prompts ({what})")
    return PromptFile(
        str(p),
        kind,
        dataset_digest(p),
        tuple(tasks),
        tuple(first.values()),
        skipped,
        tuple(reasons),
    )
