"""The public score export: what decides each miner's reward, readable by anyone.

Three views of the validator's own state file (read through :class:`StoreReader`, never
written): ``GET /scores`` (JSON: per miner its EMA, suspension, last step's score components,
causes, spot-check outcomes, organic verdicts and the weight last set, with the block; the EMA
over the recent steps), one CSV file per committed step (``<state_dir>/scores/step-N.csv``,
written by the validator after each step, served under ``/scores/steps/``), and an HTML page at
``/`` that renders the JSON (a table and the EMA over time).

It is served by a small app of its own (``validator.export_port``, 0 = off), bound to
``validator.export_host`` (loopback by default: publish it deliberately), apart from the
Prometheus port, which is for the operator.

Spot-check secrets: ``spot_check_secrets`` lists every draw secret's commitment (its sha256,
published an epoch before any draw uses it) and, once its epoch is over, the secret itself, so
anyone can recompute which answers were checked (``neurons.validator.draw.picked``) and see that
the checks were drawn, not aimed. A secret is never shown before its epoch has ended (the store's
reader withholds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from neurons.validator.export_page import PAGE
from neurons.validator.participant import Miner, OrganicMiner
from neurons.validator.store import StoredAnswer, StoreReader
from subnet.errors import ConfigError, StateError

log = logging.getLogger("subnet.validator.export")

VERSION = 1
HISTORY_STEPS = 200  # steps of EMA history in /scores
CSV_DIR = "scores"
CSV_COLUMNS = (
    "step",
    "block",
    "uid",
    "hotkey",
    "ema",
    "suspended",
    "answers",
    "score",
    "s_kl",
    "s_ref",
    "s_speed",
    "causes",
    "spot_checked",
    "spot_failed",
    "organic",
    "organic_failed",
    "weight",
    "weights_block",
)
_CSV_NAME = re.compile(r"^step-(\d+)\.csv$")


def secret_hashes(reader: StoreReader) -> list[dict[str, Any]]:
    """Every spot-check draw secret's commitment and block, and the secret once revealed."""
    return [
        {
            "epoch": s.epoch,
            "commitment": s.commitment,
            "published_block": s.published_block,
            "secret": s.secret,
            "revealed_block": s.revealed_block,
        }
        for s in reader.spot_secrets()
    ]


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def _no_stats() -> dict[str, Any]:
    return {
        "answers": 0,
        "score": None,
        "s_kl": None,
        "s_ref": None,
        "s_speed": None,
        "causes": {},
        "spot_checks": {"checked": 0, "failed": 0},
        "organic": {"answers": 0, "failed": 0},
    }


def miner_stats(answers: Sequence[StoredAnswer]) -> dict[int, dict[str, Any]]:
    """uid -> one step's numbers: score components (synthetic answers), causes, spot checks,
    organic verdicts."""
    per: dict[int, list[StoredAnswer]] = defaultdict(list)
    organic: dict[int, list[StoredAnswer]] = defaultdict(list)
    for a in answers:
        if isinstance(a.who, Miner):
            per[a.who.uid].append(a)
        elif isinstance(a.who, OrganicMiner):
            organic[a.who.uid].append(a)
    out: dict[int, dict[str, Any]] = {}
    for uid in sorted(set(per) | set(organic)):
        xs, org = per.get(uid, []), organic.get(uid, [])
        checked = [a for a in (*xs, *org) if a.verified]
        out[uid] = {
            "answers": len(xs),
            "score": _mean([a.score for a in xs]),
            "s_kl": _mean([a.s_kl for a in xs]),
            "s_ref": _mean([a.s_ref for a in xs]),
            "s_speed": _mean([a.s_speed for a in xs]),
            "causes": dict(Counter(a.cause.value for a in (*xs, *org) if not a.cause.ok)),
            "spot_checks": {
                "checked": len(checked),
                "failed": sum(not a.cause.ok for a in checked),
            },
            "organic": {"answers": len(org), "failed": sum(not a.cause.ok for a in org)},
        }
    return out


def scores(reader: StoreReader, *, hotkey: str = "", netuid: int | None = None) -> dict[str, Any]:
    """The ``/scores`` document (see the module docstring)."""
    last = reader.last_step()
    ema = reader.ema()
    ws = reader.last_weight_set(successful_only=True)
    stats = miner_stats(reader.answers(after_step=last.step - 1)) if last else {}
    weights = ws.weights if ws else {}
    miners = []
    for e in ema:
        s = stats.get(e.uid, {})
        if not s and e.ema == 0.0 and e.uid not in weights:
            continue  # a uid nobody answered for (the validator itself, empty slots)
        miners.append(
            {
                "uid": e.uid,
                "hotkey": e.hotkey,
                "ema": round(e.ema, 6),
                "suspended": e.suspended,
                "weight": weights.get(e.uid),
                **(s or _no_stats()),
            }
        )
    first = max(0, last.step - HISTORY_STEPS) if last else 0
    history: dict[str, list[float | None]] = {}
    points = reader.ema_history(after_step=first)
    steps = sorted({p.step for p in points})
    index = {s: i for i, s in enumerate(steps)}
    for p in points:
        history.setdefault(str(p.uid), [None] * len(steps))[index[p.step]] = round(p.ema, 6)
    shown = {str(m["uid"]) for m in miners}
    return {
        "version": VERSION,
        "validator": {"hotkey": hotkey, "netuid": netuid},
        "step": None
        if last is None
        else {"step": last.step, "block": last.block, "seed": last.seed, "answers": last.n_answers},
        "weights": None
        if ws is None
        else {"block": ws.block, "step": ws.step, "weights": _keyed(weights)},
        "miners": miners,
        "history": {"steps": steps, "ema": {u: v for u, v in history.items() if u in shown}},
        "spot_check_secrets": secret_hashes(reader),
    }


