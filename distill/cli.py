"""``subnet distill``: the tiny world (more subcommands join as the distillation rooms land).

Nothing heavy at import: the build imports torch and transformers only when it runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from subnet.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="distill_command", required=True, metavar="COMMAND")
    tiny = sub.add_parser(
        "tiny",
        help="build (or reuse) the tiny tokenizer, teacher and undistilled student",
        description="Build the deterministic tiny world into the user cache ($SUBNET_CACHE "
        "overrides it) and copy it to --out. A second call reuses the cache.",
    )
    tiny.add_argument("--out", type=Path, required=True, help="directory to copy the world to")
    tiny.add_argument("--force", action="store_true", help="rebuild even if it is cached")


def run(args: argparse.Namespace) -> int:
    if args.distill_command == "tiny":
        return _tiny(args.out, args.force)
    raise ConfigError(f"unknown distill command {args.distill_command!r}")


def _tiny(out: Path, force: bool) -> int:
    from distill.tiny import build_tiny_world

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty directory")
    world = build_tiny_world(force=force, log=lambda m: print(m, file=sys.stderr, flush=True))
    shutil.copytree(world.root, out, dirs_exist_ok=True)
    info = world.info()
    print(f"tiny world {info['hash']} ({'built' if world.built else 'cached'}: {world.root})")
    for name, stats in info["stats"].items():
        acc = stats["heldout_accuracy"]
        print(f"  {out / name}: held-out accuracy {acc['all']:.0%} {acc}")
    print(f"  {out / 'tokenizer'}")
    return 0
