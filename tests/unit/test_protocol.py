"""Wire protocol: request validation names the field, responses round-trip exactly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subnet import protocol
from subnet.engine.types import Completion, Provenance
from subnet.errors import ProtocolError
from subnet.protocol import RequestError, RequestLimits, parse_request

LIMITS = RequestLimits(max_tokens=64, max_logprobs=5, max_model_len=128, vocab_size=100)
PROV = Provenance("hf", "test", "float32", "cpu", "tiny")


def parse(obj: object, tokenize=None) -> protocol.CompletionRequest:
    return parse_request(json.dumps(obj).encode(), LIMITS, tokenize)


def test_valid_request_becomes_sampling_params() -> None:
    req = parse(
        {
            "model": "m",
            "prompt": [1, 2, 3],
            "max_tokens": 8,
            "temperature": 0,
            "top_p": 0.9,
            "seed": 7,
            "logprobs": 5,
            "stream": True,
            "subnet": {"task_id": "t-1", "ignore_eos": True, "raw": False},
        }
    )
    assert req.prompt_ids == (1, 2, 3)
    s = req.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.seed, s.top_logprobs, s.ignore_eos) == (
        8,
        0.0,
        0.9,
        7,
        5,
        True,
    )
    assert req.stream and req.task_id == "t-1" and not req.raw


def test_defaults_follow_openai() -> None:
    req = parse({"prompt": [[5]]})  # batch form with one prompt
    assert req.prompt_ids == (5,)
    assert (req.sampling.max_tokens, req.sampling.temperature, req.sampling.top_p) == (16, 1, 1)
    assert req.sampling.top_logprobs == 0 and req.raw and not req.stream


def test_text_prompt_is_tokenized_only_when_a_tokenizer_exists() -> None:
    req = parse({"prompt": "ab"}, tokenize=lambda s: [ord(c) - 90 for c in s])
    assert req.prompt_ids == (7, 8)
    with pytest.raises(RequestError) as e:
        parse({"prompt": "ab"})
    assert e.value.param == "prompt"


def test_unknown_fields_are_ignored_and_reported() -> None:
    req = parse({"prompt": [1], "foo": 1, "echo": False, "stop": None, "user": "x"})
    assert req.ignored == ("foo",)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": 64, "prompt": list(range(70))}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": 1e-300}, "temperature"),  # overflows sampling (issue 17)
        ({"temperature": 4.9e-324}, "temperature"),
        ({"temperature": 0.009}, "temperature"),
        ({"top_p": 1e-300}, "top_p"),
        ({"top_p": 4.9e-324}, "top_p"),
        ({"subnet": {"task_id": "\ud800"}}, "subnet.task_id"),
        ({"seed": -1}, "seed"),
        ({"logprobs": 6}, "logprobs"),
        ({"logprobs": "5"}, "logprobs"),
        ({"stream": "yes"}, "stream"),
        ({"n": 2}, "n"),
        ({"echo": True}, "echo"),
        ({"stop": ["\n"]}, "stop"),
        ({"best_of": 3}, "best_of"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"model": 5}, "model"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, 100]}, "prompt"),
        ({"prompt": [1, -1]}, "prompt"),
        ({"prompt": [1, True]}, "prompt"),
        ({"prompt": [[1], [2]]}, "prompt"),
        ({"prompt": list(range(1, 99)) * 2}, "prompt"),
        ({"prompt": {"a": 1}}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"subnet": []}, "subnet"),
        ({"subnet": {"task_id": 5}}, "subnet.task_id"),
        ({"subnet": {"task_id": "x" * 129}}, "subnet.task_id"),
        ({"subnet": {"raw": "yes"}}, "subnet.raw"),
        ({"subnet": {"ignore_eos": 1}}, "subnet.ignore_eos"),
    ],
)
def test_bad_fields_are_named(patch: dict, param: str) -> None:
    with pytest.raises(RequestError) as e:
        parse({"prompt": [1, 2], **patch})
    assert e.value.param == param


@pytest.mark.parametrize("prompt", ["\ud800", ["a\udfffb"]])
def test_a_lone_surrogate_never_reaches_the_tokenizer(prompt: object) -> None:
    """JSON may escape a lone surrogate; a real tokenizer raises TypeError on it (a 500)."""
    with pytest.raises(RequestError) as e:
        parse({"prompt": prompt}, tokenize=lambda s: list(s.encode("utf-8")))
    assert e.value.param == "prompt" and "surrogate" in e.value.message


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1]", b"null", b"\xff\xfe", b"[" * 100000, b'{"prompt": [' + b"9" * 5000 + b"]}"],
)
def test_malformed_bodies(body: bytes) -> None:
    """Including an integer too long for Python's int parser (a ValueError, not a decode one)."""
    with pytest.raises(RequestError) as e:
        parse_request(body, LIMITS)
    assert e.value.code == "malformed_json" and e.value.param is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "prompt",
                "max_tokens",
                "temperature",
                "top_p",
                "seed",
                "logprobs",
                "stream",
                "n",
                "subnet",
                "echo",
                "stop",
                "model",
                "x",
            ]
        ),
        json_values,
        max_size=8,
    )
)
def test_any_json_object_parses_or_raises_request_error(obj: dict) -> None:
    try:
        req = parse(obj)
    except RequestError as e:
        assert e.message
    else:
        assert 1 <= req.sampling.max_tokens <= LIMITS.max_tokens
        assert all(0 <= t < LIMITS.vocab_size for t in req.prompt_ids)


