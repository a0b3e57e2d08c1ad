"""Training losses against sparse teacher targets: the validator's divergence, in torch.

The teacher is stored as its top-K ids and logprobs per position. The student is a full
distribution (its logits), so the loss is ``scoring.divergence.forward_kl`` with a student that
"reports" every token: on the support T ∪ {tail},

    p_t = exp(teacher logprob),           p_tail = max(0, 1 - sum_T p_t)
    q_t = softmax(student logits)_t,      q_tail = max(eps, sum_{v not in T} q_v)
    KL  = sum_T p_t log(p_t / max(q_t, eps)) + p_tail log(p_tail / q_tail)

which is what the validator computes when a miner's reported top-k covers the teacher's ids
(``tests/unit/test_losses.py`` checks the two agree on the same arrays). Minimising it is
what the subnet pays for. The tail mass ``q_tail`` is taken as a log-sum-exp over the logits
outside T rather than ``1 - sum_T q_t``, which cancels catastrophically in float32 when the
student is confident.

Masking: every function takes ``mask`` ``[...]`` (1 = a scored completion position, 0 = prompt
or padding) and averages over the scored positions only, so a batch of short and long answers
weighs every answer token equally (the validator's per-answer mean differs by a per-answer
weight, not by what is minimised).
"""

from __future__ import annotations

import math

import torch

EPS = 1e-10  # the same floor as scoring.divergence.EPS
_LOG_EPS = math.log(EPS)
_FILL = -1e30  # "minus infinity" that keeps log-sum-exp and its gradient finite


def sparse_forward_kl(
    logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor
) -> torch.Tensor:
    """Per-position KL(teacher || student) on T ∪ {tail}, in nats, unclamped.

    ``logits`` ``[..., V]``; ``teacher_ids`` (long) and ``teacher_logprobs`` ``[..., K]``;
    returns ``[...]``. Computed in float32 or wider (bf16 logits are upcast). Not clamped at 0,
    unlike the validator's score: a clamp would zero the gradient near a perfect match.
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    t_lp = teacher_logprobs.to(logits.dtype).clamp_max(0.0)
    lse = torch.logsumexp(logits, dim=-1)
    log_q = (logits.gather(-1, teacher_ids) - lse[..., None]).clamp_min(_LOG_EPS)
    outside = logits.scatter(-1, teacher_ids, _FILL)
    log_q_tail = (torch.logsumexp(outside, dim=-1) - lse).clamp_min(_LOG_EPS)

    p = t_lp.exp()
    body = torch.where(p > 0, p * (t_lp - log_q), torch.zeros_like(p)).sum(-1)
    p_tail = (1.0 - p.sum(-1)).clamp_min(0.0)
    safe_tail = torch.where(p_tail > 0, p_tail, torch.ones_like(p_tail))
    tail = torch.where(p_tail > 0, p_tail * (safe_tail.log() - log_q_tail), 0.0)
    return body + tail


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position -log q(target): cross-entropy on the teacher's own tokens, ``[...]``."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0].neg()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is set; 0 (with a graph) if none."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def distill_loss(
    logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    ce_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - ce_weight) * KL + ce_weight * CE`` averaged over scored positions, and the KL.

    ``ce_weight`` in [0, 1] mixes in cross-entropy on the teacher's sampled tokens
    (``targets``): 0 is pure distillation, 1 is plain fine-tuning on teacher text. The second
    value is the detached mean KL, for logging.
    """
    if not 0.0 <= ce_weight <= 1.0:
        raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
    kl = masked_mean(sparse_forward_kl(logits, teacher_ids, teacher_logprobs), mask)
    if ce_weight == 0.0:
        return kl, kl.detach()
    ce = masked_mean(token_cross_entropy(logits, targets), mask)
    return (1.0 - ce_weight) * kl + ce_weight * ce, kl.detach()
