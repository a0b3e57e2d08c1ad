"""A hostile miner's stream is one failed answer, never an exception that stops a step.

These are the shapes a review found escaping the parser (AttributeError, OverflowError): each
must come back as ``format_schema`` with the error named, so the validator keeps scoring the
other miners.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurons.validator.miner_client import MinerAnswer, parse_answer
from neurons.validator.participant import Miner
from scoring.causes import Cause, Role, counts_toward_ema
from subnet import auth


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def chunk(**choice: object) -> dict[str, object]:
    return {
        "choices": [{"text": "", "index": 0, **choice}],
        "subnet": {"token_ids": [5], "top_k": {"ids": [[5]], "logprobs": [[-0.1]]}},
    }


HOSTILE = {
    "logprobs_not_an_object": sse(chunk(logprobs=[1])),
    "signature_like_event_with_list_choice": sse(
        chunk(logprobs={"token_logprobs": [-0.1]}), {"object": "subnet.signature", "choices": [[1]]}
    ),
    "token_id_infinite": b'data: {"choices":[{"text":""}],"subnet":{"token_ids":[1e999]}}\n\n',
    "logprob_huge_integer": sse(chunk(logprobs={"token_logprobs": [int("9" * 400)]})),
    "token_id_30_digits": sse(
        {
            "choices": [{"text": "", "logprobs": {"token_logprobs": [-1.0]}}],
            "subnet": {"token_ids": [10**30], "top_k": {"ids": [[10**30]], "logprobs": [[-1.0]]}},
        }
    ),
    "not_sse": b"hello",
    "nested_garbage": b'data: {"choices": {"0": null}, "subnet": 7}\n\n',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_stream_is_a_format_failure_not_an_exception(name: str) -> None:
    base = MinerAnswer(Miner(3, "5Hostile"), "task-1", Cause.OK)
    answer = parse_answer(base, HOSTILE[name])
    assert answer.cause == Cause.FORMAT_SCHEMA
    assert answer.detail
    assert answer.who.uid == 3 and answer.task_id == "task-1"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (b'data: {"choices":[{"text":"a"}],"subnet":{"token_ids":[5]}}', True),
        (b'data: {"choices":[{"token_ids":[1]}],"subnet":{"token_ids":[]}}', False),  # filler
        (b'data: {"choices":[{"text":""}],"note":"\\"token_ids\\":[1]"}', False),
        (b'data: {"subnet": {"token_ids": "12"}}', False),
        (b"data: [DONE]", False),
        (b"data: {not json", False),
        (b": comment", False),
    ],
)
def test_time_to_first_token_counts_only_events_that_add_tokens(
    event: bytes, expected: bool
) -> None:
    from neurons.validator.miner_client import carries_tokens

    assert carries_tokens(event) is expected


# -- issue 17: bytes that made the parser raise, and loose integers -------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError on it
DONE = b"data: [DONE]\n\n"


def valid_chunk(token_ids: object = (5,), top_ids: object = ((5,),)) -> dict[str, object]:
    return {
        "choices": [{"text": "", "index": 0, "logprobs": {"token_logprobs": [-0.1]}}],
        "subnet": {
            "token_ids": list(token_ids),  # type: ignore[call-overload]
            "top_k": {"ids": [list(r) for r in top_ids], "logprobs": [[-0.1]]},  # type: ignore[attr-defined]
        },
    }


def test_a_well_formed_stream_parses() -> None:
    answer = parse_answer(MinerAnswer(Miner(3, "5H"), "t", Cause.OK), sse(valid_chunk()))
    assert answer.cause == Cause.OK and answer.token_ids.tolist() == [5]


@pytest.mark.parametrize(
    "bad", [1.7, "3", True, 5.0, None], ids=["float", "string", "bool", "integral_float", "null"]
)
@pytest.mark.parametrize("where", ["token_ids", "top_ids"])
def test_token_ids_must_be_json_integers(bad: object, where: str) -> None:
    event = (
        valid_chunk(token_ids=(bad,)) if where == "token_ids" else valid_chunk(top_ids=((bad,),))
    )
    answer = parse_answer(MinerAnswer(Miner(3, "5H"), "t", Cause.OK), sse(event))
    assert answer.cause == Cause.FORMAT_SCHEMA and "JSON integer" in answer.detail


@pytest.mark.parametrize("bad", ["-0.1", True, [1]])
def test_logprobs_must_be_json_numbers(bad: object) -> None:
    event = valid_chunk()
    event["choices"][0]["logprobs"] = {"token_logprobs": [bad]}  # type: ignore[index]
    answer = parse_answer(MinerAnswer(Miner(3, "5H"), "t", Cause.OK), sse(event))
    assert answer.cause == Cause.FORMAT_SCHEMA


@pytest.mark.parametrize(
    "raw",
    [
        b"data: " + DEEP + b"\n\n" + DONE,  # the event before [DONE] is deeply nested
        b'data: {"object":"subnet.signature","subnet":{"signature":' + DEEP + b"}}\n\n" + DONE,
        b"data: " + b"9" * 10_000 + b"\n\n" + DONE,  # over Python's int digit limit
    ],
    ids=["deep_event", "deep_signature", "huge_int"],
)
def test_split_stream_turns_hostile_bytes_into_a_signature_error(raw: bytes) -> None:
    with pytest.raises(auth.ResponseSignatureError):
        auth.split_stream(raw)


def test_signature_fields_keep_only_strings() -> None:
    """A field nested just under json's limit is dropped, not str()-ed (which would recurse)."""
    nested = b"[" * 900 + b"]" * 900
    raw = (
        b'data: {"object":"subnet.signature","subnet":{"signature":{"version":"1","x":'
        + nested
        + b"}}}\n\n"
        + DONE
    )
    _, fields = auth.split_stream(raw)
    assert fields == {"version": "1"}


