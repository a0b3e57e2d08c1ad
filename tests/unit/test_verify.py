"""Format gate on hostile arrays, claimed-vs-recomputed checks, EOS rules, copy detection."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.causes import Cause
from scoring.config import VerifyConfig
from scoring.verify import (
    Commitment,
    CommitmentIndex,
    check_eos,
    check_format,
    eos_logprobs_from_topk,
    first_committers,
    identity_verdict,
    verify_distributions,
)

CFG = VerifyConfig()
VOCAB, K, EOS = 32, 4, 0


def answer(n: int = 6, seed: int = 0) -> dict[str, Any]:
    """An honest answer: tokens sampled from random distributions, with their top-k rows."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, VOCAB)) * 2
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    tokens = np.array([rng.choice(VOCAB, p=np.exp(row)) for row in logp], dtype=np.int64)
    order = np.argsort(-logp, axis=1)[:, :K]
    return {
        "token_ids": tokens,
        "sampled_logprobs": logp[np.arange(n), tokens],
        "top_ids": order.astype(np.int64),
        "top_logprobs": np.take_along_axis(logp, order, axis=1),
        "logp": logp,
    }


def gate(a: dict[str, Any], **over: Any) -> Cause:
    arrays = {k: a[k] for k in ("token_ids", "sampled_logprobs", "top_ids", "top_logprobs")}
    arrays.update(over)
    return check_format(**arrays, vocab_size=VOCAB, k=K, max_tokens=8, cfg=CFG).cause


def test_honest_answer_passes_the_format_gate() -> None:
    for seed in range(5):
        assert gate(answer(seed=seed)) is Cause.OK


def _with(arr: np.ndarray[Any, Any], idx: tuple[int, ...], value: Any) -> np.ndarray[Any, Any]:
    out = arr.copy()
    out[idx] = value
    return out


@pytest.mark.parametrize(
    ("field", "mutate", "cause"),
    [
        ("token_ids", lambda x: x[:-1], Cause.FORMAT_SHAPE),
        ("top_ids", lambda x: x[:-1], Cause.FORMAT_SHAPE),
        ("top_ids", lambda x: x[:, 0], Cause.FORMAT_SHAPE),
        ("top_logprobs", lambda x: x[:, :-1], Cause.FORMAT_SHAPE),
        ("token_ids", lambda x: "garbage", Cause.FORMAT_SHAPE),
        ("token_ids", lambda x: [[1, 2], [3]], Cause.FORMAT_SHAPE),
        ("token_ids", lambda x: _with(x, (0,), VOCAB), Cause.FORMAT_TOKEN_ID),
        ("top_ids", lambda x: _with(x, (1, 1), -1), Cause.FORMAT_TOKEN_ID),
        ("token_ids", lambda x: x.astype(np.float64), Cause.FORMAT_TOKEN_ID),
        ("sampled_logprobs", lambda x: _with(x, (2,), np.nan), Cause.FORMAT_LOGPROB),
        ("top_logprobs", lambda x: _with(x, (0, 3), -np.inf), Cause.FORMAT_LOGPROB),
        ("top_logprobs", lambda x: _with(x, (0, 0), 0.5), Cause.FORMAT_LOGPROB),
        ("top_logprobs", lambda x: np.full_like(x, -0.01), Cause.FORMAT_LOGPROB),
        ("sampled_logprobs", lambda x: x.astype(str), Cause.FORMAT_LOGPROB),
        ("top_logprobs", lambda x: x[:, ::-1], Cause.FORMAT_UNSORTED),
        ("top_ids", lambda x: np.repeat(x[:, :1], K, axis=1), Cause.FORMAT_DUPLICATE),
        ("sampled_logprobs", lambda x: x - 0.5, Cause.FORMAT_INCONSISTENT),
    ],
)
def test_format_gate_names_each_failure(field: str, mutate: Any, cause: Cause) -> None:
    a = answer()
    assert gate(a, **{field: mutate(a[field])}) is cause


def test_format_gate_checks_k_as_asked() -> None:
    a = answer()
    assert gate(a, top_ids=a["top_ids"][:, :-1], top_logprobs=a["top_logprobs"][:, :-1]) is (
        Cause.FORMAT_K
    )


def test_format_gate_length_limits() -> None:
    a = answer(n=9)
    assert gate(a) is Cause.TOO_LONG
    empty = {k: v[:0] for k, v in answer().items()}
    assert gate(empty) is Cause.FORMAT_SHAPE


def test_sampled_token_outside_topk_cannot_claim_more_than_the_last_entry() -> None:
    a = answer()
    tok = a["token_ids"].copy()
    row = 0
    outside = next(t for t in range(VOCAB) if t not in a["top_ids"][row])
    tok[row] = outside
    slp = a["sampled_logprobs"].copy()
    slp[row] = a["logp"][row, outside]
    assert gate(a, token_ids=tok, sampled_logprobs=slp) is Cause.OK
    slp[row] = a["top_logprobs"][row, 0]
    assert gate(a, token_ids=tok, sampled_logprobs=slp) is Cause.FORMAT_INCONSISTENT


hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(hostile, hostile, hostile, hostile)
def test_format_gate_never_raises_on_hostile_input(a: Any, b: Any, c: Any, d: Any) -> None:
    verdict = check_format(a, b, c, d, vocab_size=VOCAB, k=K, max_tokens=8, cfg=CFG)
    assert isinstance(verdict.cause, Cause)


def recompute(a: dict[str, Any], logp: np.ndarray[Any, Any]) -> dict[str, Any]:
    n = len(a["token_ids"])
    order = np.argsort(-logp, axis=1)
    ranks = np.argsort(order, axis=1)[np.arange(n), a["token_ids"]] + 1
    return {
        "recomputed_target_logprobs": logp[np.arange(n), a["token_ids"]],
        "recomputed_target_ranks": ranks,
        "recomputed_top_ids": order[:, :K],
        "recomputed_top_logprobs": np.take_along_axis(logp, order[:, :K], axis=1),
    }


def verify(a: dict[str, Any], logp: np.ndarray[Any, Any], cfg: VerifyConfig = CFG) -> Any:
    return verify_distributions(
        a["sampled_logprobs"],
        a["top_ids"],
        a["top_logprobs"],
        **recompute(a, logp),
        vocab_size=VOCAB,
        cfg=cfg,
    )


def test_claims_of_the_committed_model_verify() -> None:
    a = answer()
    v = verify(a, a["logp"])
    assert v.cause is Cause.OK
    assert v.mean_abs_dp == pytest.approx(0.0, abs=1e-12)
    assert v.topk_agreement == 1.0


def test_claims_of_another_model_are_a_mismatch() -> None:
    a = answer(seed=0)
    other = answer(seed=1)["logp"]
    v = verify(a, other, VerifyConfig(min_sampled_logprob=-1000.0))
    assert v.cause is Cause.DIST_MISMATCH
    assert v.mean_abs_dp > CFG.max_mean_abs_dp or v.topk_agreement < CFG.min_topk_agreement


def test_slightly_perturbed_recomputation_is_within_tolerance() -> None:
    a = answer()
    noisy = a["logp"] + np.random.default_rng(5).normal(scale=1e-3, size=a["logp"].shape)
    assert verify(a, noisy).cause is Cause.OK


def test_implausible_tokens_are_fabricated() -> None:
    a = answer()
    logp = a["logp"].copy()
    logp[2, a["token_ids"][2]] = -25.0  # the committed model would never sample it
    assert verify(a, logp).cause is Cause.FABRICATED
    v = verify(a, a["logp"], VerifyConfig(max_rank=1))
    assert v.cause is Cause.FABRICATED or v.max_rank == 1


def test_verify_rejects_misaligned_trusted_arrays() -> None:
    a = answer()
    r = recompute(a, a["logp"])
    r["recomputed_target_logprobs"] = r["recomputed_target_logprobs"][:-1]
    with pytest.raises(ValueError, match="must be"):
        verify_distributions(
            a["sampled_logprobs"], a["top_ids"], a["top_logprobs"], **r, vocab_size=VOCAB, cfg=CFG
        )


def eos(
    tokens: list[int],
    eos_p: list[float],
    last_lp: float = -1.0,
    max_tokens: int = 5,
    eos_ids: tuple[int, ...] = (EOS,),
) -> Cause:
    tgt = np.full(len(tokens), -1.0)
    tgt[-1] = last_lp
    return check_eos(
        np.array(tokens), tgt, np.log(eos_p), eos_token_ids=eos_ids, max_tokens=max_tokens, cfg=CFG
    )


def test_eos_rules() -> None:
    assert eos([5, 6, EOS], [0.01, 0.1, 0.8]) is Cause.OK
    assert eos([5, 6, 7, 8, 9], [0.01] * 5) is Cause.OK  # hit max_tokens
    assert eos([5, 6, 7], [0.01] * 3) is Cause.PREMATURE_STOP  # cut off without EOS
    assert eos([5, EOS], [0.01, 1e-7], last_lp=np.log(1e-7)) is Cause.PREMATURE_STOP
    assert eos([5, EOS, 6], [0.01, 0.9, 0.01]) is Cause.REFUSE_STOP  # tokens after EOS
    assert eos([5, 6, 7, 8, 9], [0.95, 0.95, 0.5, 0.95, 0.01]) is Cause.REFUSE_STOP
    assert eos([5, 6, 7, 8, 9], [0.95, 0.95, 0.5, 0.5, 0.01]) is Cause.OK  # twice: chance


