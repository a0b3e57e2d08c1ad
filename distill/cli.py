"""``subnet distill``: the tiny world (more subcommands join as the distillation rooms land).

Nothing heavy at import: the build imports torch and transformers only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Callable
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
        "batch": "sequences per step, over all processes (the global batch)",
        "lr": "peak learning rate (linear warm-up, cosine decay to lr * min-lr-frac)",
        "warmup": "warm-up steps",
        "min_lr_frac": "final learning rate as a fraction of --lr",
        "weight_decay": "AdamW weight decay",
        "beta2": "AdamW beta2",
        "grad_clip": "largest global gradient norm (<= 0 disables clipping)",
        "k": "teacher top-K used per position, the rest joins one tail bucket (0 = all stored)",
        "ce_weight": "weight of cross-entropy on the teacher's tokens, in [0, 1]",
        "onpolicy_ratio": "share of each batch from the student's own samples, scored by "
        "--teacher, in [0, 1] (0 = offline targets only)",
        "onpolicy_every": "steps between refreshes of the on-policy samples",
        "onpolicy_start": "offline-only steps before on-policy samples join the batch",
        "onpolicy_temperature": "the student's sampling temperature for on-policy samples",
        "onpolicy_max_tokens": "on-policy answer length limit (0 = the targets' max_tokens)",
        "seed": "model init (for a weightless student) and batch order",
        "device": "auto (CUDA with bf16 autocast if available, else CPU fp32), cpu or cuda",
        "threads": "CPU threads (0 = all); results are bit-exact for a given count",
        "parallel": "with several processes (--nproc, torchrun): ddp or fsdp (sharded)",
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
    r.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (torchrun-style; one per GPU). "
        "Across machines run `torchrun ... -m subnet.cli distill train ...` instead",
    )
    r.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="teacher model folder that scores the student's samples (--onpolicy-ratio > 0)",
    )
    r.add_argument("--engine", choices=("vllm", "hf"), default="vllm", help="teacher engine")
    _field_flags(r, TrainConfig, FIELD_HELP["train"])

    e = sub.add_parser(
        "eval",
        help="the validator's score for students vs a teacher (s_kl, s_ref, speed, score)",
        description="Each student answers like a miner (streamed, sampled at the validator's "
        "temperature, raw top-k) after an untimed warm-up; the teacher judges every answer "
        "with the validator's own gates and scores. k, max tokens and temperature default to "
        "the [validator] config, weights and scales to [scoring]/[speed]/[verify] (--config, "
        "--set). Speed is relative to the fastest valid answer among the students given.",
    )
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
        "--k",
        type=int,
        default=None,
        help="top-K logprobs compared per position (default: the validator's top_k)",
    )
    e.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="tokens per student answer (default: the validator's max_tokens)",
    )
    e.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="students' sampling temperature (default: the validator's temperature)",
    )
    e.add_argument("--seed", type=int, default=0, help="sampling seeds of the prompts (default: 0)")


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
        return _train(args, log)
    from distill.evaluate import evaluate, format_table

    cfg, vc = args.config, args.config.validator
    results = asyncio.run(
        evaluate(
            args.student,
            args.teacher,
            load_prompts(args.tasks),
            engine_kind=args.engine,
            k=args.k if args.k is not None else vc.top_k,
            max_tokens=args.max_tokens if args.max_tokens is not None else vc.max_tokens,
            temperature=args.temperature if args.temperature is not None else vc.temperature,
            seed=args.seed,
            score_cfg=cfg.scoring,
            speed_cfg=cfg.speed,
            verify_cfg=cfg.verify,
        )
    )
    print(format_table(results))
    return 0


def _train(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """One process, N local ranks (``--nproc``), or one rank of a torchrun launch."""
    import os
    from dataclasses import fields

    from distill.train_config import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    under_torchrun = "WORLD_SIZE" in os.environ
    if args.nproc > 1 and not under_torchrun:
        from distill.launch import launch
        from distill.train import open_inputs

        # Refuse here, once, what every rank would refuse (the ranks still check everything).
        open_inputs(args.student, args.targets, cfg, verify=False)
        if cfg.batch < args.nproc:
            raise ConfigError(f"--batch {cfg.batch} is smaller than --nproc {args.nproc}")
        if cfg.onpolicy_ratio > 0 and args.teacher is None:
            raise ConfigError("--onpolicy-ratio > 0 needs --teacher (the model that scores)")

        return launch(args.nproc, _rank_argv(args), what=f"training into {args.out}")
    if args.nproc > 1 and int(os.environ["WORLD_SIZE"]) != args.nproc:
        raise ConfigError(f"--nproc {args.nproc} but torchrun started {os.environ['WORLD_SIZE']}")
    if cfg.onpolicy_ratio > 0:
        from distill.live_teacher import train_with_teacher

        job = train_with_teacher(
            args.student,
            args.targets,
            args.out,
            cfg,
            teacher=args.teacher,
            engine_kind=args.engine,
            log=log,
            progress=sys.stderr.isatty(),
        )
        res = asyncio.run(job)
    else:
        from distill.train import train

        progress = sys.stderr.isatty()
        res = train(args.student, args.targets, args.out, cfg, log=log, progress=progress)
    if os.environ.get("RANK", "0") == "0":
        print(
            f"{res.out}: held-out forward KL {res.eval_kl:.4f}, "
            f"{res.train_tokens_per_s:,.0f} tok/s; commit {res.identity}"
        )
    return 0


def _rank_argv(args: argparse.Namespace) -> list[str]:
    """The command each rank runs: this one, without ``--nproc``."""
    from dataclasses import fields

    from distill.train_config import TrainConfig

    head = ["distill"]
    if args.config_path:
        head += ["--config", str(args.config_path)]
    for pair in args.config_set:
        head += ["--set", pair]
    body = ["train", "--student", str(args.student), "--targets", str(args.targets)]
    body += ["--out", str(args.out), "--engine", args.engine]
    if args.teacher is not None:
        body += ["--teacher", str(args.teacher)]
    for f in fields(TrainConfig):
        body += [f"--{f.name.replace('_', '-')}", str(getattr(args, f.name))]
    return head + body
