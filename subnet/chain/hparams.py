"""Which hyperparameters an owner may set, which need root, and how values are written.

Owner-settable names are the SDK's own ``OWNER_HYPERPARAMETERS`` (its ``SetHyperparameter``
intent); root-only ones the SDK leaves to raw ``Sudo.sudo`` calls are listed here, with the
AdminUtils setter each maps to. Names are the ones ``subnet_hyperparameters`` reports.
"""

from __future__ import annotations

from typing import Any

from bittensor import calls
from bittensor.hyperparams import to_raw
from bittensor.intents.hyperparameters import OWNER_HYPERPARAMETERS

from subnet.errors import ChainError

ROOT_HYPERPARAMETERS: dict[str, str] = {
    "weights_rate_limit": "sudo_set_weights_set_rate_limit",
    "activity_cutoff": "sudo_set_activity_cutoff",
    "kappa": "sudo_set_kappa",
    "max_validators": "sudo_set_max_allowed_validators",
    "max_regs_per_block": "sudo_set_max_registrations_per_block",
    "target_regs_per_interval": "sudo_set_target_registrations_per_interval",
    "difficulty": "sudo_set_difficulty",
    "adjustment_interval": "sudo_set_adjustment_interval",
}

_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def is_owner_settable(name: str) -> bool:
    return name in OWNER_HYPERPARAMETERS


def settable_names() -> list[str]:
    return sorted({*OWNER_HYPERPARAMETERS, *ROOT_HYPERPARAMETERS})


def parse_value(text: str) -> int | bool | float | str:
    """A CLI value: true/false, an integer, else the text (the SDK reads "0.5" as a fraction)."""
    value = text.strip()
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    try:
        return int(value)
    except ValueError:
        return value


def plain(value: Any) -> int | bool | float:
    """A hyperparameter read value as a JSON-friendly scalar."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict) and "bits" in value:
        return int(value["bits"])
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)  # type: ignore[return-value]  # enum-like (e.g. "Yuma")


def root_call(netuid: int, name: str, value: int | bool | float | str) -> Any:
    """The un-wrapped AdminUtils call to send under ``Sudo.sudo`` (root-only names, and owner
    names when the sudo key sets them outside the owner's bounds, e.g. a devnet tempo of 20)."""
    method = ROOT_HYPERPARAMETERS.get(name)
    if method is None and name in OWNER_HYPERPARAMETERS and name not in _SPECIAL:
        method = OWNER_HYPERPARAMETERS[name][0]
    if method is None:
        raise ChainError(
            f"unknown hyperparameter {name!r} (or not settable through sudo here); "
            f"settable: {', '.join(settable_names())}",
            name="INVALID_ARGUMENT",
        )
    try:
        raw: int | bool = to_raw(name, value)
    except ValueError as e:
        if not isinstance(value, int):  # root may exceed the owner's bounds, not the codec's
            raise ChainError(f"bad value for {name}: {e}", name="INVALID_ARGUMENT") from e
        raw = value
    if name in OWNER_HYPERPARAMETERS and OWNER_HYPERPARAMETERS[name][1]:
        raw = bool(raw)
    return getattr(calls.AdminUtils, method)(netuid, raw)


# Owner names whose call is not a plain (netuid, value) setter.
_SPECIAL = {
    "epoch_consensus",
    "alpha_low",
    "alpha_high",
    "burn_increase_mult",
    "collateral_lock_share",
    "collateral_drain_ratio",
}
