"""Gates an answer must pass before it is scored: format, identity, claimed distributions, EOS.

Each gate returns a :class:`~scoring.causes.Cause` (inside a small verdict) instead of raising on
bad miner data: the validator calls them on untrusted input, zeroes failing answers and counts
the cause. Arrays that come from the validator's own engine are trusted; a shape mismatch there
is a bug and raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.causes import Cause
from scoring.config import VerifyConfig
from scoring.divergence import LOGPROB_SLACK, topk_overlap

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The sampled token's logprob and its entry in the same position's top-k come from one tensor in
# any honest engine; this only absorbs a float32 -> text -> float64 round trip.
CONSISTENCY_TOL = 1e-4


@dataclass(frozen=True)
class FormatVerdict:
    cause: Cause
    detail: str = ""


def _fail(cause: Cause, detail: str) -> FormatVerdict:
    return FormatVerdict(cause, detail)


def check_format(
    token_ids: object,
    sampled_logprobs: object,
    top_ids: object,
    top_logprobs: object,
    *,
    vocab_size: int,
    k: int,
    max_tokens: int,
    cfg: VerifyConfig,
) -> FormatVerdict:
    """Schema-level checks of one answer's arrays; never raises on hostile input.

    Expects ``token_ids [P]``, ``sampled_logprobs [P]``, ``top_ids [P, k]``, ``top_logprobs
    [P, k]``: integer ids in ``[0, vocab_size)``, finite logprobs ``<= 0`` (up to
    ``LOGPROB_SLACK`` of rounding, which the divergences treat as 0), rows sorted by descending
    logprob without duplicate ids, total row probability at most ``cfg.max_topk_mass``, and the
    sampled logprob consistent with the token's top-k entry (equal if listed, not above the
    row's last entry if not). ``1 <= P <= max_tokens``.
    """
    try:
        tok = np.asarray(token_ids)
        slp = np.asarray(sampled_logprobs)
        tid = np.asarray(top_ids)
        tlp = np.asarray(top_logprobs)
    except (TypeError, ValueError, OverflowError) as e:
        return _fail(Cause.FORMAT_SHAPE, f"not arrays: {e}")
    if tok.ndim != 1 or slp.shape != tok.shape or tid.ndim != 2 or tlp.shape != tid.shape:
        return _fail(
            Cause.FORMAT_SHAPE,
            f"shapes {tok.shape}, {slp.shape}, {tid.shape}, {tlp.shape} are not [P], [P], [P,k]",
        )
    n_pos = tok.shape[0]
    if n_pos == 0:
        return _fail(Cause.FORMAT_SHAPE, "empty answer")
    if tid.shape[0] != n_pos:
        return _fail(Cause.FORMAT_SHAPE, f"{n_pos} tokens but {tid.shape[0]} top-k rows")
    if n_pos > max_tokens:
        return _fail(Cause.TOO_LONG, f"{n_pos} tokens > max_tokens {max_tokens}")
    if tid.shape[1] != k:
        return _fail(Cause.FORMAT_K, f"top-k width {tid.shape[1]}, asked {k}")
    for name, ids in (("token_ids", tok), ("top_ids", tid)):
        if ids.size and ids.dtype.kind not in "iu":
            return _fail(Cause.FORMAT_TOKEN_ID, f"{name} dtype {ids.dtype} is not integer")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            return _fail(Cause.FORMAT_TOKEN_ID, f"{name} outside [0, {vocab_size})")
    for name, lps in (("sampled_logprobs", slp), ("top_logprobs", tlp)):
        if lps.size and lps.dtype.kind not in "fiu":
            return _fail(Cause.FORMAT_LOGPROB, f"{name} dtype {lps.dtype} is not numeric")
    slp = slp.astype(np.float64)
    tlp = tlp.astype(np.float64)
    for name, lps in (("sampled_logprobs", slp), ("top_logprobs", tlp)):
        if not (np.isfinite(lps) & (lps <= LOGPROB_SLACK)).all():
            return _fail(Cause.FORMAT_LOGPROB, f"{name} not all finite and <= 0")
    if k == 0:
        return FormatVerdict(Cause.OK)
    tlp = np.minimum(tlp, 0.0)
    if (np.exp(tlp).sum(axis=1) > cfg.max_topk_mass).any():
        return _fail(Cause.FORMAT_LOGPROB, f"a top-k row holds more than {cfg.max_topk_mass}")
    if (np.diff(tlp, axis=1) > 0).any():
        return _fail(Cause.FORMAT_UNSORTED, "a top-k row is not sorted by descending logprob")
    srt = np.sort(tid, axis=1)
    if (srt[:, 1:] == srt[:, :-1]).any():
        return _fail(Cause.FORMAT_DUPLICATE, "a top-k row repeats an id")
    listed = tid == tok[:, None]
    in_row = listed.any(axis=1)
    row_lp = np.where(listed, tlp, 0.0).sum(axis=1)
    slp = np.minimum(slp, 0.0)
    mismatch = in_row & (np.abs(row_lp - slp) > CONSISTENCY_TOL)
    above = ~in_row & (slp > tlp[:, -1] + CONSISTENCY_TOL)
    if (mismatch | above).any():
        pos = int(np.argmax(mismatch | above))
        return _fail(Cause.FORMAT_INCONSISTENT, f"sampled logprob disagrees with top-k at {pos}")
    return FormatVerdict(Cause.OK)


@dataclass(frozen=True)
class VerifyVerdict:
    """Claimed vs recomputed distributions of the miner's committed model, on checked positions."""

    cause: Cause
    mean_abs_dp: float  # mean |exp(claimed) - exp(recomputed)| of the sampled tokens
    max_rank: int  # worst 1-based rank of a sampled token under the committed model
    min_logprob: float  # lowest recomputed logprob of a sampled token
    topk_agreement: float  # mean overlap of claimed and recomputed top-k ids


