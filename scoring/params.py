"""Declared, validated parameters for the frozen config dataclasses of the whole project.

Every tunable constant (scoring weights, thresholds, EMA windows, node limits) is a field of a
frozen dataclass declared with :func:`param`, which records its help text and accepted range in
the field's metadata. :func:`validate` checks an instance against those declarations, and
``subnet.config`` uses the same metadata to parse ``subnet.toml``, ``SUBNET_*`` variables and CLI
flags. One mechanism, so an owner's typo fails the same way everywhere: naming the key and the
accepted range.

Pure: no I/O, no globals; ``scoring`` may use it and ``subnet`` builds on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


class ParamError(ValueError):
    """A parameter value outside its declared range or choices; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def param(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its help text and accepted range (inclusive) or choices."""
    meta: dict[str, Any] = {"help": help, "lo": lo, "hi": hi, "choices": tuple(choices or ())}
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples for sequence defaults; config objects are immutable")
    return dataclasses.field(default=default, metadata=meta)


def describe_range(f: dataclasses.Field[Any]) -> str:
    """Human text of a field's accepted values, for error messages and docs."""
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return f"a {type(f.default).__name__}"


def check_value(key: str, f: dataclasses.Field[Any], value: Any) -> Any:
    """Return ``value`` if it fits field ``f`` (bools, ints, floats, strings, tuples)."""
    default: Any = f.default
    expected: type[Any] = type(default)
    if expected is bool:
        if not isinstance(value, bool):
            raise ParamError(key, f"expected true or false, got {value!r}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(key, f"expected an integer {describe_range(f)}, got {value!r}")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(key, f"expected a number {describe_range(f)}, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(key, f"expected a finite number {describe_range(f)}, got {value!r}")
    elif expected is str:
        if not isinstance(value, str):
            raise ParamError(key, f"expected a string, got {value!r}")
    elif expected is tuple:
        if not isinstance(value, list | tuple):
            raise ParamError(key, f"expected a list, got {value!r}")
        value = tuple(value)
    meta = f.metadata
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        raise ParamError(key, f"expected {describe_range(f)}, got {value!r}")
    lo, hi = meta.get("lo"), meta.get("hi")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ParamError(key, f"expected {describe_range(f)}, got {value!r}")
    return value


def validate(obj: Any, prefix: str = "") -> None:
    """Check every declared field of a config dataclass instance; raise :class:`ParamError`."""
    for f in dataclasses.fields(obj):
        if "help" not in f.metadata:
            continue
        key = f"{prefix}{f.name}"
        check_value(key, f, getattr(obj, f.name))
