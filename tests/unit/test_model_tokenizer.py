"""Prompt ids by the tokenizer's own rules, checked against transformers on the same folder.

A tokenizer like the tiny world's (byte-level BPE, BOS from the post-processor) is built in a
second; copies of it take the other shapes real models have (no BOS, a chat template in
``tokenizer_config.json`` or in ``chat_template.jinja``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from distill.tokenizer import BOS_ID, EOS_ID
from subnet.chat import RENDER_DATE, ChatMessage, ChatTemplate, PromptError, parse_messages
from subnet.tokenizer import ModelTokenizer
from tests.harness.chat_model import chat_model, tiny_tokenizer

TEXTS = ["add 12 34 =", "The capital of France is", "  spaces  and\nnewlines ", "ünïcödé ✓"]
CHAT = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "add 1 2 ="},
    {"role": "assistant", "content": " 3"},
    {"role": "user", "content": "add 5 6 ="},
]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "plain", TEXTS)


@pytest.fixture(scope="module")
def no_bos(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen-style: the post-processor adds nothing."""
    out = chat_model(plain, tmp_path_factory.mktemp("tok") / "nobos", template=None)
    spec = json.loads((out / "tokenizer.json").read_text())
    spec["post_processor"] = None
    (out / "tokenizer.json").write_text(json.dumps(spec))
    return out


def hf(folder: Path):
    return AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("text", TEXTS)
def test_plain_prompts_match_transformers_bos_included(plain: Path, text: str) -> None:
    ids = ModelTokenizer(plain).encode_text(text)
    assert ids[0] == BOS_ID
    assert ids == hf(plain)(text)["input_ids"]


@pytest.mark.parametrize("text", TEXTS)
def test_no_bos_when_the_tokenizer_adds_none(no_bos: Path, text: str) -> None:
    ids = ModelTokenizer(no_bos).encode_text(text)
    assert ids[0] != BOS_ID
    assert ids == hf(no_bos)(text)["input_ids"]


@pytest.mark.parametrize("template_file", [False, True])
def test_chat_renders_and_tokenizes_like_apply_chat_template(
    plain: Path, tmp_path: Path, template_file: bool
) -> None:
    folder = chat_model(plain, tmp_path / "chat", template_file=template_file)
    ours, theirs = ModelTokenizer(folder), hf(folder)
    turns = parse_messages(CHAT)
    text = ours.render_chat(turns)
    assert text == theirs.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos>system: You add numbers.\n") and text.endswith("assistant:")
    ids = ours.encode_chat(turns)
    expected = theirs.apply_chat_template(
        CHAT, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    assert ids == list(expected["input_ids"])
    assert ids.count(BOS_ID) == 1  # the template's BOS only, none added on top


def test_with_a_template_every_prompt_is_chat(plain: Path, tmp_path: Path) -> None:
    tok = ModelTokenizer(chat_model(plain, tmp_path / "chat"))
    assert tok.has_chat_template and not ModelTokenizer(plain).has_chat_template
    as_turn = tok.encode_chat((ChatMessage("user", "add 5 6 ="),))
    assert tok.encode_prompt("add 5 6 =") == as_turn
    assert ModelTokenizer(plain).encode_prompt("add 5 6 =") == hf(plain)("add 5 6 =")["input_ids"]


def test_special_token_text_is_refused_not_rendered(plain: Path, tmp_path: Path) -> None:
    tok = ModelTokenizer(plain)
    # what would happen: the raw tokenizer turns the text into the EOS control token
    raw = hf(plain)("stop <eos> here")["input_ids"]
    assert EOS_ID in raw
    with pytest.raises(PromptError, match="special token '<eos>'"):
        tok.encode_text("stop <eos> here")
    with pytest.raises(PromptError, match="special token '<bos>'"):
        tok.encode_prompt("<bos>again")
    chat = ModelTokenizer(chat_model(plain, tmp_path / "chat"))
    bad = (ChatMessage("system", "be brief <pad>"), ChatMessage("user", "hi"))
    with pytest.raises(PromptError, match=r"messages\[0\] contains the special token '<pad>'"):
        chat.encode_chat(bad)
    # look-alikes are ordinary text
    assert chat.encode_prompt("<eos") and tok.encode_text("eos>")


def test_chat_without_a_template_and_refused_roles(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="no chat template"):
        ModelTokenizer(plain).encode_chat((ChatMessage("user", "hi"),))
    chat = ModelTokenizer(chat_model(plain, tmp_path / "chat"))
    with pytest.raises(PromptError, match="refused the messages: role tool is not supported"):
        chat.encode_chat((ChatMessage("tool", "42"),))


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([], "non-empty list"),
        ("hi", "non-empty list"),
        ([["user", "hi"]], r"messages\[0\]: expected an object"),
        ([{"role": "robot", "content": "hi"}], "role must be one of"),
        ([{"role": "user"}], "missing content"),
        ([{"role": "user", "content": 7}], "content must be a string"),
        ([{"role": "user", "content": "hi", "name": "x"}], "unsupported keys"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text content parts"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "last turn"),
        ([{"role": "user", "content": "  "}], "last turn is empty"),
    ],
)
def test_malformed_turns_are_named(messages: object, reason: str) -> None:
    with pytest.raises(PromptError, match=reason):
        parse_messages(messages)


def test_text_parts_are_joined() -> None:
    turns = parse_messages(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    assert turns == (ChatMessage("user", "ab"),)


def test_rendering_does_not_depend_on_the_clock() -> None:
    t = ChatTemplate("{{ strftime_now('%d %b %Y') }}|{{ messages[0].content | tojson }}", {})
    assert t.render((ChatMessage("user", "<é>"),)) == f'{RENDER_DATE:%d %b %Y}|"<é>"'
    # transformers' training-mask tag renders as its body
    marked = ChatTemplate("{% generation %}[{{ messages[0].content }}]{% endgeneration %}!", {})
    assert marked.render((ChatMessage("user", "hi"),)) == "[hi]!"
    with pytest.raises(PromptError, match="does not compile"):
        ChatTemplate("{% for %}", {})


def test_template_variables_are_the_special_tokens(plain: Path, tmp_path: Path) -> None:
    folder = chat_model(plain, tmp_path / "chat", template="{{ eos_token }}{{ bos_token }}x")
    assert ModelTokenizer(folder).render_chat((ChatMessage("user", "hi"),)) == "<eos><bos>x"
