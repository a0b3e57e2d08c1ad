"""A model folder's tokenizer with its rules: BOS, special tokens and the chat template.

Validator, miner and the distillation tools turn prompts into token ids here and nowhere else,
so the same prompt is the same ids everywhere (the wire carries ids, never text):

* **BOS** as the tokenizer says: ``tokenizer.json``'s post-processor adds it (Llama-style) or
  not (Qwen-style), exactly as transformers (and so vLLM) tokenize the same folder. A chat
  template writes its own BOS (``{{ bos_token }}``), so rendered chats are tokenized without
  adding another, as transformers' ``apply_chat_template`` does.
* **Control tokens are never rendered by accident**: text that contains a control token's
  string is refused with :class:`~subnet.chat.PromptError` instead of turning into that token
  (a prompt that closes its own turn, or ends early). Control tokens are the special ones
  (``<|im_end|>``, ``<eos>``) and the added tokens that act as control although
  ``tokenizer.json`` does not mark them special: every EOS id (``generation_config.json``'s
  list) and every added token the chat template writes literally (DeepSeek's ``<｜User｜>``,
  ``<｜Assistant｜>`` and ``<|EOT|>`` are not "special"). Decoding with
  ``skip_special_tokens`` leaves all of them out, so an answer that stops on any EOS id
  reads the same.
* **Chat**: when the folder has a chat template, :meth:`ModelTokenizer.encode_prompt` renders
  every prompt with it (a plain prompt becomes one user turn) and the generation prompt.

Only ``tokenizers`` (Rust) and Jinja2: importing this never loads transformers or torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from subnet.chat import ChatMessage, ChatTemplate, PromptError
from subnet.errors import EngineError

# Attributes of tokenizer_config.json a chat template sees as variables (transformers' set).
_SPECIAL_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _template_source(folder: Path, config: dict[str, Any]) -> str | None:
    """``chat_template.jinja`` (transformers >= 4.43 saves it so), else the config's field
    (a string, or a list of named templates of which ``default`` is the one)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise EngineError(f"cannot read {jinja}: {e}") from e
    value = config.get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value.strip() else None


def _eos_ids(folder: Path) -> frozenset[int]:
    """The EOS ids the engines stop on: ``generation_config.json``'s ``eos_token_id`` (an int or
    a list), else ``config.json``'s; empty for a tokenizer-only folder."""
    for name in ("generation_config.json", "config.json"):
        value = _read_json(folder / name).get("eos_token_id")
        values = value if isinstance(value, list) else [value]
        ids = {v for v in values if isinstance(v, int) and not isinstance(v, bool)}
        if ids:
            return frozenset(ids)
    return frozenset()


def _written_by(token: str, template: str) -> bool:
    """Whether the chat template writes the added token ``token`` literally (whitespace-only
    added tokens, such as Gemma's runs of newlines, are text, not control)."""
    return bool(token.strip()) and token in template


class ModelTokenizer:
    """Text and chat turns -> prompt ids, and ids -> text, by one model folder's rules."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        path = self.folder / "tokenizer.json"
        if not path.is_file():
            raise EngineError(f"{self.folder} has no tokenizer.json (a fast tokenizer is needed)")
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust library raises a bare Exception on bad files
            raise EngineError(f"cannot load tokenizer {path}: {e}") from e
        config = _read_json(self.folder / "tokenizer_config.json")
        source = _template_source(self.folder, config)
        eos = _eos_ids(self.folder)
        control = {
            i: t.content
            for i, t in self._tok.get_added_tokens_decoder().items()
            if t.content
            and (t.special or i in eos or (source is not None and _written_by(t.content, source)))
        }
        self._control_ids = frozenset(control)
        #: The strings prompts may not contain (see the module docstring).
        self.special_tokens: frozenset[str] = frozenset(control.values())
        longest_first = sorted(self.special_tokens, key=lambda t: (-len(t), t))
        self._special_re = (
            re.compile("|".join(re.escape(t) for t in longest_first)) if longest_first else None
        )
        variables = {a: _token_text(config.get(a)) for a in _SPECIAL_ATTRIBUTES}
        self.chat_template = (
            None
            if source is None
            else ChatTemplate(source, {k: v for k, v in variables.items() if v is not None})
        )

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    def check_text(self, text: str, where: str = "prompt") -> None:
        """PromptError if ``text`` contains a special token's string (one regex pass: real
        tokenizers have hundreds of special tokens)."""
        found = self._special_re.search(text) if self._special_re is not None else None
        if found is not None:
            raise PromptError(f"{where} contains the special token {found.group(0)!r}")

    def encode_text(self, text: str) -> list[int]:
        """A plain prompt (no chat template): its tokens, BOS as the tokenizer says."""
        self.check_text(text)
        return list(self._tok.encode(text, add_special_tokens=True).ids)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The conversation as the model reads it, ending with the assistant's turn header."""
        if self.chat_template is None:
            raise PromptError(f"{self.folder} has no chat template; chat prompts need one")
        for i, m in enumerate(messages):
            self.check_text(m.content, f"messages[{i}]")
        return self.chat_template.render(messages, add_generation_prompt=True)

    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The rendered conversation's ids (its own BOS, if the template writes one)."""
        ids = list(self._tok.encode(self.render_chat(messages), add_special_tokens=False).ids)
        if not ids:
            raise PromptError("the chat template rendered an empty prompt")
        return ids

    def encode_prompt(self, prompt: str | Sequence[ChatMessage]) -> list[int]:
        """What the validator sends: chat turns, or text, rendered with the chat template when
        the model has one (text becomes one user turn), else the text's tokens."""
        if isinstance(prompt, str):
            if self.chat_template is None:
                return self.encode_text(prompt)
            prompt = (ChatMessage("user", prompt),)
        return self.encode_chat(prompt)

    def encode_plain(self, text: str) -> list[int]:
        """Tokens of a piece of text with nothing added (answers, continuations)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; ``skip_special_tokens`` leaves out every control token (EOS ids
        and template tokens that ``tokenizer.json`` does not mark special included)."""
        keep = [int(t) for t in ids]
        if skip_special_tokens:
            keep = [t for t in keep if t not in self._control_ids]
        return str(self._tok.decode(keep, skip_special_tokens=skip_special_tokens))

    def decode_batch(
        self, batch: Sequence[Sequence[int]], skip_special_tokens: bool = True
    ) -> list[str]:
        """:meth:`decode` of many answers at once (the Rust library decodes them in parallel,
        GIL released)."""
        ids = [[int(t) for t in seq] for seq in batch]
        if skip_special_tokens:
            ids = [[t for t in seq if t not in self._control_ids] for seq in ids]
        return [
            str(t) for t in self._tok.decode_batch(ids, skip_special_tokens=skip_special_tokens)
        ]