def verify_distributions(
    claimed_sampled_logprobs: npt.ArrayLike,
    claimed_top_ids: npt.ArrayLike,
    claimed_top_logprobs: npt.ArrayLike,
    recomputed_target_logprobs: npt.ArrayLike,
    recomputed_target_ranks: npt.ArrayLike,
    recomputed_top_ids: npt.ArrayLike,
    recomputed_top_logprobs: npt.ArrayLike,
    *,
    vocab_size: int,
    cfg: VerifyConfig,
) -> VerifyVerdict:
    """Compare a (format-gated) answer's claims with the committed model's recomputation.

    All arrays are over the same checked positions (all of them, or a spot-checked subset).
    FABRICATED when a sampled token is implausible as a sample of the committed model (logprob
    below ``cfg.min_sampled_logprob``, or rank above ``cfg.max_rank`` when that is on): the
    tokens came from elsewhere, whatever the claimed numbers say. DIST_MISMATCH when the
    sampled tokens' probabilities differ on average by more than ``cfg.max_mean_abs_dp`` or the
    top-``cfg.agreement_k`` ids overlap less than ``cfg.min_topk_agreement``: the claimed
    distributions are not the committed model's. With no top-k claimed, agreement is 1.
    """
    c_lp = np.minimum(np.asarray(claimed_sampled_logprobs, dtype=np.float64), 0.0)
    r_lp = np.asarray(recomputed_target_logprobs, dtype=np.float64)
    ranks = np.asarray(recomputed_target_ranks, dtype=np.int64)
    if not c_lp.ndim == 1 or c_lp.shape != r_lp.shape or ranks.shape != c_lp.shape:
        raise ValueError(
            f"claimed {c_lp.shape}, recomputed {r_lp.shape} and ranks {ranks.shape} must be [P]"
        )
    if c_lp.size == 0:
        raise ValueError("no positions to verify")
    mean_abs_dp = float(np.abs(np.exp(c_lp) - np.exp(r_lp)).mean())
    max_rank = int(ranks.max())
    min_logprob = float(r_lp.min())
    k = min(cfg.agreement_k, np.shape(claimed_top_ids)[1], np.shape(recomputed_top_ids)[1])
    agreement = 1.0
    if k >= 1:
        overlap = topk_overlap(
            recomputed_top_ids,
            recomputed_top_logprobs,
            claimed_top_ids,
            claimed_top_logprobs,
            vocab_size,
            k,
        )
        agreement = float(overlap.mean())
    fabricated = min_logprob < cfg.min_sampled_logprob or 0 < cfg.max_rank < max_rank
    if fabricated:
        cause = Cause.FABRICATED
    elif mean_abs_dp > cfg.max_mean_abs_dp or agreement < cfg.min_topk_agreement:
        cause = Cause.DIST_MISMATCH
    else:
        cause = Cause.OK
    return VerifyVerdict(cause, mean_abs_dp, max_rank, min_logprob, agreement)


def eos_logprobs_from_topk(
    top_ids: npt.ArrayLike, top_logprobs: npt.ArrayLike, eos_token_ids: Sequence[int]
) -> FloatArray:
    """Log of the EOS set's listed probability per position, from top-k rows.

    The logsumexp over the EOS ids a row lists; -inf where it lists none (all below the top-k).
    A lower bound of the set's logprob when some EOS ids are unlisted, so a rule that fires on
    a high EOS probability never fires on what the row does not show.
    """
    ids = np.asarray(top_ids)
    lps = np.asarray(top_logprobs, dtype=np.float64)
    listed = np.isin(ids, np.asarray(eos_token_ids, dtype=np.int64))
    if ids.size == 0:
        return np.full(ids.shape[:1], -np.inf)
    out: FloatArray = np.logaddexp.reduce(np.where(listed, lps, -np.inf), axis=1)
    return out


