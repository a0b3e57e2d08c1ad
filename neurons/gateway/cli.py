"""`subnet gateway`: the OpenAI-compatible API for users, and its API keys.

subnet gateway --teacher PATH --wallet.name W --wallet.hotkey H [--network NET] [--netuid N]
               [--host H] [--port P] [--state-dir D] [--validator-state-dir D]
subnet gateway keys add --name NAME [--rps R] [--burst B] [--quota TOKENS] [--state-dir D]
subnet gateway keys list [--json] [--state-dir D]
subnet gateway keys revoke ID_OR_PREFIX [--state-dir D]
subnet gateway usage [--json] [--state-dir D]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
from pathlib import Path
from typing import Any

from subnet.cli import config_flag, wallet_flags


def configure(parser: argparse.ArgumentParser) -> None:
    config_flag(parser, "--teacher", "validator.teacher")
    config_flag(parser, "--network", "chain.network")
    config_flag(parser, "--netuid", "chain.netuid")
    wallet_flags(parser)
    config_flag(parser, "--host", "gateway.host")
    config_flag(parser, "--port", "gateway.port")
    config_flag(parser, "--state-dir", "gateway.state_dir")
    config_flag(parser, "--validator-state-dir", "validator.state_dir")
    config_flag(parser, "--top-n", "gateway.top_n")
    config_flag(parser, "--organic-fraction", "gateway.organic_fraction")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND")
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = ksub.add_parser("add", help="create a key (printed once: it is stored hashed)")
    add.add_argument("--name", required=True, help="who or what the key is for")
    add.add_argument(
        "--rps", type=float, default=None, help="requests per second (default: config)"
    )
    add.add_argument("--burst", type=int, default=None, help="burst size (default: config)")
    add.add_argument(
        "--quota", type=int, default=None, help="total tokens, 0 = unlimited (default: config)"
    )
    add.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    listing = ksub.add_parser("list", help="every key with its limits and use (never the key)")
    listing.add_argument("--json", action="store_true", help="print the keys as JSON")
    revoke = ksub.add_parser("revoke", help="revoke a key by id or by its shown prefix")
    revoke.add_argument("key", metavar="ID_OR_PREFIX")
    usage = sub.add_parser("usage", help="requests, tokens and latency per miner")
    usage.add_argument("--json", action="store_true", help="print the usage rows as JSON")
    for p in (add, listing, revoke, usage):
        config_flag(p, "--state-dir", "gateway.state_dir")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    command = getattr(args, "gateway_command", None)
    if command == "keys":
        return _keys(args)
    if command == "usage":
        return _usage(args)
    from neurons.gateway.main import serve

    return asyncio.run(serve(args.config))


def _store(args: argparse.Namespace) -> Any:
    from neurons.gateway.keys import DB_FILE, KeyStore

    return KeyStore(Path(args.config.gateway.state_dir).expanduser() / DB_FILE)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _keys(args: argparse.Namespace) -> int:
    gc = args.config.gateway
    store = _store(args)
    try:
        if args.keys_command == "add":
            secret, key = store.create(
                args.name,
                rps=gc.key_rps if args.rps is None else args.rps,
                burst=gc.key_burst if args.burst is None else args.burst,
                token_quota=gc.key_token_quota if args.quota is None else args.quota,
            )
            if args.json:
                print(json.dumps({"key": secret, **key.to_json()}))
            else:
                print(f"created key {key.id} ({key.name}): {secret}")
                print("store it now: only its hash is kept")
        elif args.keys_command == "list":
            keys = store.list_keys()
            if args.json:
                print(json.dumps([k.to_json() for k in keys], indent=2))
            for k in [] if args.json else keys:
                quota = "unlimited" if k.token_quota == 0 else str(k.token_quota)
                state = "active" if k.active else f"revoked {_when(k.revoked)}"
                print(
                    f"{k.id:>4}  {k.prefix}...  {k.name:<20} {state:<28} {k.rps:g} rps, "
                    f"burst {k.burst}, quota {quota}, used {k.tokens_used} tokens in "
                    f"{k.requests} requests"
                )
        else:
            key = store.revoke(args.key)
            print(f"revoked key {key.id} ({key.name}, {key.prefix}...)")
    finally:
        store.close()
    return 0


def _usage(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.usage()
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0
    for r in rows:
        ttft = "-" if r.mean_ttft_s is None else f"{r.mean_ttft_s * 1000:.0f} ms"
        print(
            f"uid {r.uid:>4}: {r.requests} attempts ({r.ok} ok), {r.completion_tokens} tokens, "
            f"mean latency {r.mean_latency_s * 1000:.0f} ms, first token {ttft}, "
            f"{r.organic} handed to the validator"
        )
    return 0
