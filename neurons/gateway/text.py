"""Text <-> token ids for the gateway, with the teacher's tokenizer (the miners' is the same:
the committed tokenizer must be the teacher's).

Miners are asked with token ids (their wire, ``subnet/protocol.py``), and the text users read is
decoded here from the ids the miners sent, never taken from the miner's ``text``: identity is
exact, and an answer continued by another miner after a failover decodes as one text.

Chat: with a ``chat_template`` in ``tokenizer_config.json`` the messages are rendered by it (a
sandboxed Jinja environment, as Hugging Face renders templates) with the generation prompt and
tokenized without adding special tokens (the template writes them); without one (the tiny world
has none) the message contents are joined by newlines and tokenized as the validator tokenizes
its own prompts. When the miners serve ``/v1/chat/completions`` themselves this is the one
place to switch: render there instead, keep the decoding here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neurons.gateway.errors import invalid
from subnet.errors import ConfigError


class _TemplateError(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateError(message)


class TextCodec:
    """The teacher's tokenizer, its limits and (if it has one) its chat template."""

    def __init__(self, model_dir: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(model_dir).expanduser()
        try:
            self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # the library raises a bare Exception on a bad or missing file
            raise ConfigError(f"cannot load the teacher's tokenizer from {folder}: {e}") from e
        config = _json(folder / "config.json")
        tok_config = _json(folder / "tokenizer_config.json")
        self.vocab_size = int(config.get("vocab_size") or self._tok.get_vocab_size())
        positions = int(config.get("max_position_embeddings") or 2048)
        self.max_model_len = positions - 1  # the engines' default (prompt + completion)
        self.bos_token = str(tok_config.get("bos_token") or "")
        self.eos_token = str(tok_config.get("eos_token") or "")
        self._template: Any = None
        template = tok_config.get("chat_template")
        if isinstance(template, str) and template.strip():
            self._template = _compile(template, folder)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def encode(self, text: str) -> list[int]:
        """A text prompt, tokenized as the validator tokenizes its own prompts."""
        return list(self._tok.encode(text).ids)

    def chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Chat messages (validated: role and text content) -> the prompt's token ids."""
        if self._template is None:
            return self.encode("\n".join(m["content"] for m in messages))
        try:
            text = self._template.render(
                messages=list(messages),
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except _TemplateError as e:
            raise invalid(f"the chat template refused these messages: {e}", "messages") from None
        except Exception as e:  # a template bug on this input: the user's request cannot render
            raise invalid(f"messages cannot be rendered: {type(e).__name__}", "messages") from None
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def decoder(self) -> Detokenizer:
        return Detokenizer(self)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable: {e}") from e
    return data if isinstance(data, dict) else {}


def _compile(template: str, folder: Path) -> Any:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template)
    except TemplateError as e:
        raise ConfigError(f"{folder}: the chat template does not compile: {e}") from e


class Detokenizer:
    """Completion text as token ids arrive, never splitting a multi-byte character.

    Decodes a short window (vLLM's prefix/read offsets), so each token costs the same.
    """

    def __init__(self, codec: TextCodec) -> None:
        self.codec = codec
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def push(self, ids: Sequence[int]) -> str:
        parts: list[str] = []
        for t in ids:
            self.ids.append(int(t))
            before = self.codec.decode(self.ids[self.prefix : self.read])
            after = self.codec.decode(self.ids[self.prefix :])
            if len(after) > len(before) and not after.endswith("\ufffd"):
                parts.append(after[len(before) :])
                self.prefix, self.read = self.read, len(self.ids)
        return "".join(parts)
