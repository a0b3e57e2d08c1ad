"""`subnet validator`: run the validator node, or `subnet validator calibrate` its tolerance.

subnet validator --teacher PATH [--netuid N] [--network NET] [--engine hf|vllm] [--register] ...
subnet validator calibrate --model PATH [--engines hf,vllm] [--miner-engine hf,vllm]
                           [--batch-sizes 1,4,16]
                           [--seeds 0,1,2] [--fpr 0.001] [--report docs/calibration.md]
                           [--write-config subnet.toml] [--against PATH]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from subnet.cli import config_flag, configure_logging, wallet_flags
from subnet.errors import ConfigError


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    config_flag(parser, "--teacher", "validator.teacher")
    config_flag(parser, "--engine", "validator.engine")
    config_flag(parser, "--network", "chain.network")
    config_flag(parser, "--netuid", "chain.netuid")
    wallet_flags(parser)
    config_flag(parser, "--state-dir", "validator.state_dir")
    config_flag(parser, "--tasks-per-step", "validator.tasks_per_step")
    config_flag(parser, "--prompt-sources", "validator.prompt_sources")
    config_flag(parser, "--sample-miners", "validator.sample_miners")
    config_flag(parser, "--query-timeout", "validator.query_timeout")
    config_flag(parser, "--model-roots", "validator.model_roots")
    config_flag(parser, "--baseline", "validator.baseline")
    config_flag(parser, "--metrics-port", "validator.metrics_port")
    config_flag(parser, "--export-port", "validator.export_port")
    config_flag(parser, "--export-host", "validator.export_host")
    config_flag(parser, "--metrics-host", "validator.metrics_host")
    config_flag(parser, "--spot-check-fraction", "verify.spot_check_fraction")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps (default: run until signalled)",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="register the hotkey if it is not (pays the burn); without it an unregistered "
        "hotkey stops the validator at start",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging (start, step and weight lines are logged at INFO without it)",
    )
    sub = parser.add_subparsers(dest="validator_command", metavar="SUBCOMMAND")
    st = sub.add_parser(
        "status",
        help="read a validator's state dir: last steps, per-miner EMA and causes, last weights",
        description="read a validator's state dir: last steps, per-miner EMA and causes, "
        "last weights (read-only; safe while the validator runs)",
    )
    config_flag(st, "--state-dir", "validator.state_dir")
    st.add_argument("--steps", type=int, default=5, help="how many recent steps to show")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    cal = sub.add_parser(
        "calibrate",
        help="measure honest claimed-vs-recomputed error and "
        "write the spot-check tolerance for a target false-positive rate",
    )
    config_flag(cal, "--state-dir", "validator.state_dir")
    cal.add_argument("--model", required=True, help="an honest miner's model folder")
    cal.add_argument(
        "--against",
        default=None,
        help="a different model, to report how far its claims land (optional)",
    )
    cal.add_argument(
        "--engines", default="hf", help="recompute engines, e.g. hf,vllm (default: hf)"
    )
    cal.add_argument(
        "--miner-engine",
        default="hf",
        help="engines the honest miner generates with, e.g. hf,vllm (default: hf)",
    )
    cal.add_argument(
        "--dtype", default=None, help="load every engine in this dtype (default: the checkpoint's)"
    )
    cal.add_argument(
        "--batch-sizes",
        type=_ints,
        default=[1, 4, 16],
        help="batch sizes claims are generated and recomputed in (default: 1,4,16)",
    )
    cal.add_argument(
        "--seeds", type=_ints, default=[0, 1, 2], help="sampling seeds (default: 0,1,2)"
    )
    cal.add_argument("--tasks", type=int, default=32, help="prompts per seed (default: 32)")
    cal.add_argument(
        "--max-tokens", type=int, default=16, help="tokens per honest answer (default: 16)"
    )
    cal.add_argument(
        "--k", type=int, default=20, help="top-k logprobs claimed per position (default: 20)"
    )
    cal.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)"
    )
    cal.add_argument(
        "--fpr", type=float, default=0.001, help="target false-positive rate (default: 0.001)"
    )
    cal.add_argument(
        "--margin", type=float, default=2.0, help="safety factor on the quantile (default: 2.0)"
    )
    cal.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="Markdown report to write (default: calibration.md in the validator's state dir)",
    )
    cal.add_argument(
        "--write-config",
        default="",
        metavar="TOML",
        help="TOML file whose [verify] tolerance is updated (default: none; the report only)",
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "validator_command", None) == "status":
        return _status(args)
    if getattr(args, "validator_command", None) == "calibrate":
        configure_logging(verbose=getattr(args, "verbose", False))
        return asyncio.run(_calibrate(args))
    from neurons.validator.main import serve

    if not args.config.validator.teacher:
        raise ConfigError("validator.teacher is required: pass --teacher PATH")
    state = Path(args.config.validator.state_dir).expanduser()
    configure_logging(verbose=args.verbose, log_file=state / "validator.log")
    return asyncio.run(serve(args.config, args.max_steps, register=args.register))


def _status(args: argparse.Namespace) -> int:
    import json

    from neurons.validator.status import read_status, render_status

    if args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    status = read_status(args.config.validator.state_dir, last=args.steps)
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def _engines(text: str) -> list[str]:
    names = [e.strip() for e in text.split(",") if e.strip()]
    bad = [n for n in names if n not in ("hf", "vllm")]
    if not names or bad:
        raise ConfigError(f"engines must be a comma-separated list of hf, vllm; got {text!r}")
    return names


async def _calibrate(args: argparse.Namespace) -> int:
    from neurons.validator.calibrate import calibrate, report, write_config
    from subnet.engine import Engine, load_engine
    from subnet.tokenizer import ModelTokenizer

    if not 0 < args.fpr < 1:
        raise ConfigError(f"--fpr must be in (0, 1), got {args.fpr}")
    model = Path(args.model)
    miner_names, names = _engines(args.miner_engine), _engines(args.engines)
    pool: dict[str, Engine] = {}  # one engine per kind, shared by miner and recompute
    against: Engine | None = None
    try:
        for name in dict.fromkeys([*miner_names, *names]):
            pool[name] = load_engine(name, model, dtype=args.dtype)  # type: ignore[arg-type]
        miners = {n: pool[n] for n in miner_names}
        engines = {n: pool[n] for n in names}
        if args.against:
            against = load_engine(
                miner_names[0],  # type: ignore[arg-type]
                args.against,
                dtype=args.dtype,
            )
        cal = await calibrate(
            miners,
            engines,
            ModelTokenizer(model),
            seeds=args.seeds,
            batch_sizes=args.batch_sizes,
            tasks=args.tasks,
            k=args.k,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            fpr=args.fpr,
            margin=args.margin,
            against=against,
        )
    finally:
        for engine in [*pool.values(), *([against] if against else [])]:
            await engine.close()
    prov = "; ".join(
        f"{n}: {e.info.provenance.engine} {e.info.provenance.version} "
        f"{e.info.provenance.dtype} on {e.info.provenance.device}"
        for n, e in engines.items()
    )
    text = report(
        cal,
        model=str(model),
        against=args.against,
        provenance=prov,
        config_path=args.write_config or None,
    )
    out = (
        Path(args.report)
        if args.report
        else Path(args.config.validator.state_dir).expanduser() / "calibration.md"
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        if args.write_config:
            write_config(Path(args.write_config), cal)
    except OSError as e:
        raise ConfigError(f"cannot write {e.filename}: {e.strerror or e}") from None
    print(text)
    print(f"report written to {out}")
    print(
        f"tolerance written to [verify] of {args.write_config}"
        if args.write_config
        else "no config changed (pass --write-config subnet.toml to apply the tolerance)"
    )
    return 0
