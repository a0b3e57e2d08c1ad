"""``subnet localnet``: the whole subnet on one machine, as real processes on the devnet.

Phases, each timed: **setup** (create or reuse a wall-clock devnet with its wallets, through
``subnet devnet init``), **tiny world** or **real world** (``--world``: teacher and students,
built once and cached),
**engine starts** (the miners as separate OS processes until each answers ``/v1/health``,
then the validator processes until each has set weights from a warmed-up EMA, or copied
some), **epochs** (watch N chain epochs, one table per epoch). Then the summary, its JSON and a
PNG chart. The command lines live in :mod:`neurons.localnet.plan` (the validators' in
:mod:`neurons.localnet.validators`), supervision in :mod:`neurons.localnet.procs`, reading the
chain and the first validator's database in :mod:`neurons.localnet.watch`, the validators'
vtrust, dividends and agreement in :mod:`neurons.localnet.consensus`, the simulator's
prediction for them in :mod:`neurons.localnet.predict`, tables and chart in
:mod:`neurons.localnet.view`.

Failure policy: a validator dying ends the run (everything is stopped, the exit is non-zero
and its log tail is shown). A miner dying is reported the same way (which, exit code or
signal, log tail) but the run goes on: the validator keeps scoring the others, and the dead
miner's answers fail (``http_error``), so its EMA, weight and emission decay. Whatever
happens (an exception, Ctrl-C, SIGTERM), every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurons.localnet import gateway as gw
from neurons.localnet import validators as vals
from neurons.localnet.consensus import (
    ValidatorRow,
    ValidatorWatcher,
    validators_summary_table,
    validators_table,
)
from neurons.localnet.plan import (
    MinerPlan,
    Options,
    free_port,
    healthy,
    miner_spec,
    model_variant,
)
from neurons.localnet.procs import ProcExit, StopRequest, Supervisor, capture_signals
from neurons.localnet.view import epoch_table, summarize, summary_table, write_chart
from neurons.localnet.watch import Member, Snapshot, Watcher
from subnet.errors import ConfigError

STATE_FILE = "localnet.json"


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
        self.vsnaps: list[tuple[ValidatorRow, ...]] = []  # the validators' rows per epoch
        self.vplans: list[vals.ValidatorPlan] = []
        self.vwatch: ValidatorWatcher | None = None
        self.deaths: list[ProcExit] = []
        self.stop = StopRequest()
        self.state = RunState(self.folder / STATE_FILE)
        # What the validators ask, once the world is loaded: the tiny world's task families,
        # or the real world's chat dataset file (validator.prompt_sources).
        self.families: tuple[str, ...] = ()
        self.prompt_sources: tuple[str, ...] = ()
        self.gateway: dict[str, Any] = {}  # url, api_key, scores_url, organic (see gateway.py)

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

    async def run(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state.update(
            pid=os.getpid(),
            started=time.time(),
            options=self.o.__dict__,
            phase="starting",
            epochs=[],
            deaths=[],
            ended=None,
        )
        t0 = time.monotonic()
        code = 1
        try:
            with capture_signals(self.stop), Supervisor() as sup:
                code = await self._run(sup)
                self.print("stopping every process ...")
        finally:
            self.phases["total"] = round(time.monotonic() - t0, 1)
            self.state.update(phase="ended", ended=time.time(), exit_code=code, phases=self.phases)
        if self.snaps:
            self._report()
        return code

    async def _run(self, sup: Supervisor) -> int:
        with self.phase("setup"):
            manifest = await self._devnet()
        with self.phase(f"{self.o.world} world"):
            models = await self._models()
        plans = self._plans(manifest)
        self.vplans = vals.validator_plans(self.o, self.folder, manifest)
        vals.seed_stakes(self._devnet_file(manifest), int(manifest["netuid"]), self.vplans)
        self.print(f"   validators: {vals.describe(self.vplans)}")
        with self.phase("engine starts"):
            if not await self._start(sup, manifest, plans, models):
                return self._exit_code()
        with self.phase("gateway"):
            await self._start_gateway(sup, manifest, plans, models)
        with self.phase("epochs"):
            await self._epochs(sup, manifest, plans)
        return self._exit_code()

    def _exit_code(self) -> int:
        if any(d.critical for d in self.deaths):
            return 1
        if self.stop:
            return 130
        return 0

    # --- setup ----------------------------------------------------------------------------

    async def _devnet(self) -> dict[str, Any]:
        from subnet.chain.cli import init_devnet, read_manifest

        need, need_v = len(self.o.miners), len(self.o.validators)
        if self.o.fresh:
            for sub in ("devnet", "validator", "validators", "miners", "logs"):  # old logs too
                shutil.rmtree(self.folder / sub, ignore_errors=True)
        if (self.devnet_dir / "devnet.json").exists():
            manifest = read_manifest(self.devnet_dir)
            same = (
                manifest.get("clock") == "wall"
                and int(manifest["tempo"]) == self.o.tempo
                and float(manifest["block_time"]) == self.o.block_time
                and len(manifest["miners"]) >= need
                and len(manifest["validators"]) >= need_v
            )
            if not same:
                raise ConfigError(
                    f"{self.devnet_dir} holds a devnet made with other settings (tempo "
                    f"{manifest.get('tempo')}, block time {manifest.get('block_time')}, "
                    f"{len(manifest.get('miners', []))} miners, "
                    f"{len(manifest.get('validators', []))} validators): pass --fresh to "
                    "recreate it"
                )
            self.print(f"   reusing the devnet in {self.devnet_dir}")
            return manifest
        args = argparse.Namespace(
            devnet_command="init",
            validators=need_v,
            miners=need,
            tempo=self.o.tempo,
            block_time=self.o.block_time,
            clock="wall",
            weights_rate_limit=1,
            stake=1000.0,
            mev_shield=False,
        )
        await init_devnet(args, self.devnet_dir)
        return read_manifest(self.devnet_dir)

    async def _models(self) -> dict[str, Path]:
        from distill.distilled import ensure_distilled
        from distill.real_distilled import ensure_real_distilled
        from distill.real_spec import PROMPTS_FILE
        from distill.real_world import build_real_world
        from distill.tiny import build_tiny_world

        def log(message: str) -> None:
            self.print(f"   {message}", markup=False)

        real = self.o.world == "real"
        if real:
            self.print("   the real world (built once per machine, minutes; cached) ...")
        world = await asyncio.to_thread(build_real_world if real else build_tiny_world, log=log)
        if real:  # its held-out questions, a chat dataset the validators render with the template
            self.prompt_sources = (str(world.root / PROMPTS_FILE),)
        else:
            self.families = tuple(world.info()["recipe"]["families"])
        if world.distilled is None:
            self.print("   training the distilled student (once; cached with the world) ...")
        distilled = await (ensure_real_distilled if real else ensure_distilled)(world, log=log)
        models = {
            "teacher": world.teacher,
            "undistilled": world.undistilled,
            "distilled": distilled,
        }
        # Each adversary commits a model of its own (a copy whose config differs, so its digest
        # is new): sharing an honest miner's commitment would be caught by the copy rule
        # instead, and the demo means to show the spot checks catching the cheats.
        for role, base in (
            ("adversary-wrong-model", world.undistilled),
            ("adversary-fabricated", world.undistilled),
            ("adversary-selective", world.undistilled),
        ):
            models[role] = model_variant(base, self.folder / "models" / role, role)
        self.print(
            f"   {self.o.world} world {world.root}" + (" (built now)" if world.built else "")
        )
        return models

    def _plans(self, manifest: dict[str, Any]) -> list[MinerPlan]:
        from subnet.wallets import hotkey_address, load_wallet

        plans = []
        for (role, engine), name in zip(self.o.miners, manifest["miners"], strict=False):
            wallet = load_wallet(name, manifest["hotkey"], manifest["wallet_path"])
            plans.append(
                MinerPlan(
                    name,
                    role,
                    engine,
                    int(manifest["uids"][name]),
                    hotkey_address(wallet),
                    free_port(),
                )
            )
        return plans

    # --- processes ------------------------------------------------------------------------

    async def _start(
        self,
        sup: Supervisor,
        manifest: dict[str, Any],
        plans: list[MinerPlan],
        models: dict[str, Path],
    ) -> bool:
        """Miners first, then the validators once they all serve (or died): a miner still
        loading its engine would otherwise score zeros that its EMA carries into the epochs."""
        specs = {
            p.name: miner_spec(
                self.o, self.folder, manifest, models, p, self.families, self.prompt_sources
            )
            for p in plans
        }
        for spec in specs.values():
            sup.start(spec)
        self.state.update(
            network=manifest["network"],
            netuid=manifest["netuid"],
            miners=[
                {
                    **p.__dict__,
                    "process": specs[p.name].name,
                    "log": str(specs[p.name].log),
                    "pid": sup.pids()[specs[p.name].name],
                }
                for p in plans
            ],
        )
        self.print(f"   started {len(plans)} miners; logs in {self.logs}")
        pending = {p.name: p for p in plans}
        warmup: vals.Warmup | None = None
        deadline = time.monotonic() + self.o.ready_timeout
        while time.monotonic() < deadline and not self.stop:
            if self._deaths(sup, plans):
                return False
            dead = {d.name for d in self.deaths}
            for name, p in list(pending.items()):
                if specs[name].name in dead or healthy(p.port):
                    pending.pop(name)
                    self.print(
                        f"   {specs[name].name} (uid {p.uid}) "
                        + ("died" if specs[name].name in dead else "is serving")
                    )
            if not pending and warmup is None:
                warmup = self._start_validators(sup, manifest, models)
            if warmup is not None and warmup.poll():
                self.print("   every validator is warm: emission is counted from here")
                return True
            await asyncio.sleep(1.0)
        if not self.stop:
            waiting = [specs[n].name for n in pending] or (
                warmup.waiting() if warmup is not None else ["validators (not started)"]
            )
            self.print(f"[red]not ready after {self.o.ready_timeout:.0f} s: {waiting}[/red]")
            self.deaths.append(ProcExit(waiting[0], 0, -1, True, self.logs, "timeout"))
        return False

    def _start_validators(
        self, sup: Supervisor, manifest: dict[str, Any], models: dict[str, Path]
    ) -> vals.Warmup:
        """Start every validator process; what tells when they are warm."""
        self.vwatch = ValidatorWatcher(
            self._devnet_file(manifest), int(manifest["netuid"]), self.vplans
        )
        self.vwatch.started()
        warmup = vals.Warmup(self.vplans, self.o.warmup_steps, self.print)
        entries = []
        self.gateway["scores_port"] = gw.free_local_port()
        for i, p in enumerate(self.vplans):
            spec = vals.process_spec(
                self.o, self.folder, manifest, models, p, self.families, self.prompt_sources
            )
            if i == 0:  # the first validator (honest) serves the public score export
                spec = gw.validator_with_export(spec, self.folder, self.gateway["scores_port"])
            pid = sup.start(spec)
            entries.append(vals.state_entry(p, spec, pid))
        first = entries[0]
        self.state.update(
            validator={"pid": first["pid"], "log": first["log"], "db": first["db"]},
            validators=entries,
        )
        engines = sorted({p.engine for p in self.vplans if p.honest})
        self.print(f"   started {len(entries)} validators ({', '.join(engines)} teachers)")
        return warmup

    @staticmethod
    def _devnet_file(manifest: dict[str, Any]) -> Path:
        from subnet.chain.network import devnet_file

        return Path(devnet_file(Path(manifest["network"].removeprefix("devnet:"))))

    def _deaths(self, sup: Supervisor, plans: list[MinerPlan]) -> bool:
        """Report processes that died; True when one was critical (the run must end)."""
        critical = False
        for d in sup.poll():
            self.deaths.append(d)
            style = "red" if d.critical else "yellow"
            what = "the run ends" if d.critical else "the run goes on without it"
            self.print(
                f"[{style}]{d.name} (pid {d.pid}) {d.reason}: {what}. "
                f"Last lines of {d.log}:[/{style}]"
            )
            self.print(d.log_tail, markup=False, highlight=False)
            self.state.update(
                deaths=[
                    {"name": x.name, "reason": x.reason, "log": str(x.log)} for x in self.deaths
                ]
            )
            critical = critical or d.critical
        return critical

    # --- the gateway ------------------------------------------------------------------------

    async def _start_gateway(
        self,
        sup: Supervisor,
        manifest: dict[str, Any],
        plans: list[MinerPlan],
        models: dict[str, Path],
    ) -> None:
        """``subnet gateway`` beside the validator, a demo key, and a few organic requests
        (what they got is in the summary; the validator verifies them during the epochs). A
        gateway that does not come up is reported and the run goes on without it."""
        port = gw.free_local_port()
        key = gw.demo_key(self.folder)
        spec = gw.gateway_spec(self.o, self.folder, manifest, models["teacher"], port)
        sup.start(spec)
        url = f"http://{gw.HOST}:{port}"
        self.gateway = {
            "url": url,
            "api_key": key,
            "scores_url": f"http://{gw.HOST}:{self.gateway.get('scores_port')}/",
            "pid": sup.pids()[spec.name],
            "log": str(spec.log),
        }
        self.state.update(gateway=self.gateway)
        if not await gw.wait_ready(url, timeout=60.0) or self._deaths(sup, plans):
            self.print(f"[yellow]the gateway did not become ready; see {spec.log}[/yellow]")
            return
        self.print(
            f"   gateway {url}/v1 (OpenAI API, key in {self.state.path}); "
            f"scores {self.gateway['scores_url']}"
        )
        organic = await gw.organic_demo(url, key, self.o.max_tokens)
        self.gateway["organic"] = organic
        for o in organic:
            what = f"{o['kind']}{' (streamed)' if o['stream'] else ''} {o['prompt']!r}"
            got = (
                f"{o['text']!r} from uid {o.get('miners')}"
                if o.get("status") == 200 and not o.get("error")
                else f"failed: {o.get('status')} {o.get('error')}"
            )
            self.print(f"   organic {what}: {got}", markup=False)

    # --- epochs ---------------------------------------------------------------------------

    async def _epochs(
        self, sup: Supervisor, manifest: dict[str, Any], plans: list[MinerPlan]
    ) -> None:
        from subnet.chain.network import devnet_file

        members = tuple(Member(p.uid, p.hotkey, p.role) for p in plans)
        names = {p.uid: f"{p.name}-{p.role}" for p in plans}
        watcher = Watcher(
            devnet_file(Path(manifest["network"].removeprefix("devnet:"))),
            int(manifest["netuid"]),
            self.validator_db,
            members,
        )
        watcher.begin()
        if self.vwatch is not None:
            self.vwatch.begin()
        t0 = time.monotonic()
        self.print(
            f"   watching {self.o.epochs} epochs (tempo {self.o.tempo} blocks x "
            f"{self.o.block_time} s)"
        )
        live_ctx: Any = contextlib.nullcontext()
        if self.live:
            from rich.live import Live

            live_ctx = Live(console=self.console, refresh_per_second=2, transient=True)
        with live_ctx as live:
            while len(self.snaps) < self.o.epochs and not self.stop:
                if self._deaths(sup, plans):
                    return
                alive = set(sup.alive())
                snap, closed = watcher.poll(
                    time.monotonic() - t0, {uid: name in alive for uid, name in names.items()}
                )
                if closed:
                    self.snaps.append(snap)
                    self.print(epoch_table(snap))
                    self._validators_epoch(snap.epoch)
                    self.state.update(epochs=[s.to_json() for s in self.snaps])
                elif live is not None:
                    live.update(
                        epoch_table(
                            snap,
                            title=(
                                f"epoch {snap.epoch} in progress: block {snap.block}, "
                                f"{snap.steps} validator steps, {snap.elapsed_s:.0f} s"
                            ),
                        )
                    )
                await asyncio.sleep(0.5)

    def _validators_epoch(self, epoch: int) -> None:
        """The validators' rows at an epoch's close (their table when there are several)."""
        if self.vwatch is None:
            return
        rows = self.vwatch.poll()
        self.vsnaps.append(rows)
        if len(rows) > 1:
            self.print(validators_table(rows, title=f"epoch {epoch}: validators"))

    # --- results --------------------------------------------------------------------------

    def _report(self) -> None:
        miners = summarize(self.snaps)
        self.print(summary_table(miners, len(self.snaps)))
        checks = ordering_checks(miners)
        validators = self._validators_report()
        checks.update(validators.pop("checks", {}))
        for name, ok in checks.items():
            self.print(f"   {name}: " + ("[green]yes[/green]" if ok else "[red]no[/red]"))
        self.print("   phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()))
        out = {
            "miners": miners,
            "checks": checks,
            **validators,
            "phases": self.phases,
            "epochs": [s.to_json() for s in self.snaps],
            "deaths": [
                {
                    "name": d.name,
                    "reason": d.reason,
                    "returncode": d.returncode,
                    "log": str(d.log),
                    "log_tail": d.log_tail,
                }
                for d in self.deaths
            ],
            "options": {k: str(v) for k, v in self.o.__dict__.items()},
        }
        if self.gateway:
            organic = gw.verdicts(self.validator_db, self.gateway.get("organic", []))
            out["gateway"] = {k: self.gateway.get(k) for k in ("url", "api_key", "scores_url")} | {
                "organic": organic
            }
            answered = [o for o in organic if o.get("status") == 200 and not o.get("error")]
            ok = bool(organic) and len(answered) == len(organic)
            checks["organic requests answered"] = ok
            self.print(
                "   organic requests answered: " + ("[green]yes[/green]" if ok else "[red]no[/red]")
            )
            for o in organic:
                self.print(f"   organic {o.get('id')}: the validator's verdict {o.get('verdict')}")
        json_out = self.o.json_out or self.folder / "summary.json"
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2) + "\n")
        chart = write_chart(self.snaps, self.o.chart_out or json_out.with_suffix(".png"))
        self.print(f"   summary JSON {json_out}, chart {chart}")

    def _validators_report(self) -> dict[str, Any]:
        """The summary's validator sections (printed as they are made)."""
        from neurons.localnet.report import validators_report

        if self.vwatch is None or not self.vsnaps:
            return {}
        return validators_report(
            self.o,
            self.vplans,
            self.vwatch,
            self.vsnaps,
            miners=len(self.o.miners),
            print_=self.print,
            table=validators_summary_table,
        )


def ordering_checks(miners: list[dict[str, Any]]) -> dict[str, bool]:
    """The demo's claims, checked on the summary (roles missing from the run are skipped)."""
    by_role: dict[str, list[float]] = {}
    for m in miners:
        by_role.setdefault(m["role"], []).append(m["emission_total"])
    checks: dict[str, bool] = {}
    if by_role.get("distilled") and by_role.get("undistilled"):
        checks["distilled earns more than undistilled"] = min(by_role["distilled"]) > max(
            by_role["undistilled"]
        )
    adversaries = [e for r, es in by_role.items() if r.startswith("adversary-") for e in es]
    if adversaries:
        checks["adversaries earn nothing"] = all(e == 0 for e in adversaries)
    return checks
