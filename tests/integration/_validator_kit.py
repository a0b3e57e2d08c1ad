"""A devnet subnet with real miners (the miner app on loopback, hf engine) for validator tests.

Each miner commits a v2 identity fetchable from itself and serves its committed files
(``neurons/miner/files.py``), as the real node does.

Miners, all built from the tiny world: ``teacher`` (serves the teacher itself), ``student``
(the undistilled student), and four adversaries, each committing its own model variant (a copy
of the student whose ``config.json`` differs, so its digest is its own and no copy rule fires):
``wrong`` serves the teacher under a student variant's identity, ``fabricated`` samples its
student but reports the teacher's distributions, ``garbage`` sends malformed arrays, ``slow``
answers after the validator's timeout.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from distill.identity import MINER_SOURCE
from distill.manifest import committed_identity
from distill.tiny import TinyWorld
from neurons.demo_fixtures.adversary import wrap_engine
from neurons.miner.app import Gate, build_app
from neurons.miner.files import ModelFiles, add_routes
from neurons.miner.policy import CallerInfo, CallerPolicy, Directory, PolicyLimits, PriorityLimiter
from neurons.miner.serving import MinerService, load_codec
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.step import StepContext
from scoring.causes import Cause
from subnet import auth
from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.engine import Engine, load_engine
from subnet.metrics import MinerMetrics
from subnet.tokenizer import ModelTokenizer
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

TAO = 10**9
NETUID = 1
HOST = "127.0.0.2"  # the chain refuses 127.0.0.1 as an axon address
MINERS = ("teacher", "student", "wrong", "fabricated", "garbage", "slow")
# How a fabricating miner (its own student's tokens, the teacher's distributions claimed) is
# caught: the distribution check, or the EOS rules reading its own claim against its tokens:
# the claimed (teacher's) EOS probability says it should not have stopped (premature_stop) or
# should have stopped several positions ago (refuse_stop). Which answers meet which depends on
# the prompts, drawn from the block hash of a devnet whose chain id is random per run.
FABRICATION_CAUSES = {
    Cause.DIST_MISMATCH,
    Cause.FABRICATED,
    Cause.PREMATURE_STOP,
    Cause.REFUSE_STOP,
}
ADVERSARY = {
    "wrong": "wrong-model",
    "fabricated": "fabricated",
    "garbage": "garbage",
    "slow": "slow",
}


def model_zoo(world: TinyWorld, root: Path) -> dict[str, Path]:
    """name -> model folder: the teacher, the student and one student variant per adversary."""
    zoo = {"teacher": root / "teacher", "student": root / "student"}
    if not zoo["teacher"].exists():
        shutil.copytree(world.teacher, zoo["teacher"])
        shutil.copytree(world.undistilled, zoo["student"])
    for name in ADVERSARY:
        path = root / f"student-{name}"
        if not path.exists():
            shutil.copytree(world.undistilled, path)
            cfg = json.loads((path / "config.json").read_text())
            cfg["_variant"] = name  # a distinct digest; identical outputs
            (path / "config.json").write_text(json.dumps(cfg, indent=2))
        zoo[name] = path
    return zoo


@dataclass
class Subnet:
    net: Devnet
    chain_path: Path
    wallets: dict[str, Any]
    zoo: dict[str, Path]
    uids: dict[str, int] = field(default_factory=dict)
    engines: list[Engine] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)
    gates: dict[str, Gate] = field(default_factory=dict)
    metrics: dict[str, MinerMetrics] = field(default_factory=dict)

    @property
    def network(self) -> str:
        return f"devnet:{self.chain_path}"


def make_subnet(
    world: TinyWorld,
    tmp: Path,
    *,
    clock: str = "manual",
    block_time: float = 0.05,
    tempo: int = 20,
) -> Subnet:
    names = ("owner", "vali", *MINERS)
    wallets = {n: create_wallet(n, "default", tmp / "wallets") for n in names}
    owner = wallets["owner"]
    path = tmp / "chain.sqlite"
    net = Devnet.create(
        path,
        block_time=block_time,
        clock=clock,
        sudo_ss58=coldkey_address(owner),
        enable_mev_shield=False,
    )
    net.add_subnet(coldkey_address(owner), hotkey_address(owner), tempo=tempo, weights_rate_limit=1)
    sub = Subnet(net, path, wallets, model_zoo(world, tmp / "models"))
    for name in ("vali", *MINERS):
        w = wallets[name]
        sub.uids[name] = net.register(NETUID, hotkey_address(w), coldkey_address(w))
    net.set_stake(NETUID, hotkey_address(wallets["vali"]), 1000 * TAO)
    return sub


def _miner_engine(sub: Subnet, name: str, slow_delay: float) -> Engine:
    if name in ("teacher", "student"):
        return load_engine("hf", sub.zoo[name])
    committed = load_engine("hf", sub.zoo[name])
    if name in ("wrong", "fabricated"):
        teacher = load_engine("hf", sub.zoo["teacher"])
        sub.engines.append(teacher)  # the wrappers close only what they own
        return wrap_engine(ADVERSARY[name], committed, other=teacher)
    return wrap_engine(ADVERSARY[name], committed, delay=slow_delay)


@contextlib.asynccontextmanager
async def running_miners(
    sub: Subnet, tmp: Path, *, slow_delay: float = 30.0, names: tuple[str, ...] = MINERS
) -> AsyncIterator[Subnet]:
    """Start each miner's app on loopback, serve its axon and commit its identity."""
    vali_hot = hotkey_address(sub.wallets["vali"])
    directory = Directory({vali_hot: CallerInfo(sub.uids["vali"], 1000.0, True)})
    async with open_chain(sub.network) as chain:
        for name in names:
            wallet = sub.wallets[name]
            engine = _miner_engine(sub, name, slow_delay)
            sub.engines.append(engine)
            ident, manifest = committed_identity(sub.zoo[name], MINER_SOURCE, name=name)
            service = MinerService(
                engine,
                identity=ident.format(),
                model_name=name,
                codec=load_codec(sub.zoo[name]),
                max_tokens=64,
                max_logprobs=20,
            )
            gate = Gate(
                wallet=wallet,
                hotkey=hotkey_address(wallet),
                nonce_store=auth.SqliteNonceStore(tmp / f"nonces-{name}.sqlite", 120.0),
                policy=CallerPolicy(directory, PolicyLimits(rate_rps=1e4, burst=10**5)),
                limiter=PriorityLimiter(16, 256),
                request_timeout=120.0,
            )
            sub.gates[name] = gate
            sub.metrics[name] = MinerMetrics()
            app = build_app(service, gate, sub.metrics[name])
            add_routes(app, ModelFiles(sub.zoo[name], manifest, PriorityLimiter(2, 16)))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            sub.runners.append(runner)
            port = runner.addresses[0][1]
            await chain.serve(NETUID, wallet, HOST, port)
            await chain.commit_identity(NETUID, wallet, ident.format())
        try:
            yield sub
        finally:
            for runner in sub.runners:
                await runner.cleanup()
            for engine in sub.engines:
                await engine.close()


def step_context(
    sub: Subnet,
    cfg: Any,
    chain: Any,
    session: Any,
    teacher: Engine,
    teacher_dir: Path,
    store: Any,
    models: Any,
    *,
    metrics: ValidatorMetrics | None = None,
    **extra: Any,
) -> StepContext:
    """The validator step's context for this subnet's validator hotkey (``vali``), as the node
    builds it; ``extra`` passes the optional parts (verifier, organic inbox)."""
    wallet = sub.wallets["vali"]
    return StepContext(
        cfg,
        chain,
        NETUID,
        auth.hotkey_signer(wallet),
        hotkey_address(wallet),
        teacher,
        ModelTokenizer(teacher_dir),
        store,
        metrics if metrics is not None else ValidatorMetrics(),
        models,
        session,
        **extra,
    )
