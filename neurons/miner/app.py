"""The miner's aiohttp application: ``build_app`` and thin routes over ``MinerService``.

Request pipeline for ``POST /v1/completions`` and ``POST /v1/chat/completions`` (each step's
failure has its own status/cause): body size (413, before reading) -> btauth/1 (401/403) ->
caller policy (403/429) -> request schema (400; chat turns rendered with the model's template)
-> stake-ordered engine slot (429) -> generate (504 on timeout) -> signed response. One
middleware turns every exception into the OpenAI error shape, signs every non-streamed
response, counts it and writes one access-log line. ``GET /v1/models`` and ``/v1/health`` are
public (no engine work).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from bittensor.http_auth import Caller, NonceStore
from bittensor.signing import resolve_signer

from neurons.miner.connections import ConnectionGuard
from neurons.miner.errors import HttpError, HttpFailure, to_failure
from neurons.miner.policy import (
    CallerInfo,
    CallerPolicy,
    Directory,
    PriorityLimiter,
    refresh_loop,
    retry_after_header,
)
from neurons.miner.serving import MinerService
from subnet import auth, protocol, protocol_chat
from subnet.metrics import MinerMetrics

access_log = logging.getLogger("subnet.miner.access")


@dataclass
class Gate:
    """Everything between the socket and the service: identity, limits, signing."""

    wallet: Any  # signs responses with its hotkey
    hotkey: str
    nonce_store: NonceStore
    policy: CallerPolicy
    limiter: PriorityLimiter
    auth_max_age: float = 10.0
    auth_allowed_skew: float = 2.0
    max_body_bytes: int = 1 << 20
    request_timeout: float = 120.0
    body_timeout: float = 10.0  # the whole body must arrive this fast (before auth)

    _signer: Any = field(default=None, init=False, repr=False)

    async def authenticate(self, request: web.Request, body: bytes) -> Caller:
        """btauth/1 on a worker thread: the signature check and the replay store's SQLite
        write both release the GIL, so the event loop keeps serving other streams meanwhile
        (and a replay store waiting on another process's lock cannot stall it)."""
        auth.check_single_auth_headers(request.headers)  # before the SDK flattens them
        return await asyncio.to_thread(
            auth.verify_request,
            request.headers,
            body,
            method=request.method,
            path=request.raw_path,
            self_hotkey=self.hotkey,
            max_age=self.auth_max_age,
            allowed_skew=self.auth_allowed_skew,
            nonce_store=self.nonce_store,
        )

    async def sign(self, **fields: Any) -> dict[str, str]:
        """``auth.sign_response`` on a worker thread (sr25519 releases the GIL), with the
        hotkey's signer resolved once (a wallet would otherwise be unlocked per response)."""
        if self._signer is None:
            self._signer = resolve_signer(self.wallet, role="hotkey")
        return await asyncio.to_thread(auth.sign_response, self._signer, **fields)


SERVICE = web.AppKey("service", MinerService)
GATE = web.AppKey("gate", Gate)
METRICS = web.AppKey("metrics", MinerMetrics)
GUARD = web.AppKey("guard", ConnectionGuard)
_BODY = web.RequestKey("body", bytes)
_CALLER = web.RequestKey("caller", Caller)
_INFO = web.RequestKey("caller_info", CallerInfo)
_STATS = web.RequestKey("stats", tuple)  # (prompt tokens, completion tokens, ttft or None)
_CAUSE = web.RequestKey("cause", str)  # a 200 stream that ended in an error or lost its caller
_STARTED = int(time.time())  # "created" of the served model in /v1/models
STREAM_TAIL_GRACE_S = 5.0  # error event + signature + DONE after the last token, at most


@dataclass(frozen=True)
class Api:
    """How one generation endpoint reads its requests and shapes its answers."""

    id_prefix: str
    # body -> (the completion to run, the request its answer echoes)
    parse: Callable[[MinerService, bytes], tuple[protocol.CompletionRequest, Any]]
    body: Callable[..., dict[str, Any]]  # (rid, created, model, request, identity, piece)
    chunk: Callable[..., dict[str, Any]]  # as body, plus finish_reason, completion_tokens


def _parse_chat(service: MinerService, body: bytes) -> tuple[protocol.CompletionRequest, Any]:
    chat = service.parse_chat(body)
    return chat.completion, chat


COMPLETIONS = Api(
    "cmpl-",
    lambda service, body: (req := service.parse(body), req),
    protocol.completion_body,
    protocol.stream_chunk,
)
CHAT = Api("chatcmpl-", _parse_chat, protocol_chat.chat_body, protocol_chat.chat_chunk)


def build_app(
    service: MinerService,
    gate: Gate,
    metrics: MinerMetrics,
    *,
    directory: Directory | None = None,
    fetch_callers: Callable[[], Awaitable[Mapping[str, CallerInfo]]] | None = None,
    refresh_interval: float = 12.0,
    guard: ConnectionGuard | None = None,
) -> web.Application:
    """The app; with ``fetch_callers`` a background task keeps ``directory`` fresh.

    ``/metrics`` is not served here (the public port): ``subnet.metrics.serve_metrics`` serves
    it on its own, loopback-by-default port. With ``guard`` (served by a
    :class:`~neurons.miner.connections.GuardedRunner`), each request tells it when its headers
    were complete and when it ended.
    """
    app = web.Application(middlewares=[_guard], client_max_size=gate.max_body_bytes + 1)
    app[SERVICE], app[GATE], app[METRICS] = service, gate, metrics
    metrics.queue_depth.set_function(lambda: gate.limiter.waiting)
    metrics.in_flight.set_function(lambda: gate.limiter.active)
    if guard is not None:
        app[GUARD] = guard
        metrics.connections.set_function(lambda: guard.open)
    app.router.add_post(protocol.COMPLETIONS_PATH, completions)
    app.router.add_post(protocol_chat.CHAT_PATH, chat_completions)
    app.router.add_get(protocol_chat.MODELS_PATH, models)
    app.router.add_get(protocol.HEALTH_PATH, health)
    if fetch_callers is not None and directory is not None:
        app.cleanup_ctx.append(_refresher(directory, fetch_callers, refresh_interval, metrics))
    return app


def _refresher(
    directory: Directory,
    fetch: Callable[[], Awaitable[Mapping[str, CallerInfo]]],
    interval: float,
    metrics: MinerMetrics,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def fetch_and_mark() -> Mapping[str, CallerInfo]:
            callers = await fetch()
            metrics.metagraph_age.set(time.time())
            return callers

        task = asyncio.create_task(
            refresh_loop(
                directory, fetch_and_mark, interval, lambda e: metrics.metagraph_errors.inc()
            )
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


# -- routes ---------------------------------------------------------------------------------


async def admit(request: web.Request, body: bytes) -> CallerInfo:
    """btauth/1 over ``body``, then the caller policy (403/429 raise): who may call any route
    but health and metrics."""
    gate, metrics = request.app[GATE], request.app[METRICS]
    request[_BODY] = body
    caller = await gate.authenticate(request, body)
    request[_CALLER] = caller
    info = gate.policy.admit(caller.hotkey_ss58)
    request[_INFO] = info
    metrics.caller_requests.labels(str(info.uid)).inc()
    return info


async def completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, COMPLETIONS)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, CHAT)


async def _generate(request: web.Request, api: Api) -> web.StreamResponse:
    gate, service = request.app[GATE], request.app[SERVICE]
    deadline = asyncio.get_running_loop().time() + gate.request_timeout
    body_wait = min(gate.body_timeout, gate.request_timeout)
    try:  # before auth: a caller trickling its body must not hold the connection long
        async with asyncio.timeout(body_wait):
            body = await _read_body(request, gate.max_body_bytes)
    except TimeoutError:
        raise HttpError(408, "body_timeout", f"body not received within {body_wait:g}s") from None
    except ConnectionError:  # the caller hung up mid-body: nobody to answer, nothing to log
        raise HttpError(499, "client_gone", "the caller closed the connection") from None
    info = await admit(request, body)
    req, echo = api.parse(service, body)
    if req.ignored:
        access_log.debug("ignored request fields: %s", ", ".join(req.ignored))
    async with asyncio.timeout_at(deadline):
        await gate.limiter.acquire(info.stake, timeout=gate.request_timeout)
    try:
        if req.stream:
            return await _stream(request, req, echo, deadline, api)
        async with asyncio.timeout_at(deadline):
            piece = await service.complete(req)
    finally:
        gate.limiter.release()
    request[_STATS] = (len(req.prompt_ids), len(piece.completion.token_ids), None)
    out = api.body(
        rid=_rid(api.id_prefix),
        created=int(time.time()),
        model=service.model_name,
        request=echo,
        identity=service.identity,
        piece=piece,
    )
    return web.Response(body=protocol.dumps(out), content_type="application/json")


async def _stream(
    request: web.Request, req: protocol.CompletionRequest, echo: Any, deadline: float, api: Api
) -> web.StreamResponse:
    """SSE: chunks as tokens arrive, then a signature event over all prior bytes, then DONE."""
    service, gate = request.app[SERVICE], request.app[GATE]
    t0 = time.perf_counter()
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Subnet-Stream-Signature": "trailer-event",
        }
    )
    await resp.prepare(request)
    digest = hashlib.sha256()
    rid, created, total, ttft = _rid(api.id_prefix), int(time.time()), 0, None

    async def send(obj: Mapping[str, Any]) -> None:
        data = protocol.sse_event(obj)
        digest.update(data)
        await resp.write(data)

    try:
        # Each chunk is written (and so flushed: no buffering, TCP_NODELAY) as it arrives.
        # aclosing: when the caller goes away mid-stream the write raises, and closing the
        # service's stream aborts the engine request before the slot is released.
        async with asyncio.timeout_at(deadline), contextlib.aclosing(service.stream(req)) as it:
            async for s in it:
                chunk = api.chunk(
                    rid=rid,
                    created=created,
                    model=service.model_name,
                    request=echo,
                    piece=s.piece,
                    finish_reason=s.finish_reason,
                    completion_tokens=s.total_tokens,
                    identity=service.identity if total == 0 else None,
                )
                await send(chunk)
                total = s.total_tokens
                ttft = ttft if ttft is not None else time.perf_counter() - t0
    except ConnectionError:
        # The caller went away: nothing left to send (no signature either). Returning the
        # prepared response lets aiohttp finish quietly; the slot is released by the caller.
        request[_CAUSE] = "client_gone"
        request[_STATS] = (len(req.prompt_ids), total, ttft)
        return resp
    except Exception as e:
        failure: HttpFailure | None = to_failure(e)
    else:
        failure = None
    request[_STATS] = (len(req.prompt_ids), total, ttft)
    caller: Caller = request[_CALLER]
    try:
        # Bounded: a caller that stopped reading must not keep the engine slot (released by
        # our caller once this returns) while write_eof waits for the socket to drain.
        async with asyncio.timeout(STREAM_TAIL_GRACE_S):
            if failure is not None:
                request[_CAUSE] = failure.cause
                await send(
                    protocol.error_body(
                        failure.message,
                        status=failure.status,
                        code=failure.cause,
                        param=failure.param,
                    )
                )
            fields = await gate.sign(
                status=200,
                path=request.raw_path,
                request_body=request[_BODY],
                caller=caller.hotkey_ss58,
                request_nonce=caller.nonce_ns,
                body_sha256=digest.hexdigest(),
            )
            await resp.write(protocol.sse_event(auth.stream_signature_event(fields)))
            await resp.write(protocol.SSE_DONE)
            await resp.write_eof()
    except (TimeoutError, ConnectionError):
        request[_CAUSE] = "client_gone"
    return resp


