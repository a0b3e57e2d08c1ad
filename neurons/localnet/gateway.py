"""The localnet's gateway: ``subnet gateway`` beside the validator, a demo API key, a few
organic requests of its own, and what the validator made of them.

The gateway runs as the validator's wallet (it signs miner requests with its hotkey), reads the
validator's state to route and writes every signed answer to the inbox the validator verifies
(``gateway.organic_fraction = 1`` here, as the demo's spot checks are on every answer). The
validator also serves its public score export on a loopback port. URLs and the demo key go into
``localnet.json`` (``--status --json``) and the summary JSON as ``"gateway": {"url", "api_key",
"scores_url", "organic"}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from neurons.localnet.plan import Options, _base_argv, free_port
from neurons.localnet.procs import ProcSpec
from neurons.validator.store import StoreReader
from subnet.errors import StateError

HOST = "127.0.0.1"
MODEL = "distill-subnet"
GATEWAY_DIR = "gateway"
# Requests the localnet sends itself: (kind, streamed, prompt) in the tiny world's families.
DEMO_REQUESTS = (
    ("chat", False, "add 12 34 ="),
    ("chat", True, "sort 7 3 5 1 ="),
    ("completion", False, "reverse a b c d ="),
)


def validator_with_export(spec: ProcSpec, folder: Path, export_port: int) -> ProcSpec:
    """The validator's command line plus what the gateway needs of it: its inbox (where the
    gateway writes) and its public score export (loopback)."""
    extra = []
    for s in (
        f"gateway.state_dir={folder / GATEWAY_DIR}",
        f"validator.export_port={export_port}",
        f"validator.export_host={HOST}",
    ):
        extra += ["--set", s]
    return dataclasses.replace(spec, argv=(*spec.argv, *extra))


def gateway_spec(
    opts: Options, folder: Path, manifest: dict[str, Any], teacher: Path, port: int
) -> ProcSpec:
    from neurons.localnet.plan import CHILD_ENV

    argv = _base_argv(opts, "gateway", manifest, manifest["validators"][0])
    for s in (
        f"validator.teacher={teacher}",
        f"validator.state_dir={folder / 'validator'}",
        f"gateway.state_dir={folder / GATEWAY_DIR}",
        f"gateway.host={HOST}",
        f"gateway.port={port}",
        f"gateway.model_name={MODEL}",
        "gateway.organic_fraction=1.0",
        "gateway.refresh_interval=2.0",
        f"gateway.max_tokens={max(opts.max_tokens, 16)}",
        f"gateway.default_max_tokens={opts.max_tokens}",
    ):
        argv += ["--set", s]
    return ProcSpec("gateway", tuple(argv), folder / "logs" / "gateway.log", CHILD_ENV)


def demo_key(folder: Path) -> str:
    """A new API key for this run (the key store is the gateway's own database)."""
    from neurons.gateway.keys import DB_FILE, KeyStore

    store = KeyStore(folder / GATEWAY_DIR / DB_FILE)
    try:
        secret, _ = store.create("localnet-demo", rps=50.0, burst=100, token_quota=0)
    finally:
        store.close()
    return secret


async def wait_ready(url: str, timeout: float) -> bool:
    """Until the gateway answers /health with at least one miner to route to."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200 and (await r.json()).get("eligible_miners"):
                        return True
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(1.0)
    return False


async def organic_demo(url: str, key: str, max_tokens: int) -> list[dict[str, Any]]:
    """Send :data:`DEMO_REQUESTS`; one outcome each (never raises: a failure is an outcome)."""
    headers = {"Authorization": f"Bearer {key}"}
    out = []
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as s:
        for kind, stream, prompt in DEMO_REQUESTS:
            outcome: dict[str, Any] = {"kind": kind, "stream": stream, "prompt": prompt}
            try:
                outcome |= await _ask(s, url, kind, stream, prompt, max_tokens)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                outcome |= {"status": None, "error": f"{type(e).__name__}: {e}"[:200]}
            out.append(outcome)
    return out


async def _ask(
    s: aiohttp.ClientSession, url: str, kind: str, stream: bool, prompt: str, max_tokens: int
) -> dict[str, Any]:
    # Greedy: the demo shows each miner's best answer (any temperature is verified the same).
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    async with s.post(url + path, json=body) as r:
        if r.status != 200:
            error = (await r.json()).get("error", {})
            return {"status": r.status, "error": error.get("message")}
        if not stream:
            doc = await r.json()
            choice = doc["choices"][0]
            text = choice["message"]["content"] if kind == "chat" else choice["text"]
            return {
                "status": 200,
                "id": doc["id"],
                "text": text,
                "miners": doc["subnet"]["miners"],
                "completion_tokens": doc["usage"]["completion_tokens"],
            }
        rid, parts, miners, tokens = "", [], [], None
        async for line in r.content:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"status": 200, "id": rid, "error": chunk["error"].get("message")}
            rid = chunk["id"]
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk["choices"]:
                parts.append((c.get("delta") or {}).get("content") or c.get("text") or "")
            miner = (chunk.get("subnet") or {}).get("miner")
            if miner is not None and miner not in miners:
                miners.append(miner)
        return {
            "status": 200,
            "id": rid,
            "text": "".join(parts),
            "miners": miners,
            "completion_tokens": tokens,
        }


def verdicts(validator_db: Path, outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each outcome with the validator's verdict on it: the cause code of its organic answer
    (``ok`` when it passed every gate and spot check), or ``pending`` when not judged yet."""
    try:
        with StoreReader(validator_db, missing_ok=True) as db:
            judged = {
                a.task_id.rsplit(":", 1)[-1]: a.cause.value
                for a in db.answers()
                if a.task_id.startswith("organic:")
            }
    except StateError:
        judged = {}
    return [
        {**o, "verdict": judged.get(o.get("id") or "", "pending" if o.get("id") else None)}
        for o in outcomes
    ]


def free_local_port() -> int:
    return free_port(HOST)
