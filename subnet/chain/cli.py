"""``subnet devnet init|status|advance`` and ``subnet hparams get|set``.

Owner tooling over the same ``ChainClient`` the neurons use, so ``hparams`` works on the devnet
and on real chains alike (owner-settable names go through the SDK's ``SetHyperparameter``
intent; root-only ones through ``Sudo.sudo``, which on the devnet the owner wallet may sign).
Nothing heavy is imported at module level: ``subnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from subnet.errors import ConfigError

RAO_PER_ALPHA = 1_000_000_000


# --- devnet ------------------------------------------------------------------------------


def configure_devnet(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="devnet_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create a ready local subnet (chain, wallets, neurons)")
    _dir_option(init)
    init.add_argument("--validators", type=int, default=1, help="validator wallets (default 1)")
    init.add_argument("--miners", type=int, default=5, help="miner wallets (default 5)")
    init.add_argument("--tempo", type=int, default=20, help="blocks per epoch (default 20)")
    init.add_argument(
        "--block-time", type=float, default=0.25, help="seconds per block (default 0.25)"
    )
    init.add_argument(
        "--clock",
        choices=("wall", "manual"),
        default="wall",
        help="wall: blocks follow the clock (default); manual: only `devnet advance` moves it",
    )
    init.add_argument(
        "--weights-rate-limit", type=int, default=1, help="blocks between weight sets (default 1)"
    )
    init.add_argument(
        "--stake", type=float, default=1000.0, help="alpha seeded on each validator (default 1000)"
    )
    init.add_argument(
        "--mev-shield", action="store_true", help="publish a MEV-shield key (shielded register)"
    )
    status = sub.add_parser("status", help="blocks and neurons as a table")
    _dir_option(status)
    status.add_argument(
        "--netuid",
        type=int,
        default=None,
        help="subnet id to show (default: the one devnet init made)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    advance = sub.add_parser("advance", help="produce N blocks on a manual-clock devnet")
    _dir_option(advance)
    advance.add_argument("blocks", type=int, help="blocks to produce (epochs run as they fall due)")


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="devnet folder (default: the folder of chain.network when it is devnet:PATH)",
    )


def run_devnet(args: argparse.Namespace) -> int:
    folder = _devnet_dir(args)
    if args.devnet_command == "init":
        return asyncio.run(init_devnet(args, folder))
    if args.devnet_command == "status":
        return asyncio.run(_status(folder, args.netuid, as_json=args.json))
    if args.devnet_command == "advance":
        return _advance(folder, args.blocks)
    raise ConfigError(f"unknown devnet action {args.devnet_command!r}")


def _devnet_dir(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        return Path(args.dir).expanduser()
    from subnet.chain.network import parse_network

    config = getattr(args, "config", None)
    network = config.chain.network if config is not None else "devnet:.devnet"
    spec = parse_network(network)
    if spec.devnet_dir is None:
        raise ConfigError(f"chain.network is {network!r}, not a devnet: pass --dir")
    return spec.devnet_dir


def _manifest_path(folder: Path) -> Path:
    return folder / "devnet.json"


def read_manifest(folder: Path) -> dict[str, Any]:
    """What ``devnet init`` created (netuid, wallet names); other tools (localnet) read it."""
    path = _manifest_path(folder)
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise ConfigError(f"no devnet at {folder}: run `subnet devnet init --dir {folder}`") from e
    except (OSError, ValueError) as e:
        raise ConfigError(f"unreadable devnet manifest {path}: {e}") from e


async def init_devnet(args: argparse.Namespace, folder: Path) -> int:
    """``subnet devnet init``: the chain file, its wallets, a subnet, stake and permits."""
    from subnet.chain.devnet import Devnet
    from subnet.chain.network import DEVNET_FILE, open_chain
    from subnet.wallets import coldkey_address, create_wallet, hotkey_address

    if args.validators < 1 or args.miners < 0 or args.tempo < 1 or args.block_time <= 0:
        raise ConfigError("need --validators >= 1, --miners >= 0, --tempo >= 1, --block-time > 0")
    chain_file = folder / DEVNET_FILE
    if chain_file.exists() or _manifest_path(folder).exists():
        raise ConfigError(f"{folder} already holds a devnet; remove it or pick another --dir")
    folder.mkdir(parents=True, exist_ok=True)
    wallets = folder / "wallets"
    owner = create_wallet("owner", "default", wallets, overwrite=True)
    validators = [
        create_wallet(f"validator{i}", "default", wallets, overwrite=True)
        for i in range(1, args.validators + 1)
    ]
    miners = [
        create_wallet(f"miner{i}", "default", wallets, overwrite=True)
        for i in range(1, args.miners + 1)
    ]
    net = Devnet.create(
        chain_file,
        block_time=args.block_time,
        clock=args.clock,
        sudo_ss58=coldkey_address(owner),
        enable_mev_shield=args.mev_shield,
    )
    netuid = net.add_subnet(
        coldkey_address(owner),
        hotkey_address(owner),
        tempo=args.tempo,
        commit_reveal_weights_enabled=False,
        weights_rate_limit=args.weights_rate_limit,
    )
    uids: dict[str, int] = {"owner": 0}
    try:
        async with open_chain(f"devnet:{chain_file}") as chain:
            for wallet in validators + miners:  # the real SDK registration path
                uids[wallet.name] = await chain.register(netuid, wallet)
            for wallet in validators:  # no staking extrinsics on the devnet: seeded
                net.set_stake(netuid, hotkey_address(wallet), int(args.stake * RAO_PER_ALPHA))
            if args.clock == "manual":
                net.advance(args.tempo + 1)  # one epoch; wall clocks get there by themselves
            mg = await chain.metagraph(netuid, max_age_blocks=0)
    finally:
        net.close()
    manifest = {
        "network": f"devnet:{chain_file}",
        "netuid": netuid,
        "wallet_path": str(wallets),
        "owner": "owner",
        "validators": [w.name for w in validators],
        "miners": [w.name for w in miners],
        "hotkey": "default",
        "clock": args.clock,
        "block_time": args.block_time,
        "tempo": args.tempo,
        "uids": uids,
    }
    _manifest_path(folder).write_text(json.dumps(manifest, indent=2) + "\n")
    permits = [n.uid for n in mg.validators]
    print(f"devnet ready: network devnet:{chain_file}  netuid {netuid}  block {mg.block}")
    print(f"  wallets (UNENCRYPTED, devnet only): {wallets}")
    print(
        f"  owner (sudo) uid 0, validators {[uids[w.name] for w in validators]}, "
        f"miners {[uids[w.name] for w in miners]}; validator permits {permits}"
    )
    print(
        f"  clock {args.clock}, tempo {args.tempo}, block time {args.block_time}s, "
        f"commit-reveal off, weights rate limit {args.weights_rate_limit}"
    )
    return 0


async def _status(folder: Path, netuid: int | None, *, as_json: bool) -> int:
    from subnet.chain.network import DEVNET_FILE, open_chain

    if netuid is None:
        netuid = int(read_manifest(folder).get("netuid", 1))
    async with open_chain(f"devnet:{folder / DEVNET_FILE}") as chain:
        mg = await chain.metagraph(netuid, max_age_blocks=0)
    if as_json:
        rows = [
            {
                "uid": n.uid,
                "hotkey": n.hotkey,
                "stake": n.stake,
                "permit": n.validator_permit,
                "incentive": n.incentive,
                "dividends": n.dividends,
                "vtrust": n.validator_trust,
                "emission": n.emission,
                "axon": f"{n.axon.ip}:{n.axon.port}" if n.axon else None,
                "last_update": n.last_update,
            }
            for n in mg.neurons
        ]
        print(json.dumps({"block": mg.block, "netuid": netuid, "neurons": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"devnet {folder}  netuid {netuid}  block {mg.block}  tempo {mg.tempo}")
    for column in (
        "uid",
        "hotkey",
        "stake",
        "vpermit",
        "incentive",
        "dividends",
        "vtrust",
        "emission",
        "axon",
        "updated",
    ):
        table.add_column(
            column, justify="left" if column in ("hotkey", "axon") else "right", no_wrap=True
        )
    for n in mg.neurons:
        table.add_row(
            str(n.uid),
            n.hotkey[:8],
            f"{n.stake:.1f}",
            "yes" if n.validator_permit else "",
            f"{n.incentive:.3f}",
            f"{n.dividends:.3f}",
            f"{n.validator_trust:.3f}" if n.validator_permit else "",
            f"{n.emission:.3f}",
            f"{n.axon.ip}:{n.axon.port}" if n.axon else "-",
            str(n.last_update),
        )
    Console(width=max(120, Console().width)).print(table)
    return 0


def _advance(folder: Path, blocks: int) -> int:
    from subnet.chain.devnet import Devnet
    from subnet.chain.network import DEVNET_FILE

    if blocks < 1:
        raise ConfigError("advance needs a positive number of blocks")
    chain_file = folder / DEVNET_FILE
    if not chain_file.exists():
        raise ConfigError(f"no devnet at {folder}: run `subnet devnet init --dir {folder}`")
    net = Devnet.open(chain_file)
    try:
        head = net.advance(blocks)
    finally:
        net.close()
    print(f"devnet {folder}: head block {head}")
    return 0


# --- hparams -----------------------------------------------------------------------------


def configure_hparams(parser: argparse.ArgumentParser) -> None:
    from subnet.cli import config_flag, wallet_flags

    sub = parser.add_subparsers(dest="hparams_command", metavar="ACTION", required=True)
    get = sub.add_parser("get", help="print every hyperparameter of a subnet")
    set_ = sub.add_parser("set", help="set one hyperparameter (owner or sudo coldkey signs)")
    for p in (get, set_):
        config_flag(p, "--network", "chain.network")
        config_flag(p, "--netuid", "chain.netuid")
    get.add_argument("--json", action="store_true", help="print JSON instead of a table")
    wallet_flags(set_)
    set_.add_argument("--name", required=True, help="hyperparameter name (see `hparams get`)")
    set_.add_argument(
        "--value",
        required=True,
        help="raw integer, true/false, or a decimal fraction/TAO amount (e.g. 0.5)",
    )
    set_.add_argument(
        "--sudo",
        action="store_true",
        help="send through Sudo.sudo (the wallet is the chain's sudo key; root-only names "
        "always are): on a devnet the owner wallet is the sudo key",
    )


def run_hparams(args: argparse.Namespace) -> int:
    config = args.config
    if args.hparams_command == "get":
        return asyncio.run(_hparams_get(config.chain.network, config.chain.netuid, args.json))
    if args.hparams_command == "set":
        return asyncio.run(_hparams_set(config, args.name, args.value, args.sudo))
    raise ConfigError(f"unknown hparams action {args.hparams_command!r}")


async def _hparams_get(network: str, netuid: int, as_json: bool) -> int:
    from subnet.chain.network import open_chain

    async with open_chain(network) as chain:
        values = await chain.hyperparameters(netuid)
    if as_json:
        print(json.dumps(values, indent=2, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{network}  netuid {netuid}")
    table.add_column("name")
    table.add_column("value", justify="right")
    for name in sorted(values):
        table.add_row(name, str(values[name]))
    Console().print(table)
    return 0


async def _hparams_set(config: Any, name: str, text: str, sudo: bool) -> int:
    from subnet.chain.hparams import parse_value
    from subnet.chain.network import open_chain, wallet_folder
    from subnet.wallets import load_wallet

    wallet = load_wallet(
        config.wallet.name,
        config.wallet.hotkey,
        wallet_folder(config.chain.network, config.wallet.path),
        password_file=config.wallet.password_file or None,
    )
    value = parse_value(text)
    async with open_chain(config.chain.network) as chain:
        await chain.set_hyperparameter(config.chain.netuid, wallet, name, value, sudo=sudo)
        now = (await chain.hyperparameters(config.chain.netuid)).get(name)
    print(f"{name} on netuid {config.chain.netuid} is now {now}")
    return 0
