"""The miner's completion logic behind the HTTP routes: parse, generate, split into pieces.

HTTP-free on purpose (the routes in ``app.py`` only move bytes), so the benchmark and tests can
drive the same object the server does.

Streaming: when the engine offers ``generate_stream(prompt, params)`` (a
:class:`~subnet.engine.types.StreamingEngine`: ``Completion`` deltas, each holding only the new
positions, ``finish_reason`` "" until the last) pieces are yielded as tokens arrive; otherwise
(engine wrappers that cannot stream) the whole completion is generated first and sent in
:data:`FALLBACK_CHUNK`-token pieces (time to first token then equals the latency). Closing
:meth:`MinerService.stream` early closes the engine's stream, which stops the request there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from subnet import protocol
from subnet.chat import ChatMessage, PromptError
from subnet.engine.types import Completion, Engine, SamplingParams
from subnet.protocol import CompletionRequest, Piece, RequestError, RequestLimits
from subnet.protocol_chat import ChatRequest, parse_chat_request
from subnet.tokenizer import ModelTokenizer

log = logging.getLogger("subnet.miner.serving")
FALLBACK_CHUNK = 1


class TextCodec(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class TokenizersCodec:
    """Text and chat turns <-> ids by the model folder's own rules (BOS, chat template, no
    special-token text): the same :class:`~subnet.tokenizer.ModelTokenizer` the validator
    renders its prompts with, so a chat sent here is the prompt a validator would send."""

    def __init__(self, model_dir: str | Path) -> None:
        self.tokenizer = ModelTokenizer(model_dir)

    def encode(self, text: str) -> list[int]:
        try:
            return self.tokenizer.encode_text(text)
        except PromptError as e:
            raise RequestError(str(e), "prompt", "invalid_prompt") from None

    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return self.tokenizer.encode_chat(messages)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)


def load_codec(model_dir: str | Path) -> TextCodec | None:
    """The model's tokenizer, or None when the folder has none (token-id prompts only)."""
    if not (Path(model_dir) / "tokenizer.json").is_file():
        return None
    return TokenizersCodec(model_dir)


class IncrementalText:
    """Completion text as tokens arrive, never splitting a multi-byte character.

    Decodes a short window (vLLM's prefix/read offsets) so the cost per token stays constant.
    """

    def __init__(self, codec: TextCodec | None) -> None:
        self.codec = codec
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0
        self.length = 0

    def push(self, ids: Sequence[int]) -> tuple[str, tuple[int, ...]]:
        """New text for ``ids`` and each token's text offset."""
        offsets: list[int] = []
        parts: list[str] = []
        for t in ids:
            offsets.append(self.length)
            self.ids.append(int(t))
            if self.codec is None:
                continue
            before = self.codec.decode(self.ids[self.prefix : self.read])
            after = self.codec.decode(self.ids[self.prefix :])
            if len(after) > len(before) and not after.endswith("\ufffd"):
                new = after[len(before) :]
                parts.append(new)
                self.length += len(new)
                self.prefix, self.read = self.read, len(self.ids)
        return "".join(parts), tuple(offsets)


@dataclass(frozen=True)
class Streamed:
    piece: Piece
    finish_reason: str | None  # set on the last piece
    total_tokens: int  # completion tokens so far


class MinerService:
    """One loaded model served under one identity."""

    def __init__(
        self,
        engine: Engine,
        *,
        identity: str,
        model_name: str,
        codec: TextCodec | None,
        max_tokens: int,
        max_logprobs: int,
    ) -> None:
        info = engine.info
        self.engine = engine
        self.identity = identity
        self.model_name = model_name
        self.codec = codec
        self.limits = RequestLimits(
            max_tokens=max_tokens,
            max_logprobs=min(max_logprobs, info.max_top_logprobs),
            max_model_len=info.max_model_len,
            vocab_size=info.vocab_size,
        )

    def parse(self, body: bytes) -> CompletionRequest:
        return protocol.parse_request(
            body, self.limits, self.codec.encode if self.codec is not None else None
        )

    def parse_chat(self, body: bytes) -> ChatRequest:
        if self.codec is None:
            raise RequestError("this model has no tokenizer: send token ids to /v1/completions")
        return parse_chat_request(body, self.limits, self.codec.encode_chat)

    async def complete(self, req: CompletionRequest) -> Piece:
        [c] = await self.engine.generate([list(req.prompt_ids)], req.sampling)
        text, offsets = IncrementalText(self.codec).push(c.token_ids.tolist())
        return Piece(c, 0, len(c.token_ids), text, offsets)

    async def stream(self, req: CompletionRequest) -> AsyncGenerator[Streamed, None]:
        """One piece per engine chunk; close it (``aclosing``) to stop the engine request."""
        detok = IncrementalText(self.codec)
        total = 0
        async with contextlib.aclosing(self._deltas(list(req.prompt_ids), req.sampling)) as ds:
            async for delta in ds:
                n = len(delta.token_ids)
                text, offsets = detok.push(delta.token_ids.tolist())
                total += n
                yield Streamed(
                    Piece(delta, 0, n, text, offsets), delta.finish_reason or None, total
                )

    async def _deltas(
        self, prompt: list[int], params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        stream: Any = getattr(self.engine, "generate_stream", None)
        if stream is not None:
            async with contextlib.aclosing(stream(prompt, params)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        [c] = await self.engine.generate([prompt], params)
        n = len(c.token_ids)
        for start in range(0, max(n, 1), FALLBACK_CHUNK):
            stop = min(n, start + FALLBACK_CHUNK)
            yield Completion(
                token_ids=c.token_ids[start:stop],
                sampled_logprobs=c.sampled_logprobs[start:stop],
                top_ids=c.top_ids[start:stop],
                top_logprobs=c.top_logprobs[start:stop],
                finish_reason=c.finish_reason if stop >= n else "",
                provenance=c.provenance,
            )
            await asyncio.sleep(0)

    @property
    def streams_live(self) -> bool:
        return hasattr(self.engine, "generate_stream")

    def health(self, capacity: dict[str, int]) -> dict[str, Any]:
        info = self.engine.info
        return {
            "status": "ok",
            "version": protocol.VERSION,
            "model": self.model_name,
            "identity": self.identity,
            "engine": info.provenance.to_dict(),
            "limits": {
                "max_tokens": self.limits.max_tokens,
                "max_logprobs": self.limits.max_logprobs,
                "max_model_len": self.limits.max_model_len,
                "vocab_size": self.limits.vocab_size,
            },
            "streaming": "live" if self.streams_live else "after_completion",
            "capacity": capacity,
        }
