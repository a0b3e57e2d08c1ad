"""The tiny world's byte-level BPE tokenizer, built deterministically from task text.

Byte-level so any user prompt encodes (no unknown tokens); digits are split one per token so
arithmetic is learnable by a tiny model; merges are learned from rendered task text, so
``"reverse"`` or ``" a"`` are single tokens. Saved as the three Hugging Face files
(``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``) without importing
transformers, so ``AutoTokenizer.from_pretrained(dir)`` and vLLM load it like any model's.

The post-processor prepends BOS to every encoding (as Llama tokenizers do), so prompt ids made
by transformers, vLLM or :func:`encode_prompt` agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def build_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train BPE on ``texts``; the same texts and size give the same vocabulary and merges."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],  # ids 0, 1, 2 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    if [tok.token_to_id(t) for t in (PAD, BOS, EOS)] != [PAD_ID, BOS_ID, EOS_ID]:
        raise RuntimeError("special token ids moved; the model configs assume 0, 1, 2")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, BOS_ID)]
    )
    return tok


def encode_prompt(tok: Tokenizer, prompt: str) -> list[int]:
    """Prompt ids as the validator sends them: BOS, then the prompt's tokens."""
    return list(tok.encode(prompt).ids)


def encode_answer(tok: Tokenizer, answer: str) -> list[int]:
    """Answer ids a model should generate: the answer's tokens, then EOS."""
    return [*tok.encode(answer, add_special_tokens=False).ids, EOS_ID]


def save_tokenizer(tok: Tokenizer, out: Path, model_max_length: int) -> None:
    """Write the Hugging Face tokenizer files into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "padding_side": "left",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
