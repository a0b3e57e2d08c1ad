"""The gateway's user-facing wire: OpenAI chat and text completions, parsed and built here.

Requests are validated field by field; a bad one is a 400 that names the field (``param``), as
OpenAI's API does. Fields that would change the answer and that the subnet does not implement
(``stop``, penalties, ``logit_bias``, ``n`` > 1, ``logprobs``, tools) are refused unless they
carry their neutral value; any other unknown field is ignored and reported (``ignored``) so the
server can log it. Responses follow OpenAI's shapes (``chat.completion``,
``chat.completion.chunk``, ``text_completion``), streamed as SSE ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from neurons.gateway.errors import invalid

Kind = Literal["chat", "completion"]
ROLES = ("system", "developer", "user", "assistant")
MAX_SEED = 2**63 - 1


def _zero(v: Any) -> bool:
    return v is None or (not isinstance(v, bool) and isinstance(v, int | float) and v == 0)


_NEUTRAL: Mapping[str, Callable[[Any], bool]] = {
    "stop": lambda v: v is None or v == [],
    "presence_penalty": _zero,
    "frequency_penalty": _zero,
    "logit_bias": lambda v: v is None or v == {},
    "logprobs": lambda v: v is None or v is False or v == 0,
    "top_logprobs": lambda v: v is None or v == 0,
    "echo": lambda v: v is None or v is False,
    "best_of": lambda v: v is None or v == 1,
    "suffix": lambda v: v is None or v == "",
    "tools": lambda v: v is None or v == [],
    "tool_choice": lambda v: v is None or v == "none",
    "functions": lambda v: v is None or v == [],
    "response_format": lambda v: v is None or v == {"type": "text"},
}
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stream",
        "stream_options",
        "n",
        "user",
        *_NEUTRAL,
    }
)


@dataclass(frozen=True)
class UserRequest:
    """A validated request; ``messages`` (chat) or ``prompt`` (completion) is still to render."""

    kind: Kind
    model: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stream: bool
    include_usage: bool
    messages: tuple[dict[str, str], ...] = ()
    prompt: str | tuple[int, ...] = ""
    ignored: tuple[str, ...] = field(default=())


def parse(kind: Kind, body: bytes, *, max_tokens: int, default_max_tokens: int) -> UserRequest:
    """Raw body -> :class:`UserRequest`; a 400 naming the field for anything wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise invalid("body is not valid JSON", None, "malformed_json") from None
    if not isinstance(data, dict):
        raise invalid("body must be a JSON object", None, "malformed_json")
    for name, neutral in _NEUTRAL.items():
        if name in data and not neutral(data[name]):
            raise invalid(f"{name} is not supported by this gateway", name, "unsupported")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required (GET /v1/models lists it)", "model")
    n = data.get("n")
    if n is not None and (_not_int(n) or n != 1):
        raise invalid("only n=1 is supported", "n", "unsupported")
    limit_name = "max_tokens"
    if kind == "chat" and data.get("max_completion_tokens") is not None:
        limit_name = "max_completion_tokens"
    wanted = _int(data, limit_name, default_max_tokens, 1, max_tokens)
    temperature = _float(data, "temperature", 1.0, 0.0, 2.0)
    top_p = _float(data, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0.0:
        raise invalid("top_p must be in (0, 1]", "top_p")
    seed = None if data.get("seed") is None else _int(data, "seed", 0, 0, MAX_SEED)
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream must be a boolean", "stream")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options must be an object", "stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise invalid("must be a boolean", "stream_options.include_usage")
    ignored = tuple(sorted(k for k in data if k not in _KNOWN))
    common: dict[str, Any] = {
        "kind": kind,
        "model": model,
        "max_tokens": wanted,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "stream": bool(stream),
        "include_usage": include_usage,
        "ignored": ignored,
    }
    if kind == "chat":
        return UserRequest(messages=_messages(data.get("messages")), **common)
    return UserRequest(prompt=_prompt(data.get("prompt")), **common)


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid("each message must be an object", where)
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"role must be one of {', '.join(ROLES)}", f"{where}.role")
        out.append({"role": str(role), "content": _content(m.get("content"), f"{where}.content")})
    return tuple(out)


def _content(value: Any, where: str) -> str:
    """A string, or a list of ``{"type": "text", "text": ...}`` parts (joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise invalid("only text content parts are supported", f"{where}[{i}]")
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid("text must be a string", f"{where}[{i}].text")
            parts.append(text)
        return "".join(parts)
    raise invalid("content must be a string or a list of text parts", where)


def _prompt(value: Any) -> str | tuple[int, ...]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list | str):
        value = value[0]  # the batch form with one prompt
    if isinstance(value, str):
        if not value:
            raise invalid("prompt is empty", "prompt")
        return value
    if isinstance(value, list) and value and not any(_not_int(t) for t in value):
        return tuple(int(t) for t in value)
    if isinstance(value, list) and value and all(isinstance(p, list | str) for p in value):
        raise invalid("only one prompt per request", "prompt", "unsupported")
    raise invalid("prompt must be a string or a list of token ids", "prompt")


def _not_int(v: Any) -> bool:
    return isinstance(v, bool) or not isinstance(v, int)


def _int(data: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = data.get(name)
    if value is None:
        return min(default, hi)
    if _not_int(value):
        raise invalid(f"{name} must be an integer", name)
    if not lo <= value <= hi:
        raise invalid(f"{name} must be between {lo} and {hi}", name)
    return int(value)


def _float(data: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    try:
        ok = ok and math.isfinite(value)
    except OverflowError:
        ok = False
    if not ok:
        raise invalid(f"{name} must be a finite number", name)
    if not lo <= value <= hi:
        raise invalid(f"{name} must be between {lo} and {hi}", name)
    return float(value)


# -- responses --------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response(
    req: UserRequest,
    *,
    rid: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    miners: list[int],
) -> dict[str, Any]:
    """The whole non-streamed answer; ``subnet.miners``: the uids whose tokens it holds."""
    if req.kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
        "subnet": {"miners": miners},
    }


def chunk(
    req: UserRequest,
    *,
    rid: str,
    created: int,
    model: str,
    text: str | None,
    finish_reason: str | None = None,
    first: bool = False,
    miner: int | None = None,
) -> dict[str, Any]:
    """One streamed chunk (``text`` None: a chunk with no content, e.g. the last)."""
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None}
        obj = "text_completion"
    choice["finish_reason"] = finish_reason
    out: dict[str, Any] = {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [choice],
    }
    if miner is not None:
        out["subnet"] = {"miner": miner}
    return out


def usage_chunk(
    req: UserRequest, *, rid: str, created: int, model: str, prompt: int, completion: int
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, only usage."""
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt, completion),
    }
