"""A hostile miner's stream is one failed answer, never an exception that stops a step.

These are the shapes a review found escaping the parser (AttributeError, OverflowError): each
must come back as ``format_schema`` with the error named, so the validator keeps scoring the
other miners.
"""

from __future__ import annotations

import json

import pytest

from neurons.validator.miner_client import MinerAnswer, parse_answer
from neurons.validator.participant import Miner
from scoring.causes import Cause


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
