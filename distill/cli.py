"""``subnet distill``: the tiny world (more subcommands join as the distillation rooms land).

Nothing heavy at import: the build imports torch and transformers only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path

from subnet.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="distill_command", required=True, metavar="COMMAND")
    tiny = sub.add_parser(
        "tiny",
        help="build (or reuse) a built-in world: tokenizer, teacher, undistilled and distilled "
        "students",
        description="Build a deterministic built-in world into the user cache ($SUBNET_CACHE "
        "overrides it) and copy it to --out. A second call reuses the cache. --world tiny: a "
        "home-made 300-id tokenizer and synthetic tasks; --world real: DeepSeek-V4's 129,280-id "
        "tokenizer, a chat template, models trained on the standard library's docstrings.",
    )
    tiny.add_argument("--out", type=Path, required=True, help="directory to copy the world to")
    tiny.add_argument("--force", action="store_true", help="rebuild even if it is cached")
    tiny.add_argument(
        "--world", choices=("tiny", "real"), default="tiny", help="which world (default tiny)"
    )
    _configure_toolkit(sub)


def run(args: argparse.Namespace) -> int:
    if args.distill_command == "tiny":
        if getattr(args, "world", "tiny") == "real":
            return _real(args.out, args.force)
        return _tiny(args.out, args.force)
    if args.distill_command in ("targets", "train", "eval"):
        return _toolkit(args)
    raise ConfigError(f"unknown distill command {args.distill_command!r}")


def _tiny(out: Path, force: bool) -> int:
    from distill.distilled import ensure_distilled
    from distill.tiny import build_tiny_world

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty directory")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    world = build_tiny_world(force=force, log=log)
    asyncio.run(ensure_distilled(world, log=log))
    shutil.copytree(world.root, out, dirs_exist_ok=True)
    info = world.info()
    print(f"tiny world {info['hash']} ({'built' if world.built else 'cached'}: {world.root})")
    for name, stats in info["stats"].items():
        acc = stats["heldout_accuracy"]
        print(f"  {out / name}: held-out accuracy {acc['all']:.0%} {acc}")
    print(f"  {out / 'student-distilled'}: distilled from the teacher")
    print(f"  {out / 'tokenizer'}")
    return 0


def _real(out: Path, force: bool) -> int:
    from distill.real_distilled import STATS_FILE, ensure_real_distilled
    from distill.real_world import build_real_world

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty directory")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    world = build_real_world(force=force, log=log)
    distilled = asyncio.run(ensure_real_distilled(world, log=log))
    shutil.copytree(world.root, out, dirs_exist_ok=True)
    info = world.info()
    base = info["baselines"]
    print(f"real world {info['hash']} ({'built' if world.built else 'cached'}: {world.root})")
    print(
        f"  held-out loss, nats per answer token: uniform {base['uniform_loss']:.2f}, "
        f"unigram {base['unigram_loss']:.2f}"
    )
    for name, stats in info["stats"].items():
        print(f"  {out / name}: {stats['heldout_loss']:.3f} ({stats['parameters']:,} parameters)")
    d_stats = json.loads((distilled / STATS_FILE).read_text())
    print(f"  {out / distilled.name}: {d_stats['heldout_loss']:.3f} (distilled from the teacher)")
    print(f"  {out / 'tokenizer'}; held-out chat prompts: {out / 'prompts.jsonl'}")
    return 0


# --- the miner's toolkit: targets, train, eval (distill/targets.py, train.py, evaluate.py) ---


# Help for every TargetsConfig / TrainConfig field (the dataclasses stay torch-free and plain).
FIELD_HELP = {
    "targets": {
        "k": "teacher top-K logprobs kept per position; the validator asks for at most this",
        "max_tokens": "longest teacher completion per prompt",
        "temperature": "teacher sampling temperature (0 = its greedy answers)",
        "seed": "sampling seed; prompt i uses seed + i (ignored when greedy)",
        "shard_size": "prompts per shard file (an interrupted run resumes per shard)",
        "batch": "prompts per teacher engine call",
    },
    "train": {
        "steps": "optimizer steps in all (a resumed run continues to this)",
        "batch": "sequences per step",
        "lr": "peak learning rate (linear warm-up, cosine decay to lr * min-lr-frac)",
        "warmup": "warm-up steps",
        "min_lr_frac": "final learning rate as a fraction of --lr",
        "weight_decay": "AdamW weight decay",
        "beta2": "AdamW beta2",
        "grad_clip": "largest global gradient norm (<= 0 disables clipping)",
        "k": "teacher top-K used per position, the rest joins one tail bucket (0 = all stored)",
        "ce_weight": "weight of cross-entropy on the teacher's tokens, in [0, 1]",
        "seed": "model init (for a weightless student) and batch order",
        "device": "auto (CUDA with bf16 autocast if available, else CPU fp32), cpu or cuda",
        "threads": "CPU threads (0 = all); results are bit-exact for a given count",
        "eval_sequences": "sequences held out from the end of the targets for evaluation",
        "eval_every": "evaluate every N steps (-1 = only at the end)",
        "save_every": "checkpoint every N steps (-1 = only at the end)",
        "keep_checkpoints": "checkpoints kept on disk (the newest)",
    },
}


def _field_flags(parser: argparse.ArgumentParser, cls: type, helps: dict[str, str]) -> None:
    from dataclasses import fields

    for f in fields(cls):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            metavar=f.name.upper(),
            help=f"{helps[f.name]} (default: {f.default})",
        )


def _configure_toolkit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from distill.targets import TargetsConfig
    from distill.train_config import TrainConfig

    t = sub.add_parser("targets", help="teacher completions + top-K distributions, as shards")
    t.add_argument("--teacher", type=Path, required=True, help="teacher model folder (HF)")
    t.add_argument(
        "--prompts",
        required=True,
        help="prompt file (JSONL, Parquet, datasets save_to_disk folder), "
        "or tasks:N[:SEED[:fam1,fam2]] for seeded tasks",
    )
    t.add_argument("--out", type=Path, required=True, help="targets folder (resumes if partial)")
    t.add_argument(
        "--engine",
        choices=("vllm", "hf"),
        default="vllm",
        help="engine the teacher runs on (default: vllm)",
    )
    _field_flags(t, TargetsConfig, FIELD_HELP["targets"])

    r = sub.add_parser("train", help="train a student on teacher targets (resumes from --out)")
    r.add_argument(
        "--student",
        type=Path,
        required=True,
        help="student init folder: HF weights, or only config.json (seeded init)",
    )
    r.add_argument("--targets", type=Path, required=True, help="folder from `distill targets`")
    r.add_argument("--out", type=Path, required=True, help="output folder (HF + identity)")
    _field_flags(r, TrainConfig, FIELD_HELP["train"])

    e = sub.add_parser("eval", help="the validator's numbers for students vs a teacher")
    e.add_argument(
        "--student",
        type=Path,
        action="append",
        required=True,
        help="student folder (repeat for several)",
    )
    e.add_argument("--teacher", type=Path, required=True, help="teacher model folder (HF)")
    e.add_argument(
        "--tasks",
        default="tasks:200:12345",
        help="prompt file (JSONL, Parquet, datasets folder) or tasks:N[:SEED[:families]] "
        "(default: tasks:200:12345)",
    )
    e.add_argument(
        "--engine",
        choices=("vllm", "hf"),
        default="vllm",
        help="engine every model runs on (default: vllm)",
    )
    e.add_argument(
        "--k", type=int, default=16, help="top-K logprobs compared per position (default: 16)"
    )
    e.add_argument(
        "--max-tokens", type=int, default=24, help="tokens per student answer (default: 24)"
    )


def _toolkit(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from distill.targets import TargetsConfig, load_prompts

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    if args.distill_command == "targets":
        from distill.targets import build_targets

        tasks = load_prompts(args.prompts)
        tcfg = TargetsConfig(**{f.name: getattr(args, f.name) for f in fields(TargetsConfig)})
        m = asyncio.run(
            build_targets(
                args.teacher,
                tasks,
                args.out,
                tcfg,
                engine_kind=args.engine,
                source=args.prompts,
                progress=sys.stderr.isatty(),
                log=None if sys.stderr.isatty() else log,  # a bar on a terminal, lines elsewhere
            )
        )
        print(f"{args.out}: {m['sequences']} sequences, {m['positions']} positions, k={m['k']}")
        return 0
    if args.distill_command == "train":
        from distill.train import TrainConfig, train

        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        res = train(
            args.student, args.targets, args.out, cfg, log=log, progress=sys.stderr.isatty()
        )
        print(
            f"{res.out}: held-out forward KL {res.eval_kl:.4f}, "
            f"{res.train_tokens_per_s:,.0f} tok/s; commit {res.identity}"
        )
        return 0
    from distill.evaluate import evaluate, format_table

    results = asyncio.run(
        evaluate(
            args.student,
            args.teacher,
            load_prompts(args.tasks),
            engine_kind=args.engine,
            k=args.k,
            max_tokens=args.max_tokens,
        )
    )
    print(format_table(results))
    return 0
