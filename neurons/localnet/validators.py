"""The localnet's validators: roles, stakes, command lines and when each one is warm.

``--validators N`` runs N honest validators; ``--validators validator,validator,validator-copier``
names each role (``role[:engine]``, the engine of an honest validator's teacher). Each one is a
separate process with its own wallet (``validatorK`` of the devnet), hotkey, state directory
and teacher engine. The first must be honest: its scores fill the miners' table. A
``validator-copier`` is the real validator process with the copy rule of
:mod:`neurons.demo_fixtures.copier` instead of queries and scores.

Stakes (``--validator-stakes``, alpha, in the same order) are seeded on the devnet at every start
(no staking extrinsics are modelled); the default spreads them unequally (:func:`default_stakes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurons.localnet.plan import (
    CHILD_ENV,
    ENGINES,
    Options,
    _base_argv,
    steps_committed,
    validator_spec,
)
from neurons.localnet.procs import ProcSpec
from neurons.validator.store import StoreReader
from subnet.errors import ConfigError, StateError

HONEST = "validator"
COPIER = "validator-copier"
VALIDATOR_ROLES = (HONEST, COPIER)
DEFAULT_STAKE = 1000.0
RAO_PER_ALPHA = 1_000_000_000


def parse_validators(spec: str, default_engine: str) -> tuple[tuple[str, str], ...]:
    """``N`` or ``role[:engine],...`` -> ((role, engine), ...), the first one honest."""
    spec = spec.strip()
    if spec.isdigit():
        if int(spec) < 1:
            raise ConfigError("--validators needs at least one validator")
        return tuple((HONEST, default_engine) for _ in range(int(spec)))
    out = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        role, _, engine = item.partition(":")
        engine = engine or default_engine
        if role not in VALIDATOR_ROLES:
            raise ConfigError(
                f"--validators: unknown role {role!r}; a number or roles of "
                f"{', '.join(VALIDATOR_ROLES)}"
            )
        if engine not in ENGINES:
            raise ConfigError(f"--validators: unknown engine {engine!r} for {role}; use vllm or hf")
        out.append((role, engine))
    if not out:
        raise ConfigError("--validators needs at least one validator")
    if out[0][0] != HONEST:
        raise ConfigError(
            "--validators: the first validator must be honest (its scores fill the miners' table)"
        )
    return tuple(out)


def default_stakes(n: int) -> tuple[float, ...]:
    """1000, 750, 500, 250, 250, ... alpha: unequal, and from three validators on, none holds
    the half of the stake that would make its weights the consensus on its own."""
    return tuple(max(DEFAULT_STAKE / 4, DEFAULT_STAKE * (1 - k / 4)) for k in range(n))


def parse_stakes(text: str | None, n: int) -> tuple[float, ...]:
    """``A,B,...`` (alpha, one per validator, each > 0); None or empty: the default spread."""
    if not text:
        return default_stakes(n)
    try:
        stakes = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise ConfigError(f"--validator-stakes: expected numbers, got {text!r}") from e
    if len(stakes) != n:
        raise ConfigError(f"--validator-stakes: {n} validators need {n} stakes, got {len(stakes)}")
    if any(not s > 0 for s in stakes):
        raise ConfigError(f"--validator-stakes: every stake must be > 0 alpha, got {text!r}")
    return stakes


def stakes_of(opts: Options) -> tuple[float, ...]:
    return opts.validator_stakes or default_stakes(len(opts.validators))


@dataclass(frozen=True)
class ValidatorPlan:
    """One validator of the run. ``process`` names its process and log; the first honest one
    keeps the names a single-validator localnet always had (``validator``, ``DIR/validator``)."""

    name: str  # wallet name
    role: str
    engine: str
    uid: int
    hotkey: str
    stake: float  # alpha seeded at start
    process: str
    state_dir: Path

    @property
    def honest(self) -> bool:
        return self.role == HONEST

    @property
    def db(self) -> Path:
        return self.state_dir / "validator.sqlite"


def validator_plans(opts: Options, folder: Path, manifest: dict[str, Any]) -> list[ValidatorPlan]:
    from subnet.wallets import hotkey_address, load_wallet

    plans = []
    for k, ((role, engine), name, stake) in enumerate(
        zip(opts.validators, manifest["validators"], stakes_of(opts), strict=False)
    ):
        wallet = load_wallet(name, manifest["hotkey"], manifest["wallet_path"])
        first = k == 0
        plans.append(
            ValidatorPlan(
                name=name,
                role=role,
                engine=engine,
                uid=int(manifest["uids"][name]),
                hotkey=hotkey_address(wallet),
                stake=stake,
                process="validator" if first else name + ("-copier" if role == COPIER else ""),
                state_dir=folder / "validator" if first else folder / "validators" / name,
            )
        )
    return plans


def seed_stakes(devnet_file: Path, netuid: int, plans: list[ValidatorPlan]) -> None:
    """Seed each validator's stake (and with it the permits) as a genesis config would."""
    from subnet.chain.devnet import Devnet

    net = Devnet.open(devnet_file)
    try:
        for p in plans:
            net.set_stake(netuid, p.hotkey, int(p.stake * RAO_PER_ALPHA))
    finally:
        net.close()


