"""The summary's validator sections: measured vtrust and dividends, the simulator's prediction
beside them, whether the honest validators agree, and the commit-reveal note."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from neurons.localnet.consensus import (
    ValidatorRow,
    ValidatorWatcher,
    commit_reveal_note,
    summarize_validators,
)
from neurons.localnet.plan import Options
from neurons.localnet.predict import predict_yields
from neurons.localnet.validators import COPIER, HONEST, ValidatorPlan


def _config(opts: Options) -> Any:
    """The config the localnet's validators ran with (its --config and --set layers)."""
    from subnet.config import load_config

    sets = dict(s.split("=", 1) for s in opts.extra_sets if "=" in s)
    return load_config(opts.config_path, overrides=sets)


def validators_report(
    opts: Options,
    plans: Sequence[ValidatorPlan],
    watch: ValidatorWatcher,
    epochs: Sequence[Sequence[ValidatorRow]],
    *,
    miners: int,
    print_: Callable[..., None],
    table: Callable[[dict[str, Any]], Any],
) -> dict[str, Any]:
    """``{"validators", "agreement", "prediction", "commit_reveal", "checks"}`` for the JSON."""
    summary = summarize_validators(plans, watch.start_stake, epochs)
    from subnet.chain.devnet import Devnet

    net = Devnet.open(watch.devnet_file)
    try:
        hp = net.hyperparameters(watch.netuid)
    finally:
        net.close()
    prediction = predict_yields(
        plans,
        miners,
        hp,
        _config(opts),
        steps_per_epoch=max(1, opts.tempo // opts.step_blocks),
        epochs=len(epochs),
    )
    for v in summary["validators"]:
        predicted = prediction.get("yields", {}).get(v["name"], {})
        v["predicted_yield"] = predicted.get("window")
        v["predicted_yield_steady"] = predicted.get("steady")
    cr = commit_reveal_note(watch.devnet_file, watch.netuid)
    honest = [p for p in plans if p.role == HONEST]
    checks: dict[str, bool] = {}
    if len(plans) > 1:
        print_(table(summary))
        for v in summary["validators"]:
            if v["role"] == COPIER:
                print_(
                    f"   {v['name']} ({COPIER}): dividend yield {_n(v['dividend_yield'])} measured;"
                    f" the simulator's copier scenario predicts {_n(v['predicted_yield'])} over "
                    f"{len(epochs)} epochs ({_n(v['predicted_yield_steady'])} at steady state)"
                )
    if len(honest) > 1:
        agree = summary["agreement"]
        checks["honest validators agree"] = bool(agree.get("honest_agree"))
        print_(
            f"   honest validators: min vtrust {_n(agree.get('min_vtrust'))}, min cosine to "
            f"consensus {_n(agree.get('min_cosine_to_consensus'))}, min pairwise cosine "
            f"{_n(agree.get('min_pairwise_cosine'))}"
        )
    if cr["enabled"] or len(plans) > 1:
        print_(f"   {cr['note']}")
    return {**summary, "prediction": prediction, "commit_reveal": cr, "checks": checks}


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
