"""The chat side of the miner's wire protocol: ``POST /v1/chat/completions``, ``GET /v1/models``.

For users and tools (the validator sends token ids to ``/v1/completions``). A chat request is
OpenAI's: ``messages`` (turns, rendered with the model's chat template by
:class:`subnet.tokenizer.ModelTokenizer`, the same code the validator renders with), then the
completions fields (``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``top_p``,
``seed``, ``stream``, ``n`` 1, the ``subnet`` extension), with chat's ``logprobs: bool`` and
``top_logprobs: int``. It is mapped onto the completions fields and validated by
:func:`subnet.protocol.request_from_fields`, so both endpoints accept and refuse the same.

Responses are OpenAI's ``chat.completion`` / ``chat.completion.chunk`` with the same
``"subnet"`` extension as completions (exact token ids and raw top-k); logprob entries name
tokens ``token_id:N``. Streams end like completions streams: a signature event, then DONE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from subnet.chat import ChatMessage, PromptError, parse_messages
from subnet.protocol import (
    VERSION,
    CompletionRequest,
    Piece,
    RequestError,
    RequestLimits,
    choice,
    decode_body,
    render_token,
    request_from_fields,
    usage,
    wire_logprob,
)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
_CHAT_ONLY = ("messages", "logprobs", "top_logprobs", "max_completion_tokens")
# Chat fields accepted only at their neutral value (anything else would change the answer).
_NEUTRAL: Mapping[str, Callable[[Any], bool]] = {
    "tools": lambda v: v is None or v == [],
    "functions": lambda v: v is None or v == [],
    "tool_choice": lambda v: v is None or v == "none",
    "function_call": lambda v: v is None or v == "none",
    "response_format": lambda v: v is None or v == {"type": "text"},
    "parallel_tool_calls": lambda v: v is None or isinstance(v, bool),
}


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request: the completion it asks for and what the answer echoes."""

    completion: CompletionRequest
    messages: tuple[ChatMessage, ...]
    logprobs: bool  # report per-token logprobs (top_logprobs of them: completion's k)


def parse_chat_request(
    body: bytes, limits: RequestLimits, render: Callable[[Sequence[ChatMessage]], list[int]]
) -> ChatRequest:
    """Raw body -> :class:`ChatRequest`; ``render`` turns the turns into prompt ids.

    Raises :class:`~subnet.protocol.RequestError` naming the field (the turns' problems and the
    template's refusals under ``messages``).
    """
    data = decode_body(body)
    for name, neutral in _NEUTRAL.items():
        if name in data and not neutral(data[name]):
            raise RequestError(f"{name} is not supported by this server", name, "unsupported")
    try:
        messages = parse_messages(data.get("messages"))
        prompt = render(messages)
    except PromptError as e:
        raise RequestError(str(e), "messages", "invalid_prompt") from None
    logprobs = data.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError("logprobs must be a boolean", "logprobs")
    top = data.get("top_logprobs")
    if top is not None:
        k_max = limits.max_logprobs
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= k_max:
            raise RequestError(f"top_logprobs must be between 0 and {k_max}", "top_logprobs")
        if not logprobs:
            raise RequestError("top_logprobs needs logprobs: true", "top_logprobs")
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    if max_tokens is None:  # OpenAI's default for chat: as long as the model allows
        max_tokens = max(1, min(limits.max_tokens, limits.max_model_len - len(prompt)))
    fields = {k: v for k, v in data.items() if k not in _CHAT_ONLY and k not in _NEUTRAL}
    fields.update(prompt=prompt, logprobs=top or 0, max_tokens=max_tokens)
    return ChatRequest(request_from_fields(fields, limits), messages, bool(logprobs))


def _logprobs(piece: Piece, k: int) -> dict[str, Any]:
    """OpenAI chat logprobs of a piece: each token (``token_id:N``) with its top-k."""
    c, sl = piece.completion, slice(piece.start, piece.stop)
    ids = [int(t) for t in c.token_ids[sl]]
    sampled = c.sampled_logprobs[sl].tolist()
    top_ids, top_lp = c.top_ids[sl, :k].tolist(), c.top_logprobs[sl, :k].tolist()
    return {
        "content": [
            {
                "token": render_token(t),
                "logprob": wire_logprob(lp),
                "bytes": None,
                "top_logprobs": [
                    {"token": render_token(i), "logprob": wire_logprob(x), "bytes": None}
                    for i, x in zip(row_ids, row_lp, strict=True)
                ],
            }
            for t, lp, row_ids, row_lp in zip(ids, sampled, top_ids, top_lp, strict=True)
        ],
        "refusal": None,
    }


def _choice(
    request: ChatRequest, piece: Piece, finish_reason: str | None, key: str, first: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    req = request.completion
    _, ext = choice(piece, req.sampling.top_logprobs, req.raw, finish_reason)
    message: dict[str, Any] = {"content": piece.text}
    if first:
        message = {"role": "assistant", **message}
    body = {
        "index": 0,
        key: message,
        "logprobs": _logprobs(piece, req.sampling.top_logprobs) if request.logprobs else None,
        "finish_reason": finish_reason,
    }
    return body, ext


def chat_body(
    *, rid: str, created: int, model: str, request: ChatRequest, identity: str, piece: Piece
) -> dict[str, Any]:
    """The whole non-streamed chat response."""
    c = piece.completion
    ch, ext = _choice(request, piece, c.finish_reason, "message", first=True)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [ch],
        "usage": usage(len(request.completion.prompt_ids), len(c.token_ids)),
        "subnet": {
            "version": VERSION,
            "task_id": request.completion.task_id,
            "identity": identity,
            **ext,
        },
    }


def chat_chunk(
    *,
    rid: str,
    created: int,
    model: str,
    request: ChatRequest,
    piece: Piece,
    finish_reason: str | None,
    identity: str | None,
    completion_tokens: int,
) -> dict[str, Any]:
    """One SSE chunk; the first (the one with ``identity``) opens the assistant's turn."""
    first = identity is not None
    ch, ext = _choice(request, piece, finish_reason, "delta", first=first)
    sub: dict[str, Any] = {"version": VERSION, **ext}
    if first:
        sub.update(task_id=request.completion.task_id, identity=identity)
    out: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [ch],
        "subnet": sub,
    }
    if finish_reason is not None:
        out["usage"] = usage(len(request.completion.prompt_ids), completion_tokens)
    return out


def models_body(model: str, identity: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one model this miner serves."""
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "subnet-miner",
                "subnet": {"version": VERSION, "identity": identity},
            }
        ],
    }
