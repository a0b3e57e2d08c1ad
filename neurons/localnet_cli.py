"""`subnet localnet` (placeholder until issue 8 lands)."""

from __future__ import annotations

import argparse

from subnet.notyet import configure_placeholder, not_yet


def configure(parser: argparse.ArgumentParser) -> None:
    configure_placeholder(parser, 8)


def run(args: argparse.Namespace) -> int:
    raise not_yet("subnet localnet", 8)
