"""``subnet localnet``: the whole subnet on one machine, as real processes on the devnet.

Phases, each timed: **setup** (create or reuse a wall-clock devnet with its wallets, through
``subnet devnet init``), **tiny world** (teacher and students, built once and cached),
**engine starts** (one validator and the miners as separate OS processes, until every miner
answers ``/v1/health`` and the validator has committed a step), **epochs** (watch N chain
epochs, one table per epoch). Then the summary, its JSON and a PNG chart.

Failure policy: the validator dying ends the run (everything is stopped, the exit is non-zero
and its log tail is shown). A miner dying is reported the same way (which, exit code or
signal, log tail) but the run goes on: the validator keeps scoring the others, and the dead
miner's answers fail (``http_error``), so its EMA, weight and emission decay. Whatever
happens (an exception, Ctrl-C, SIGTERM), every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from neurons.localnet_procs import ProcExit, ProcSpec, StopRequest, Supervisor, capture_signals
from neurons.localnet_view import epoch_table, summarize, summary_table, write_chart
from neurons.localnet_watch import Member, Snapshot, Watcher
from subnet.errors import ConfigError

ROLES = ("teacher", "distilled", "undistilled", "adversary-wrong-model", "adversary-fabricated")
# Honest miners serve on --engine (vLLM by default); the adversaries hold two models each and
# the validator five (teacher + committed models for spot checks), so they default to the light
# transformers engine: one vLLM CPU engine costs ~2.3 GB and ~40 s of a 2-core machine.
DEFAULT_MINERS = (
    "distilled,undistilled,teacher,adversary-wrong-model:hf,adversary-fabricated:hf"
)
ENGINES = ("vllm", "hf")
MINER_IP = "127.0.0.2"  # the devnet rejects 127.0.0.1 as the real pallet does
STATE_FILE = "localnet.json"
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
    """Everything a run needs; ``from_args`` is the CLI's mapping onto it."""

    folder: Path = Path(".localnet")
    miners: tuple[tuple[str, str], ...] = ()  # (role, engine)
    epochs: int = 6
    engine: str = "vllm"
    validator_engine: str = "hf"
    json_out: Path | None = None
    chart_out: Path | None = None
    tempo: int = 20
    block_time: float = 1.0
    tasks_per_step: int = 2
    step_blocks: int = 4
    max_tokens: int = 12
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


