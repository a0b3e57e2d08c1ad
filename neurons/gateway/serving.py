"""The gateway's request logic behind the HTTP routes: admit, render, route, fail over, record.

HTTP-free (the routes in ``app.py`` only move bytes), so tests drive the object the server does.

A request is admitted (key, rate, body, model, prompt length, quota: :meth:`prepare`), then
:meth:`GatewayService.run` tries the ranked miners one after another. Tokens reach the user as
the miner sends them, except the miner's last chunk (the one carrying ``finish_reason``), which
is held until the miner's signature over the whole stream verifies; it arrives right after, so
holding it costs nothing. When an attempt fails (error, timeout, bad or missing signature) the
next miner is asked to *continue*: its prompt is the user's prompt plus every token the user
already received and its ``max_tokens`` what is left, so nothing the user has is sent twice and
the text stays one text (decoded from token ids here). A non-streamed request delivers nothing
before the end, so a failed attempt's tokens are dropped and the next miner answers afresh: a
non-streamed answer always comes whole from one miner, under its signature.

What a miner that failed had already streamed stays with the user (it cannot be taken back); its
failure is recorded against it (usage, metrics) and it is tried last for ``failure_cooldown``.

After a complete, verified answer a fraction (``gateway.organic_fraction``, drawn from the OS's
CSPRNG only now, so no miner can know in advance) is written to the organic inbox, for the
validator to spot-check like its own queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from neurons.gateway import upstream, wire
from neurons.gateway.access import Access, Grant
from neurons.gateway.errors import GatewayError, invalid
from neurons.gateway.keys import ApiKey, Attempt, KeyStore
from neurons.gateway.metrics import GatewayMetrics
from neurons.gateway.routing import Candidate
from neurons.gateway.text import TextCodec
from neurons.gateway.upstream import Ask, Limits, MinerFailure, Signed, Tokens
from neurons.gateway.view import RoutingView
from neurons.validator.inbox import OrganicInbox, OrganicRecord
from subnet import auth, protocol
from subnet.chain.protocol import SubnetReads
from subnet.config import SubnetConfig
from subnet.errors import StateError

log = logging.getLogger("subnet.gateway")


@dataclass(frozen=True)
class Prepared:
    """An admitted request: who asked, what, and the prompt as token ids."""

    grant: Grant
    req: wire.UserRequest
    prompt_ids: tuple[int, ...]
    prompt_text: str
    rid: str
    created: int


@dataclass(frozen=True)
class Delivery:
    """Text the user may have now; the last one carries ``finish_reason``."""

    text: str
    tokens: int
    miner: int
    finish_reason: str | None = None


@dataclass
class Outcome:
    """How a request went (filled while it runs; read by the route when it ends)."""

    completion_tokens: int = 0
    miners: list[int] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    ttft_s: float | None = None


class GatewayService:
    def __init__(
        self,
        cfg: SubnetConfig,
        *,
        codec: TextCodec,
        access: Access,
        keys: KeyStore,
        inbox: OrganicInbox,
        wallet: Any,
        hotkey: str,
        metrics: GatewayMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg, self.gc = cfg, cfg.gateway
        self.codec, self.access, self.keys, self.inbox = codec, access, keys, inbox
        self.hotkey, self.metrics = hotkey, metrics
        self.signer = auth.hotkey_signer(wallet)  # once: a wallet re-reads its key files per use
        self.routes = RoutingView(
            cfg, hotkey, inbox, metrics, rng or random.Random(secrets.randbits(64))
        )
        self.organic_draw = secrets.SystemRandom()
        self.session: aiohttp.ClientSession | None = None
        self.started = int(time.time())
        self.limits = Limits(
            vocab_size=codec.vocab_size,
            first_token_timeout=self.gc.first_token_timeout,
            idle_timeout=self.gc.idle_timeout,
            max_bytes=cfg.validator.max_response_bytes,
        )

    async def refresh(self, chain: SubnetReads) -> None:
        await self.routes.refresh(chain)

    async def refresh_loop(self, chain: SubnetReads) -> None:
        await self.routes.refresh_loop(chain)

    # -- admission ----------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.gc.model_name,
                    "object": "model",
                    "created": self.started,
                    "owned_by": "distill-subnet",
                }
            ],
        }

    def admit(self, headers: Mapping[str, str]) -> ApiKey:
        """The caller's key, within its rate (401, 429)."""
        key = self.access.authenticate(headers)
        self.access.rate(key)
        return key

    def prepare(self, kind: wire.Kind, key: ApiKey, body: bytes) -> Prepared:
        """Parse and render an admitted request, reserving its tokens (400, 404, 429)."""
        req = wire.parse(
            kind, body, max_tokens=self.gc.max_tokens, default_max_tokens=self.gc.default_max_tokens
        )
        if req.ignored:
            log.debug("ignored request fields: %s", ", ".join(req.ignored))
        if req.model != self.gc.model_name:
            raise GatewayError(
                404,
                "model_not_found",
                f"the model {req.model[:80]!r} does not exist here; use {self.gc.model_name!r}",
                param="model",
            )
        ids, text = self._prompt(req)
        if len(ids) + req.max_tokens > self.codec.max_model_len:
            field_name = "max_tokens" if len(ids) < self.codec.max_model_len else req_field(req)
            raise invalid(
                f"the prompt ({len(ids)} tokens) plus max_tokens ({req.max_tokens}) exceed the "
                f"model's {self.codec.max_model_len} tokens",
                field_name,
            )
        grant = self.access.reserve(key, len(ids) + req.max_tokens)
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        return Prepared(
            grant, req, tuple(ids), text, prefix + secrets.token_hex(12), int(time.time())
        )

    def _prompt(self, req: wire.UserRequest) -> tuple[list[int], str]:
        if req.kind == "chat":
            ids = self.codec.chat(req.messages)
        elif isinstance(req.prompt, str):
            ids = self.codec.encode(req.prompt)
        else:
            ids = list(req.prompt)
            bad = next((t for t in ids if not 0 <= t < self.codec.vocab_size), None)
            if bad is not None:
                raise invalid(f"token id {bad} outside the vocabulary", "prompt")
        if not ids:
            raise invalid("the prompt renders to no tokens", req_field(req))
        return ids, self.codec.decode(ids)

    # -- answering ----------------------------------------------------------------------------

    async def run(self, p: Prepared, out: Outcome) -> AsyncGenerator[Delivery, None]:
        """The answer, as :class:`Delivery` pieces (see the module docstring); ``out`` holds
        how it went. Settles the key's quota and records the attempts however it ends."""
        assert self.session is not None, "the app's cleanup context opens the session"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gc.request_timeout
        t0 = time.perf_counter()
        seed = p.req.seed if p.req.seed is not None else secrets.randbits(31)
        decoder = self.codec.decoder()
        delivered: list[int] = []
        self.metrics.in_flight.inc()
        try:
            for n, target in enumerate(self.routes.order()):
                if n:
                    self.metrics.failovers.inc()
                if loop.time() >= deadline:
                    break
                ask = Ask(
                    p.prompt_ids + tuple(delivered),
                    p.req.max_tokens - len(delivered),
                    p.req.temperature,
                    p.req.top_p,
                    seed,
                    self.cfg.validator.top_k,
                    p.prompt_text,
                )
                held: list[Tokens] = []
                signed: Signed | None = None
                t_attempt = time.perf_counter()
                got = 0
                try:
                    async with contextlib.aclosing(
                        upstream.stream(
                            self.session,
                            self.signer,
                            self.hotkey,
                            target,
                            ask,
                            self.limits,
                            deadline,
                        )
                    ) as events:
                        async for ev in events:
                            if isinstance(ev, Signed):
                                signed = ev
                                continue
                            got += len(ev.ids)
                            # Held from the finishing chunk on (anything after it too: order
                            # is kept whatever a miner sends).
                            if p.req.stream and ev.finish_reason is None and not held:
                                delivered += ev.ids
                                text = decoder.push(ev.ids)
                                self._first_token(out, t0)
                                if target.uid not in out.miners:
                                    out.miners.append(target.uid)
                                yield Delivery(text, len(ev.ids), target.uid)
                            else:
                                held.append(ev)
                    if signed is None or not held or held[-1].finish_reason is None:
                        raise MinerFailure("format_schema", "the answer has no final chunk")
                except MinerFailure as f:
                    self._attempt(p, out, target, f.cause, got, t_attempt, None)
                    self.routes.failed(target.uid)
                    log.info("uid %d failed (%s); trying the next miner", target.uid, f)
                    continue
                final = [t for ev in held for t in ev.ids]
                delivered += final
                self._first_token(out, t0)
                if target.uid not in out.miners:
                    out.miners.append(target.uid)
                organic = self._maybe_record(p, target, signed)
                self._attempt(p, out, target, "ok", got, t_attempt, signed.ttft_s, organic)
                out.completion_tokens = len(delivered)
                yield Delivery(decoder.push(final), len(final), target.uid, held[-1].finish_reason)
                return
            out.completion_tokens = len(delivered)
            if loop.time() >= deadline:
                raise GatewayError(504, "timeout", f"no answer within {self.gc.request_timeout:g}s")
            raise GatewayError(
                502,
                "miners_failed",
                f"no miner could complete the answer ({len(out.attempts)} tried)",
                retry_after=1.0,
            )
        finally:
            out.completion_tokens = len(delivered)
            self.metrics.in_flight.dec()
            self._settle(p, out)

    def _first_token(self, out: Outcome, t0: float) -> None:
        if out.ttft_s is None:
            out.ttft_s = time.perf_counter() - t0
            self.metrics.ttft.observe(out.ttft_s)

    def _attempt(
        self,
        p: Prepared,
        out: Outcome,
        target: Candidate,
        outcome: str,
        tokens: int,
        t0: float,
        ttft: float | None,
        organic: bool = False,
    ) -> None:
        latency = time.perf_counter() - t0
        uid = str(target.uid)
        self.metrics.attempts.labels(uid, outcome).inc()
        if outcome == "ok":
            self.metrics.miner_tokens.labels(uid).inc(tokens)
            self.metrics.miner_latency.labels(uid).observe(latency)
        out.attempts.append(
            Attempt(
                p.rid,
                p.grant.key.id,
                target.uid,
                target.hotkey,
                outcome,
                len(p.prompt_ids),
                tokens,
                ttft,
                latency,
                organic,
            )
        )

    def _maybe_record(self, p: Prepared, target: Candidate, signed: Signed) -> bool:
        if self.organic_draw.random() >= self.gc.organic_fraction:
            return False
        try:
            self.inbox.add(
                OrganicRecord(
                    p.rid,
                    target.uid,
                    target.hotkey,
                    protocol.COMPLETIONS_PATH,
                    signed.request_body,
                    signed.request_nonce,
                    signed.raw,
                    signed.ttft_s,
                    signed.total_s,
                )
            )
        except StateError as e:  # the user's answer is fine; only its verification is lost
            log.warning("organic answer of uid %d not recorded: %s", target.uid, e)
            return False
        self.metrics.organic.inc()
        return True

    def _settle(self, p: Prepared, out: Outcome) -> None:
        """Charge the key for what it got: nothing when no token reached the user."""
        used = len(p.prompt_ids) + out.completion_tokens if out.completion_tokens else 0
        if used:
            self.metrics.tokens.labels("prompt").inc(len(p.prompt_ids))
            self.metrics.tokens.labels("completion").inc(out.completion_tokens)
        try:
            self.access.settle(p.grant, used)
            self.keys.record(out.attempts)
        except StateError as e:
            log.error("usage of request %s not recorded: %s", p.rid, e)


def req_field(req: wire.UserRequest) -> str:
    return "messages" if req.kind == "chat" else "prompt"