def test_eos_rules_with_several_eos_ids() -> None:
    """Any of the model's EOS ids ends an answer (Llama 3: end of text and end of turn)."""
    END_TURN = 4
    both = (EOS, END_TURN)
    assert eos([5, 6, END_TURN], [0.01, 0.1, 0.8], eos_ids=both) is Cause.OK
    assert eos([5, 6, EOS], [0.01, 0.1, 0.8], eos_ids=both) is Cause.OK
    # the second id stops the answer only for a model that has it
    assert eos([5, 6, END_TURN], [0.01, 0.1, 0.8]) is Cause.PREMATURE_STOP
    # tokens after either EOS are refusing to stop; so is running past a likely end of turn
    assert eos([5, END_TURN, 6], [0.01, 0.9, 0.01], eos_ids=both) is Cause.REFUSE_STOP
    assert eos([5, EOS, 6], [0.01, 0.9, 0.01], eos_ids=both) is Cause.REFUSE_STOP
    assert eos([5, 6, 7, 8, 9], [0.95, 0.95, 0.5, 0.95, 0.01], eos_ids=both) is Cause.REFUSE_STOP
    # an unlikely stop on the second id is premature like one on the first
    low = np.log(1e-7)
    assert eos([5, END_TURN], [0.01, 1e-7], last_lp=low, eos_ids=both) is Cause.PREMATURE_STOP


def test_eos_logprobs_from_topk() -> None:
    ids = np.array([[3, EOS], [3, 4]])
    lps = np.log([[0.6, 0.3], [0.6, 0.3]])
    got = eos_logprobs_from_topk(ids, lps, (EOS,))
    assert got[0] == pytest.approx(np.log(0.3))
    assert got[1] == -np.inf


def test_eos_logprobs_from_topk_sum_the_listed_eos_ids() -> None:
    ids = np.array([[EOS, 3, 4], [3, 5, 4], [3, 5, 6], [3, 5, 6]])
    lps = np.log([[0.5, 0.2, 0.1], [0.6, 0.2, 0.1], [0.6, 0.2, 0.1], [0.6, 0.2, 0.1]])
    got = eos_logprobs_from_topk(ids, lps, (EOS, 4))
    assert got[0] == pytest.approx(np.log(0.6))  # both listed: p(stop) = 0.5 + 0.1
    assert got[1] == pytest.approx(np.log(0.1))  # one listed: a lower bound of p(stop)
    assert got[2] == got[3] == -np.inf  # none listed
    assert eos_logprobs_from_topk(np.zeros((2, 0), int), np.zeros((2, 0)), (EOS,)).tolist() == [
        -np.inf,
        -np.inf,
    ]


def test_first_committer_wins_and_recommit_keeps_priority() -> None:
    recs = [
        Commitment("alice", "d1", 10),
        Commitment("bob", "d1", 12),  # copied alice's model
        Commitment("alice", "d1", 20),  # alice re-committed later: still first
        Commitment("carol", "d2", 11),
    ]
    assert first_committers(recs) == {"d1": "alice", "d2": "carol"}
    assert identity_verdict("alice", "d1", recs) is Cause.OK
    assert identity_verdict("bob", "d1", recs) is Cause.COPY
    assert identity_verdict("carol", None, recs) is Cause.OK
    assert identity_verdict("carol", "d1", recs) is Cause.WRONG_MODEL
    assert identity_verdict("dave", "d1", recs) is Cause.NO_COMMITMENT


def test_same_block_tie_has_no_winner() -> None:
    recs = [Commitment("alice", "d1", 10), Commitment("bob", "d1", 10)]
    assert first_committers(recs) == {"d1": None}
    assert identity_verdict("alice", "d1", recs) is Cause.COPY
    assert identity_verdict("bob", "d1", recs) is Cause.COPY


def test_current_digest_is_the_latest_commitment() -> None:
    recs = [Commitment("alice", "old", 5), Commitment("alice", "new", 9)]
    assert identity_verdict("alice", "new", recs) is Cause.OK
    assert identity_verdict("alice", "old", recs) is Cause.WRONG_MODEL


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from(["d1", "d2", "d3"]), st.integers(0, 5)),
        max_size=12,
    ),
    st.sampled_from("abcde"),
    st.sampled_from([None, "d1", "d2", "d3"]),
)
def test_indexed_identity_verdict_equals_the_verdict_on_raw_records(
    rows: list[tuple[str, str, int]], hotkey: str, claimed: str | None
) -> None:
    """A step indexes the records once; every verdict stays what the raw records give."""
    recs = [Commitment(h, d, b) for h, d, b in rows]
    own = [r for r in recs if r.hotkey == hotkey]
    if not own:
        want = Cause.NO_COMMITMENT
    else:  # the definition, spelled out: latest own record, then the first committer of it
        current = max(own, key=lambda r: r.block).digest
        if claimed is not None and claimed != current:
            want = Cause.WRONG_MODEL
        else:
            want = Cause.OK if first_committers(recs).get(current) == hotkey else Cause.COPY
    assert identity_verdict(hotkey, claimed, CommitmentIndex.of(recs)) is want
    assert identity_verdict(hotkey, claimed, recs) is want
