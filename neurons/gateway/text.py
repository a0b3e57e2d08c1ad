"""Text <-> token ids for the gateway, with the teacher's tokenizer (the miners' is the same:
the committed tokenizer must be the teacher's).

Miners are asked with token ids (their wire, ``subnet/protocol.py``), and the text users read is
decoded here from the ids the miners sent, never taken from the miner's ``text``: identity is
exact, and an answer continued by another miner after a failover decodes as one text.

Rendering is :class:`subnet.tokenizer.ModelTokenizer`'s, the code the validator renders its
prompts with and the miners their chat endpoint with: BOS as the tokenizer says, the chat
template (when the teacher has one) as ``apply_chat_template`` renders it, special-token text
refused. Without a chat template (the tiny world has none) a chat's contents are joined by
newlines and tokenized as a plain prompt, so template-less teachers still serve chat users.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neurons.gateway.errors import invalid
from subnet.chat import PromptError, parse_messages
from subnet.errors import ConfigError, EngineError
from subnet.tokenizer import ModelTokenizer


class TextCodec:
    """The teacher's tokenizer, its limits and (if it has one) its chat template."""

    def __init__(self, model_dir: str | Path) -> None:
        folder = Path(model_dir).expanduser()
        try:
            self._tok = ModelTokenizer(folder)
        except (EngineError, PromptError) as e:
            raise ConfigError(f"cannot load the teacher's tokenizer from {folder}: {e}") from e
        config = _json(folder / "config.json")
        self.vocab_size = int(config.get("vocab_size") or 0)
        positions = int(config.get("max_position_embeddings") or 2048)
        self.max_model_len = positions - 1  # the engines' default (prompt + completion)

    @property
    def has_chat_template(self) -> bool:
        return self._tok.has_chat_template

    def encode(self, text: str) -> list[int]:
        """A text prompt, tokenized as the validator tokenizes its own prompts."""
        try:
            return self._tok.encode_text(text)
        except PromptError as e:
            raise invalid(str(e), "prompt") from None

    def chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Chat messages (validated: role and text content) -> the prompt's token ids."""
        try:
            turns = parse_messages([dict(m) for m in messages])
            if self._tok.has_chat_template:
                return self._tok.encode_chat(turns)
            return self._tok.encode_text("\n".join(t.content for t in turns))
        except PromptError as e:
            raise invalid(f"messages cannot be rendered: {e}", "messages") from None

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

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
