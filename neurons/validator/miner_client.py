"""Signed, streamed, timed queries to one miner; hostile responses become cause codes.

:func:`query` never raises on anything the miner controls (connection errors, status codes,
malformed SSE, bad JSON, NaNs, huge bodies, missing or forged signatures, stalls): each becomes
a :class:`MinerAnswer` with a :class:`~scoring.causes.Cause`. Time to first token and the total
time are measured on the validator's own clock, from the moment the request is on the wire (a
session made by :func:`miner_session` records it): a validator sends a step's requests one
after another from one event loop, so a clock started before sending would charge the first
miners for the time spent sending to the others (measured: ~10-25 ms of a ~100-170 ms time to
first token, always against the lowest uids). The raw signed bytes are kept on the answer so
a failed verification can be stored as evidence the miner cannot repudiate.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

from neurons.validator.participant import Miner, Participant
from scoring.causes import Cause
from subnet import auth, protocol
from subnet.errors import ProtocolError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class _Sent:
    """When aiohttp finished writing one request's headers (``None`` until it has)."""

    at: float | None = None


async def _headers_sent(_session: Any, context: Any, _params: Any) -> None:
    sent = context.trace_request_ctx
    if isinstance(sent, _Sent) and sent.at is None:
        sent.at = time.perf_counter()


def miner_session(**kwargs: Any) -> aiohttp.ClientSession:
    """The validator's HTTP session to miners: it timestamps each request as it goes out."""
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    return aiohttp.ClientSession(trace_configs=[trace], **kwargs)


def carries_tokens(event: bytes) -> bool:
    """Whether one SSE event adds tokens to the answer (``subnet.token_ids`` non-empty).

    Time to first token is taken at the first such event, judged by the same field
    ``protocol.read_completion`` assembles the answer from: a filler event that only looks
    like tokens cannot claim an early first token.
    """
    if not event.startswith(b"data: "):
        return False
    try:
        obj = protocol.loads(event[6:])
    except (ValueError, RecursionError):
        return False
    sub = obj.get("subnet") if isinstance(obj, dict) else None
    ids = sub.get("token_ids") if isinstance(sub, dict) else None
    return isinstance(ids, list) and len(ids) > 0


@dataclass(frozen=True)
class Target:
    uid: int
    hotkey: str
    url: str  # http://host:port


@dataclass(frozen=True)
class Query:
    task_id: str
    prompt_ids: tuple[int, ...]
    max_tokens: int
    k: int
    temperature: float
    seed: int


@dataclass(frozen=True)
class MinerAnswer:
    """What one participant answered to one task (arrays empty unless ``cause`` is OK): a miner
    over the network, or the validator's baseline locally, both judged the same way."""

    who: Participant
    task_id: str
    cause: Cause
    detail: str = ""
    token_ids: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    sampled_logprobs: FloatArray = field(default_factory=lambda: np.zeros(0))
    top_ids: IntArray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    top_logprobs: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    finish_reason: str | None = None
    identity: str | None = None
    ttft_s: float | None = None
    total_s: float | None = None
    request_body: bytes = b""
    raw: bytes = b""  # the whole signed stream, for evidence
    signature: dict[str, str] = field(default_factory=dict)

    def evidence(self) -> tuple[str, str, str]:
        """(request body, base64 response, signature JSON) as stored in the evidence table."""
        return (
            self.request_body.decode("utf-8", "replace"),
            base64.b64encode(self.raw).decode(),
            json.dumps(self.signature, sort_keys=True),
        )


def request_body(q: Query) -> bytes:
    return protocol.dumps(
        {
            "prompt": list(q.prompt_ids),
            "max_tokens": q.max_tokens,
            "temperature": q.temperature,
            "seed": q.seed,
            "logprobs": q.k,
            "stream": True,
            "subnet": {"task_id": q.task_id, "raw": True},
        }
    )


