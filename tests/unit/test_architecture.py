"""The rooms' rules, checked on the source: no import cycles, and who may import whom.

Every ``import`` counts, including those inside functions (a lazy import is still a
dependency, and a cycle hidden in a function is still a cycle); only imports under
``if TYPE_CHECKING:`` do not, since they never run (annotations only). The one exception is the
CLI root, ``subnet/cli.py``, which names every room's command module as a string: it may reach
everything and nothing reaches it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("neurons", "subnet", "scoring", "distill")
CLI_ROOT = "subnet.cli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for room in ROOMS for p in sorted((REPO / room).rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (the longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo += child.orelse
                continue
            todo.append(child)
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in ``path`` (function bodies included)."""
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import sub`` depends on the submodule; ``from mod import name`` on mod.
            targets = [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            resolved = _resolve(target, modules)
            # A module's own parent packages run first anyway: not a dependency of its own.
            if resolved is not None and resolved != name and not name.startswith(resolved + "."):
                out.add(resolved)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: _imports(name, path, modules) for name, path in modules.items() if name != CLI_ROOT
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _package_of(module: str, modules: Iterable[str]) -> str:
    known = set(modules)
    return module if f"{module}.__init__" in known else module.rpartition(".")[0] or module


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    modules = _modules()
    packages: dict[str, set[str]] = defaultdict(set)
    for name, deps in _graph().items():
        own = name if _is_package(name, modules) else name.rpartition(".")[0]
        for dep in deps:
            other = dep if _is_package(dep, modules) else dep.rpartition(".")[0]
            if other != own and not own.startswith(other + ".") and not other.startswith(own):
                packages[own].add(other)
    assert _cycles(dict(packages)) == []


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("scoring", ("subnet", "neurons", "distill")),  # pure logic: numbers in, numbers out
        ("subnet", ("neurons",)),  # shared plumbing never reaches into a process
        ("distill", ("neurons",)),
        ("neurons.miner", ("neurons.owner", "neurons.validator", "neurons.localnet")),
        ("neurons.validator", ("neurons.owner", "neurons.miner", "neurons.localnet")),
        ("neurons.miner", ("neurons.demo_fixtures",)),  # the cheats never ship in the miner
        ("neurons.validator", ("neurons.demo_fixtures",)),  # nor the weight copier in the validator
    ],
)
def test_rooms_import_only_what_they_may(importer: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(
        (name, dep)
        for name, deps in _graph().items()
        if name == importer or name.startswith(importer + ".")
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in forbidden)
    )
    assert bad == []


def test_only_the_chain_room_talks_to_the_chain_sdk() -> None:
    """``bittensor`` chain APIs live in ``subnet/chain``; elsewhere only auth and keys."""
    allowed_elsewhere = {
        "bittensor.http_auth",
        "bittensor.sp_core",
        "bittensor.signing",
        "bittensor.wallets",
        "bittensor.wallet",
    }
    offenders = []
    for name, path in _modules().items():
        if name.startswith("subnet.chain") or name in ("subnet.wallets",):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
                if node.module == "bittensor":
                    mods = [f"bittensor.{a.name}" for a in node.names]
            for mod in mods:
                if mod.split(".")[0] == "bittensor" and mod not in allowed_elsewhere:
                    offenders.append((name, mod))
    assert offenders == []
