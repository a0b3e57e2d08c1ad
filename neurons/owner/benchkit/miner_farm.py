"""Simulated miners for the validator benchmarks: N endpoints in one separate process.

Each miner has its own hotkey and port and answers ``POST /v1/completions`` with a completion
generated beforehand for that prompt, in the production wire format (the SSE events
``subnet.protocol`` builds, the miner's identity in the first one) and signed by the miner's
hotkey over the validator's actual request (``subnet.auth.sign_response``: the request body,
caller and nonce bind each answer). The events are built once per (miner, prompt); a request
then costs a JSON parse of the prompt and one signature, so the farm stays small next to the
validator under test (the miner's own layer has its own benchmark). It does not check btauth
on requests: the validator's signing cost is still paid, on the validator's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from subnet import auth, protocol


@dataclass(frozen=True)
class Answer:
    """One precomputed completion (the arrays the engine returned)."""

    token_ids: np.ndarray
    sampled_logprobs: np.ndarray
    top_ids: np.ndarray
    top_logprobs: np.ndarray
    finish_reason: str


def miner_uri(i: int) -> str:
    return f"//bench-miner-{i}//hot"


def identity(i: int) -> str:
    return f"v1:{i:064x}:m{i}:local"


def _events(i: int, prompt: Sequence[int], a: Answer, k: int) -> bytes:
    """The signed part of the SSE stream a real miner would send for this answer."""
    from neurons.owner.benchkit.zero_engine import PROVENANCE
    from subnet.engine.types import Completion, SamplingParams

    c = Completion(
        a.token_ids, a.sampled_logprobs, a.top_ids, a.top_logprobs, a.finish_reason, PROVENANCE
    )
    req = protocol.CompletionRequest(
        prompt_ids=tuple(prompt),
        sampling=SamplingParams(max_tokens=len(a.token_ids), top_logprobs=k),
        stream=True,
        model=f"m{i}",
        task_id=None,
        raw=True,
    )
    out = []
    n = len(a.token_ids)
    for p in range(n):
        piece = protocol.Piece(c, p, p + 1, "", (0,))
        chunk = protocol.stream_chunk(
            rid=f"cmpl-{i}",
            created=0,
            model=f"m{i}",
            request=req,
            piece=piece,
            finish_reason=a.finish_reason if p == n - 1 else None,
            identity=identity(i) if p == 0 else None,
            completion_tokens=p + 1,
        )
        out.append(protocol.sse_event(chunk))
    return b"".join(out)


async def _serve(n: int, answers: dict[tuple[int, ...], Answer], k: int, conn: Any) -> None:
    from bittensor.sp_core import Keypair

    path = protocol.COMPLETIONS_PATH
    runners = []
    for i in range(n):
        key = Keypair.create_from_uri(miner_uri(i))
        prefixes = {
            p: (e := _events(i, p, a, k), hashlib.sha256(e).hexdigest()) for p, a in answers.items()
        }

        async def handle(request: web.Request, key: Any = key, prefixes: Any = prefixes) -> Any:
            body = await request.read()
            prefix, digest = prefixes[tuple(json.loads(body)["prompt"])]
            fields = auth.sign_response(
                key,
                status=200,
                path=path,
                request_body=body,
                caller=request.headers.get("X-Bittensor-Hotkey"),
                request_nonce=int(request.headers.get("X-Bittensor-Nonce", "0")),
                body_sha256=digest,
            )
            tail = protocol.sse_event(auth.stream_signature_event(fields)) + protocol.SSE_DONE
            return web.Response(body=prefix + tail, content_type="text/event-stream")

        app = web.Application()
        app.router.add_post(path, handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
    conn.send([r.addresses[0][1] for r in runners])
    await asyncio.to_thread(conn.recv)  # any message (or EOF) ends the farm
    for r in runners:
        await r.cleanup()


def _farm_main(n: int, answers: dict[tuple[int, ...], Answer], k: int, conn: Any) -> None:
    with contextlib.suppress(EOFError):  # the parent went away: just end
        asyncio.run(_serve(n, answers, k, conn))


class MinerFarm:
    """``n`` simulated miners in a spawned process; ``ports[i]`` serves ``miner_uri(i)``."""

    def __init__(self, n: int, answers: dict[tuple[int, ...], Answer], k: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_farm_main, args=(n, answers, k, child), daemon=True)
        self._proc.start()
        child.close()  # ours is closed, so the farm dying reads as EOF here, not a hang
        try:
            self.ports: list[int] = self._conn.recv()
        except EOFError:
            self._proc.join(timeout=5)
            raise RuntimeError(f"the miner farm exited (code {self._proc.exitcode})") from None

    def cpu_seconds(self) -> float:
        """User + system CPU the farm process has used so far (Linux ``/proc``)."""
        with open(f"/proc/{self._proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self._conn.send(None)
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
