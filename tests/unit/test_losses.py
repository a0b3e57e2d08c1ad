"""distill.losses equals scoring.divergence on the same arrays, and trains sanely."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.losses import distill_loss, sparse_forward_kl, token_cross_entropy
from scoring.divergence import forward_kl


def _case(seed: int, positions: int, vocab: int, k: int, sharp: float):
    """Student logits [P, V] and the teacher's sorted top-k of a random distribution."""
    rng = np.random.default_rng(seed)
    student = rng.normal(size=(positions, vocab)) * sharp
    teacher = rng.normal(size=(positions, vocab)) * sharp
    t_lp_full = teacher - np.logaddexp.reduce(teacher, axis=1, keepdims=True)
    t_ids = np.argsort(-t_lp_full, axis=1)[:, :k]
    t_lp = np.take_along_axis(t_lp_full, t_ids, axis=1)
    return student, t_ids, t_lp


def _validator_kl(student, t_ids, t_lp):
    """What the validator computes when the student reports its whole distribution."""
    s_lp = student - np.logaddexp.reduce(student, axis=1, keepdims=True)
    s_ids = np.broadcast_to(np.arange(student.shape[1]), student.shape)
    return forward_kl(t_ids, t_lp, s_ids, s_lp, student.shape[1])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    positions=st.integers(1, 12),
    vocab=st.integers(2, 64),
    k_frac=st.floats(0.01, 1.0),
    sharp=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
)
def test_sparse_kl_equals_validator_forward_kl(seed, positions, vocab, k_frac, sharp):
    k = max(1, min(vocab, round(k_frac * vocab)))
    student, t_ids, t_lp = _case(seed, positions, vocab, k, sharp)
    ours = sparse_forward_kl(
        torch.tensor(student, dtype=torch.float64),
        torch.tensor(t_ids),
        torch.tensor(t_lp, dtype=torch.float64),
    ).numpy()
    np.testing.assert_allclose(
        np.maximum(ours, 0.0), _validator_kl(student, t_ids, t_lp), rtol=1e-6, atol=1e-9
    )


def test_float32_close_to_validator_and_zero_on_teacher():
    student, t_ids, t_lp = _case(3, 50, 300, 16, 3.0)
    ours = sparse_forward_kl(
        torch.tensor(student, dtype=torch.float32),
        torch.tensor(t_ids),
        torch.tensor(t_lp, dtype=torch.float32),
    ).numpy()
    np.testing.assert_allclose(ours, _validator_kl(student, t_ids, t_lp), rtol=1e-3, atol=1e-5)
    # A student equal to the teacher's full distribution has KL 0 on any coarse-graining.
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 40)) * 4
    lp = torch.log_softmax(torch.tensor(logits), -1)
    top_lp, top_ids = lp.topk(5, dim=-1)
    assert sparse_forward_kl(torch.tensor(logits), top_ids, top_lp).abs().max() < 1e-12


def test_gradients_finite_when_top_k_is_the_whole_vocabulary():
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(torch.randn(4, 6, dtype=torch.float64) * 3, -1)
    top_lp, top_ids = lp.topk(6, dim=-1)  # tail mass 0 on both sides
    sparse_forward_kl(logits, top_ids, top_lp).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_distill_loss_mixes_kl_and_cross_entropy():
    student, t_ids, t_lp = _case(1, 10, 30, 4, 2.0)
    logits = torch.tensor(student)
    ids, lp = torch.tensor(t_ids), torch.tensor(t_lp)
    targets = ids[:, 0]
    mask = torch.ones(10)
    kl = sparse_forward_kl(logits, ids, lp).mean()
    ce = token_cross_entropy(logits, targets).mean()
    loss, logged = distill_loss(logits, ids, lp, targets, mask, ce_weight=0.25)
    assert torch.allclose(loss, 0.75 * kl + 0.25 * ce)
    assert torch.allclose(logged, kl)
    # Masked positions do not count.
    mask[5:] = 0
    loss, _ = distill_loss(logits, ids, lp, targets, mask)
    assert torch.allclose(loss, sparse_forward_kl(logits, ids, lp)[:5].mean())
    with pytest.raises(ValueError, match="ce_weight"):
        distill_loss(logits, ids, lp, targets, mask, ce_weight=1.5)


def test_bf16_logits_are_upcast():
    student, t_ids, t_lp = _case(2, 6, 20, 5, 1.0)
    out = sparse_forward_kl(
        torch.tensor(student).bfloat16(), torch.tensor(t_ids), torch.tensor(t_lp)
    )
    assert out.dtype == torch.float32
    assert np.allclose(out.numpy(), _validator_kl(student, t_ids, t_lp), atol=0.05)
