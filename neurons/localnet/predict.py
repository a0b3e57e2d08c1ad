"""The owner simulator's prediction, beside what the localnet measured.

The simulator's ``copier`` scenario (:mod:`scoring.sim_scenarios`) is run with the localnet's
validators (their stakes, which are copiers), its chain hyperparameters (read from the devnet),
its scoring and weights config, and its validator steps per epoch. The miners are the
scenario's: equally good and noisy (quality 0.5, round-to-round noise 0.15), so consensus moves
every epoch, which is what makes lagging weights cost a copier something. The localnet's own
miners differ in quality and barely move, so its copier is expected to do better than predicted:
the README's demo section states both numbers and why.

Two predictions per validator: over the same number of epochs as the localnet measured,
starting at the first epoch a lag-1 copier has weights (epoch 1), and at steady state (the
second half of a 100-epoch run, as ``subnet simulate`` reports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neurons.localnet.validators import COPIER, ValidatorPlan
from scoring.sim_population import ChainSim, Population, ValidatorSpec
from scoring.sim_scenarios import build
from scoring.simulate import SimConfig, simulate
from scoring.yuma_types import YumaParams
from subnet.config import SubnetConfig

STEADY_EPOCHS = 100


def yuma_params(hp: Mapping[str, Any]) -> YumaParams:
    """The epoch's parameters from a devnet's hyperparameters (raw on-chain integers)."""
    return YumaParams(
        kappa=int(hp["kappa"]),
        bonds_penalty=int(hp["bonds_penalty"]),
        bonds_moving_avg=int(hp["bonds_moving_avg"]),
        yuma3_enabled=bool(hp["yuma3_enabled"]),
        liquid_alpha_enabled=bool(hp["liquid_alpha_enabled"]),
        alpha_low=int(hp["alpha_low"]),
        alpha_high=int(hp["alpha_high"]),
        alpha_sigmoid_steepness=int(hp["alpha_sigmoid_steepness"]),
        activity_cutoff_factor=int(hp["activity_cutoff_factor"]),
        tempo=int(hp["tempo"]),
        max_validators=int(hp["max_validators"]),
        commit_reveal_enabled=bool(hp["commit_reveal_weights_enabled"]),
    )


def copier_population(
    plans: Sequence[ValidatorPlan], miners: int, steps_per_epoch: int
) -> Population:
    """The copier scenario's miners with the localnet's validators and stakes."""
    scenario = build("copier", validators=2, miners=max(2, miners))
    validators = tuple(
        ValidatorSpec(p.name, p.stake, "copier" if p.role == COPIER else "honest", noise=0.02)
        for p in plans
    )
    return Population(scenario.population.miners, validators, steps=max(1, steps_per_epoch))


def predict_yields(
    plans: Sequence[ValidatorPlan],
    miners: int,
    hp: Mapping[str, Any],
    cfg: SubnetConfig,
    *,
    steps_per_epoch: int,
    epochs: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Predicted dividend yields per validator name; {} without a copier."""
    if not any(p.role == COPIER for p in plans) or len(plans) < 2:
        return {}
    pop = copier_population(plans, miners, steps_per_epoch)
    chain = ChainSim(
        yuma=yuma_params(hp),
        commit_reveal_period=int(hp["commit_reveal_period"]),
        immunity_period=int(hp["immunity_period"]),
        max_uids=int(hp["max_allowed_uids"]),
    )
    run = simulate(
        pop,
        SimConfig(
            score=cfg.scoring,
            weights=cfg.weights,
            chain=chain,
            epochs=max(STEADY_EPOCHS, epochs + 1),
            seed=seed,
            exact_checks=2,
        ),
    )
    yields = run.validator_yield()
    window = slice(1, 1 + max(1, epochs))
    return {
        "scenario": "copier",
        "miners": len(pop.miners),
        "steps_per_epoch": pop.steps,
        "epochs_window": max(1, epochs),
        "seed": seed,
        "max_fast_exact_deviation": run.max_deviation,
        "yields": {
            p.name: {
                "role": p.role,
                "window": round(float(yields[window, k].mean()), 4),
                "steady": round(run.mean_yield(p.name), 4),
            }
            for k, p in enumerate(plans)
        },
    }
