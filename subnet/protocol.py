"""The miner's wire protocol, in one place: request parsing, response and SSE shapes, errors.

OpenAI-Completions-compatible so stock clients work; token identity is exact (``token_id:N``
strings, plus the raw arrays under the ``"subnet"`` extension). Shared by the miner (parse
requests, build responses) and the validator (build requests, read responses).

Request (``POST /v1/completions``, JSON object)::

    prompt       list[int] | str | [list[int]] | [str]   one prompt (n=1); text is tokenized
    max_tokens   int, 1..limit (default 16)
    temperature  number, 0 or 0.01..2 (default 1; 0 = greedy)
    top_p        number, 1e-6..1 (default 1)
    seed         int >= 0 | null
    logprobs     int, 0..limit | null   raw top-k reported per generated position
    stream       bool (default false)   SSE, ``data: <json>\\n\\n`` ... ``data: [DONE]\\n\\n``
    n            1 only
    subnet       {"task_id": str | null, "raw": bool = true, "ignore_eos": bool = false}

OpenAI fields we do not implement are accepted only at their neutral value (``echo=false``,
``stop=null``, ``best_of`` 1, penalties 0, ...); any other unknown field is ignored and reported
in ``CompletionRequest.ignored`` so the server can log it.

Response: OpenAI ``text_completion`` plus ``"subnet": {"version", "task_id", "identity",
"token_ids", "top_k": {"ids": [[int]], "logprobs": [[float]]}}`` (``top_k`` when ``raw``).
Every logprob on the wire is the model's raw one (temperature 1, no filtering), finite: -inf is
written as :data:`LOGPROB_FLOOR`. Errors: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from subnet.engine.types import MIN_TEMPERATURE, MIN_TOP_P, Completion, SamplingParams
from subnet.errors import ProtocolError

VERSION = 1
COMPLETIONS_PATH = "/v1/completions"
HEALTH_PATH = "/v1/health"
METRICS_PATH = "/metrics"
# The committed model's files, served to validators (btauth/1): the signed manifest (path, size,
# sha256 of every file the digest covers) and each file by its sha256, with HTTP range requests.
MODEL_MANIFEST_PATH = "/v1/model/manifest"
MODEL_FILE_PATH = "/v1/model/files/{sha256}"
TOKEN_PREFIX = "token_id:"
LOGPROB_FLOOR = -1.0e4  # stands in for -inf (JSON has no infinities)
MAX_TASK_ID_CHARS = 128
MAX_SEED = 2**63 - 1
SSE_DONE = b"data: [DONE]\n\n"
SIGNATURE_OBJECT = "subnet.signature"


def _zero(v: Any) -> bool:
    return v is None or (not isinstance(v, bool) and isinstance(v, int | float) and v == 0)


# OpenAI fields accepted only at their neutral value (anything else would change the answer).
_NEUTRAL: Mapping[str, Callable[[Any], bool]] = {
    "echo": lambda v: v is None or v is False,
    "best_of": lambda v: v is None or (not _not_int(v) and v == 1),
    "stop": lambda v: v is None or v == [],
    "suffix": lambda v: v is None or v == "",
    "presence_penalty": _zero,
    "frequency_penalty": _zero,
    "logit_bias": lambda v: v is None or v == {},
}
_KNOWN = frozenset(
    {
        "model",
        "prompt",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "logprobs",
        "stream",
        "n",
        "subnet",
        "user",
        "stream_options",
        *_NEUTRAL,
    }
)


class RequestError(ProtocolError):
    """A request that breaks the protocol; ``param`` names the offending field (400)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class RequestLimits:
    """Server-side caps a request is validated against (from config and the engine)."""

    max_tokens: int
    max_logprobs: int
    max_model_len: int  # prompt + completion tokens
    vocab_size: int


@dataclass(frozen=True)
class CompletionRequest:
    """A validated completions request: the engine input plus what the response echoes."""

    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    stream: bool
    model: str
    task_id: str | None
    raw: bool
    ignored: tuple[str, ...] = field(default=())


