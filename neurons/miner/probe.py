"""`subnet miner probe`: call a miner the way a validator does, and show what came back.

Signs one completion request with a validator's hotkey (btauth/1, bound to the miner's hotkey),
sends it to the miner's endpoint (never following a redirect), verifies the miner's response
signature over the exact bytes received, and reports the status, latency, time to first token,
tokens and text. An operator checks their own miner from outside with it; the exit status says
whether the answer was sound (0) or not (1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor import http_auth

from subnet import auth, protocol
from subnet.errors import ProtocolError


@dataclass(frozen=True)
class ProbeResult:
    url: str
    status: int
    latency_s: float
    ttft_s: float | None
    signature_ok: bool
    problem: str = ""  # why the answer is not sound ("" when it is)
    token_ids: tuple[int, ...] = ()
    text: str = ""
    identity: str | None = None
    finish_reason: str | None = None
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.signature_ok and not self.problem


def request_body(
    prompt: str | list[int], *, max_tokens: int, temperature: float, logprobs: int, stream: bool
) -> bytes:
    return protocol.dumps(
        {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "logprobs": logprobs,
            "stream": stream,
            "subnet": {"task_id": "probe", "raw": True},
        }
    )


async def probe(
    wallet: Any,
    url: str,
    miner_hotkey: str,
    body: bytes,
    *,
    timeout: float = 30.0,
    max_bytes: int = 4 << 20,
) -> ProbeResult:
    """One signed request to ``url`` (``http://host:port``); never raises for the miner's sake."""
    path = protocol.COMPLETIONS_PATH
    headers = auth.sign_request(wallet, "POST", path, body, miner_hotkey)
    headers["Content-Type"] = "application/json"
    caller = headers[http_auth.HEADER_HOTKEY]
    nonce = int(headers[http_auth.HEADER_NONCE])
    streamed = bool(json.loads(body).get("stream"))
    t0 = time.perf_counter()
    ttft: float | None = None
    raw = bytearray()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
            s.post(url + path, data=body, headers=headers, allow_redirects=False) as r,
        ):
            seen = 0  # first byte of the next SSE event not yet looked at
            async for chunk in r.content.iter_any():
                raw += chunk
                while ttft is None and (end := raw.find(b"\n\n", seen)) != -1:
                    if _adds_tokens(bytes(raw[seen:end])):
                        ttft = time.perf_counter() - t0
                    seen = end + 2
                if len(raw) > max_bytes:
                    return ProbeResult(
                        url,
                        r.status,
                        time.perf_counter() - t0,
                        ttft,
                        False,
                        f"answer over {max_bytes} bytes",
                    )
            status, resp_headers = r.status, r.headers
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return ProbeResult(
            url,
            0,
            time.perf_counter() - t0,
            None,
            False,
            f"no answer: {type(e).__name__}: {str(e)[:200]}",
        )
    latency = time.perf_counter() - t0
    data = bytes(raw)
    if 300 <= status < 400:
        where = resp_headers.get("Location", "")
        return ProbeResult(url, status, latency, None, False, f"redirect to {where!r} refused")
    try:
        if streamed and status == 200:
            prefix = auth.verify_stream(
                data,
                miner_hotkey=miner_hotkey,
                path=path,
                request_body=body,
                caller=caller,
                request_nonce=nonce,
            )
            chunks = [json.loads(e[6:]) for e in prefix.split(b"\n\n") if e]
        else:
            auth.verify_response(
                resp_headers,
                data,
                miner_hotkey=miner_hotkey,
                status=status,
                path=path,
                request_body=body,
                caller=caller,
                request_nonce=nonce,
            )
            chunks = [json.loads(data)] if data else []
    except (ProtocolError, ValueError) as e:
        return ProbeResult(url, status, latency, ttft, False, f"signature: {e}")
    if status != 200:
        err = chunks[0].get("error", {}) if chunks and isinstance(chunks[0], dict) else {}
        problem = f"HTTP {status}: {err.get('code')}: {err.get('message')}"
        return ProbeResult(url, status, latency, None, True, problem)
    errors = [c["error"] for c in chunks if isinstance(c, dict) and "error" in c]
    content = [c for c in chunks if isinstance(c, dict) and "error" not in c]
    try:
        wire = protocol.read_completion(content)
    except ProtocolError as e:
        return ProbeResult(url, status, latency, ttft, True, str(e))
    text = "".join(str(c["choices"][0].get("text") or "") for c in content if c.get("choices"))
    problem = f"error mid-stream: {errors[0]}" if errors else ""
    return ProbeResult(
        url,
        status,
        latency,
        ttft if streamed else latency,
        True,
        problem,
        wire.token_ids,
        text,
        wire.identity,
        wire.finish_reason,
        content[0] if len(content) == 1 else {},
    )


def _adds_tokens(event: bytes) -> bool:
    """Whether one SSE event carries tokens (time to first token is taken at the first)."""
    if not event.startswith(b"data: "):
        return False
    try:
        obj = json.loads(event[6:])
    except (ValueError, RecursionError):
        return False
    sub = obj.get("subnet") if isinstance(obj, dict) else None
    ids = sub.get("token_ids") if isinstance(sub, dict) else None
    return isinstance(ids, list) and len(ids) > 0


def render(r: ProbeResult) -> str:
    lines = [
        f"miner {r.url}: HTTP {r.status}, signature {'ok' if r.signature_ok else 'NOT VERIFIED'}",
        f"  latency {r.latency_s * 1000:.1f} ms"
        + (f", time to first token {r.ttft_s * 1000:.1f} ms" if r.ttft_s is not None else ""),
    ]
    if r.identity:
        lines.append(f"  model identity {r.identity}")
    if r.token_ids:
        lines.append(f"  {len(r.token_ids)} tokens ({r.finish_reason}): {list(r.token_ids)}")
        lines.append(f"  text: {r.text!r}")
    if r.problem:
        lines.append(f"  problem: {r.problem}")
    lines.append("  result: " + ("OK" if r.ok else "FAILED"))
    return "\n".join(lines)