@dataclass
class RunState:
    """What ``--status`` reads: written atomically to ``<dir>/localnet.json`` on every change."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def update(self, **values: Any) -> None:
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


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
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
        try:
            row = con.execute("SELECT COUNT(*) FROM steps").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


class Localnet:
    """One run, printing to a rich ``console`` (a live table when it is a terminal)."""

    def __init__(self, opts: Options, console: Any) -> None:
        self.o = opts
        self.console = console
        self.print: Callable[..., None] = console.print
        self.live = console.is_terminal if opts.live is None else opts.live
        self.folder = opts.folder.expanduser().resolve()
        self.devnet_dir = self.folder / "devnet"
        self.logs = self.folder / "logs"
        self.validator_db = self.folder / "validator" / "validator.sqlite"
        self.phases: dict[str, float] = {}
        self.snaps: list[Snapshot] = []
        self.deaths: list[ProcExit] = []
        self.stop = StopRequest()
        self.state = RunState(self.folder / STATE_FILE)

    # --- phases ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.state.update(phase=name)
        self.print(f"[bold]== {name}[/bold]")
        t = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - t, 1)
            self.print(f"   {name}: {self.phases[name]:.1f} s")

    def run(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state.update(pid=os.getpid(), started=time.time(), options=self.o.__dict__,
                          phase="starting", epochs=[], deaths=[], ended=None)
        t0 = time.monotonic()
        code = 1
        try:
            with capture_signals(self.stop), Supervisor() as sup:
                code = self._run(sup)
                self.print("stopping every process ...")
        finally:
            self.phases["total"] = round(time.monotonic() - t0, 1)
            self.state.update(phase="ended", ended=time.time(), exit_code=code,
                              phases=self.phases)
        if self.snaps:
            self._report()
        return code

    def _run(self, sup: Supervisor) -> int:
        with self.phase("setup"):
            manifest = self._devnet()
        with self.phase("tiny world"):
            models = self._models()
        plans = self._plans(manifest)
        with self.phase("engine starts"):
            if not self._start(sup, manifest, plans, models):
                return self._exit_code()
        with self.phase("epochs"):
            self._epochs(sup, manifest, plans)
        return self._exit_code()

    def _exit_code(self) -> int:
        if any(d.critical for d in self.deaths):
            return 1
        if self.stop:
            return 130
        return 0

    # --- setup ----------------------------------------------------------------------------

    def _devnet(self) -> dict[str, Any]:
        from subnet.chain.cli import read_manifest, run_devnet

        need = len(self.o.miners)
        if self.o.fresh:
            for sub in ("devnet", "validator", "miners"):
                shutil.rmtree(self.folder / sub, ignore_errors=True)
        if (self.devnet_dir / "devnet.json").exists():
            manifest = read_manifest(self.devnet_dir)
            same = (manifest.get("clock") == "wall" and int(manifest["tempo"]) == self.o.tempo
                    and float(manifest["block_time"]) == self.o.block_time
                    and len(manifest["miners"]) >= need)
            if not same:
                raise ConfigError(
                    f"{self.devnet_dir} holds a devnet made with other settings (tempo "
                    f"{manifest.get('tempo')}, block time {manifest.get('block_time')}, "
                    f"{len(manifest.get('miners', []))} miners): pass --fresh to recreate it"
                )
            self.print(f"   reusing the devnet in {self.devnet_dir}")
            return manifest
        args = argparse.Namespace(
            devnet_command="init", dir=self.devnet_dir, validators=1, miners=need,
            tempo=self.o.tempo, block_time=self.o.block_time, clock="wall",
            weights_rate_limit=1, stake=1000.0, mev_shield=False,
        )
        run_devnet(args)
        return read_manifest(self.devnet_dir)

    def _models(self) -> dict[str, Path]:
        from distill.tiny import tiny_world

        world = tiny_world()
        distilled = world.distilled
        if distilled is None:
            distilled = self._train_distilled(world)
        models = {"teacher": world.teacher, "undistilled": world.undistilled,
                  "distilled": distilled}
        # Each adversary commits a model of its own (a copy whose config differs, so its digest
        # is new): sharing an honest miner's commitment would be caught by the copy rule
        # instead, and the demo means to show the spot checks catching the cheats.
        for role, base in (("adversary-wrong-model", world.undistilled),
                           ("adversary-fabricated", world.undistilled)):
            models[role] = model_variant(base, self.folder / "models" / role, role)
        self.print(f"   tiny world {world.root}" + (" (built now)" if world.built else ""))
        return models

    def _train_distilled(self, world: Any) -> Path:
        """The distilled student through the trainer's entry point (built once, cached)."""
        from distill.distilled import ensure_distilled

        self.print("   training the distilled student (once; cached with the world) ...")
        return Path(ensure_distilled(world, log=lambda m: self.print(f"   {m}", markup=False)))

    def _plans(self, manifest: dict[str, Any]) -> list[MinerPlan]:
        from subnet.wallets import hotkey_address, load_wallet

        plans = []
        for (role, engine), name in zip(self.o.miners, manifest["miners"], strict=False):
            wallet = load_wallet(name, manifest["hotkey"], manifest["wallet_path"])
            plans.append(MinerPlan(name, role, engine, int(manifest["uids"][name]),
                                   hotkey_address(wallet), free_port()))
        return plans

    # --- processes ------------------------------------------------------------------------

    def _base_argv(self, command: str, manifest: dict[str, Any], wallet: str,
                   launcher: tuple[str, ...] = ()) -> list[str]:
        argv = [sys.executable, "-m", *(launcher or ("subnet.cli", command))]
        if self.o.config_path:
            argv += ["--config", self.o.config_path]
        sets = [f"chain.network={manifest['network']}", f"chain.netuid={manifest['netuid']}",
                f"wallet.name={wallet}", f"wallet.hotkey={manifest['hotkey']}",
                f"wallet.path={manifest['wallet_path']}", *self.o.extra_sets]
        for s in sets:
            argv += ["--set", s]
        return argv

    def _miner_spec(
        self, p: MinerPlan, manifest: dict[str, Any], models: dict[str, Path]
    ) -> ProcSpec:
        # Adversaries run the real miner node with a wrapped engine: wrong-model commits a
        # small student and answers as the teacher; fabricated samples its own tokens and
        # reports the teacher's distributions for them.
        launcher: tuple[str, ...] = ()
        if p.role.startswith("adversary-"):
            kind = p.role.removeprefix("adversary-")
            launcher = ("neurons.localnet_adversary", kind, str(models["teacher"]))
        argv = self._base_argv("miner", manifest, p.name, launcher)
        argv += ["--model", str(models[p.role]), "--register",
                 "--set", f"miner.engine={p.engine}", "--set", f"miner.port={p.port}",
                 "--set", f"miner.host={MINER_IP}", "--set", f"miner.external_ip={MINER_IP}",
                 "--set", f"miner.state_dir={self.folder / 'miners' / p.name}"]
        return ProcSpec(f"{p.name}-{p.role}", tuple(argv), self.logs / f"{p.name}-{p.role}.log",
                        CHILD_ENV)

    def _validator_spec(self, manifest: dict[str, Any], models: dict[str, Path]) -> ProcSpec:
        argv = [*self._base_argv("validator", manifest, manifest["validators"][0]), "-v"]
        o = self.o
        for s in (f"validator.teacher={models['teacher']}",
                  f"validator.engine={o.validator_engine}",
                  f"validator.state_dir={self.validator_db.parent}",
                  f"validator.model_roots={models['teacher'].parent},{self.folder / 'models'}",
                  "validator.model_cache=4",
                  f"validator.tasks_per_step={o.tasks_per_step}",
                  f"validator.step_blocks={o.step_blocks}", f"validator.max_tokens={o.max_tokens}",
                  "verify.spot_check_fraction=1.0"):  # every answer checked: cheats show at once
            argv += ["--set", s]
        return ProcSpec("validator", tuple(argv), self.logs / "validator.log", CHILD_ENV,
                        critical=True)

    def _start(self, sup: Supervisor, manifest: dict[str, Any], plans: list[MinerPlan],
               models: dict[str, Path]) -> bool:
        """Miners first, then the validator once they all serve (or died): a miner still
        loading its engine would otherwise score zeros that its EMA carries into the epochs."""
        specs = {p.name: self._miner_spec(p, manifest, models) for p in plans}
        for spec in specs.values():
            sup.start(spec)
        self.state.update(
            network=manifest["network"], netuid=manifest["netuid"],
            miners=[{**p.__dict__, "process": specs[p.name].name, "log": str(specs[p.name].log),
                     "pid": sup.pids()[specs[p.name].name]} for p in plans],
        )
        self.print(f"   started {len(plans)} miners; logs in {self.logs}")
        pending = {p.name: p for p in plans}
        steps_before = steps_committed(self.validator_db)
        validator: ProcSpec | None = None
        deadline = time.monotonic() + self.o.ready_timeout
        while time.monotonic() < deadline and not self.stop:
            if self._deaths(sup, plans):
                return False
            dead = {d.name for d in self.deaths}
            for name, p in list(pending.items()):
                if specs[name].name in dead or healthy(p.port):
                    pending.pop(name)
                    self.print(f"   {specs[name].name} (uid {p.uid}) "
                               + ("died" if specs[name].name in dead else "is serving"))
            if not pending and validator is None:
                validator = self._validator_spec(manifest, models)
                sup.start(validator)
                self.state.update(validator={"pid": sup.pids()["validator"],
                                             "log": str(validator.log),
                                             "db": str(self.validator_db)})
                self.print(f"   started the validator ({self.o.validator_engine} engine)")
            if validator is not None and steps_committed(self.validator_db) > steps_before:
                self.print("   the validator committed its first step")
                return True
            time.sleep(1.0)
        if not self.stop:
            waiting = [specs[n].name for n in pending] or ["validator (no step committed)"]
            self.print(f"[red]not ready after {self.o.ready_timeout:.0f} s: {waiting}[/red]")
            self.deaths.append(ProcExit(waiting[0], 0, -1, True, self.logs, "timeout"))
        return False

    def _deaths(self, sup: Supervisor, plans: list[MinerPlan]) -> bool:
        """Report processes that died; True when one was critical (the run must end)."""
        critical = False
        for d in sup.poll():
            self.deaths.append(d)
            style = "red" if d.critical else "yellow"
            what = "the run ends" if d.critical else "the run goes on without it"
            self.print(f"[{style}]{d.name} (pid {d.pid}) {d.reason}: {what}. "
                       f"Last lines of {d.log}:[/{style}]")
            self.print(d.log_tail, markup=False, highlight=False)
            self.state.update(deaths=[{"name": x.name, "reason": x.reason, "log": str(x.log)}
                                      for x in self.deaths])
            critical = critical or d.critical
        return critical

    # --- epochs ---------------------------------------------------------------------------

    def _epochs(self, sup: Supervisor, manifest: dict[str, Any], plans: list[MinerPlan]) -> None:
        from subnet.chain.network import devnet_file

        members = tuple(Member(p.uid, p.hotkey, p.role) for p in plans)
        names = {p.uid: f"{p.name}-{p.role}" for p in plans}
        watcher = Watcher(devnet_file(Path(manifest["network"].removeprefix("devnet:"))),
                          int(manifest["netuid"]), self.validator_db, members)
        watcher.begin()
        t0 = time.monotonic()
        self.print(f"   watching {self.o.epochs} epochs (tempo {self.o.tempo} blocks x "
                   f"{self.o.block_time} s)")
        live_ctx: Any = contextlib.nullcontext()
        if self.live:
            from rich.live import Live

            live_ctx = Live(console=self.console, refresh_per_second=2, transient=True)
        with live_ctx as live:
            while len(self.snaps) < self.o.epochs and not self.stop:
                if self._deaths(sup, plans):
                    return
                alive = set(sup.alive())
                snap, closed = watcher.poll(time.monotonic() - t0,
                                            {uid: name in alive for uid, name in names.items()})
                if closed:
                    self.snaps.append(snap)
                    self.print(epoch_table(snap))
                    self.state.update(epochs=[s.to_json() for s in self.snaps])
                elif live is not None:
                    live.update(epoch_table(snap, title=(
                        f"epoch {snap.epoch} in progress: block {snap.block}, "
                        f"{snap.steps} validator steps, {snap.elapsed_s:.0f} s")))
                time.sleep(0.5)

    # --- results --------------------------------------------------------------------------

    def _report(self) -> None:
        miners = summarize(self.snaps)
        self.print(summary_table(miners, len(self.snaps)))
        checks = ordering_checks(miners)
        for name, ok in checks.items():
            self.print(f"   {name}: " + ("[green]yes[/green]" if ok else "[red]no[/red]"))
        self.print("   phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()))
        out = {
            "miners": miners, "checks": checks, "phases": self.phases,
            "epochs": [s.to_json() for s in self.snaps],
            "deaths": [{"name": d.name, "reason": d.reason, "returncode": d.returncode,
                        "log": str(d.log), "log_tail": d.log_tail} for d in self.deaths],
            "options": {k: str(v) for k, v in self.o.__dict__.items()},
        }
        json_out = self.o.json_out or self.folder / "summary.json"
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2) + "\n")
        chart = write_chart(self.snaps, self.o.chart_out or json_out.with_suffix(".png"))
        self.print(f"   summary JSON {json_out}, chart {chart}")


def model_variant(base: Path, dest: Path, tag: str) -> Path:
    """A copy of ``base`` whose digest differs (a ``_variant`` key in its config), made once."""
    if not (dest / "config.json").exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base, tmp)
        config = json.loads((tmp / "config.json").read_text())
        config["_variant"] = tag
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


def ordering_checks(miners: list[dict[str, Any]]) -> dict[str, bool]:
    """The demo's claims, checked on the summary (roles missing from the run are skipped)."""
    by_role: dict[str, list[float]] = {}
    for m in miners:
        by_role.setdefault(m["role"], []).append(m["emission_total"])
    checks: dict[str, bool] = {}
    if by_role.get("distilled") and by_role.get("undistilled"):
        checks["distilled earns more than undistilled"] = (
            min(by_role["distilled"]) > max(by_role["undistilled"])
        )
    adversaries = [e for r, es in by_role.items() if r.startswith("adversary-") for e in es]
    if adversaries:
        checks["adversaries earn nothing"] = all(e == 0 for e in adversaries)
    return checks


def with_defaults(opts: Options) -> Options:
    if not opts.miners:
        opts = replace(opts, miners=parse_miners(DEFAULT_MINERS, opts.engine))
    return opts
