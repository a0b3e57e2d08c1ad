"""A catalogue of the open model families a miner may serve, as tiny random checkpoints.

Each entry is the family's own transformers config class with its distinguishing traits kept
(grouped-query attention, attention biases, q/k norms, tied or untied embeddings, GeGLU and
embedding scaling, logit soft-capping, sliding windows, fused projections) and everything else
shrunk: 2 layers, hidden 64, head_dim 32 (vLLM's CPU attention needs >= 32), the real world's
129,280-id DeepSeek tokenizer and its list of EOS ids. :func:`build_family` writes one as a
Hugging Face folder, randomly initialised from a seed (nothing trained, nothing downloaded), so
tests can check that both engines load every family and compute the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill import real_chat
from distill.real_spec import generation_config, write_tokenizer

HIDDEN, HEAD_DIM, LAYERS, INTERMEDIATE, POSITIONS = 64, 32, 2, 128, 256
# Wider than the usual 0.02 so a random model's next-token distribution has clear winners:
# greedy paths then rarely hinge on float rounding (near ties are handled by the callers).
INIT_RANGE = 0.2


def _common() -> dict[str, Any]:
    return {
        "vocab_size": real_chat.VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HIDDEN // HEAD_DIM,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": POSITIONS,
        "initializer_range": INIT_RANGE,
        "bos_token_id": real_chat.BOS_ID,
        "eos_token_id": list(real_chat.EOS_IDS),
        "pad_token_id": real_chat.PAD_ID,
        "dtype": "float32",
    }


def _llama3() -> Any:
    from transformers import LlamaConfig

    # Llama 3.1+: grouped-query attention, its rope scaling (theta 500k), untied head.
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500_000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    return LlamaConfig(
        **_common(), num_key_value_heads=1, rope_parameters=rope, tie_word_embeddings=False
    )


def _qwen2() -> Any:
    from transformers import Qwen2Config

    # Qwen2: q/k/v biases, GQA, tied embeddings (as its small sizes are).
    return Qwen2Config(**_common(), num_key_value_heads=1, tie_word_embeddings=True)


def _qwen3() -> Any:
    from transformers import Qwen3Config

    # Qwen3: RMS norms on q and k per head, no biases, GQA.
    return Qwen3Config(**_common(), num_key_value_heads=1, tie_word_embeddings=True)


def _mistral() -> Any:
    from transformers import MistralConfig

    # Mistral: Llama-like with a sliding attention window (wider than the context here).
    return MistralConfig(
        **_common(), num_key_value_heads=1, sliding_window=4096, tie_word_embeddings=False
    )


def _gemma() -> Any:
    from transformers import GemmaConfig

    # Gemma: GeGLU, embeddings scaled by sqrt(hidden), (1 + w) RMS norms, tied embeddings.
    return GemmaConfig(**_common(), num_key_value_heads=1, hidden_act="gelu_pytorch_tanh")


def _gemma2() -> Any:
    from transformers import Gemma2Config

    # Gemma 2: soft-capped attention and final logits, alternating sliding-window layers.
    return Gemma2Config(
        **_common(), num_key_value_heads=1, sliding_window=128, query_pre_attn_scalar=HEAD_DIM
    )


def _gemma3() -> Any:
    from transformers import Gemma3TextConfig

    # Gemma 3 (text): q/k norms, local (sliding) and global layers with their own rope bases.
    return Gemma3TextConfig(
        **_common(), num_key_value_heads=1, sliding_window=128, query_pre_attn_scalar=HEAD_DIM
    )


def _phi3() -> Any:
    from transformers import Phi3Config

    # Phi-3: fused qkv and gate/up projections.
    return Phi3Config(**_common(), num_key_value_heads=2, tie_word_embeddings=False)


FAMILIES: dict[str, Callable[[], Any]] = {
    "llama3": _llama3,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "mistral": _mistral,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "phi3": _phi3,
}


def build_family(name: str, out: Path, seed: int = 0) -> Path:
    """Write family ``name`` (random weights from ``seed``) as an HF model folder ``out``.

    The caller's torch state is left as it was (:func:`distill.torch_state.deterministic_torch`).
    """
    from transformers import AutoModelForCausalLM

    from distill.torch_state import deterministic_torch

    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    config = FAMILIES[name]()
    with deterministic_torch(seed, 1):
        model = AutoModelForCausalLM.from_config(config, dtype="float32")  # type: ignore[no-untyped-call]
    model.eval().save_pretrained(out, safe_serialization=True)
    write_tokenizer(out, POSITIONS)
    (out / "generation_config.json").write_text(json.dumps(generation_config(), indent=2))
    return out
