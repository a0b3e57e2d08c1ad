"""A random tiny teacher and its targets, for trainer tests that need no trained world."""

from __future__ import annotations

import asyncio
from pathlib import Path

from distill.targets import TargetsConfig, build_targets
from distill.tasks import generate_tasks, render
from distill.tokenizer import build_tokenizer, save_tokenizer

VOCAB = 320


def make_model(root: Path, seed: int, tokenizer_seed: int = 0, weights: bool = True) -> Path:
    """A random 1-layer Llama in HF format; the tokenizer is trained on seeded task text."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [render(t) for t in generate_tasks(tokenizer_seed, 300)]
    save_tokenizer(build_tokenizer(texts, VOCAB), root, 64)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init, the caller's RNG left as it was
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if weights:
        model.save_pretrained(str(root), safe_serialization=True)
    else:
        config.save_pretrained(str(root))
    return root


def make_targets(teacher: Path, out: Path, n: int = 40, k: int = 8) -> Path:
    cfg = TargetsConfig(k=k, max_tokens=6, shard_size=16, batch=16)
    asyncio.run(
        build_targets(teacher, generate_tasks(1, n), out, cfg, engine_kind="hf", progress=False)
    )
    return out
