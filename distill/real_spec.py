"""What the real world is made of: its recipe (whose hash names the cache folder), its layout
and the files around the models. Plain data, no torch.

The real world is the tiny world's counterpart on a production tokenizer: DeepSeek-V4's
(129,280 ids, :mod:`distill.real_chat`), a chat template, a list of EOS ids, and models trained
on real text (:mod:`distill.stdlib_corpus`). Its layout is the tiny world's
(:class:`distill.tiny_spec.TinyWorld` is the path type of both) plus ``prompts.jsonl``, the
held-out questions as chat ``messages``, for anything that asks the world's models questions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill import real_chat
from distill.stdlib_corpus import PROMPT_HOLDOUT_MOD, corpus_version
from distill.tiny_spec import ModelSpec, TrainSpec

#: Bumped whenever the build code changes what it produces, so stale caches are not reused.
RECIPE_VERSION = "real/v1"
PROMPTS_FILE = "prompts.jsonl"
STUDENT_INIT = "student-init"  # the undistilled student before training: the distilled one's init


_TEACHER = ModelSpec(layers=2, hidden=128, heads=4, intermediate=384)
_STUDENT = ModelSpec(layers=1, hidden=64, heads=2, intermediate=192)
_TEACHER_TRAIN = TrainSpec(steps=300, batch=64, lr=3e-3, warmup=30, seed=0)
_STUDENT_TRAIN = TrainSpec(steps=150, batch=16, lr=1e-2, warmup=15, seed=1)


@dataclass(frozen=True)
class RealRecipe:
    """Everything that determines the world's bytes; its hash names the cache directory."""

    max_positions: int = 512
    # Names hashing to 0 mod this are never trained on; prompts.jsonl holds their questions.
    holdout_mod: int = PROMPT_HOLDOUT_MOD
    # Llama, tied input/output embeddings (the 129,280 x hidden table is most of the weights).
    # head_dim = hidden / heads = 32: vLLM's CPU attention needs >= 32.
    teacher: ModelSpec = _TEACHER
    student: ModelSpec = _STUDENT
    teacher_train: TrainSpec = _TEACHER_TRAIN
    # Both students: the same init, steps and batches; the undistilled one learns the
    # docstrings, the distilled one the teacher's top-K on the teacher's answers.
    student_train: TrainSpec = _STUDENT_TRAIN
    distill_k: int = 16
    max_answer_tokens: int = 24  # the teacher's answers for the targets stop here
    samples: int = 6  # held-out greedy answers recorded in recipe.json
    threads: int = 1

    def digest(self) -> str:
        """Content hash of the recipe, the code, the corpus and the library versions."""
        body = dataclasses.asdict(self)
        body["versions"] = {
            "recipe": RECIPE_VERSION,
            "corpus": corpus_version(),
            "tokenizer": real_chat.tokenizer_version(),
            "chat_template": real_chat.CHAT_TEMPLATE,
            "eos": list(real_chat.EOS_IDS),
            **{
                lib: importlib.metadata.version(lib)
                for lib in ("torch", "transformers", "tokenizers")
            },
        }
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def generation_config() -> dict[str, Any]:
    """``generation_config.json`` of every model of the world (a list of EOS ids)."""
    return {
        "bos_token_id": real_chat.BOS_ID,
        "eos_token_id": list(real_chat.EOS_IDS),
        "pad_token_id": real_chat.PAD_ID,
    }


def write_tokenizer(out: Path, model_max_length: int) -> None:
    """The world's tokenizer files into ``out``: the package's ``tokenizer.json``, a
    ``tokenizer_config.json`` with the chat template, ``special_tokens_map.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_bytes(real_chat.tokenizer_json().read_bytes())
    config = real_chat.tokenizer_config(model_max_length)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False))


def prompt_rows(items: list[Any]) -> list[dict[str, Any]]:
    """``prompts.jsonl`` rows: one user turn per held-out item and its docstring answer."""
    return [
        {"messages": [{"role": "user", "content": it.question}], "answer": it.answer}
        for it in items
    ]