def parse_request(
    body: bytes,
    limits: RequestLimits,
    tokenize: Callable[[str], list[int]] | None = None,
) -> CompletionRequest:
    """Raw body -> validated request with its ``SamplingParams`` (the one conversion point).

    Raises :class:`RequestError` naming the field. Defaults: the request's value, else
    OpenAI's default (max_tokens 16, temperature 1, top_p 1, no logprobs).
    """
    return request_from_fields(decode_body(body), limits, tokenize)


def decode_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or :class:`RequestError` (``malformed_json``)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise RequestError(f"body is not valid JSON: {_short(e)}", None, "malformed_json") from None
    if not isinstance(data, dict):
        raise RequestError("body must be a JSON object", None, "malformed_json")
    return data


def request_from_fields(
    data: Mapping[str, Any],
    limits: RequestLimits,
    tokenize: Callable[[str], list[int]] | None = None,
) -> CompletionRequest:
    """:func:`parse_request` on a decoded body (the chat endpoint maps its fields onto these)."""
    for name, neutral in _NEUTRAL.items():
        if name in data and not neutral(data[name]):
            raise RequestError(f"{name} is not supported by this server", name, "unsupported")

    model = data.get("model", "")
    if not isinstance(model, str):
        raise RequestError("model must be a string", "model")
    n = data.get("n", 1)
    if n is not None and (_not_int(n) or n != 1):
        raise RequestError("only n=1 is supported", "n", "unsupported")

    max_tokens = _int(data, "max_tokens", 16, 1, limits.max_tokens)
    temperature = _float(data, "temperature", 1.0, 0.0, 2.0)
    if 0.0 < temperature < MIN_TEMPERATURE:
        raise RequestError(
            f"temperature must be 0 (greedy) or between {MIN_TEMPERATURE} and 2", "temperature"
        )
    top_p = _float(data, "top_p", 1.0, 0.0, 1.0)
    if top_p < MIN_TOP_P:
        raise RequestError(f"top_p must be between {MIN_TOP_P:g} and 1", "top_p")
    seed = data.get("seed")
    if seed is not None:
        seed = _int(data, "seed", 0, 0, MAX_SEED)
    k = _int(data, "logprobs", 0, 0, limits.max_logprobs)
    stream = data.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise RequestError("stream must be a boolean", "stream")

    ext = data.get("subnet")
    ext = {} if ext is None else ext
    if not isinstance(ext, dict):
        raise RequestError("subnet must be an object", "subnet")
    task_id = ext.get("task_id")
    if task_id is not None and (
        not isinstance(task_id, str) or len(task_id) > MAX_TASK_ID_CHARS or not _utf8(task_id)
    ):
        raise RequestError(f"must be a string of <= {MAX_TASK_ID_CHARS} chars", "subnet.task_id")
    raw = ext.get("raw", True)
    ignore_eos = ext.get("ignore_eos", False)
    for key, value in (("raw", raw), ("ignore_eos", ignore_eos)):
        if not isinstance(value, bool):
            raise RequestError("must be a boolean", f"subnet.{key}")

    prompt = _prompt_ids(data.get("prompt"), limits, tokenize)
    if len(prompt) + max_tokens > limits.max_model_len:
        raise RequestError(
            f"prompt ({len(prompt)}) plus max_tokens exceed the model length "
            f"{limits.max_model_len}",
            "max_tokens",
        )
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        top_logprobs=k,
        ignore_eos=ignore_eos,
    )
    ignored = tuple(sorted(key for key in data if key not in _KNOWN))
    return CompletionRequest(
        prompt_ids=tuple(prompt),
        sampling=sampling,
        stream=bool(stream),
        model=model,
        task_id=task_id,
        raw=raw,
        ignored=ignored,
    )


