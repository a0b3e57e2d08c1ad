"""``subnet bench NAME``: run one of the benchmarks that ship with the package.

Each benchmark is a module of :mod:`neurons.owner.benchmarks` with a ``main(argv) -> int``
(its own flags; ``subnet bench NAME --help`` lists them). Benchmarks print ratios measured side
by side in one run; results are recorded by hand in docs/benchmarks.md with the machine they
came from.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable, Sequence

from neurons.owner import benchmarks
from subnet.errors import ConfigError


def available() -> list[str]:
    """Names of the shipped benchmarks (the modules of ``neurons.owner.benchmarks``)."""
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.ispkg)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark name; omit to list them")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def run(args: argparse.Namespace) -> int:
    names = available()
    if not args.name:
        print("benchmarks:", ", ".join(names))
        return 0
    if args.name not in names:
        raise ConfigError(f"unknown benchmark {args.name!r} (available: {', '.join(names)})")
    module = importlib.import_module(f"{benchmarks.__name__}.{args.name}")
    main: Callable[[Sequence[str]], int] = module.main
    return int(main(args.rest) or 0)
