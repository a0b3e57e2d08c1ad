"""The gateway's request parsing (every bad field named) and its OpenAI-shaped responses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from neurons.gateway import wire
from neurons.gateway.errors import GatewayError

USER = [{"role": "user", "content": "hi"}]


def _parse(kind: wire.Kind, **fields: Any) -> wire.UserRequest:
    body = json.dumps({"model": "m", **fields}).encode()
    return wire.parse(kind, body, max_tokens=64, default_max_tokens=16)


def _param(kind: wire.Kind, body: bytes | dict[str, Any]) -> tuple[int, str | None, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(GatewayError) as e:
        wire.parse(kind, raw, max_tokens=64, default_max_tokens=16)
    f = e.value.failure
    return f.status, f.param, f.code


def test_a_chat_request_with_defaults_and_text_parts() -> None:
    req = _parse(
        "chat",
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
    )
    assert req.messages == ({"role": "user", "content": "ab"},)
    assert (req.max_tokens, req.temperature, req.top_p, req.seed) == (16, 1.0, 1.0, None)
    assert not req.stream and not req.include_usage
    req = _parse(
        "chat",
        messages=USER,
        max_completion_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
        seed=3,
        user="u",
        metadata={"x": 1},
    )
    assert req.max_tokens == 9 and req.stream and req.include_usage and req.seed == 3
    assert req.ignored == ("metadata",)
    neutral = _parse("chat", messages=USER, stop=None, logprobs=False, presence_penalty=0, tools=[])
    assert neutral.ignored == ()


def test_completion_prompts() -> None:
    assert _parse("completion", prompt="add 1 2 =").prompt == "add 1 2 ="
    assert _parse("completion", prompt=[1, 2, 3]).prompt == (1, 2, 3)
    assert _parse("completion", prompt=[[4, 5]]).prompt == (4, 5)
    assert _parse("completion", prompt=["x"]).prompt == "x"


@pytest.mark.parametrize(
    ("kind", "body", "param", "code"),
    [
        ("chat", b"{nope", None, "malformed_json"),
        ("chat", b"[1]", None, "malformed_json"),
        ("chat", {"messages": USER}, "model", "invalid_request"),
        ("chat", {"model": "m"}, "messages", "invalid_request"),
        ("chat", {"model": "m", "messages": "hi"}, "messages", "invalid_request"),
        ("chat", {"model": "m", "messages": [3]}, "messages[0]", "invalid_request"),
        (
            "chat",
            {"model": "m", "messages": [{"role": "x", "content": "a"}]},
            "messages[0].role",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": [{"role": "user"}]},
            "messages[0].content",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": USER, "max_tokens": 0},
            "max_tokens",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": USER, "max_tokens": 65},
            "max_tokens",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": USER, "max_completion_tokens": "9"},
            "max_completion_tokens",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": USER, "temperature": True},
            "temperature",
            "invalid_request",
        ),
        (
            "chat",
            {"model": "m", "messages": USER, "temperature": 1e999},
            "temperature",
            "invalid_request",
        ),
        ("chat", {"model": "m", "messages": USER, "top_p": 0}, "top_p", "invalid_request"),
        ("chat", {"model": "m", "messages": USER, "seed": -1}, "seed", "invalid_request"),
        ("chat", {"model": "m", "messages": USER, "stream": "yes"}, "stream", "invalid_request"),
        (
            "chat",
            {"model": "m", "messages": USER, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "invalid_request",
        ),
        ("chat", {"model": "m", "messages": USER, "n": 2}, "n", "unsupported"),
        ("chat", {"model": "m", "messages": USER, "stop": "\n"}, "stop", "unsupported"),
        ("chat", {"model": "m", "messages": USER, "logprobs": True}, "logprobs", "unsupported"),
        (
            "chat",
            {"model": "m", "messages": USER, "tools": [{"type": "function"}]},
            "tools",
            "unsupported",
        ),
        ("completion", {"model": "m"}, "prompt", "invalid_request"),
        ("completion", {"model": "m", "prompt": ""}, "prompt", "invalid_request"),
        ("completion", {"model": "m", "prompt": ["a", "b"]}, "prompt", "unsupported"),
        ("completion", {"model": "m", "prompt": [1, "a"]}, "prompt", "invalid_request"),
        ("completion", {"model": "m", "prompt": "x", "echo": True}, "echo", "unsupported"),
    ],
)
def test_bad_fields_are_400_naming_them(
    kind: wire.Kind, body: bytes | dict[str, Any], param: str | None, code: str
) -> None:
    assert _param(kind, body) == (400, param, code)


def test_response_shapes() -> None:
    chat = _parse("chat", messages=USER)
    doc = wire.response(
        chat,
        rid="chatcmpl-1",
        created=1,
        model="m",
        text="hello",
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
        miners=[4],
    )
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert doc["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert doc["subnet"] == {"miners": [4]}
    first = wire.chunk(chat, rid="c", created=1, model="m", text="he", first=True, miner=4)
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "he"}
    last = wire.chunk(chat, rid="c", created=1, model="m", text=None, finish_reason="stop")
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = _parse("completion", prompt="x")
    piece = wire.chunk(text, rid="c", created=1, model="m", text="ab")
    assert piece["object"] == "text_completion" and piece["choices"][0]["text"] == "ab"
    usage = wire.usage_chunk(text, rid="c", created=1, model="m", prompt=2, completion=3)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 5