def _prompt_ids(
    prompt: Any, limits: RequestLimits, tokenize: Callable[[str], list[int]] | None
) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list | str):
        prompt = prompt[0]  # OpenAI's batch form with one prompt
    if isinstance(prompt, str):
        if tokenize is None:
            raise RequestError("text prompts are not supported here; send token ids", "prompt")
        if not prompt:
            raise RequestError("prompt is empty", "prompt")
        if not _utf8(prompt):  # JSON allows "\\ud800"; no tokenizer can take it
            raise RequestError("prompt is not valid Unicode (a lone surrogate)", "prompt")
        ids = list(tokenize(prompt))
    elif isinstance(prompt, list):
        if any(isinstance(p, list | str) for p in prompt):
            raise RequestError("only one prompt per request (n=1)", "prompt", "unsupported")
        if any(_not_int(t) for t in prompt):
            raise RequestError("prompt must be a list of integer token ids", "prompt")
        ids = prompt
    else:
        raise RequestError("prompt must be token ids or a string", "prompt")
    if not ids:
        raise RequestError("prompt is empty", "prompt")
    if len(ids) >= limits.max_model_len:
        raise RequestError(
            f"prompt has {len(ids)} tokens; the model takes {limits.max_model_len} in all",
            "prompt",
        )
    bad = next((t for t in ids if not 0 <= t < limits.vocab_size), None)
    if bad is not None:
        raise RequestError(f"token id {bad} outside the vocabulary", "prompt")
    return ids


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _int(data: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if _not_int(value):
        raise RequestError(f"{name} must be an integer", name)
    if not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo} and {hi}", name)
    return int(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _float(data: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise RequestError(f"{name} must be a finite number", name)
    if not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo} and {hi}", name)
    return float(value)


def _short(e: Exception) -> str:
    return str(e)[:120]


# -- responses --------------------------------------------------------------------------


def render_token(token_id: int) -> str:
    return f"{TOKEN_PREFIX}{token_id}"


def parse_token(text: str) -> int:
    """``token_id:N`` -> N; anything else is a ProtocolError."""
    if not text.startswith(TOKEN_PREFIX) or not text[len(TOKEN_PREFIX) :].isdigit():
        raise ProtocolError(f"not a token_id:N string: {text[:40]!r}")
    return int(text[len(TOKEN_PREFIX) :])


def wire_logprob(x: float) -> float:
    return float(x) if math.isfinite(x) else LOGPROB_FLOOR


@dataclass(frozen=True)
class Piece:
    """Positions ``start..start+len`` of one completion, with their decoded text."""

    completion: Completion
    start: int
    stop: int
    text: str
    text_offsets: tuple[int, ...]  # per position: chars of completion text before its token


def choice(
    piece: Piece, k: int, raw: bool, finish_reason: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAI choice and the subnet extension fields for one piece of a completion."""
    c, sl = piece.completion, slice(piece.start, piece.stop)
    ids = [int(t) for t in c.token_ids[sl]]
    ext: dict[str, Any] = {"token_ids": ids}
    logprobs = None
    if k > 0:
        top_ids = c.top_ids[sl, :k].tolist()
        top_lp = [[wire_logprob(x) for x in row] for row in c.top_logprobs[sl, :k].tolist()]
        logprobs = {
            "tokens": [render_token(t) for t in ids],
            "token_logprobs": [wire_logprob(x) for x in c.sampled_logprobs[sl].tolist()],
            "top_logprobs": [
                {render_token(t): lp for t, lp in zip(r_ids, r_lp, strict=True)}
                for r_ids, r_lp in zip(top_ids, top_lp, strict=True)
            ],
            "text_offset": list(piece.text_offsets),
        }
        if raw:
            ext["top_k"] = {"ids": top_ids, "logprobs": top_lp}
    body = {"index": 0, "text": piece.text, "logprobs": logprobs, "finish_reason": finish_reason}
    return body, ext


def completion_body(
    *,
    rid: str,
    created: int,
    model: str,
    request: CompletionRequest,
    identity: str,
    piece: Piece,
) -> dict[str, Any]:
    """The whole non-streamed response."""
    c = piece.completion
    ch, ext = choice(piece, request.sampling.top_logprobs, request.raw, c.finish_reason)
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [ch],
        "usage": usage(len(request.prompt_ids), len(c.token_ids)),
        "subnet": {"version": VERSION, "task_id": request.task_id, "identity": identity, **ext},
    }


def stream_chunk(
    *,
    rid: str,
    created: int,
    model: str,
    request: CompletionRequest,
    piece: Piece,
    finish_reason: str | None,
    identity: str | None,
    completion_tokens: int,
) -> dict[str, Any]:
    """One SSE chunk: the tokens of ``piece``; the first carries identity, the last usage."""
    ch, ext = choice(piece, request.sampling.top_logprobs, request.raw, finish_reason)
    sub: dict[str, Any] = {"version": VERSION, **ext}
    if identity is not None:
        sub.update(task_id=request.task_id, identity=identity)
    out: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [ch],
        "subnet": sub,
    }
    if finish_reason is not None:
        out["usage"] = usage(len(request.prompt_ids), completion_tokens)
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse_event(obj: Mapping[str, Any]) -> bytes:
    """One SSE event: ``data: <compact json>\\n\\n`` (JSON never contains a raw newline)."""
    return b"data: " + dumps(obj) + b"\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


_JSON_DECODER = msgspec.json.Decoder()


def loads(data: bytes) -> Any:
    """A peer's JSON exactly as ``json.loads`` reads it, NaN/Infinity read as NaN (the format
    gate names them), at msgspec's speed (~4x on a response's SSE events, ~50 us of a validator's
    CPU per answer). msgspec accepts a subset of what ``json.loads`` accepts and decodes it to
    the same values (floats bit for bit); whatever it refuses (NaN, 1e400, UTF-16, surrogates,
    malformed JSON) goes to ``json.loads`` for its answer or its error."""
    try:
        return _JSON_DECODER.decode(data)
    except msgspec.DecodeError:
        return json.loads(data, parse_constant=_nan)


def _nan(_name: str) -> float:
    return math.nan


def error_body(message: str, *, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape; ``code`` is our cause code (also the metrics label)."""
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class WireCompletion:
    """A completion as the validator reads it back (token ids and raw top-k, exact)."""

    token_ids: tuple[int, ...]
    top_ids: tuple[tuple[int, ...], ...]
    top_logprobs: tuple[tuple[float, ...], ...]
    finish_reason: str | None
    identity: str | None