def completion(n: int = 3, k: int = 2) -> Completion:
    lp = np.log(np.full((n, k), 0.5 / k, dtype=np.float32))
    lp[0, 1] = -np.inf
    return Completion(
        token_ids=np.arange(10, 10 + n, dtype=np.int64),
        sampled_logprobs=np.full(n, -0.7, dtype=np.float32),
        top_ids=np.tile(np.arange(k, dtype=np.int64), (n, 1)),
        top_logprobs=lp,
        finish_reason="length",
        provenance=PROV,
    )


def test_completion_body_is_openai_shaped_and_exact() -> None:
    req = parse({"prompt": [1, 2], "logprobs": 2, "subnet": {"task_id": "t"}})
    c = completion()
    piece = protocol.Piece(c, 0, 3, "abc", (0, 1, 2))
    body = protocol.completion_body(
        rid="cmpl-1", created=1, model="m", request=req, identity="v1:x", piece=piece
    )
    wire = json.loads(protocol.dumps(body))  # strict JSON: no Infinity
    ch = wire["choices"][0]
    assert ch["text"] == "abc" and ch["finish_reason"] == "length"
    assert ch["logprobs"]["tokens"] == ["token_id:10", "token_id:11", "token_id:12"]
    assert ch["logprobs"]["top_logprobs"][0]["token_id:1"] == protocol.LOGPROB_FLOOR
    assert wire["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    back = protocol.read_completion(wire)
    assert back.token_ids == (10, 11, 12) and back.identity == "v1:x"
    assert back.top_ids == ((0, 1),) * 3
    assert back.top_logprobs[1] == tuple(float(x) for x in c.top_logprobs[1])


def test_stream_chunks_reassemble_to_the_same_completion() -> None:
    req = parse({"prompt": [1], "logprobs": 2, "stream": True})
    c = completion(4)
    chunks = []
    for i in range(4):
        piece = protocol.Piece(c, i, i + 1, "x", (i,))
        obj = protocol.stream_chunk(
            rid="r",
            created=1,
            model="m",
            request=req,
            piece=piece,
            finish_reason="length" if i == 3 else None,
            identity="v1:y" if i == 0 else None,
            completion_tokens=i + 1,
        )
        event = protocol.sse_event(obj)
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        assert event.count(b"\n") == 2
        chunks.append(json.loads(event[6:]))
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    back = protocol.read_completion(chunks)
    assert back.token_ids == (10, 11, 12, 13) and back.finish_reason == "length"
    assert back.identity == "v1:y" and len(back.top_ids) == 4


def test_read_completion_rejects_garbage() -> None:
    with pytest.raises(ProtocolError):
        protocol.read_completion({"choices": []})
    with pytest.raises(ProtocolError):
        protocol.read_completion({"subnet": {"token_ids": ["a"]}, "choices": [{}]})


def test_token_rendering_round_trips() -> None:
    assert protocol.parse_token(protocol.render_token(42)) == 42
    for bad in ("42", "token_id:", "token_id:-1", "tok:1"):
        with pytest.raises(ProtocolError):
            protocol.parse_token(bad)


def test_error_body_shape() -> None:
    body = protocol.error_body("bad", status=400, code="invalid_request", param="max_tokens")
    assert body == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "invalid_request",
        }
    }


def test_a_number_too_large_for_a_float_is_a_field_error() -> None:
    with pytest.raises(RequestError) as e:
        parse({"prompt": [1, 2], "temperature": 10**400})
    assert e.value.param == "temperature"


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as decoded JSON: same types, floats bit for bit (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes() or (a != a and b != b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.sampled_from([(",", ":"), (", ", ": ")]), st.booleans())
def test_loads_reads_json_exactly_as_the_standard_library(
    value: object, separators: tuple[str, str], ascii_only: bool
) -> None:
    """The validator's fast decoder gives what ``json.loads`` gives (NaN/Infinity as NaN for the
    format gate), floats bit for bit, whether msgspec or the fallback decodes it."""
    text = json.dumps(value, separators=separators, ensure_ascii=ascii_only)
    expected = json.loads(text, parse_constant=lambda _: float("nan"))
    assert _json_equal(protocol.loads(text.encode()), expected)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',  # duplicate keys: the last wins
        b"[NaN, Infinity, -Infinity, 1e400, -1e400, 5e-324, -0.0]",
        b"18446744073709551616",  # beyond 64 bits
        b'"\\ud800"',  # a lone surrogate escape
        b'"\xed\xa0\x80"',  # a surrogate in the bytes: json.loads decodes with surrogatepass
        '{"a": [1, "é"]}'.encode("utf-16"),  # json.loads detects UTF-16/32
        b'\xef\xbb\xbf{"a":1}',
    ],
)
def test_loads_matches_json_loads_on_edge_cases(data: bytes) -> None:
    expected = json.loads(data, parse_constant=lambda _: float("nan"))
    assert _json_equal(protocol.loads(data), expected)


@pytest.mark.parametrize(
    "data", [b"[1,]", b'{"a":1}x', b'"\xff"', b"01", b".5", b"+1", b"", b"[" * 100_000]
)
def test_loads_refuses_what_json_loads_refuses(data: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        json.loads(data)
    with pytest.raises((ValueError, RecursionError)):
        protocol.loads(data)
