"""Chat turns and the Hugging Face chat-template renderer, shared by validator, miner and tools.

A model folder's chat template (``chat_template.jinja``, or ``chat_template`` in
``tokenizer_config.json``) is Jinja2 that turns a list of ``{"role", "content"}`` messages into
the text the model was trained on. This module renders it the way transformers'
``apply_chat_template`` does (sandboxed environment, ``trim_blocks``/``lstrip_blocks``, the
``raise_exception`` and ``tojson`` helpers, the special tokens as variables), so validator and
miner turn the same messages into the same bytes, and both match what the model's authors ship.

One deliberate difference: ``strftime_now`` (templates print "today's date" with it) returns
:data:`RENDER_DATE`, not the wall clock, so a prompt rendered on two machines, or on either side
of midnight, is the same prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from subnet.errors import SubnetError

ROLES = ("system", "user", "assistant", "tool")
#: The date ``strftime_now`` renders (fixed: prompts must not depend on when they are rendered).
RENDER_DATE = datetime(2026, 1, 1, tzinfo=UTC)


class PromptError(SubnetError, ValueError):
    """A prompt that cannot be rendered: malformed turns, special-token text, no template.

    The message says why in one line; callers add where (file and row, request field).
    """


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _content_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise PromptError(f"{where}: only text content parts are supported, got {kind!r}")
            text = part.get("text")
            if not isinstance(text, str):
                raise PromptError(f"{where}: a text part needs a string 'text'")
            parts.append(text)
        return "".join(parts)
    raise PromptError(f"{where}: content must be a string, got {type(content).__name__}")


def parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    """Validated chat turns from JSON (a dataset row's ``messages`` or a request's).

    Each turn is ``{"role": one of ROLES, "content": str | text parts}``; content may be empty
    except in the last turn, which must be the user's (or a tool result): the model answers it.
    Extra keys (``name``, ``tool_call_id``, ...) are refused rather than silently dropped.
    """
    if not isinstance(value, list) or not value:
        raise PromptError("messages must be a non-empty list of {role, content} objects")
    out = []
    for i, turn in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(turn, Mapping):
            raise PromptError(f"{where}: expected an object, got {type(turn).__name__}")
        extra = sorted(set(turn) - {"role", "content"})
        if extra:
            raise PromptError(f"{where}: unsupported keys {extra}; allowed: role, content")
        role = turn.get("role")
        if role not in ROLES:
            raise PromptError(f"{where}: role must be one of {list(ROLES)}, got {role!r}")
        if "content" not in turn:
            raise PromptError(f"{where}: missing content")
        out.append(ChatMessage(role, _content_text(turn["content"], where)))
    if out[-1].role not in ("user", "tool"):
        raise PromptError(
            f"the last turn is the {out[-1].role}'s; it must be the user's (the model answers it)"
        )
    if not out[-1].content.strip():
        raise PromptError("the last turn is empty")
    return tuple(out)


def messages_json(messages: Sequence[ChatMessage]) -> str:
    """Canonical JSON of turns (sorted keys, no spaces): what a chat prompt's digest covers."""
    return json.dumps(
        [m.to_dict() for m in messages], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers marks the assistant's tokens
    with it for training masks): rendered as its body."""

    tags = {"generation"}  # noqa: RUF012  (jinja2 declares it so)

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return str(caller())


class ChatTemplate:
    """A compiled chat template; :meth:`render` gives the text before tokenization."""

    def __init__(self, source: str, special_tokens: Mapping[str, str]) -> None:
        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        def tojson(
            x: Any,
            ensure_ascii: bool = False,
            indent: int | None = None,
            separators: tuple[str, str] | None = None,
            sort_keys: bool = False,
        ) -> str:  # transformers' override: no HTML escaping
            return json.dumps(
                x,
                ensure_ascii=ensure_ascii,
                indent=indent,
                separators=separators,
                sort_keys=sort_keys,
            )

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, _Generation]
        )
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = RENDER_DATE.strftime
        self.source = source
        self._errors: tuple[type[Exception], ...] = (jinja2.exceptions.TemplateError,)
        try:
            self._template = env.from_string(source)
        except jinja2.exceptions.TemplateError as e:
            raise PromptError(f"the chat template does not compile: {e}") from e
        self._variables = dict(special_tokens)

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The conversation as text, ending with the assistant's header when asked."""
        try:
            return self._template.render(
                messages=[m.to_dict() for m in messages],
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self._variables,
            )
        except self._errors as e:
            raise PromptError(f"the chat template refused the messages: {e}") from e
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise PromptError(f"the chat template failed: {type(e).__name__}: {e}") from e
