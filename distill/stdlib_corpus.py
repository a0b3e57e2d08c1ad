"""Real text for the real world: questions and answers from this Python's standard library.

Every public function, class and module of the standard library that has a docstring gives one
item: the question names it (``What does json.dumps(obj, skipkeys, ...) do?``, ``What is
json.JSONDecoder?``, ``What is the module json for?``) and the answer is the first paragraph
of its docstring (``Serialize obj to a JSON formatted str.``), both real English and code
identifiers written by the library's authors. Sources are parsed with :mod:`ast`, never
imported, so nothing runs. ``pydoc_data`` topics and test packages are left out (they are
long prose and test fixtures, not question/answer pairs).

The items are a pure function of the installed standard library: every process on the same
Python build draws the same ones (the version is part of :func:`corpus_version`). A fixed
1-in-``mod`` slice, chosen by a hash of the item's dotted name, is held out of training
(:func:`is_heldout`), so a validator asking held-out questions measures what a model learned,
not what it memorised.

Imports nothing else from ``distill``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: Bumped whenever extraction or the question wording changes what items are produced.
EXTRACT_VERSION = "stdlib-corpus/v1"
MAX_QUESTION_CHARS = 100
MAX_ANSWER_CHARS = 120
MAX_ARGS = 4
_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "turtledemo", "__pycache__"}


@dataclass(frozen=True)
class DocItem:
    """One question about a documented name, and the first paragraph of its docstring."""

    key: str  # dotted name, e.g. "json.dumps" (what the held-out rule hashes)
    question: str
    answer: str


def corpus_version() -> str:
    """Names what :func:`stdlib_items` returns: the extractor and the Python it parsed."""
    return f"{EXTRACT_VERSION} python {sys.version.split()[0]} {sys.implementation.name}"


def is_heldout(key: str, mod: int) -> bool:
    """True for the fixed slice of items never trained on (by a hash of the dotted name)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % mod == 0


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _arg_names(args: ast.arguments) -> str:
    names = [a.arg for a in (*args.posonlyargs, *args.args) if a.arg not in ("self", "cls")]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [a.arg for a in args.kwonlyargs]
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return ", ".join(names[:MAX_ARGS]) + (", ..." if len(names) > MAX_ARGS else "")


def _items_of(tree: ast.Module, module: str) -> list[DocItem]:
    out: list[DocItem] = []
    doc = ast.get_docstring(tree)
    if doc:
        out.append(DocItem(module, f"What is the module {module} for?", _first_paragraph(doc)))

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            name = prefix + child.name
            text = ast.get_docstring(child)
            if text and not child.name.startswith("_"):
                if isinstance(child, ast.ClassDef):
                    question = f"What is {module}.{name}?"
                else:
                    question = f"What does {module}.{name}({_arg_names(child.args)}) do?"
                out.append(DocItem(f"{module}.{name}", question, _first_paragraph(text)))
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                walk(child, name + ".")

    walk(tree, "")
    return out


def _keep(item: DocItem) -> bool:
    return (
        0 < len(item.answer) <= MAX_ANSWER_CHARS
        and len(item.question) <= MAX_QUESTION_CHARS
        and item.answer.isprintable()
    )


@functools.cache
def stdlib_items() -> tuple[DocItem, ...]:
    """Every kept item of the installed standard library, in a fixed order (sorted files, then
    source order), each dotted name once. Parsed once per process (a few seconds)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not _SKIP_DIRS & set(p.relative_to(root).parts))
    seen: set[str] = set()
    items: list[DocItem] = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # lib2to3 fixtures and the like: not documentation
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for item in _items_of(tree, module):
            if item.key not in seen and _keep(item):
                seen.add(item.key)
                items.append(item)
    return tuple(items)


def split_items(mod: int) -> tuple[list[DocItem], list[DocItem]]:
    """(training items, held-out items) under the 1-in-``mod`` rule."""
    train: list[DocItem] = []
    held: list[DocItem] = []
    for item in stdlib_items():
        (held if is_heldout(item.key, mod) else train).append(item)
    return train, held


#: The world's held-out slice: one name in this many is never trained on. Its questions are the
#: world's ``prompts.jsonl``, which validators ask through ``validator.prompt_sources``.
PROMPT_HOLDOUT_MOD = 10
