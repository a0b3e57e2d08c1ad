"""Per-answer scoring at a real model's vocabulary vs the tiny world's: does big vocab cost?

The validator's per-answer work after the teacher's forward pass is the ``scoring`` package on
top-k arrays: the format gate, the loop and EOS rules on the miner's claims, the divergences
against the teacher's top-k, the reference likelihood, the combined score, and (for spot
checks) the claimed-vs-recomputed comparison. None of it should depend on the vocabulary size
V, only on positions x k. This benchmark times exactly that chain of calls
(:func:`score_answer`, the same functions ``neurons.validator.judge`` calls, in the same order)
on synthetic answers at two vocabularies, side by side in one process, and prints the ratio.
It also writes teacher targets for the same answers (``distill.shards.write_shard``) at both
vocabularies and reports the bytes stored per position, which must be the same: K ids and K
logprobs, never a V-sized row.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.shards import Example, write_shard
from scoring import aggregate, reference, verify
from scoring.config import ScoreConfig, VerifyConfig
from scoring.divergence import divergence_stats

TINY_VOCAB = 279  # the tiny world's tokenizer (its recipe.json "vocab_size")
REAL_VOCAB = 129_280  # DeepSeek-V4's (distill.real_chat.VOCAB_SIZE)


@dataclass(frozen=True)
class Answer:
    """One miner answer and the teacher's view of it, as the validator holds them."""

    tokens: np.ndarray  # [P]
    sampled: np.ndarray  # [P]
    top_ids: np.ndarray  # [P, k]
    top_lp: np.ndarray  # [P, k]
    t_ids: np.ndarray  # [P, k] teacher top-k at the miner's positions
    t_lp: np.ndarray
    t_target: np.ndarray  # [P] teacher logprob of the miner's tokens
    ref: np.ndarray  # [P] teacher logprob of its own reference answer
    eos_id: int


def _topk_rows(
    rng: np.random.Generator, vocab: int, positions: int, k: int
) -> tuple[np.ndarray, ...]:
    """Distinct ids per row and descending logprobs holding 60-95 % of the mass."""
    ids = np.empty((positions, k), dtype=np.int64)
    for i in range(positions):
        row = np.unique(rng.integers(0, vocab, size=4 * k))
        ids[i] = rng.permutation(row)[:k]
    mass = rng.uniform(0.6, 0.95, size=(positions, 1))
    p = np.sort(rng.dirichlet(np.ones(k), size=positions), axis=1)[:, ::-1] * mass
    return ids, np.log(p).astype(np.float32)


def make_answer(rng: np.random.Generator, vocab: int, positions: int, k: int) -> Answer:
    top_ids, top_lp = _topk_rows(rng, vocab, positions, k)
    t_ids, t_lp = _topk_rows(rng, vocab, positions, k)
    pick = rng.integers(0, min(3, k), size=positions)  # the sampled token is one of its top 3
    rows = np.arange(positions)
    eos_id = int(top_ids[-1, 0])  # the answer stops with EOS, its likeliest last token
    tokens = top_ids[rows, pick].copy()
    tokens[-1] = eos_id
    sampled = top_lp[rows, pick].copy()
    sampled[-1] = top_lp[-1, 0]
    return Answer(
        tokens,
        sampled,
        top_ids,
        top_lp,
        t_ids,
        t_lp,
        np.minimum(sampled - 0.3, 0.0),
        np.full(positions, -0.5, np.float32),
        eos_id,
    )


