"""`subnet distill` (placeholder until the tiny world lands)."""

from __future__ import annotations

import argparse

from subnet.notyet import configure_placeholder, not_yet


def configure(parser: argparse.ArgumentParser) -> None:
    configure_placeholder(parser, 3)


def run(args: argparse.Namespace) -> int:
    raise not_yet("subnet distill", 3)
