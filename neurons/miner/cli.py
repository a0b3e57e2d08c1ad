"""`subnet miner`: serve a student model to validators (signed OpenAI-compatible completions).

subnet miner --model PATH --wallet.name W --wallet.hotkey H --network NET --netuid N
             --port P [--external-ip IP] [--register] [--engine vllm|hf]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from subnet.cli import config_flag, configure_logging, wallet_flags
from subnet.errors import ConfigError

if TYPE_CHECKING:
    from neurons.miner.main import EngineFactory


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="the student model folder (Hugging Face format, safetensors); required to serve",
    )
    parser.add_argument(
        "--model-name",
        default=None,
        help="name committed with the model digest (default: folder name)",
    )
    parser.add_argument(
        "--revision",
        default="local",
        help="revision committed with the model digest (default: local)",
    )
    parser.add_argument(
        "--hf-repo",
        default=None,
        metavar="NAMESPACE/NAME",
        help="commit the model as fetchable from this Hugging Face repo (with --hf-revision); "
        "default: validators fetch it from this miner",
    )
    parser.add_argument(
        "--hf-revision",
        default=None,
        metavar="COMMIT",
        help="the repo's 40-hex commit whose files are exactly --model's",
    )
    parser.add_argument(
        "--register", action="store_true", help="register the hotkey if it is not (pays the burn)"
    )
    config_flag(parser, "--engine", "miner.engine")
    config_flag(parser, "--network", "chain.network")
    config_flag(parser, "--netuid", "chain.netuid")
    wallet_flags(parser)
    config_flag(parser, "--host", "miner.host")
    config_flag(parser, "--port", "miner.port")
    config_flag(parser, "--external-ip", "miner.external_ip")
    config_flag(parser, "--state-dir", "miner.state_dir")
    config_flag(parser, "--metrics-host", "miner.metrics_host")
    config_flag(parser, "--metrics-port", "miner.metrics_port")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging (the per-request access log is always on)",
    )
    sub = parser.add_subparsers(dest="miner_command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "probe",
        help="call a miner as a validator would: signed request, verified answer, timings",
        description="Sign one completion request with a validator hotkey (--wallet.*), send it "
        "to a miner, verify the miner's response signature and print latency, time to first "
        "token and the answer. Exit 0 when the answer is sound, 1 when not.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="the miner's endpoint, http://HOST:PORT (needs --hotkey)")
    target.add_argument(
        "--uid", type=int, help="the miner's uid: endpoint and hotkey read from the metagraph"
    )
    p.add_argument("--hotkey", help="the miner's hotkey ss58 (with --url)")
    p.add_argument("--prompt", default="sort: 3 1 2", help="text prompt (default: 'sort: 3 1 2')")
    p.add_argument(
        "--prompt-ids", default=None, help="token-id prompt instead, e.g. 1,5,6 (as validators)"
    )
    p.add_argument("--max-tokens", type=int, default=16, help="tokens asked for (default: 16)")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default: 0)"
    )
    p.add_argument("--logprobs", type=int, default=5, help="top-k logprobs asked (default: 5)")
    p.add_argument("--no-stream", action="store_true", help="ask for one JSON answer, not SSE")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default: 30)")
    config_flag(p, "--network", "chain.network")
    config_flag(p, "--netuid", "chain.netuid")
    wallet_flags(p)


def run(args: argparse.Namespace, engine_factory: EngineFactory | None = None) -> int:
    if getattr(args, "miner_command", None) == "probe":
        return asyncio.run(_probe(args))
    from neurons.miner.main import MinerOptions, serve

    if not args.model:
        raise ConfigError("--model PATH is required to serve (the student model folder)")

    cfg = args.config
    configure_logging(
        verbose=args.verbose,
        log_file=Path(cfg.miner.state_dir).expanduser()
        / f"miner-{cfg.wallet.name}-{cfg.wallet.hotkey}.log",
    )
    opts = MinerOptions(
        model=args.model,
        register=args.register,
        model_name=args.model_name,
        revision=args.revision,
        hf_repo=args.hf_repo,
        hf_revision=args.hf_revision,
    )
    return asyncio.run(serve(args.config, opts, engine_factory=engine_factory))


async def _probe(args: argparse.Namespace) -> int:
    from neurons.miner.probe import probe, render, request_body
    from subnet.chain.network import open_chain, wallet_folder
    from subnet.wallets import load_wallet

    cfg = args.config
    wallet = load_wallet(
        cfg.wallet.name,
        cfg.wallet.hotkey,
        wallet_folder(cfg.chain.network, cfg.wallet.path),
        password_file=cfg.wallet.password_file or None,
    )
    if args.url is not None:
        if not args.hotkey:
            raise ConfigError("--url needs the miner's --hotkey (its responses are signed by it)")
        url, hotkey = args.url.rstrip("/"), args.hotkey
    else:
        async with open_chain(cfg.chain.network) as chain:
            mg = await chain.metagraph(cfg.chain.netuid, max_age_blocks=0)
        me = next((n for n in mg.neurons if n.uid == args.uid), None)
        if me is None or me.axon is None:
            raise ConfigError(f"uid {args.uid} has no endpoint on netuid {cfg.chain.netuid}")
        url, hotkey = me.axon.url, me.hotkey
    if args.prompt_ids:
        try:
            prompt: str | list[int] = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--prompt-ids: expected integers like 1,5,6, got {args.prompt_ids!r}"
            ) from None
    else:
        prompt = args.prompt
    body = request_body(
        prompt,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        logprobs=args.logprobs,
        stream=not args.no_stream,
    )
    result = await probe(wallet, url, hotkey, body, timeout=args.timeout)
    print(render(result))
    return 0 if result.ok else 1
