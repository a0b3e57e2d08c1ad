"""A copy of a tiny-world model folder with real-model tokenizer rules added.

The tiny world has no chat template and one EOS id; real instruct models have both a template
and several EOS ids. Tests that need them copy a tiny folder and extend its
``tokenizer_config.json`` / ``generation_config.json`` here (the tiny world's recipe stays as
it is). The template uses only tokens the tiny vocabulary has.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

# A ChatML-like template over the tiny vocabulary: BOS once, one line per turn, an assistant
# header as the generation prompt; unknown roles are refused the way real templates do.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('role ' + message['role'] + ' is not supported') }}"
    "{% endif %}"
    "{{ message['role'] + ': ' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
)


def chat_model(
    src: Path,
    dst: Path,
    *,
    template: str | None = TINY_CHAT_TEMPLATE,
    eos_token_ids: Sequence[int] | None = None,
    template_file: bool = False,
) -> Path:
    """``dst``: a copy of the model folder ``src`` with ``template`` as its chat template (in
    ``chat_template.jinja`` when ``template_file``, else in tokenizer_config.json) and, when
    given, ``eos_token_ids`` as generation_config's EOS list."""
    shutil.copytree(src, dst)
    if template is not None:
        if template_file:
            (dst / "chat_template.jinja").write_text(template)
        else:
            config = json.loads((dst / "tokenizer_config.json").read_text())
            config["chat_template"] = template
            (dst / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    if eos_token_ids is not None:
        path = dst / "generation_config.json"
        gen = json.loads(path.read_text()) if path.is_file() else {}
        gen["eos_token_id"] = list(eos_token_ids)
        path.write_text(json.dumps(gen, indent=2))
    return dst


def tiny_tokenizer(dst: Path, extra_texts: Sequence[str] = ()) -> Path:
    """A tokenizer folder like the tiny world's (byte-level BPE, BOS from the post-processor),
    built in about a second from seeded task text: for tests that need no model."""
    from distill.tasks import generate_tasks, render
    from distill.tokenizer import build_tokenizer, save_tokenizer

    texts = [render(t) for t in generate_tasks(0, 300)] + list(extra_texts)
    save_tokenizer(build_tokenizer(texts, 300), dst, 128)
    return dst
