"""Chat rendering with the teacher's tokenizer (template or plain), and streamed decoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.tiny import TinyWorld
from neurons.gateway.errors import GatewayError
from neurons.gateway.text import TextCodec
from subnet.errors import ConfigError

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('system first') }}{% endif %}"
    "<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _with_template(world: TinyWorld, tmp: Path, template: str) -> Path:
    folder = tmp / "teacher"
    shutil.copytree(world.teacher, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


def test_without_a_template_chat_is_the_contents_as_a_prompt(tiny: TinyWorld) -> None:
    codec = TextCodec(tiny.teacher)
    assert not codec.has_chat_template
    assert codec.chat([{"role": "user", "content": "add 1 2 ="}]) == codec.encode("add 1 2 =")
    two = codec.chat([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    assert two == codec.encode("x\ny")
    assert codec.max_model_len > 0 and codec.vocab_size > 0


def test_a_chat_template_renders_with_the_generation_prompt(
    tiny: TinyWorld, tmp_path: Path
) -> None:
    codec = TextCodec(_with_template(tiny, tmp_path, TEMPLATE))
    assert codec.has_chat_template
    ids = codec.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    text = codec.decode(ids)
    assert text == "<system>be brief\n<user>hi\n<assistant>"  # special tokens are not shown
    assert ids[0] == codec.encode("")[0]  # the template wrote BOS; encoding added no second one
    with pytest.raises(GatewayError) as e:
        codec.chat(  # the template's own raise_exception: a system turn after the first
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "b"},
                {"role": "user", "content": "c"},
            ]
        )
    assert e.value.failure.param == "messages" and "system first" in e.value.failure.message
    with pytest.raises(GatewayError) as e:  # the shared turn rules: the user speaks last
        codec.chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    assert e.value.failure.param == "messages" and "last turn" in e.value.failure.message
    with pytest.raises(GatewayError) as e:  # special-token text never becomes a control token
        codec.chat([{"role": "user", "content": "hi <eos>"}])
    assert e.value.failure.param == "messages" and "special token" in e.value.failure.message


def test_a_template_that_does_not_compile_stops_the_gateway(
    tiny: TinyWorld, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="chat template does not compile"):
        TextCodec(_with_template(tiny, tmp_path, "{% for %}"))
    with pytest.raises(ConfigError, match="cannot load the teacher's tokenizer"):
        TextCodec(tmp_path / "nowhere")


def test_streamed_decoding_equals_decoding_the_whole(tiny: TinyWorld) -> None:
    codec = TextCodec(tiny.teacher)
    ids = codec.encode("reverse a b c = c b a ünïcødé ✓")
    whole = codec.decode(ids)
    for step in (1, 2, 3):
        d = codec.decoder()
        parts = [d.push(ids[i : i + step]) for i in range(0, len(ids), step)]
        assert "".join(parts) == whole
        assert all("\ufffd" not in p for p in parts)  # never half a character
