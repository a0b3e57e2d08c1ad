"""The trainer's big-vocabulary paths compute what the plain ones do: the LM head only at the
scored columns, and held-out evaluation in chunks under a logits budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distill import train
from distill.shards import Example


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def _examples(k: int) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for prompt_len, answer_len in ((3, 5), (9, 2), (6, 7), (12, 1)):  # ragged on purpose
        tokens = rng.integers(3, 1000, size=prompt_len + answer_len).astype(np.int32)
        lp = np.log(np.sort(rng.dirichlet(np.ones(k), size=answer_len), axis=1)[:, ::-1] * 0.9)
        ids = np.stack([rng.choice(1000, size=k, replace=False) for _ in range(answer_len)])
        out.append(Example(tokens, prompt_len, ids.astype(np.int32), lp.astype(np.float32)))
    return out


def test_scored_logits_equal_the_full_logits_at_the_scored_positions(model) -> None:
    batch = train.collate(_examples(4), 4, torch.device("cpu"))
    with torch.no_grad():
        full = model(input_ids=batch["ids"], attention_mask=batch["mask"]).logits
        kept = train.scored_logits(model, batch, autocast=False)
    want = full[batch["scored"]]
    assert kept.shape == want.shape == (5 + 2 + 7 + 1, 1000)
    assert torch.allclose(kept, want, atol=1e-5, rtol=0)


def test_held_out_kl_is_the_same_in_one_batch_or_in_chunks(model, monkeypatch) -> None:
    examples = _examples(4)
    whole = train.evaluate_kl(model, examples, 4, 1000, torch.device("cpu"), False)
    monkeypatch.setattr(train, "EVAL_LOGITS_BUDGET", 13 * 1000)  # one sequence per chunk
    chunked = train.evaluate_kl(model, examples, 4, 1000, torch.device("cpu"), False)
    assert chunked == pytest.approx(whole, rel=1e-9)
