"""Train and evaluate the real world's Llama models: a 129,280-id softmax at a fraction of its cost.

Most of the vocabulary never occurs in the training text (the standard library's docstrings
use ~8k distinct DeepSeek ids). Those tokens keep an all-zero embedding, and the input and
output embeddings are tied, so their logit is exactly 0 at every position whatever the model
computes. The full softmax's normaliser is then the active tokens' log-sum-exp plus one
constant bucket, ``log(n_inactive)``: the cross-entropy over all 129,280 ids is computed
**exactly** from the active rows alone. So the model trains as a compact Llama whose vocabulary
is the active ids (:class:`ActiveVocab`), and is saved as the full one (:func:`expand`), whose
inactive rows are zeros: every engine then computes the real 129k-way softmax.

Loss is on the answer tokens only (the questions are the prompt, as the validator sends them).
Determinism: seeded init and data order, deterministic kernels and a fixed thread count, set by
the caller for the build only (:func:`distill.torch_state.deterministic_torch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from distill import real_chat
from distill.stdlib_corpus import DocItem
from distill.tiny_spec import ModelSpec, TrainSpec


@dataclass(frozen=True)
class Example:
    """One chat-formatted question (the prompt ids) and its answer ids, EOS last."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]


@dataclass(frozen=True)
class ActiveVocab:
    """The ids the training text uses, and the full <-> compact id maps."""

    ids: torch.Tensor  # [Va] full ids, sorted
    remap: torch.Tensor  # [V] full id -> compact id, -1 for inactive ids
    vocab_size: int

    @property
    def log_inactive(self) -> float:
        return math.log(self.vocab_size - len(self.ids))


def encode_items(tokenizer_dir: Path, items: Sequence[DocItem]) -> list[Example]:
    """Prompt ids and answer ids (+ EOS) per item. The prompt is the question as one user turn
    rendered with the world's chat template by :class:`subnet.tokenizer.ModelTokenizer`, exactly
    as validators and miners render ``prompts.jsonl``: the models train on what they are asked."""
    from subnet.chat import ChatMessage
    from subnet.tokenizer import ModelTokenizer

    tok = ModelTokenizer(tokenizer_dir)
    return [
        Example(
            tuple(tok.encode_chat((ChatMessage("user", it.question),))),
            (*tok.encode_plain(it.answer), real_chat.EOS_ID),
        )
        for it in items
    ]


def active_vocab(
    examples: Sequence[Example], vocab_size: int, extra: Sequence[int] = ()
) -> ActiveVocab:
    """The ids ``examples`` use, plus ``extra`` (ids to train as outputs although the text
    never has them: the world's second EOS)."""
    used = {t for e in examples for t in (*e.prompt, *e.answer)} | set(extra)
    ids = torch.tensor(sorted(used), dtype=torch.long)
    if len(ids) >= vocab_size:
        raise ValueError("the training text uses the whole vocabulary: nothing to save")
    remap = torch.full((vocab_size,), -1, dtype=torch.long)
    remap[ids] = torch.arange(len(ids))
    return ActiveVocab(ids, remap, vocab_size)


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
        tie_word_embeddings=True,
        bos_token_id=real_chat.BOS_ID,
        eos_token_id=list(real_chat.EOS_IDS),
        pad_token_id=real_chat.PAD_ID,
        dtype="float32",
    )


def new_compact(spec: ModelSpec, vocab: ActiveVocab, max_positions: int) -> LlamaForCausalLM:
    """A freshly initialised compact model (from torch's global RNG: seed it first)."""
    return LlamaForCausalLM(llama_config(spec, len(vocab.ids), max_positions))  # type: ignore[no-untyped-call]


@torch.no_grad()
def expand(compact: LlamaForCausalLM, vocab: ActiveVocab) -> LlamaForCausalLM:
    """The full-vocabulary model: the same weights, inactive embedding rows all zero."""
    cfg = compact.config.to_dict()
    cfg["vocab_size"] = vocab.vocab_size
    full = LlamaForCausalLM(LlamaConfig(**cfg))  # type: ignore[no-untyped-call]
    state = {k: v for k, v in compact.state_dict().items() if "embed_tokens" not in k}
    state.pop("lm_head.weight", None)  # tied to the embedding
    full.load_state_dict(state, strict=False)
    table = torch.zeros_like(full.model.embed_tokens.weight)
    table[vocab.ids] = compact.model.embed_tokens.weight
    full.model.embed_tokens.weight.copy_(table)
    full.tie_weights()
    full.eval()  # type: ignore[no-untyped-call]
    return full