def score_answer(a: Answer, vocab: int, k: int, max_tokens: int) -> float:
    """The validator's per-answer scoring chain (``neurons.validator.judge``), one answer."""
    s_cfg, v_cfg = ScoreConfig(), VerifyConfig()
    fmt = verify.check_format(
        a.tokens,
        a.sampled,
        a.top_ids,
        a.top_lp,
        vocab_size=vocab,
        k=k,
        max_tokens=max_tokens,
        cfg=v_cfg,
    )
    degenerate = reference.is_degenerate(a.tokens, s_cfg)
    eos = verify.eos_logprobs_from_topk(a.top_ids, a.top_lp, [a.eos_id])
    stop = verify.check_eos(
        a.tokens, a.sampled, eos, eos_token_ids=[a.eos_id], max_tokens=max_tokens, cfg=v_cfg
    )
    stats = divergence_stats(a.t_ids, a.t_lp, a.top_ids, a.top_lp, vocab, s_cfg.overlap_k)
    s_kl = aggregate.kl_score(stats.forward_kl, stats.reverse_kl, stats.topk_overlap, s_cfg)
    s_ll = reference.likelihood_score(a.t_target, a.ref, s_cfg.tau_ref)
    s_ref = reference.reference_score(s_ll, None, s_cfg)
    spot = verify.verify_distributions(  # the committed model recomputes: here, the same claims
        a.sampled,
        a.top_ids,
        a.top_lp,
        a.sampled,
        np.ones(len(a.tokens), np.int64),
        a.top_ids,
        a.top_lp,
        vocab_size=vocab,
        cfg=v_cfg,
    )
    cause = fmt.cause if not fmt.cause.ok else stop if not stop.ok else spot.cause
    score = aggregate.answer_score(cause, s_kl, s_ref, 1.0, s_cfg)
    return score.score + float(degenerate)


def time_scoring(sets: dict[int, list[Answer]], k: int, repeats: int) -> dict[int, float]:
    """Median over ``repeats`` of the mean seconds per answer, per vocabulary. The vocabularies
    take turns within every repeat, so load on a shared machine hits both alike."""
    runs: dict[int, list[float]] = {vocab: [] for vocab in sets}
    for _ in range(repeats):
        for vocab, answers in sets.items():
            t0 = time.perf_counter()
            for a in answers:
                score_answer(a, vocab, k, len(a.tokens))
            runs[vocab].append((time.perf_counter() - t0) / len(answers))
    return {vocab: statistics.median(r) for vocab, r in runs.items()}


def stored_bytes_per_position(answers: Sequence[Answer]) -> float:
    """Bytes of a targets shard per completion position for these answers (K-wide rows)."""
    examples = [
        Example(
            tokens=np.concatenate([[1, 2, 3], a.tokens]).astype(np.int32),
            prompt_len=3,
            top_ids=a.t_ids.astype(np.int32),
            top_logprobs=a.t_lp.astype(np.float32),
        )
        for a in answers
    ]
    with tempfile.TemporaryDirectory() as tmp:
        entry = write_shard(Path(tmp), 0, examples)
    return float(sum(f["bytes"] for f in entry["files"].values()) / entry["positions"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench vocab", description=__doc__.split("\n")[0])
    p.add_argument("--answers", type=int, default=256, help="answers per vocabulary (256)")
    p.add_argument("--positions", type=int, default=16, help="tokens per answer (16)")
    p.add_argument("--k", type=int, default=20, help="top-k per position (validator.top_k, 20)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    sets = {
        vocab: [make_answer(rng, vocab, args.positions, args.k) for _ in range(args.answers)]
        for vocab in (TINY_VOCAB, REAL_VOCAB)
    }
    time_scoring({v: a[:8] for v, a in sets.items()}, args.k, 1)  # warm-up
    seconds = time_scoring(sets, args.k, args.repeats)
    rows = [(v, seconds[v], stored_bytes_per_position(a)) for v, a in sets.items()]
    print(
        f"{args.answers} answers x {args.positions} positions, k={args.k}, median of "
        f"{args.repeats}, the two vocabularies interleaved"
    )
    print(f"{'vocab':>8} {'us/answer':>10} {'answers/s':>10} {'target bytes/pos':>17}")
    for vocab, sec, stored in rows:
        print(f"{vocab:>8} {sec * 1e6:>10.1f} {1 / sec:>10.0f} {stored:>17.1f}")
    print(
        f"ratio {REAL_VOCAB} / {TINY_VOCAB}: {rows[1][1] / rows[0][1]:.2f}x time, "
        f"{rows[1][2] / rows[0][2]:.2f}x stored bytes"
    )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
