"""Subnet hyperparameters as the devnet stores them: names, defaults, storage items, setters.

Names are the SDK's ``SetHyperparameter`` / ``subnet_hyperparameters`` names; values are the
raw on-chain integers (u16 for kappa and bonds_penalty, parts-per-million for
bonds_moving_avg). Defaults follow a new subnet on the real chain, except
``commit_reveal_weights_enabled`` (False: timelocked reveals need drand, which is offline).
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "tempo": 360,
    "immunity_period": 5000,
    "min_allowed_weights": 1,
    "max_weights_limit": 65535,
    "weights_version": 0,
    "weights_rate_limit": 100,
    "activity_cutoff_factor": 13889,
    "kappa": 32767,
    "bonds_moving_avg": 900_000,
    "bonds_penalty": 65535,
    "liquid_alpha_enabled": False,
    "alpha_low": 45875,
    "alpha_high": 58982,
    "alpha_sigmoid_steepness": 1000,
    "yuma3_enabled": True,
    "commit_reveal_weights_enabled": False,
    "commit_reveal_period": 1,
    "max_validators": 64,
    "max_allowed_uids": 256,
    "serving_rate_limit": 50,
    "registration_allowed": True,
    "burn": 0,
    "min_burn": 0,
    "max_burn": 100_000_000_000,
    "epoch_consensus": "Yuma",
}

# SubtensorModule per-netuid storage item -> hyperparameter name.
STORAGE: dict[str, str] = {
    "Tempo": "tempo",
    "ImmunityPeriod": "immunity_period",
    "MinAllowedWeights": "min_allowed_weights",
    "MaxWeightsLimit": "max_weights_limit",
    "WeightsVersionKey": "weights_version",
    "WeightsSetRateLimit": "weights_rate_limit",
    "ActivityCutoffFactorMilli": "activity_cutoff_factor",
    "Kappa": "kappa",
    "BondsMovingAverage": "bonds_moving_avg",
    "BondsPenalty": "bonds_penalty",
    "LiquidAlphaOn": "liquid_alpha_enabled",
    "AlphaSigmoidSteepness": "alpha_sigmoid_steepness",
    "Yuma3On": "yuma3_enabled",
    "CommitRevealWeightsEnabled": "commit_reveal_weights_enabled",
    "RevealPeriodEpochs": "commit_reveal_period",
    "MaxAllowedValidators": "max_validators",
    "MaxAllowedUids": "max_allowed_uids",
    "ServingRateLimit": "serving_rate_limit",
    "NetworkRegistrationAllowed": "registration_allowed",
    "Burn": "burn",
    "MinBurn": "min_burn",
    "MaxBurn": "max_burn",
    "SubnetEpochConsensus": "epoch_consensus",
}

# AdminUtils setter -> (hyperparameter, call parameter, the subnet owner may call it).
# The others need Root (Sudo.sudo signed by the sudo key).
SETTERS: dict[str, tuple[str, str, bool]] = {
    "sudo_set_tempo": ("tempo", "tempo", True),
    "sudo_set_immunity_period": ("immunity_period", "immunity_period", True),
    "sudo_set_min_allowed_weights": ("min_allowed_weights", "min_allowed_weights", True),
    "sudo_set_weights_version_key": ("weights_version", "weights_version_key", True),
    "sudo_set_activity_cutoff_factor": ("activity_cutoff_factor", "factor_milli", True),
    "sudo_set_min_burn": ("min_burn", "min_burn", True),
    "sudo_set_max_burn": ("max_burn", "max_burn", True),
    "sudo_set_bonds_moving_average": ("bonds_moving_avg", "bonds_moving_average", True),
    "sudo_set_bonds_penalty": ("bonds_penalty", "bonds_penalty", True),
    "sudo_set_serving_rate_limit": ("serving_rate_limit", "serving_rate_limit", True),
    "sudo_set_commit_reveal_weights_interval": ("commit_reveal_period", "interval", True),
    "sudo_set_max_allowed_uids": ("max_allowed_uids", "max_allowed_uids", True),
    "sudo_set_alpha_sigmoid_steepness": ("alpha_sigmoid_steepness", "steepness", True),
    "sudo_set_commit_reveal_weights_enabled": ("commit_reveal_weights_enabled", "enabled", True),
    "sudo_set_liquid_alpha_enabled": ("liquid_alpha_enabled", "enabled", True),
    "sudo_set_network_registration_allowed": ("registration_allowed", "registration_allowed", True),
    "sudo_set_yuma3_enabled": ("yuma3_enabled", "enabled", True),
    "sudo_set_epoch_consensus": ("epoch_consensus", "mode", True),
    "sudo_set_kappa": ("kappa", "kappa", False),
    "sudo_set_weights_set_rate_limit": ("weights_rate_limit", "weights_set_rate_limit", False),
    "sudo_set_max_allowed_validators": ("max_validators", "max_allowed_validators", False),
    "sudo_set_max_weight_limit": ("max_weights_limit", "max_weight_limit", False),
    "sudo_set_burn": ("burn", "burn", False),
}

# ``add_subnet`` keyword -> accepted; the root-only ones are seeded directly too.
KEYWORDS = frozenset(DEFAULTS) - {"epoch_consensus"}

# v3 runtime API value tags (get_subnet_hyperparams_v3).
_TAGS: dict[str, str] = {
    "weights_version": "U64",
    "weights_rate_limit": "U64",
    "bonds_moving_avg": "U64",
    "serving_rate_limit": "U64",
    "commit_reveal_period": "U64",
    "activity_cutoff_factor": "U32",
    "min_burn": "TaoBalance",
    "max_burn": "TaoBalance",
}


def activity_cutoff(hp: dict[str, Any]) -> int:
    """The legacy absolute cutoff (blocks), derived from the per-mille factor of tempo."""
    return int(hp["activity_cutoff_factor"]) * int(hp["tempo"]) // 1000


def v3_entries(hp: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``get_subnet_hyperparams_v3`` list in the decoded shape the SDK reads."""
    out: list[dict[str, Any]] = []
    values = {**hp, "activity_cutoff": activity_cutoff(hp)}
    for name, value in values.items():
        if name in ("burn", "epoch_consensus"):
            continue
        if isinstance(value, bool):
            tagged: dict[str, Any] = {"Bool": value}
        elif name == "alpha_sigmoid_steepness":
            tagged = {"I32F32": {"bits": int(value) << 32}}
        else:
            tagged = {_TAGS.get(name, "U16"): int(value)}
        out.append({"name": name, "value": tagged})
    return out