def process_spec(
    opts: Options,
    folder: Path,
    manifest: dict[str, Any],
    models: dict[str, Path],
    plan: ValidatorPlan,
    families: tuple[str, ...],
    prompt_sources: tuple[str, ...] = (),
) -> ProcSpec:
    if plan.honest:
        return validator_spec(
            opts,
            folder,
            manifest,
            models,
            families,
            prompt_sources=prompt_sources,
            wallet=plan.name,
            state_dir=plan.state_dir,
            name=plan.process,
            engine=plan.engine,
        )
    launcher = ("neurons.demo_fixtures.copier", opts.copy_from)
    argv = [*_base_argv(opts, "validator", manifest, plan.name, launcher), "-v"]
    for s in (f"validator.state_dir={plan.state_dir}", f"validator.step_blocks={opts.step_blocks}"):
        argv += ["--set", s]
    log = folder / "logs" / f"{plan.process}.log"
    return ProcSpec(plan.process, tuple(argv), log, CHILD_ENV, critical=True)


def weight_sets(db: Path) -> int:
    """Successful weight sets recorded so far (0 while the database is not there yet)."""
    try:
        with StoreReader(db, missing_ok=True) as reader:
            return len(reader.weight_sets(successful_only=True))
    except StateError:
        return 0


def last_weight_step(db: Path) -> int | None:
    try:
        with StoreReader(db, missing_ok=True) as reader:
            last = reader.last_weight_set(successful_only=True)
    except StateError:
        return None
    return None if last is None else last.step


class Warmup:
    """When is every validator warm? Honest ones: a step committed, then weights set from
    ``warmup_steps`` steps of scores; copiers: weights copied at least once. Progress lines are
    printed once each through ``say``."""

    def __init__(self, plans: list[ValidatorPlan], warmup_steps: int, say: Any) -> None:
        self.plans, self.warmup, self.say = plans, warmup_steps, say
        self.steps_before = {p.name: steps_committed(p.db) for p in plans}
        self.sets_before = {p.name: weight_sets(p.db) for p in plans}
        self.stepped: set[str] = set()
        self.warm: set[str] = set()

    def poll(self) -> bool:
        for p in self.plans:
            if p.name in self.warm:
                continue
            if p.honest:
                if p.name not in self.stepped and steps_committed(p.db) > self.steps_before[p.name]:
                    self.stepped.add(p.name)
                    self.say(f"   {p.process} committed its first step")
                due = self.steps_before[p.name] + self.warmup
                step = last_weight_step(p.db)
                if p.name in self.stepped and step is not None and step >= due:
                    self.warm.add(p.name)
                    self.say(f"   {p.process} set weights from {self.warmup} steps of scores")
            elif weight_sets(p.db) > self.sets_before[p.name]:
                self.warm.add(p.name)
                self.say(f"   {p.process} copied weights for the first time")
        return self.ready

    @property
    def ready(self) -> bool:
        return len(self.warm) == len(self.plans)

    def waiting(self) -> list[str]:
        out = []
        for p in self.plans:
            if p.name in self.warm:
                continue
            if not p.honest:
                out.append(f"{p.process} (no weights copied)")
            elif p.name in self.stepped:
                out.append(f"{p.process} (no weights set after its warm-up)")
            else:
                out.append(f"{p.process} (no step committed)")
        return out


def state_entry(plan: ValidatorPlan, spec: ProcSpec, pid: int) -> dict[str, Any]:
    """What ``--status`` and ``localnet.json`` keep of one validator."""
    return {
        "name": plan.name,
        "role": plan.role,
        "uid": plan.uid,
        "stake": plan.stake,
        "process": plan.process,
        "pid": pid,
        "log": str(spec.log),
        "db": str(plan.db),
    }


def describe(plans: list[ValidatorPlan]) -> str:
    return ", ".join(f"{p.process} uid {p.uid} ({p.role}, {p.stake:g} α)" for p in plans)
