"""``subnet simulate``: what a scoring or chain change does to emissions, before it ships.

Runs a built-in scenario (or replays a real validator's recorded scores) with the loaded
``subnet.toml`` scoring config, optionally sweeping one key over several values, and writes
per-epoch tables, charts and one HTML report to ``--out``. Prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from neurons.owner.sweep import pair, parse_value, sweep_values
from scoring.params import ParamError
from scoring.sim_population import ChainSim
from scoring.sim_scenarios import SCENARIOS, build
from scoring.simulate import SimConfig, simulate, with_param
from subnet.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="baseline",
        help="built-in scenario (default: baseline)",
    )
    parser.add_argument(
        "--replay",
        metavar="DB",
        default=None,
        help="replay a validator's state database under this config instead",
    )
    parser.add_argument(
        "--sweep",
        metavar="KEY=V1,V2,...",
        default=None,
        help="run once per value of a scoring key (weights.power) or a chain "
        "hyperparameter (bonds_penalty, yuma3_enabled, kappa, ...)",
    )
    parser.add_argument(
        "--chain",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a chain hyperparameter for every run (repeatable)",
    )
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run (default 100)")
    parser.add_argument("--validators", type=int, default=8, help="validators (default 8)")
    parser.add_argument(
        "--miners", type=int, default=32, help="miners in the simulated population (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--exact-checks",
        type=int,
        default=3,
        help="epochs per run also computed by the exact engine (default 3)",
    )
    parser.add_argument(
        "--out", metavar="DIR", default="sim-out", help="output folder (default ./sim-out)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def base_config(args: argparse.Namespace) -> SimConfig:
    sub = args.config
    if args.epochs < 1 or args.exact_checks < 0:
        raise ConfigError("--epochs must be >= 1 and --exact-checks >= 0")
    cfg = SimConfig(
        score=sub.scoring,
        weights=sub.weights,
        chain=ChainSim(),
        epochs=args.epochs,
        seed=args.seed,
        exact_checks=args.exact_checks,
    )
    for item in args.chain:
        key, value = pair(item, "--chain")
        cfg = _apply(cfg, key, parse_value(key, value))
    return cfg


def _apply(cfg: SimConfig, key: str, value: Any) -> SimConfig:
    try:
        return with_param(cfg, key, value)
    except ParamError as e:
        raise ConfigError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from neurons.owner import sim_report as rep

    if args.replay:
        from neurons.owner.replay import run_replay

        return run_replay(args)
    base = base_config(args)
    key, values = sweep_values(args)
    out = rep.prepare_out(Path(args.out))
    try:
        sc = build(
            args.scenario,
            validators=args.validators,
            miners=args.miners,
            epochs=args.epochs,
            check=args.config.verify.spot_check_fraction,
            answers=args.config.validator.tasks_per_step,
        )
    except ParamError as e:
        raise ConfigError(str(e)) from None
    runs: list[rep.RunReport] = []
    for value in values:
        cfg = base if key is None else _apply(base, key, value)
        label = args.scenario if key is None else f"{args.scenario}_{key}={value}"
        label = label.replace("/", "_")
        started = time.perf_counter()
        with rep.progress(cfg.epochs, label, enabled=not args.no_progress) as advance:
            try:
                result = simulate(sc.population, cfg, progress=advance)
            except ParamError as e:
                raise ConfigError(str(e)) from None
        params = {key: value} if key else {}
        record = rep.config_record(
            cfg, scenario=args.scenario, validators=args.validators, miners=args.miners
        )
        summary = rep.summarize(label, sc, result, params, record)
        summary["seconds"] = round(time.perf_counter() - started, 3)
        rep.write_tables(out, label, result, summary)
        runs.append(rep.RunReport(label, summary, rep.write_charts(out, label, sc, result)))
        print(_line(summary))
    sweep = rep.write_sweep_chart(out, key, runs) if key else None
    report = rep.write_html(out, f"subnet simulate: {args.scenario}", runs, sweep)
    (out / "runs.json").write_text(json.dumps([r.summary for r in runs], indent=2) + "\n")
    print(f"report: {report}")
    return 0


def _line(s: dict[str, Any]) -> str:
    parts = [
        s["label"],
        f"{s['seconds']:.2f}s",
        f"gini={s['gini_mean_2nd_half']:.3f}",
        f"fast-vs-exact max dev={s['max_fast_exact_deviation']:.1e}",
    ]
    if "overtake_epochs" in s:
        parts.append(f"overtake={s['overtake_epochs']} epochs after {s['event_epoch']}")
    if "focus_yield" in s:
        parts.append(f"{s['focus_validator']} yield={s['focus_yield']:.3f}")
    if "focus_miner_share" in s:
        parts.append(
            f"{s['focus_miner']} share={s['focus_miner_share']:.4f} "
            f"(top {s['top_miner_share']:.4f})"
        )
    return "  ".join(parts)
