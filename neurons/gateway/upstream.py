"""One streamed, signed completion from one miner, read as it arrives.

The gateway asks on the miner's own wire (``POST /v1/completions`` with token ids, signed with
the validator's hotkey, btauth/1) in the shape the validator's synthetic queries have (a seed,
raw top-k logprobs, a task id like a prompt-file task's), so nothing in a request tells a miner
it is organic traffic that may be spot-checked. :func:`stream` yields the token ids of each SSE
chunk as it comes, then, once the miner's trailing signature over the whole stream verifies
against its hotkey, a :class:`Signed` answer. Anything the miner controls that goes wrong
(connection, status, timeouts before the first token or between chunks, malformed or oversized
events, token ids outside the vocabulary, an error event, a missing or bad signature) raises
:class:`MinerFailure` with a cause code: the caller fails over.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp

from distill.tasks import task_id
from neurons.gateway.routing import Candidate
from subnet import auth, protocol
from subnet.errors import ProtocolError


class MinerFailure(Exception):
    """A miner's attempt that failed; ``cause`` labels metrics and the usage record."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail[:300]


@dataclass(frozen=True)
class Ask:
    """What one miner is asked: the prompt (with any tokens already delivered) and sampling."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    k: int  # raw top-k per position, always asked: any answer may be spot-checked
    prompt_text: str  # for the task id only


@dataclass(frozen=True)
class Tokens:
    ids: tuple[int, ...]
    finish_reason: str | None


@dataclass(frozen=True)
class Signed:
    """A whole answer whose signature verified: what the validator re-verifies later."""

    request_body: bytes
    request_nonce: int | None
    raw: bytes
    ttft_s: float | None
    total_s: float


@dataclass(frozen=True)
class Limits:
    vocab_size: int
    first_token_timeout: float
    idle_timeout: float
    max_bytes: int


def request_body(ask: Ask) -> bytes:
    body: dict[str, Any] = {
        "prompt": list(ask.prompt_ids),
        "max_tokens": ask.max_tokens,
        "temperature": ask.temperature,
        "seed": ask.seed,
        "logprobs": ask.k,
        "stream": True,
        "subnet": {"task_id": task_id("jsonl", ask.prompt_text), "raw": True},
    }
    if ask.top_p != 1.0:
        body["top_p"] = ask.top_p
    return protocol.dumps(body)


async def stream(
    session: aiohttp.ClientSession,
    wallet: Any,
    caller_hotkey: str,
    target: Candidate,
    ask: Ask,
    limits: Limits,
    deadline: float,
) -> AsyncGenerator[Tokens | Signed, None]:
    """The answer of ``target`` to ``ask`` (see the module docstring); ``deadline`` is the
    event loop's time by which the whole request must be done."""
    body = request_body(ask)
    path = protocol.COMPLETIONS_PATH
    try:
        headers = auth.sign_request(wallet, "POST", path, body, target.hotkey)
    except Exception as e:  # a bad hotkey on chain is the miner's problem, not the request's
        raise MinerFailure("http_error", f"cannot sign for {target.hotkey!r}: {e}") from None
    headers["Content-Type"] = "application/json"
    nonce_text = headers.get("X-Bittensor-Nonce")
    nonce = int(nonce_text) if nonce_text and nonce_text.isdigit() else None
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    ttft: float | None = None
    raw = bytearray()
    pending = b""
    produced = 0
    signed_seen = done = False
    try:
        async with session.post(target.url + path, data=body, headers=headers) as resp:
            if resp.status != 200:
                text = (await _within(resp.content.read(512), 5.0, loop, deadline)).decode(
                    "utf-8", "replace"
                )
                raise MinerFailure("http_error", f"status {resp.status}: {text[:200]}")
            while not done:
                wait = limits.first_token_timeout if ttft is None else limits.idle_timeout
                data = await _within(resp.content.readany(), wait, loop, deadline)
                if not data:
                    raise MinerFailure("http_error", "the stream ended before data: [DONE]")
                raw += data
                if len(raw) > limits.max_bytes:
                    raise MinerFailure("format_schema", f"stream over {limits.max_bytes} bytes")
                pending += data
                while (end := pending.find(b"\n\n")) != -1:
                    event, pending = pending[:end], pending[end + 2 :]
                    if event == b"data: [DONE]" and not signed_seen:
                        raise MinerFailure("bad_signature", "no signature before data: [DONE]")
                    if signed_seen:
                        if event != b"data: [DONE]":
                            raise MinerFailure("format_schema", "data after the signature")
                        done = True
                        break
                    tokens = _event(event, limits.vocab_size)
                    if tokens is None:
                        signed_seen = True
                        continue
                    produced += len(tokens.ids)
                    if produced > ask.max_tokens:
                        raise MinerFailure("too_long", f"more than {ask.max_tokens} tokens")
                    if tokens.ids and ttft is None:
                        ttft = time.perf_counter() - t0
                    yield tokens
    except TimeoutError:
        what = "its first token" if ttft is None else "its next chunk"
        raise MinerFailure("timeout", f"no {what} in time") from None
    except (aiohttp.ClientError, OSError) as e:
        raise MinerFailure("http_error", f"{type(e).__name__}: {str(e)[:200]}") from None
    try:
        auth.verify_stream(
            bytes(raw),
            miner_hotkey=target.hotkey,
            path=path,
            request_body=body,
            caller=caller_hotkey,
            request_nonce=nonce,
        )
    except (ProtocolError, ValueError) as e:
        raise MinerFailure("bad_signature", str(e)) from None
    yield Signed(body, nonce, bytes(raw), ttft, time.perf_counter() - t0)


async def _within(aw: Any, timeout: float, loop: asyncio.AbstractEventLoop, deadline: float) -> Any:
    """``aw`` within ``timeout`` seconds and before ``deadline`` (TimeoutError otherwise)."""
    budget = min(timeout, deadline - loop.time())
    if budget <= 0:
        raise TimeoutError
    return await asyncio.wait_for(aw, budget)


def _event(event: bytes, vocab_size: int) -> Tokens | None:
    """One SSE event -> its tokens (None for the signature event); MinerFailure otherwise."""
    if not event.startswith(b"data: "):
        raise MinerFailure("format_schema", "an SSE event does not start with 'data: '")
    try:
        obj = json.loads(event[6:])
    except (ValueError, RecursionError):
        raise MinerFailure("format_schema", "an SSE event is not JSON") from None
    if not isinstance(obj, dict):
        raise MinerFailure("format_schema", "an SSE event is not a JSON object")
    if "error" in obj:
        err = obj["error"] if isinstance(obj["error"], dict) else {}
        raise MinerFailure("miner_error", f"error mid-stream: {str(err.get('code'))[:40]}")
    if obj.get("object") == protocol.SIGNATURE_OBJECT:
        return None
    try:
        ids = obj["subnet"]["token_ids"]
        choices = obj["choices"]
        finish = choices[0].get("finish_reason") if choices else None
    except (KeyError, IndexError, TypeError, AttributeError):
        raise MinerFailure("format_schema", "a chunk without subnet.token_ids") from None
    if not isinstance(ids, list) or any(
        isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size for t in ids
    ):
        raise MinerFailure("format_token_id", "token ids outside the vocabulary")
    if finish is not None and finish not in ("stop", "length"):
        raise MinerFailure("format_schema", f"unknown finish_reason {str(finish)[:20]!r}")
    return Tokens(tuple(ids), finish)