def collate(
    examples: Sequence[Example], remap: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask, and labels at the positions that predict answer tokens
    (-1 elsewhere). With ``remap`` (training) every id becomes its compact id: the training
    examples use active ids only, by construction of :func:`active_vocab`."""
    width = max(len(e.prompt) + len(e.answer) for e in examples)
    ids = torch.zeros((len(examples), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -1)
    for i, e in enumerate(examples):
        seq = torch.tensor([*e.prompt, *e.answer], dtype=torch.long)
        answer = torch.tensor(e.answer, dtype=torch.long)
        if remap is not None:
            seq, answer = remap[seq].clamp_min(0), remap[answer]
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
        labels[i, len(e.prompt) - 1 : len(seq) - 1] = answer
    return ids, mask, labels


def _answer_logits(
    model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    return model.lm_head(hidden[labels >= 0])  # type: ignore[no-any-return]


def compact_loss(
    model: LlamaForCausalLM, batch: tuple[torch.Tensor, ...], log_inactive: float
) -> torch.Tensor:
    """Mean full-vocabulary cross-entropy of the answer tokens, from the compact rows."""
    ids, mask, labels = batch
    logits = _answer_logits(model, ids, mask, labels)
    bucket = torch.full((len(logits), 1), log_inactive, dtype=logits.dtype)
    lse = torch.logsumexp(torch.cat([logits, bucket], dim=1), dim=1)
    target = logits.gather(1, labels[labels >= 0][:, None])[:, 0]
    return (lse - target).mean()


def train(
    model: LlamaForCausalLM,
    examples: Sequence[Example],
    vocab: ActiveVocab,
    spec: TrainSpec,
    log: Callable[[str], None] = lambda _: None,
) -> float:
    """AdamW, linear warmup and cosine decay; a seeded permutation of ``examples`` per epoch.

    Returns the mean loss over the last 10 % of steps.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    order: list[int] = []
    epoch, tail = 0, []
    model.train()
    start = time.monotonic()
    for step in range(spec.steps):
        while len(order) < spec.batch:
            order += np.random.default_rng([spec.seed, epoch]).permutation(len(examples)).tolist()
            epoch += 1
        chosen, order = order[: spec.batch], order[spec.batch :]
        batch = collate([examples[i] for i in chosen], vocab.remap)
        loss = compact_loss(model, batch, vocab.log_inactive)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step >= spec.steps - max(1, spec.steps // 10):
            tail.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == spec.steps:
            log(
                f"step {step + 1}/{spec.steps} loss {loss.item():.3f} "
                f"({time.monotonic() - start:.0f}s)"
            )
    model.eval()  # type: ignore[no-untyped-call]
    return sum(tail) / len(tail)


@torch.no_grad()
def heldout_loss(model_dir: Path, examples: Sequence[Example], batch: int = 64) -> float:
    """Mean cross-entropy (nats per answer token) over the full vocabulary, of a saved model."""
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch):
        ids, mask, labels = collate(examples[start : start + batch])
        logits = _answer_logits(model, ids, mask, labels)
        logprobs = torch.log_softmax(logits, dim=-1)
        total -= float(logprobs.gather(1, labels[labels >= 0][:, None]).sum())
        count += int((labels >= 0).sum())
    return total / count


@torch.no_grad()
def heldout_kl(
    teacher_dir: Path, student_dir: Path, examples: Sequence[Example], batch: int = 16
) -> float:
    """Mean KL(teacher || student) per answer token over the full vocabulary, both models
    teacher-forced on the held-out docstrings: how closely a student's next-token
    distributions follow the teacher's on questions neither was trained on."""
    models: list[Any] = []
    for path in (teacher_dir, student_dir):
        models.append(AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32))
        models[-1].eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch):
        ids, mask, labels = collate(examples[start : start + batch])
        t_lp, s_lp = (torch.log_softmax(_answer_logits(m, ids, mask, labels), -1) for m in models)
        total += float((t_lp.exp() * (t_lp - s_lp)).sum())
        count += int((labels >= 0).sum())
    return total / count


def unigram_loss(train_set: Sequence[Example], held: Sequence[Example], vocab_size: int) -> float:
    """Held-out cross-entropy of the training answers' unigram distribution (add-one smoothed
    over the whole vocabulary): the baseline a model that ignores the question reaches."""
    counts = np.ones(vocab_size)
    for e in train_set:
        np.add.at(counts, list(e.answer), 1)
    logp = np.log(counts / counts.sum())
    tokens = [t for e in held for t in e.answer]
    return float(-logp[tokens].mean())


@torch.no_grad()
def greedy(
    model_dir: Path, prompts: Sequence[Sequence[int]], max_new_tokens: int
) -> list[list[int]]:
    """Greedy answers (ids, without the EOS) of a saved model, one prompt at a time."""
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    out = []
    for p in prompts:
        ids = torch.tensor([list(p)])
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=list(real_chat.EOS_IDS),
            pad_token_id=real_chat.PAD_ID,
        )[0, ids.shape[1] :].tolist()
        out.append([t for t in gen if t not in real_chat.EOS_IDS and t != real_chat.PAD_ID])
    return out
