"""Train and evaluate the tiny world's Llama models on task text (CPU, deterministic).

Loss is plain cross-entropy on the answer tokens only (prompt positions are masked): the
prompts are random by construction, so predicting them teaches nothing and costs capacity a
1M-parameter model does not have. Both the teacher and the undistilled student are trained
this way; only the distilled student (``distill.train``) learns from the teacher instead.

Determinism: fixed seeds, a fixed data order, ``torch.use_deterministic_algorithms`` and a
fixed thread count (part of the recipe), so the same torch build gives the same weights on
any machine. The caller sets them for the build only
(:func:`distill.torch_state.deterministic_torch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from distill.tasks import Task, check_answer
from distill.tiny_spec import ModelSpec, TrainSpec
from distill.tokenizer import BOS_ID, EOS_ID, PAD_ID, encode_answer, encode_prompt


def llama_config(spec: ModelSpec, vocab_size: int, max_positions: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        head_dim=spec.hidden // spec.heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        dtype="float32",
    )


def new_model(spec: ModelSpec, vocab_size: int, max_positions: int) -> LlamaForCausalLM:
    """A freshly initialised float32 Llama (from torch's global RNG: seed it first)."""
    return LlamaForCausalLM(llama_config(spec, vocab_size, max_positions))  # type: ignore[no-untyped-call]


def encode_examples(tok: Tokenizer, tasks: Sequence[Task]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids + EOS) per task, the exact split the validator will use."""
    return [(encode_prompt(tok, t.prompt), encode_answer(tok, t.answer or "")) for t in tasks]


def collate(
    examples: Sequence[tuple[list[int], list[int]]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask, and labels (-100 outside the answers)."""
    width = max(len(p) + len(a) for p, a in examples)
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (p, a) in enumerate(examples):
        n = len(p) + len(a)
        ids[i, :n] = torch.tensor(p + a)
        mask[i, :n] = 1
        labels[i, len(p) : n] = torch.tensor(a)
    return ids, mask, labels


def train(
    model: LlamaForCausalLM,
    examples: Sequence[tuple[list[int], list[int]]],
    spec: TrainSpec,
    log: Callable[[str], None] = lambda _: None,
) -> float:
    """AdamW with linear warmup and cosine decay over ``spec.steps`` batches taken in order.

    Returns the mean loss over the last 10 % of steps (a steadier number than the last one).
    """
    if len(examples) < spec.steps * spec.batch:
        raise ValueError(f"need {spec.steps * spec.batch} examples, got {len(examples)}")
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    tail: list[float] = []
    start = time.monotonic()
    for step in range(spec.steps):
        ids, mask, labels = collate(examples[step * spec.batch : (step + 1) * spec.batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step >= spec.steps - max(1, spec.steps // 10):
            tail.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == spec.steps:
            log(
                f"step {step + 1}/{spec.steps} loss {loss.item():.4f} "
                f"({time.monotonic() - start:.0f}s)"
            )
    model.eval()  # type: ignore[no-untyped-call]
    return sum(tail) / len(tail)


@torch.no_grad()
def greedy_answers(
    model: LlamaForCausalLM, tok: Tokenizer, prompts: Sequence[str], max_new_tokens: int = 24
) -> list[str]:
    """Greedy completions (text up to EOS) for prompts, batched with left padding."""
    out: list[str] = []
    for start in range(0, len(prompts), 128):
        encoded = [encode_prompt(tok, p) for p in prompts[start : start + 128]]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[PAD_ID] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        gen = model.generate(  # type: ignore[misc]
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )
        for row in gen[:, width:].tolist():
            answer = row[: row.index(EOS_ID)] if EOS_ID in row else row
            out.append(tok.decode(answer, skip_special_tokens=True))
    return out


def accuracy_by_family(
    model: LlamaForCausalLM, tok: Tokenizer, tasks: Sequence[Task]
) -> dict[str, float]:
    """Exact-answer accuracy per family, plus ``"all"`` over every task."""
    answers = greedy_answers(model, tok, [t.prompt for t in tasks])
    hits: dict[str, list[bool]] = {}
    for t, a in zip(tasks, answers, strict=True):
        ok = check_answer(t, a)
        hits.setdefault(t.family, []).append(ok)
        hits.setdefault("all", []).append(ok)
    return {f: round(sum(h) / len(h), 4) for f, h in sorted(hits.items())}