def check_eos(
    token_ids: npt.ArrayLike,
    target_logprobs: npt.ArrayLike,
    eos_logprobs: npt.ArrayLike,
    *,
    eos_token_ids: Sequence[int],
    max_tokens: int,
    cfg: VerifyConfig,
) -> Cause:
    """Termination rules, judged under one model's distributions along the answer.

    ``token_ids`` ends with one of ``eos_token_ids`` when the answer stopped (vLLM's
    convention; any of the model's EOS ids ends it); ``target_logprobs[i]`` is the logprob of
    ``token_ids[i]`` and ``eos_logprobs[i]`` that of stopping (the EOS set) at position ``i``
    (-inf if unknown), both from the committed model's recomputation or from the miner's own
    (verified) claims. Only whether ``eos_logprobs[i]`` reaches ``refuse_stop_eos_prob`` at a
    non-EOS token matters, so an upper bound below 1/2 serves as well (:mod:`scoring.eos`).

    * REFUSE_STOP: a token after an EOS (any of the ids), or at least ``cfg.refuse_stop_count``
      positions where p(EOS) >= ``cfg.refuse_stop_eos_prob`` yet another token was emitted.
      Honest sampling at temperature <= 1 does that with probability <= (1 - prob)^count (1e-3
      by default); a miner ignoring EOS to pad its token rate does it at every such position.
    * PREMATURE_STOP: stopped with an EOS whose logprob is below ``cfg.premature_eos_logprob``
      (honest odds below e^-12), or ended without EOS before ``max_tokens``.
    """
    tok = np.asarray(token_ids)
    tgt = np.asarray(target_logprobs, dtype=np.float64)
    eos = np.asarray(eos_logprobs, dtype=np.float64)
    if not tok.ndim == 1 or tgt.shape != tok.shape or eos.shape != tok.shape:
        raise ValueError(f"token_ids {tok.shape}, target {tgt.shape}, eos {eos.shape} must be [P]")
    if tok.size == 0:
        raise ValueError("an empty answer has no termination to judge")
    is_eos = np.isin(tok, np.asarray(eos_token_ids, dtype=np.int64))
    if is_eos[:-1].any():
        return Cause.REFUSE_STOP
    continued = ~is_eos & (eos >= np.log(cfg.refuse_stop_eos_prob))
    if int(continued.sum()) >= cfg.refuse_stop_count:
        return Cause.REFUSE_STOP
    if is_eos[-1]:
        return Cause.PREMATURE_STOP if tgt[-1] < cfg.premature_eos_logprob else Cause.OK
    return Cause.OK if tok.size >= max_tokens else Cause.PREMATURE_STOP


@dataclass(frozen=True)
class Commitment:
    """One model-identity commitment seen on chain: ``digest`` committed by ``hotkey`` at ``block``.

    Keep history: the validator records the first block it saw each (hotkey, digest) pair, since
    the chain keeps only a hotkey's latest commitment and a re-commit must not lose priority.
    Drop records of hotkeys that left the subnet, so a model freed by deregistration can be
    served by the next hotkey that commits it.
    """

    hotkey: str
    digest: str
    block: int


def first_committers(records: Iterable[Commitment]) -> dict[str, str | None]:
    """Digest -> the hotkey that committed it first; None when several tie on the first block.

    A tie has no winner (both are COPY): breaking it by hotkey order would let a copier grind
    hotkeys, and a same-block commit of someone else's digest needs mempool front-running.
    """
    first: dict[str, tuple[int, set[str]]] = {}
    for rec in records:
        seen = first.get(rec.digest)
        if seen is None or rec.block < seen[0]:
            first[rec.digest] = (rec.block, {rec.hotkey})
        elif rec.block == seen[0]:
            seen[1].add(rec.hotkey)
    return {d: next(iter(hks)) if len(hks) == 1 else None for d, (_, hks) in first.items()}


@dataclass(frozen=True)
class CommitmentIndex:
    """The records a step judges identities against, indexed once: each hotkey's current
    digest (its latest record) and each digest's first committer. Judging every answer against
    the raw records would cost O(records) per answer, quadratic in the subnet size."""

    current: Mapping[str, str]
    first: Mapping[str, str | None]

    @classmethod
    def of(cls, records: Iterable[Commitment]) -> CommitmentIndex:
        recs = list(records)
        latest: dict[str, Commitment] = {}
        for r in recs:  # the first of equal blocks stays, as max() over the records keeps it
            if r.hotkey not in latest or r.block > latest[r.hotkey].block:
                latest[r.hotkey] = r
        return cls({h: r.digest for h, r in latest.items()}, first_committers(recs))


def identity_verdict(
    hotkey: str, answer_digest: str | None, records: Iterable[Commitment] | CommitmentIndex
) -> Cause:
    """Whether ``hotkey`` may earn with the model it serves.

    Its current digest is its latest record. NO_COMMITMENT without one; WRONG_MODEL when the
    answer names another digest (``None``: the answer named none, nothing to compare); COPY
    when another hotkey committed that digest first (first committer wins).
    """
    index = records if isinstance(records, CommitmentIndex) else CommitmentIndex.of(records)
    current = index.current.get(hotkey)
    if current is None:
        return Cause.NO_COMMITMENT
    if answer_digest is not None and answer_digest != current:
        return Cause.WRONG_MODEL
    if index.first.get(current) != hotkey:
        return Cause.COPY
    return Cause.OK