async def health(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    capacity = {
        "max_concurrency": gate.limiter.capacity,
        "in_flight": gate.limiter.active,
        "queued": gate.limiter.waiting,
        "max_queue": gate.limiter.max_queue,
    }
    body = request.app[SERVICE].health(capacity) | {"hotkey": gate.hotkey}
    return web.Response(body=protocol.dumps(body), content_type="application/json")


async def models(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = protocol_chat.models_body(service.model_name, service.identity, _STARTED)
    return web.Response(body=protocol.dumps(body), content_type="application/json")


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "body_too_large", f"body larger than {limit} bytes")
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise HttpError(413, "body_too_large", f"body larger than {limit} bytes")
    return bytes(buf)


def _rid(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


# -- the middleware -------------------------------------------------------------------------


_ROUTER_CAUSES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    t0 = time.perf_counter()
    guard = request.app.get(GUARD)
    if guard is not None:
        guard.request_started(request.transport)
    try:
        return await _guarded(request, handler, t0)
    finally:
        if guard is not None:
            guard.request_finished(request.transport)


async def _guarded(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    t0: float,
) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    failure: HttpFailure | None = None
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        failure = HttpFailure(e.status, _ROUTER_CAUSES.get(e.status, "http"), e.reason)
        resp = _error_response(failure)
    except asyncio.CancelledError:
        _record(request, route, 499, "client_gone", t0)
        raise
    except Exception as e:
        failure = to_failure(e)
        resp = _error_response(failure)
    if not resp.prepared and isinstance(resp, web.Response):
        await _sign(request, resp)
    cause = request.get(_CAUSE) or (failure.cause if failure else "ok")
    _record(request, route, 499 if cause == "client_gone" else resp.status, cause, t0)
    return resp


def _error_response(f: HttpFailure) -> web.Response:
    body = protocol.error_body(f.message, status=f.status, code=f.cause, param=f.param)
    resp = web.Response(status=f.status, body=protocol.dumps(body), content_type="application/json")
    if f.retry_after is not None:
        resp.headers["Retry-After"] = retry_after_header(f.retry_after)
    if f.status == 413:
        resp.force_close()  # do not drain a body we refused
    return resp


async def _sign(request: web.Request, resp: web.Response) -> None:
    caller: Caller | None = request.get(_CALLER)
    body = resp.body if isinstance(resp.body, bytes) else b""
    resp.headers.update(
        await request.app[GATE].sign(
            status=resp.status,
            path=request.raw_path,
            request_body=request.get(_BODY, b""),
            body=body,
            caller=caller.hotkey_ss58 if caller else None,
            request_nonce=caller.nonce_ns if caller else None,
        )
    )


def _record(request: web.Request, route: str, status: int, cause: str, t0: float) -> None:
    metrics = request.app[METRICS]
    elapsed = time.perf_counter() - t0
    metrics.requests.labels(route, str(status), cause).inc()
    metrics.latency.labels(route).observe(elapsed)
    if cause.startswith("auth_"):
        metrics.auth_failures.labels(cause).inc()
    info: CallerInfo | None = request.get(_INFO)
    prompt_tokens, completion_tokens, ttft = request.get(_STATS, (0, 0, None))
    if completion_tokens:
        metrics.tokens.inc(completion_tokens)
        metrics.tokens_per_second.observe(completion_tokens / max(elapsed, 1e-6))
    if ttft is not None:
        metrics.ttft.observe(ttft)
    if route == protocol.HEALTH_PATH and status == 200:
        return
    access_log.info(
        json.dumps(
            {
                "route": route,
                "status": status,
                "cause": cause,
                "uid": info.uid if info else None,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "latency_ms": round(elapsed * 1000, 2),
                "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
            },
            separators=(",", ":"),
        )
    )
