"""``--sweep KEY=V1,V2,...`` and ``--chain KEY=VALUE``: owner-tool flags parsed into typed values.

Shared by the simulator and the replay, which sweep the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from scoring.sim_population import CHAIN_SIM_KEYS
from scoring.yuma_types import YumaParams
from subnet.errors import ConfigError


def parse_value(key: str, text: str) -> Any:
    """Text -> the type of ``key`` (scoring/weights keys as in subnet.toml, chain as raw ints)."""
    from subnet.config import declared_keys, parse_text

    name = key.rpartition(".")[2]
    if key.startswith(("scoring.", "weights.")):
        keys = declared_keys()
        if key not in keys:
            raise ConfigError(f"--sweep: unknown key {key!r}")
        return parse_text(key, keys[key], text)
    fields = {f.name: f for f in dataclasses.fields(YumaParams)}
    if name in fields and isinstance(fields[name].default, bool):
        low = text.strip().lower()
        if low not in ("true", "false", "1", "0", "on", "off"):
            raise ConfigError(f"{key}: expected true or false, got {text!r}")
        return low in ("true", "1", "on")
    if name in fields or name in CHAIN_SIM_KEYS:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    raise ConfigError(
        f"unknown key {key!r}: use scoring.KEY, weights.KEY or one of "
        f"{', '.join(sorted([*fields, *CHAIN_SIM_KEYS]))}"
    )


def pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"{flag} expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def sweep_values(args: argparse.Namespace) -> tuple[str | None, list[Any]]:
    if not args.sweep:
        return None, [None]
    key, text = pair(args.sweep, "--sweep")
    values = [parse_value(key, v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise ConfigError("--sweep needs at least one value")
    return key, values
