"""Placeholder for subcommands whose issue has not landed yet: says so, exits non-zero."""

from __future__ import annotations

import argparse

from subnet.errors import SubnetError


class NotYetError(SubnetError):
    """The subcommand exists in the CLI but its feature has not landed."""


def not_yet(feature: str, issue: int) -> NotYetError:
    return NotYetError(f"{feature} is not available yet (tracked in issue {issue})")


def configure_placeholder(parser: argparse.ArgumentParser, issue: int) -> None:
    parser.epilog = f"Not available yet: tracked in issue {issue}."