def test_parse_answer_survives_deep_nesting_in_a_content_event() -> None:
    answer = parse_answer(MinerAnswer(Miner(3, "5H"), "t", Cause.OK), b"data: " + DEEP + b"\n\n")
    assert answer.cause == Cause.FORMAT_SCHEMA and "Recursion" in answer.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "subnet",
        "choices",
        "token_ids",
        "top_k",
        "ids",
        "logprobs",
        "object",
        "signature",
        "finish_reason",
        "identity",
    ]
)
events = st.one_of(
    st.binary(max_size=200).map(lambda b: b"data: " + b),
    json_values.map(lambda v: b"data: " + json.dumps(v).encode()),
    st.dictionaries(field_names, json_values, max_size=5).map(
        lambda d: b"data: " + json.dumps(d).encode()
    ),
    st.integers(1, 3000).map(lambda n: b"data: " + b'{"a":' * n + b"1" + b"}" * n),
    st.just(b"data: " + json.dumps(valid_chunk()).encode()),
    st.just(b'data: {"object":"subnet.signature","choices":[],"subnet":{"signature":{}}}'),
)
streams = st.lists(events, max_size=6).map(
    lambda evs: b"".join(e + b"\n\n" for e in evs)
) | st.binary(max_size=300)


@given(raw=streams, done=st.booleans())
@settings(max_examples=300, deadline=None)
def test_no_hostile_stream_escapes_the_parser(raw: bytes, done: bool) -> None:
    """Whatever a miner sends, the parser answers with a cause: never an exception, never a
    cause that is the validator's own (``validator_error`` would freeze the miner's EMA)."""
    stream = raw + (DONE if done else b"")
    try:
        prefix, _ = auth.split_stream(stream)
    except auth.ResponseSignatureError:
        prefix = stream
    answer = parse_answer(MinerAnswer(Miner(3, "5H"), "t", Cause.OK), prefix)
    assert answer.cause in (Cause.OK, Cause.FORMAT_SCHEMA)
    assert counts_toward_ema(Role.MINER, answer.cause)
