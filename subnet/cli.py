"""The ``subnet`` command: one entry point, one subcommand per user journey.

Each subcommand lives in the room that owns it and exposes ``configure(parser)`` and
``run(args) -> int``; modules named here import nothing heavy at module level, so
``subnet --help`` stays instant. Configuration flags declared with :func:`config_flag` become
CLI-layer overrides of :mod:`subnet.config` (the top of the precedence chain), and the loaded
configuration is handed to commands as ``args.config``.

Errors meant for the operator (:class:`~subnet.errors.SubnetError`) print as one line and exit
2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scoring.params import describe_range
from subnet.errors import SubnetError

CONFIG_DEST_PREFIX = "config:"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str  # module exposing configure(parser) and run(args)
    configure: str = "configure"
    run: str = "run"


COMMANDS: tuple[Command, ...] = (
    Command(
        "miner",
        "serve a student model to validators (signed OpenAI-compatible API)",
        "neurons.miner.cli",
    ),
    Command(
        "validator",
        "query miners, score them against the teacher, set weights",
        "neurons.validator.cli",
    ),
    Command(
        "gateway",
        "an OpenAI-compatible API for users, routed to the best-scored miners; API keys",
        "neurons.gateway.cli",
    ),
    Command(
        "localnet",
        "run the whole subnet on this machine (embedded devnet, real processes)",
        "neurons.localnet.cli",
    ),
    Command(
        "devnet",
        "the embedded local chain: init, status, advance",
        "subnet.chain.cli",
        "configure_devnet",
        "run_devnet",
    ),
    Command(
        "distill", "tiny world, teacher targets, student training and evaluation", "distill.cli"
    ),
    Command(
        "simulate",
        "incentive simulator: scoring config + Yuma -> emissions",
        "neurons.owner.simulate_cli",
    ),
    Command(
        "hparams",
        "read or set subnet hyperparameters (devnet or real chain)",
        "subnet.chain.cli",
        "configure_hparams",
        "run_hparams",
    ),
    Command(
        "bench",
        "run a benchmark that ships with the package (subnet bench lists them)",
        "neurons.owner.bench_cli",
    ),
)


def config_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    key: str,
    *,
    aliases: Sequence[str] = (),
    **kwargs: Any,
) -> None:
    """Add ``flag`` as a CLI override of config key ``section.key`` (help from its declaration)."""
    from subnet.config import declared_keys

    field = declared_keys()[key]
    help_text = kwargs.pop("help", None) or field.metadata["help"]
    parser.add_argument(
        flag,
        *aliases,
        dest=CONFIG_DEST_PREFIX + key,
        default=argparse.SUPPRESS,
        metavar=kwargs.pop("metavar", key.split(".")[-1].upper()),
        help=f"{help_text} ({describe_range(field)}; config key {key})",
        **kwargs,
    )


def wallet_flags(parser: argparse.ArgumentParser, *, password_file: bool = True) -> None:
    """``--wallet.name/--wallet.hotkey/--wallet.path`` (btcli spelling; ``--wallet-name`` too)."""
    for part in ("name", "hotkey", "path"):
        config_flag(parser, f"--wallet.{part}", f"wallet.{part}", aliases=(f"--wallet-{part}",))
    if password_file:
        config_flag(
            parser,
            "--wallet.password-file",
            "wallet.password_file",
            aliases=("--wallet-password-file",),
        )


def add_config_options(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """``--config`` and ``--set`` on every subcommand, and on each of its own subcommands
    (``subnet distill train --set ...``). Nested parsers leave the values unset unless given:
    argparse copies a subparser's defaults over its parent's values."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS if nested else None,
        dest="config_path",
        help="subnet.toml to load (default: $SUBNET_CONFIG, else ./subnet.toml if present)",
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=argparse.SUPPRESS if nested else [],
        dest="config_set",
        help="override any config key, e.g. --set weights.ema_alpha=0.2 (repeatable)",
    )
    for action in parser._actions:  # argparse offers no public walk of subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                add_config_options(child, nested=True)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Collect CLI-layer config values: declared flags, then ``--set`` pairs."""
    from subnet.errors import ConfigError

    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith(CONFIG_DEST_PREFIX):
            out[dest[len(CONFIG_DEST_PREFIX) :]] = value
    for pair in getattr(args, "config_set", []) or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("distill-subnet")
    except PackageNotFoundError:
        return "unknown (not installed)"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES = 10 << 20  # rotated at 10 MiB, 5 old files kept
QUIET_LOGGERS = ("aiohttp.access", "httpx", "urllib3", "asyncio", "filelock")


def configure_logging(
    *, verbose: bool = False, log_file: str | os.PathLike[str] | None = None
) -> None:
    """The process's logging, set once by a node's CLI entry point (never by library code).

    INFO to stderr and, when ``log_file`` is given, to that file as well, rotated at
    :data:`LOG_FILE_BYTES`; ``verbose`` adds DEBUG from this project's own loggers
    (``subnet.*``), never third-party debug chatter. A log file that cannot be opened is a
    ConfigError.
    """
    import logging
    import logging.handlers
    from pathlib import Path

    from subnet.errors import ConfigError

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        path = Path(log_file).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    path, maxBytes=LOG_FILE_BYTES, backupCount=5, encoding="utf-8"
                )
            )
        except OSError as e:
            raise ConfigError(f"cannot write the log file {path}: {e.strerror or e}") from None
    formatter = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    logging.getLogger("subnet").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    for name in QUIET_LOGGERS:  # third-party chatter stays out of an operator's INFO log
        logging.getLogger(name).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subnet",
        description="A Bittensor distillation subnet node: miners, validators, owner tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        module = importlib.import_module(cmd.module)
        configure: Callable[[argparse.ArgumentParser], None] = getattr(module, cmd.configure)
        configure(p)
        add_config_options(p)
        p.set_defaults(_command=cmd)
    return parser


# Process-wide settings the CLI (the process's entry point, and nothing below it) may set:
# vLLM's CPU build binds OpenMP threads to cores by default, which on a small box shared by
# several engines slows each about 5x. An operator's own value always wins.
PROCESS_ENV_DEFAULTS = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def _process_defaults() -> None:
    for key, value in PROCESS_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def main(
    argv: Sequence[str] | None = None,
    *,
    run: Callable[[argparse.Namespace], int] | None = None,
) -> int:
    """Parse, load the config, run the subcommand; operator errors become one line.

    ``run`` replaces the subcommand's own run function: wrappers (the localnet's adversary
    fixtures) reuse a command's flags, config layering and error handling while injecting a
    dependency of their own.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _process_defaults()
    cmd: Command = args._command
    try:
        from subnet.config import load_config

        args.config = load_config(args.config_path, overrides=overrides_from_args(args))
        if run is None:
            run = getattr(importlib.import_module(cmd.module), cmd.run)
        assert run is not None
        return int(run(args) or 0)
    except SubnetError as e:
        print(f"subnet {cmd.name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"subnet {cmd.name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