def read_completion(body: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> WireCompletion:
    """Reassemble a response (one JSON body, or the list of SSE chunk objects) into arrays.

    Shape checks only; the validator's format gate judges values.
    """
    chunks = [body] if isinstance(body, Mapping) else list(body)
    ids: list[int] = []
    top_ids: list[tuple[int, ...]] = []
    top_lp: list[tuple[float, ...]] = []
    finish: str | None = None
    identity: str | None = None
    try:
        for chunk in chunks:
            if chunk.get("object") == SIGNATURE_OBJECT:
                continue
            sub = chunk["subnet"]
            identity = sub.get("identity", identity)
            ids.extend(wire_int(t) for t in sub["token_ids"])
            topk = sub.get("top_k")
            if topk is not None:
                top_ids.extend(tuple(wire_int(t) for t in row) for row in topk["ids"])
                top_lp.extend(tuple(wire_float(x) for x in row) for row in topk["logprobs"])
            finish = chunk["choices"][0].get("finish_reason") or finish
    except ProtocolError:
        raise
    except Exception as e:  # a peer's shapes: KeyError, TypeError, RecursionError, ...
        raise ProtocolError(
            f"malformed completion response: {type(e).__name__}: {_short(e)}"
        ) from e
    return WireCompletion(tuple(ids), tuple(top_ids), tuple(top_lp), finish, identity)


def wire_int(value: Any) -> int:
    """A token id exactly as JSON wrote it: an integer, never ``1.7``, ``"3"`` or ``true``."""
    if type(value) is not int:
        raise ProtocolError(f"token id {_short_repr(value)} is not a JSON integer")
    return value


def wire_float(value: Any) -> float:
    """A logprob: a JSON number (integer or float, NaN kept for the format gate), never a
    string or a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"logprob {_short_repr(value)} is not a JSON number")
    return float(value)  # OverflowError for an integer beyond float: the caller's ProtocolError


def _short_repr(value: Any) -> str:
    if isinstance(value, list | dict):
        return type(value).__name__  # never repr a (possibly deeply nested) container
    return repr(value)[:40]
