"""`subnet validator` (placeholder until issue 6 lands)."""

from __future__ import annotations

import argparse

from subnet.notyet import configure_placeholder, not_yet


def configure(parser: argparse.ArgumentParser) -> None:
    configure_placeholder(parser, 6)


def run(args: argparse.Namespace) -> int:
    raise not_yet("subnet validator", 6)