def step_csv(reader: StoreReader, step: int) -> str:
    """One step's per-miner rows (EMA as it stood after the step; the weights last set by it)."""
    steps = {s.step: s for s in reader.steps()}
    if step not in steps:
        raise StateError(f"step {step} is not committed")
    stats = miner_stats(reader.answers(after_step=step - 1, through_step=step))
    ema = {p.uid: p for p in reader.ema_history(after_step=step - 1) if p.step == step}
    sets = [w for w in reader.weight_sets(successful_only=True) if w.step <= step]
    ws = sets[-1] if sets else None
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    for uid in sorted(set(stats) | set(ema)):
        s, p = stats.get(uid), ema.get(uid)
        if s is None and (p is None or p.ema == 0.0):
            continue
        s = s or _no_stats()
        out.writerow(
            (
                step,
                steps[step].block,
                uid,
                p.hotkey if p else "",
                "" if p is None else round(p.ema, 6),
                "" if p is None else p.suspended,
                s.get("answers", 0),
                _blank(s.get("score")),
                _blank(s.get("s_kl")),
                _blank(s.get("s_ref")),
                _blank(s.get("s_speed")),
                ";".join(f"{c}:{n}" for c, n in sorted(s["causes"].items())),
                s["spot_checks"]["checked"],
                s["spot_checks"]["failed"],
                s["organic"]["answers"],
                s["organic"]["failed"],
                _blank(ws.weights.get(uid) if ws else None),
                ws.block if ws else "",
            )
        )
    return buf.getvalue()


def _keyed(weights: dict[int, float]) -> dict[str, float]:
    return {str(u): w for u, w in sorted(weights.items())}


def _blank(x: Any) -> Any:
    return "" if x is None else x


def write_step_csv(db: Path, folder: Path, step: int) -> Path:
    """Write ``folder/step-N.csv`` atomically (a reader never sees half a file)."""
    with StoreReader(db) as reader:
        text = step_csv(reader, step)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step}.csv"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def csv_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _CSV_NAME.match(p.name)))


# -- the app ------------------------------------------------------------------------------

_DB = web.AppKey("db", Path)
_CSV = web.AppKey("csv", Path)
_WHO = web.AppKey("who", dict)
_HEADERS = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}


def build_export_app(db: Path, csv_dir: Path, *, hotkey: str, netuid: int) -> web.Application:
    app = web.Application()
    app[_DB], app[_CSV], app[_WHO] = db, csv_dir, {"hotkey": hotkey, "netuid": netuid}
    app.router.add_get("/", _page)
    app.router.add_get("/scores", _scores)
    app.router.add_get("/scores/steps", _steps)
    app.router.add_get(r"/scores/steps/{step:\d+}.csv", _step_csv)
    return app


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers=_HEADERS)


def _read_scores(db: Path, who: dict[str, Any]) -> dict[str, Any]:
    with StoreReader(db, missing_ok=True) as reader:
        return scores(reader, hotkey=who["hotkey"], netuid=who["netuid"])


async def _scores(request: web.Request) -> web.Response:
    try:
        doc = await asyncio.to_thread(_read_scores, request.app[_DB], request.app[_WHO])
    except StateError as e:
        log.warning("/scores: %s", e)
        return _error(503, "the validator's state cannot be read right now")
    return web.json_response(doc, headers=_HEADERS, dumps=lambda o: json.dumps(o, sort_keys=True))


async def _steps(request: web.Request) -> web.Response:
    steps = csv_steps(request.app[_CSV])
    body = {"steps": [{"step": s, "csv": f"/scores/steps/{s}.csv"} for s in steps]}
    return web.json_response(body, headers=_HEADERS)


async def _step_csv(request: web.Request) -> web.StreamResponse:
    path = request.app[_CSV] / f"step-{int(request.match_info['step'])}.csv"
    if not path.is_file():
        return _error(404, f"no CSV for step {request.match_info['step']}")
    return web.Response(
        body=path.read_bytes(), content_type="text/csv", charset="utf-8", headers=_HEADERS
    )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status, headers=_HEADERS)


@contextlib.asynccontextmanager
async def export_server(
    db: Path, csv_dir: Path, *, host: str, port: int, hotkey: str, netuid: int
) -> AsyncIterator[int]:
    """Serve the export while the block runs (yields the bound port; nothing when port is 0)."""
    if port <= 0:
        yield 0
        return
    runner = web.AppRunner(build_export_app(db, csv_dir, hotkey=hotkey, netuid=netuid))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"cannot serve the score export on {host}:{port}: {e.strerror}") from e
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
