"""``subnet bench NAME``: run ``scripts/bench_NAME.py`` (its ``main(argv)``) from the checkout.

Benchmarks print ratios measured side by side in one run; results are recorded by hand in
docs/benchmarks.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from subnet.errors import ConfigError

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in SCRIPTS_DIR.glob("bench_*.py"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark name (bench_NAME.py); omit to list")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")


def run(args: argparse.Namespace) -> int:
    names = available()
    if not args.name:
        print("benchmarks:", ", ".join(names) if names else "(none found in scripts/)")
        return 0
    path = SCRIPTS_DIR / f"bench_{args.name}.py"
    if not path.is_file():
        raise ConfigError(
            f"unknown benchmark {args.name!r} (available: {', '.join(names) or 'none'})"
        )
    spec = importlib.util.spec_from_file_location(f"bench_{args.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.rest) or 0)
