"""``subnet localnet``: run the whole subnet here, or (``--status``) read a running one."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from subnet.errors import ConfigError

STATUS_JSON = "-"  # ``--json`` given without a path


def configure(parser: argparse.ArgumentParser) -> None:
    from neurons.localnet.plan import DEFAULT_MINERS, ENGINES, ROLES, WORLDS, Options

    d = Options()
    parser.add_argument(
        "--miners",
        default=DEFAULT_MINERS,
        metavar="SPEC",
        help=f"comma-separated roles, each optionally role:engine, else --engine (roles: "
        f"{', '.join(ROLES)}; default: {DEFAULT_MINERS})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=d.epochs,
        help=f"chain epochs to watch after every process is ready ({d.epochs})",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=d.engine,
        help=f"engine of miners without one in --miners (default {d.engine})",
    )
    parser.add_argument(
        "--validator-engine",
        choices=ENGINES,
        default=d.validator_engine,
        help=f"engine of the validator's teacher and spot checks (default {d.validator_engine})",
    )
    parser.add_argument(
        "--validators",
        default="1",
        metavar="SPEC",
        help="a number of honest validators, or roles each optionally role:engine (roles: "
        "validator, validator-copier; the first honest), e.g. validator,validator,"
        "validator-copier (default 1)",
    )
    parser.add_argument(
        "--validator-stakes",
        default=None,
        metavar="A,B,...",
        help="alpha staked on each validator, in order (default: 1000, 750, 500, 250, 250, ...)",
    )
    parser.add_argument(
        "--copy-from",
        default=d.copy_from,
        metavar="SOURCE",
        help="what a validator-copier copies: validators (their stake-weighted mean), consensus, "
        f"or uid:N (default {d.copy_from})",
    )
    parser.add_argument(
        "--world",
        choices=WORLDS,
        default=d.world,
        help="the built-in world the miners and the validator run: tiny (a 279-id tokenizer, "
        "synthetic tasks) or real (DeepSeek-V4's 129,280-id tokenizer, a chat template, "
        f"questions about the standard library) (default {d.world})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=d.folder,
        help=f"localnet folder: devnet, wallets, state, logs ({d.folder})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=STATUS_JSON,
        default=None,
        dest="json_out",
        metavar="OUT",
        help="summary JSON (default DIR/summary.json; the chart goes next to it); with "
        "--status and no OUT: print the state as JSON (its gateway URL and API key included)",
    )
    parser.add_argument("--tempo", type=int, default=d.tempo, help=f"blocks per epoch ({d.tempo})")
    parser.add_argument(
        "--block-time", type=float, default=d.block_time, help=f"seconds per block ({d.block_time})"
    )
    parser.add_argument(
        "--tasks-per-step",
        type=int,
        default=d.tasks_per_step,
        help=f"prompts per validator step ({d.tasks_per_step})",
    )
    parser.add_argument(
        "--step-blocks",
        type=int,
        default=d.step_blocks,
        help=f"blocks between validator steps ({d.step_blocks})",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=d.max_tokens, help=f"tokens per answer ({d.max_tokens})"
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=d.warmup_steps,
        help="validator steps before emission is counted: every EMA starts at zero, so weights "
        "set from its first few answers reflect luck more than quality, and a cheat must have "
        f"met a (drawn) spot check by then ({d.warmup_steps})",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=d.ready_timeout,
        help=f"seconds for every process to become ready ({d.ready_timeout:.0f})",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="recreate the devnet; forget the validator state and logs in DIR",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print the state of the localnet running in DIR and exit",
    )


def options_from_args(args: argparse.Namespace) -> Any:
    from neurons.demo_fixtures.copier import check_source
    from neurons.localnet.plan import Options, parse_miners
    from neurons.localnet.validators import parse_stakes, parse_validators

    if args.epochs < 1 or args.tempo < 2 or args.block_time <= 0:
        raise ConfigError("need --epochs >= 1, --tempo >= 2 and --block-time > 0")
    if args.tasks_per_step < 1 or args.step_blocks < 1 or args.max_tokens < 1:
        raise ConfigError("need --tasks-per-step, --step-blocks and --max-tokens >= 1")
    if args.warmup_steps < 1:
        raise ConfigError("need --warmup-steps >= 1")
    validators = parse_validators(args.validators, args.validator_engine)
    return Options(
        folder=args.dir,
        miners=parse_miners(args.miners, args.engine),
        validators=validators,
        validator_stakes=parse_stakes(args.validator_stakes, len(validators)),
        copy_from=check_source(args.copy_from),
        epochs=args.epochs,
        engine=args.engine,
        validator_engine=args.validator_engine,
        world=getattr(args, "world", "tiny"),
        json_out=None if args.json_out in (None, STATUS_JSON) else args.json_out,
        tempo=args.tempo,
        block_time=args.block_time,
        tasks_per_step=args.tasks_per_step,
        step_blocks=args.step_blocks,
        max_tokens=args.max_tokens,
        warmup_steps=args.warmup_steps,
        ready_timeout=args.ready_timeout,
        fresh=args.fresh,
        config_path=getattr(args, "config_path", None),
        extra_sets=tuple(getattr(args, "config_set", []) or ()),
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for the whole table
        console = Console(width=max(console.width, 150))
    if args.status:
        if args.json_out is not None:
            return status_json(args.dir)
        return status(args.dir, console)
    from neurons.localnet.run import Localnet

    return asyncio.run(Localnet(options_from_args(args), console).run())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(folder: Path) -> dict[str, Any]:
    from neurons.localnet.run import STATE_FILE

    path = folder.expanduser() / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"no localnet in {folder} (no {STATE_FILE})") from e
    except (OSError, ValueError) as e:
        raise ConfigError(f"unreadable localnet state {path}: {e}") from e
    if not isinstance(state, dict):
        raise ConfigError(f"unreadable localnet state {path}: not a JSON object")
    return state


def status_json(folder: Path) -> int:
    """The state as one JSON object on stdout, with ``running``; 0 if it runs, 3 if not."""
    state = _read_state(folder)
    running = state.get("ended") is None and _pid_alive(int(state.get("pid", 0)))
    print(json.dumps({"running": running, **state}, indent=2, default=str))
    return 0 if running else 3


def status(folder: Path, console: Any) -> int:
    """Print a localnet's state from ``DIR/localnet.json``; 0 if it is running, 3 if not."""
    from neurons.localnet.view import epoch_table
    from neurons.localnet.watch import Snapshot

    state = _read_state(folder)
    running = state.get("ended") is None and _pid_alive(int(state.get("pid", 0)))
    console.print(
        f"localnet {folder}: "
        + (
            f"running (pid {state['pid']}), phase {state.get('phase')}"
            if running
            else f"not running; last run ended in phase {state.get('phase')} "
            f"with exit code {state.get('exit_code')}"
        )
    )
    if state.get("network"):
        console.print(f"  network {state['network']}  netuid {state.get('netuid')}")
    procs = [
        (f"{v['process']} uid {v['uid']} ({v['role']})", v) for v in state.get("validators", [])
    ] or [("validator", state.get("validator") or {})]
    procs += [
        (f"{m['name']}-{m['role']} uid {m['uid']} :{m['port']}", m) for m in state.get("miners", [])
    ]
    for name, info in procs:
        if "pid" in info:
            alive = running and _pid_alive(int(info["pid"]))
            console.print(
                f"  {name}: pid {info['pid']} {'alive' if alive else 'stopped'}"
                f"  log {info.get('log')}"
            )
    if state.get("gateway"):
        g = state["gateway"]
        console.print(
            f"  gateway {g.get('url')}/v1  key {g.get('api_key')}  scores {g.get('scores_url')}"
        )
    for death in state.get("deaths", []):
        console.print(f"  [yellow]{death['name']} {death['reason']} (log {death['log']})[/yellow]")
    epochs = state.get("epochs") or []
    if epochs:
        console.print(epoch_table(Snapshot.from_json(epochs[-1])))
    if state.get("phases"):
        console.print("  phases: " + ", ".join(f"{k} {v} s" for k, v in state["phases"].items()))
    return 0 if running else 3
