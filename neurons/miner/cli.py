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

if TYPE_CHECKING:
    from neurons.miner.main import EngineFactory


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="the student model folder (Hugging Face format, safetensors)",
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


def run(args: argparse.Namespace, engine_factory: EngineFactory | None = None) -> int:
    from neurons.miner.main import MinerOptions, serve

    cfg = args.config
    configure_logging(
        verbose=args.verbose,
        log_file=Path(cfg.miner.state_dir).expanduser()
        / f"miner-{cfg.wallet.name}-{cfg.wallet.hotkey}.log",
    )
    opts = MinerOptions(
        model=args.model, register=args.register, model_name=args.model_name, revision=args.revision
    )
    return asyncio.run(serve(args.config, opts, engine_factory=engine_factory))