async def query(
    session: aiohttp.ClientSession,
    signer: Any,
    caller_hotkey: str,
    target: Target,
    q: Query,
    *,
    timeout: float,
    max_bytes: int,
) -> MinerAnswer:
    """One streamed completion from ``target``; every failure is an answer with a cause.

    ``signer``: the validator's hotkey signer (``auth.hotkey_signer``; a wallet works too, at
    the cost of resolving it again for this request)."""
    body = request_body(q)
    base = MinerAnswer(Miner(target.uid, target.hotkey), q.task_id, Cause.OK, request_body=body)
    path = protocol.COMPLETIONS_PATH
    try:
        headers = auth.sign_request(signer, "POST", path, body, target.hotkey)
    except Exception as e:  # a bad hotkey on chain must not stop the step
        return _fail(base, Cause.HTTP_ERROR, f"cannot sign for {target.hotkey!r}: {e}")
    headers["Content-Type"] = "application/json"
    nonce = _int_or_none(headers.get("X-Bittensor-Nonce"))
    sent, queued = _Sent(), time.perf_counter()
    first: float | None = None
    buf = bytearray()
    try:
        async with asyncio.timeout(timeout):
            # Never follow a redirect: it would re-send the signed body and btauth headers
            # (307/308) or the headers (302) to any host the miner names.
            async with session.post(
                target.url + path,
                data=body,
                headers=headers,
                allow_redirects=False,
                trace_request_ctx=sent,
            ) as resp:
                if 300 <= resp.status < 400:
                    where = resp.headers.get("Location", "")[:100]
                    return _fail(
                        base, Cause.HTTP_ERROR, f"redirect {resp.status} to {where!r} refused"
                    )
                if resp.status != 200:
                    text = (await resp.content.read(2048)).decode("utf-8", "replace")
                    return _fail(base, Cause.HTTP_ERROR, f"status {resp.status}: {text[:200]}")
                event_start = 0  # first byte of the next event not yet looked at
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    # Until the first token: look at each completed event once.
                    while first is None and (end := buf.find(b"\n\n", event_start)) != -1:
                        if carries_tokens(bytes(buf[event_start:end])):
                            first = time.perf_counter()
                        event_start = end + 2
                    if len(buf) > max_bytes:
                        return _fail(base, Cause.FORMAT_SCHEMA, f"stream over {max_bytes} bytes")
    except TimeoutError:
        return _fail(base, Cause.TIMEOUT, f"no complete answer within {timeout:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return _fail(base, Cause.HTTP_ERROR, f"{type(e).__name__}: {str(e)[:200]}")
    end_at = time.perf_counter()
    t0 = sent.at if sent.at is not None else queued  # a plain session: from before sending
    total = end_at - t0
    ttft = total if first is None else first - t0
    raw = bytes(buf)
    timed = _with(base, raw=raw, ttft_s=ttft, total_s=total)
    # Signature check and parsing on a worker thread: the loop keeps timing other streams.
    return await asyncio.to_thread(_verified, timed, target.hotkey, path, caller_hotkey, nonce)


def _verified(
    timed: MinerAnswer, miner: str, path: str, caller_hotkey: str, nonce: int | None
) -> MinerAnswer:
    """The signed stream checked against our request, then parsed (never raises)."""
    raw, body = timed.raw, timed.request_body
    try:
        prefix, fields = auth.split_stream(raw)
        timed = _with(timed, signature=fields)
        auth.verify_stream(
            raw,
            miner_hotkey=miner,
            path=path,
            request_body=body,
            caller=caller_hotkey,
            request_nonce=nonce,
        )
    except Exception as e:  # only the miner's bytes are read here: any failure is the miner's
        return _fail(timed, Cause.BAD_SIGNATURE, f"{type(e).__name__}: {str(e)[:200]}")
    return parse_answer(timed, prefix)


def parse_answer(base: MinerAnswer, prefix: bytes) -> MinerAnswer:
    """The signed SSE bytes as an answer; never raises: hostile bytes become FORMAT_SCHEMA."""
    try:
        return _parse(base, prefix)
    except Exception as e:  # any parse failure is the miner's, recorded with its type
        return _fail(base, Cause.FORMAT_SCHEMA, f"{type(e).__name__}: {str(e)[:200]}")


def _parse(base: MinerAnswer, prefix: bytes) -> MinerAnswer:
    """SSE events -> arrays; the format gate judges values later, this only checks shape."""
    chunks: list[dict[str, Any]] = []
    for event in prefix.split(b"\n\n"):
        if not event:
            continue
        if not event.startswith(b"data: "):
            raise ProtocolError("an SSE event does not start with 'data: '")
        obj = protocol.loads(event[6:])
        if not isinstance(obj, dict):
            raise ProtocolError("an SSE event is not a JSON object")
        if "error" in obj:
            err = obj["error"] if isinstance(obj["error"], dict) else {}
            raise ProtocolError(f"miner error mid-stream: {str(err.get('code'))[:40]}")
        chunks.append(obj)
    if not chunks:
        raise ProtocolError("empty stream")
    wire = protocol.read_completion(chunks)
    sampled: list[float] = []
    for c in chunks:
        lp = c["choices"][0].get("logprobs") or {}
        sampled.extend(protocol.wire_float(x) for x in lp.get("token_logprobs") or [])
    n = len(wire.token_ids)
    if not n:
        raise ProtocolError("no tokens")
    if len(sampled) != n or len(wire.top_ids) != n or len(wire.top_logprobs) != n:
        raise ProtocolError(
            f"{n} tokens but {len(sampled)} logprobs and {len(wire.top_ids)} top-k rows"
        )
    widths = {len(r) for r in wire.top_ids} | {len(r) for r in wire.top_logprobs}
    if len(widths) != 1:
        raise ProtocolError("top-k rows of different widths")
    return _with(
        base,
        token_ids=np.asarray(wire.token_ids, dtype=np.int64),
        sampled_logprobs=np.asarray(sampled, dtype=np.float64),
        top_ids=np.asarray(wire.top_ids, dtype=np.int64).reshape(n, -1),
        top_logprobs=np.asarray(wire.top_logprobs, dtype=np.float64).reshape(n, -1),
        finish_reason=wire.finish_reason,
        identity=wire.identity if isinstance(wire.identity, str) else None,
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _with(a: MinerAnswer, **changes: Any) -> MinerAnswer:
    return dataclasses.replace(a, **changes)


def _fail(a: MinerAnswer, cause: Cause, detail: str) -> MinerAnswer:
    return _with(a, cause=cause, detail=detail[:500])
