"""The gateway's aiohttp application: ``build_app`` and thin routes over ``GatewayService``.

``POST /v1/chat/completions`` and ``POST /v1/completions`` (OpenAI-compatible, plain or
``stream``), ``GET /v1/models``, ``GET /health``, ``GET /metrics``. One middleware turns every
exception into OpenAI's error shape through :func:`neurons.gateway.errors.to_failure`, counts
the request and writes one access-log line (never the key). Cleanup contexts own the HTTP
session to the miners and the background refresh of the routing view, so both start with the
app and stop after its last request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from neurons.gateway import wire
from neurons.gateway.access import retry_after_header
from neurons.gateway.errors import GatewayError, HttpFailure, to_failure
from neurons.gateway.metrics import GatewayMetrics
from neurons.gateway.serving import GatewayService, Outcome, Prepared
from subnet import protocol
from subnet.chain.protocol import SubnetReads

access_log = logging.getLogger("subnet.gateway.access")

SERVICE = web.AppKey("service", GatewayService)
METRICS = web.AppKey("metrics", GatewayMetrics)
_OUTCOME = web.RequestKey("outcome", Outcome)
_CODE = web.RequestKey("code", str)  # how a 200 stream ended, when not "ok"
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"


def build_app(
    service: GatewayService,
    metrics: GatewayMetrics,
    *,
    chain: SubnetReads | None = None,
) -> web.Application:
    """The app; with ``chain`` a background task keeps the routing view fresh."""
    app = web.Application(middlewares=[_guard], client_max_size=service.gc.max_body_bytes + 1)
    app[SERVICE], app[METRICS] = service, metrics
    app.router.add_post(CHAT_PATH, chat)
    app.router.add_post(COMPLETIONS_PATH, completions)
    app.router.add_get(MODELS_PATH, models)
    app.router.add_get("/health", health)
    app.router.add_get(protocol.METRICS_PATH, prometheus)
    app.cleanup_ctx.append(_session)
    if chain is not None:
        app.cleanup_ctx.append(_refresher(chain))
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    async with aiohttp.ClientSession() as session:
        service.session = session
        yield
        service.session = None


def _refresher(
    chain: SubnetReads,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(app[SERVICE].refresh_loop(chain))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


# -- routes ---------------------------------------------------------------------------------


async def chat(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "completion")


async def _complete(request: web.Request, kind: wire.Kind) -> web.StreamResponse:
    service = request.app[SERVICE]
    key = service.admit(request.headers)  # 401 / 429 before reading a body
    body = await _read_body(request, service.gc.max_body_bytes)
    p = service.prepare(kind, key, body)
    out = request[_OUTCOME] = Outcome()
    if p.req.stream:
        return await _stream(request, p, out)
    text, finish = [], None
    async with contextlib.aclosing(service.run(p, out)) as pieces:
        async for d in pieces:
            text.append(d.text)
            finish = d.finish_reason or finish
    doc = wire.response(
        p.req,
        rid=p.rid,
        created=p.created,
        model=service.gc.model_name,
        text="".join(text),
        finish_reason=finish or "length",
        prompt_tokens=len(p.prompt_ids),
        completion_tokens=out.completion_tokens,
        miners=out.miners,
    )
    return web.Response(body=protocol.dumps(doc), content_type="application/json")


async def _stream(request: web.Request, p: Prepared, out: Outcome) -> web.StreamResponse:
    """SSE as the miners' tokens arrive; a failure after the first byte is an error event."""
    service = request.app[SERVICE]
    model = service.gc.model_name
    pieces = service.run(p, out)
    try:
        first = await anext(pieces)  # errors before any token are plain HTTP errors
    except StopAsyncIteration:
        first = None
    except BaseException:
        await pieces.aclose()
        raise
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    sent_any = False

    async def send(text: str | None, finish: str | None, miner: int | None) -> None:
        nonlocal sent_any
        obj = wire.chunk(
            p.req,
            rid=p.rid,
            created=p.created,
            model=model,
            text=text,
            finish_reason=finish,
            first=not sent_any,
            miner=miner,
        )
        sent_any = True
        await resp.write(protocol.sse_event(obj))

    try:
        async with contextlib.aclosing(pieces):
            d = first
            while d is not None:
                if d.text or d.finish_reason is None:
                    await send(d.text, None, d.miner)
                if d.finish_reason is not None:
                    await send(None, d.finish_reason, d.miner)
                d = await anext(pieces, None)
        if p.req.include_usage:
            usage = wire.usage_chunk(
                p.req,
                rid=p.rid,
                created=p.created,
                model=model,
                prompt=len(p.prompt_ids),
                completion=out.completion_tokens,
            )
            await resp.write(protocol.sse_event(usage))
    except ConnectionError:
        request[_CODE] = "client_gone"
        return resp
    except Exception as e:
        failure = to_failure(e)
        request[_CODE] = failure.code
        with contextlib.suppress(ConnectionError):
            await resp.write(protocol.sse_event(_error_body(failure)))
    with contextlib.suppress(ConnectionError):
        await resp.write(protocol.SSE_DONE)
        await resp.write_eof()
    return resp


async def models(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.access.authenticate(request.headers)
    return web.Response(body=protocol.dumps(service.models()), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = {
        "status": "ok",
        "model": service.gc.model_name,
        "hotkey": service.hotkey,
        "eligible_miners": [c.uid for c in service.routes.candidates],
        "routes_updated": service.routes.updated,
    }
    return web.Response(body=protocol.dumps(body), content_type="application/json")


async def prometheus(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(413, "body_too_large", f"body larger than {limit} bytes")
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise GatewayError(413, "body_too_large", f"body larger than {limit} bytes")
    return bytes(buf)


# -- the middleware -------------------------------------------------------------------------

_ROUTER_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def _error_body(f: HttpFailure) -> dict[str, Any]:
    return protocol.error_body(f.message, status=f.status, code=f.code, param=f.param)


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    t0 = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    failure: HttpFailure | None = None
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        failure = HttpFailure(e.status, _ROUTER_CODES.get(e.status, "http"), e.reason)
        resp = _error_response(failure)
    except asyncio.CancelledError:
        _record(request, route, 499, "client_gone", t0)
        raise
    except Exception as e:
        failure = to_failure(e)
        resp = _error_response(failure)
    code = request.get(_CODE) or (failure.code if failure else "ok")
    _record(request, route, 499 if code == "client_gone" else resp.status, code, t0)
    return resp


def _error_response(f: HttpFailure) -> web.Response:
    resp = web.Response(
        status=f.status, body=protocol.dumps(_error_body(f)), content_type="application/json"
    )
    if f.retry_after is not None:
        resp.headers["Retry-After"] = retry_after_header(f.retry_after)
    if f.status == 413:
        resp.force_close()
    return resp


def _record(request: web.Request, route: str, status: int, code: str, t0: float) -> None:
    metrics = request.app[METRICS]
    elapsed = time.perf_counter() - t0
    metrics.requests.labels(route, str(status), code).inc()
    metrics.latency.labels(route).observe(elapsed)
    if route in (protocol.METRICS_PATH, "/health"):
        return
    out: Outcome | None = request.get(_OUTCOME)
    access_log.info(
        json.dumps(
            {
                "route": route,
                "status": status,
                "code": code,
                "miners": out.miners if out else [],
                "attempts": [a.outcome for a in out.attempts] if out else [],
                "completion_tokens": out.completion_tokens if out else 0,
                "latency_ms": round(elapsed * 1000, 2),
                "ttft_ms": round(out.ttft_s * 1000, 2) if out and out.ttft_s is not None else None,
            },
            separators=(",", ":"),
        )
    )
