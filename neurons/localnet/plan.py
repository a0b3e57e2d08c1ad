"""The localnet's plan: its roles and options, the exact command line of every process it
starts, the adversaries' model variants, and the probes it polls (a miner's health, the
validator's committed steps)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurons.localnet.procs import ProcSpec
from neurons.validator.store import StoreReader
from subnet.errors import ConfigError, StateError

ROLES = (
    "teacher",
    "distilled",
    "undistilled",
    "adversary-wrong-model",
    "adversary-fabricated",
    "adversary-selective",
)
# Honest miners serve on --engine (vLLM by default); the adversaries hold two models each and
# the validator six (teacher + committed models for spot checks), so they default to the light
# transformers engine: one vLLM CPU engine costs ~2.3 GB and ~40 s of a 2-core machine.
DEFAULT_MINERS = (
    "distilled,undistilled,teacher,adversary-wrong-model:hf,adversary-fabricated:hf,"
    "adversary-selective:hf"
)
ENGINES = ("vllm", "hf")
WORLDS = ("tiny", "real")  # distill.tiny / distill.real_world
MINER_IP = "127.0.0.2"  # the devnet rejects 127.0.0.1 as the real pallet does
CHILD_ENV = {
    "PYTHONUNBUFFERED": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB per vLLM engine: the tiny models need almost none
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # several engines share the cores
    "OMP_NUM_THREADS": "1",  # six processes on two cores: no thread oversubscription
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@dataclass(frozen=True)
class Options:
    """Everything a run needs (``neurons.localnet.cli.options_from_args`` maps the CLI on it)."""

    folder: Path = Path(".localnet")
    miners: tuple[tuple[str, str], ...] = ()  # (role, engine)
    epochs: int = 6
    engine: str = "vllm"
    validator_engine: str = "hf"
    world: str = "tiny"  # the built-in world whose teacher and students the miners serve
    json_out: Path | None = None
    chart_out: Path | None = None
    tempo: int = 20
    block_time: float = 1.0
    tasks_per_step: int = 4
    step_blocks: int = 4
    max_tokens: int = 12
    # Validator steps before emission is counted. Every EMA starts at zero and its first steps
    # average a handful of answers, so weights set then reflect luck more than quality; the
    # epochs are watched from the first weight set after this many steps (5 = 1 / ema_alpha
    # at the default alpha would do for the ordering: the EMA then weighs ~4 steps of answers).
    # Spot checks are drawn at the default fraction (0.5) from the validator's secret, so a
    # cheat must be caught before the first counted weight set: the selective adversary
    # fabricates on the half of its answers the old public rule calls unchecked and so is caught
    # on 1/4 of its answers; 10 steps of 4 answers miss it with probability 0.75**40 = 1.0e-5
    # (scoring.economics.escape_probability; every other adversary: 0.5**40 = 9e-13). After a
    # catch the 20-step suspension is renewed by each further catch (0.68 a step), so the
    # counted epochs find it suspended with probability 1 - 8e-11 a step.
    warmup_steps: int = 10
    # (role, engine) per validator, in wallet order (neurons.localnet.validators): the first is
    # honest, and its scores fill the miners' table.
    validators: tuple[tuple[str, str], ...] = (("validator", "hf"),)
    validator_stakes: tuple[float, ...] = ()  # alpha per validator; () = the default spread
    copy_from: str = "validators"  # what a validator-copier copies (demo_fixtures.copier)
    ready_timeout: float = 900.0
    fresh: bool = False
    config_path: str | None = None
    extra_sets: tuple[str, ...] = ()  # --set KEY=VALUE given to every child
    live: bool | None = None  # None: a live table when stdout is a terminal


def parse_miners(spec: str, default_engine: str) -> tuple[tuple[str, str], ...]:
    """``role[:engine],...`` -> ((role, engine), ...); a clear error for unknown names."""
    out = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        role, _, engine = item.partition(":")
        engine = engine or default_engine
        if role not in ROLES:
            raise ConfigError(f"--miners: unknown role {role!r}; known: {', '.join(ROLES)}")
        if engine not in ENGINES:
            raise ConfigError(f"--miners: unknown engine {engine!r} for {role}; use vllm or hf")
        out.append((role, engine))
    if not out:
        raise ConfigError("--miners needs at least one role")
    return tuple(out)


@dataclass(frozen=True)
class MinerPlan:
    name: str  # wallet name, also the process name
    role: str
    engine: str
    uid: int
    hotkey: str
    port: int


def free_port(host: str = MINER_IP) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{MINER_IP}:{port}/v1/health", timeout=timeout) as r:
            return bool(200 <= r.status < 300)
    except (OSError, ValueError):
        return False


def steps_committed(db: Path) -> int:
    """Steps the validator has committed so far; 0 until its database exists and can be read
    (a probe polled while the validator starts: an unreadable moment is only "not yet")."""
    try:
        with StoreReader(db, missing_ok=True) as reader:
            return reader.step_count()
    except StateError:
        return 0


def weights_set_after(db: Path, step: int) -> bool:
    """True once the validator has set weights (successfully) from step ``step`` or later."""
    try:
        with StoreReader(db, missing_ok=True) as reader:
            last = reader.last_weight_set(successful_only=True)
    except StateError:
        return False
    return last is not None and last.step >= step


def model_variant(base: Path, dest: Path, tag: str) -> Path:
    """A copy of ``base`` whose digest differs (``_variant`` keys in its config).

    Made once per base model: the copy records the digest of the model it was made from and is
    remade when that changes (a rebuilt tiny world), so an adversary never commits a stale
    model from an older world.
    """
    from distill.identity import model_digest

    source = model_digest(base)
    current = dest / "config.json"
    if current.exists() and json.loads(current.read_text()).get("_variant_of") == source:
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp)
    config = json.loads((tmp / "config.json").read_text())
    config["_variant"] = tag
    config["_variant_of"] = source
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _base_argv(
    opts: Options,
    command: str,
    manifest: dict[str, Any],
    wallet: str,
    launcher: tuple[str, ...] = (),
) -> list[str]:
    """``python -m subnet.cli COMMAND`` (or ``launcher``) with the chain and wallet settings as
    ``--set`` overrides, which every subcommand accepts whatever its own flags are called."""
    argv = [sys.executable, "-m", *(launcher or ("subnet.cli", command))]
    if opts.config_path:
        argv += ["--config", opts.config_path]
    sets = [
        f"chain.network={manifest['network']}",
        f"chain.netuid={manifest['netuid']}",
        f"wallet.name={wallet}",
        f"wallet.hotkey={manifest['hotkey']}",
        f"wallet.path={manifest['wallet_path']}",
        *opts.extra_sets,
    ]
    for s in sets:
        argv += ["--set", s]
    return argv


def miner_spec(
    opts: Options,
    folder: Path,
    manifest: dict[str, Any],
    models: dict[str, Path],
    p: MinerPlan,
    families: Sequence[str] = (),
    prompt_sources: Sequence[str] = (),
) -> ProcSpec:
    # Adversaries run the real miner node with a wrapped engine: wrong-model commits a small
    # student and answers as the teacher; fabricated samples its own tokens and reports the
    # teacher's distributions for them.
    launcher: tuple[str, ...] = ()
    if p.role.startswith("adversary-"):
        kind = p.role.removeprefix("adversary-")
        launcher = ("neurons.demo_fixtures.launch", kind, str(models["teacher"]))
    argv = _base_argv(opts, "miner", manifest, p.name, launcher)
    argv += [
        "--model",
        str(models[p.role]),
        "--register",
        "--set",
        f"miner.engine={p.engine}",
        "--set",
        f"miner.port={p.port}",
        "--set",
        f"miner.host={MINER_IP}",
        "--set",
        f"miner.external_ip={MINER_IP}",
        "--set",
        f"miner.state_dir={folder / 'miners' / p.name}",
    ]
    if p.role == "adversary-selective":  # what a subnet.toml publishes: its oracle's inputs
        argv += ["--set", f"validator.tasks_per_step={opts.tasks_per_step}"]
        argv += _prompt_sets(families, prompt_sources)
    name = f"{p.name}-{p.role}"
    return ProcSpec(name, tuple(argv), folder / "logs" / f"{name}.log", CHILD_ENV)


def _prompt_sets(families: Sequence[str], prompt_sources: Sequence[str]) -> list[str]:
    """``--set`` flags for what validators ask: task families and/or prompt files."""
    argv = []
    if families:
        argv += ["--set", f"validator.task_families={','.join(families)}"]
    if prompt_sources:
        argv += ["--set", f"validator.prompt_sources={','.join(prompt_sources)}"]
    return argv


def validator_spec(
    opts: Options,
    folder: Path,
    manifest: dict[str, Any],
    models: dict[str, Path],
    families: Sequence[str] = (),
    *,
    prompt_sources: Sequence[str] = (),
    wallet: str | None = None,
    state_dir: Path | None = None,
    name: str = "validator",
    engine: str | None = None,
) -> ProcSpec:
    """The validator's command line; ``families`` (the tiny world's) narrows its prompts to the
    task families the teacher was trained on, so scores measure distillation, not guessing;
    ``prompt_sources`` (the real world's chat dataset file) replace the synthetic families.
    Defaults: the first validator wallet, state in ``folder/validator``, process ``validator``."""
    wallet = wallet or manifest["validators"][0]
    argv = [*_base_argv(opts, "validator", manifest, wallet), "-v"]
    argv += _prompt_sets(families, prompt_sources)
    for s in (
        f"validator.teacher={models['teacher']}",
        f"validator.engine={engine or opts.validator_engine}",
        f"validator.state_dir={state_dir or folder / 'validator'}",
        # Every committed model is fetched from the miner that committed it (no model roots)
        # and checked at the default spot_check_fraction; all of them stay loaded.
        f"validator.model_cache={max(2, len(opts.miners))}",
        f"validator.tasks_per_step={opts.tasks_per_step}",
        f"validator.step_blocks={opts.step_blocks}",
        f"validator.max_tokens={opts.max_tokens}",
    ):
        argv += ["--set", s]
    return ProcSpec(name, tuple(argv), folder / "logs" / f"{name}.log", CHILD_ENV, critical=True)
