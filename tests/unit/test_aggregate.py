"""Answer score, EMA, weight transforms and burn on whole uid vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.aggregate import (
    RoundAnswer,
    advance_ema,
    answer_score,
    apply_burn,
    kl_score,
    proven_liars,
    reset_changed,
    round_means,
    score_round,
    transform_weights,
    update_ema,
)
from scoring.causes import Cause, Role, counts_toward_ema, counts_toward_lie_check
from scoring.config import ScoreConfig, WeightsConfig

SCORE = ScoreConfig()
unit = st.floats(0.0, 1.0)
emas = st.lists(unit, min_size=1, max_size=16).map(np.array)


def test_default_tau_separates_the_tiny_world_students() -> None:
    """Teacher ~0, distilled ~0.04, undistilled ~0.1, untrained ~3 nats/position."""
    teacher, distilled, undistilled, untrained = (
        kl_score(kl, kl, 1.0, SCORE) for kl in (0.0, 0.04, 0.1, 3.0)
    )
    assert teacher == 1.0
    assert teacher > distilled > undistilled > untrained
    assert distilled - undistilled > 0.2
    assert untrained < 1e-6


def test_kl_score_overlap_term_and_bad_input() -> None:
    cfg = ScoreConfig(overlap_weight=0.5)
    assert kl_score(0.0, 0.0, 0.0, cfg) == pytest.approx(0.5)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="forward_kl"):
            kl_score(bad, 0.0, 1.0, SCORE)


@settings(max_examples=100, deadline=None)
@given(unit, unit, unit, st.sampled_from(list(Cause)))
def test_answer_score_is_gated_and_in_unit_interval(
    s_kl: float, s_ref: float, s_speed: float, cause: Cause
) -> None:
    a = answer_score(cause, s_kl, s_ref, s_speed, SCORE)
    assert 0.0 <= a.score <= 1.0 + 1e-12
    if cause is not Cause.OK:
        assert a.score == 0.0 and a.gate == 0.0
    assert a.use_in_ema == (cause is not Cause.VALIDATOR_ERROR)


def test_answer_score_weights() -> None:
    a = answer_score(Cause.OK, 1.0, 0.5, 0.0, SCORE)
    assert a.score == pytest.approx(0.6 + 0.15)
    with pytest.raises(ValueError, match="s_ref"):
        answer_score(Cause.OK, 1.0, 1.5, 0.0, SCORE)


def test_round_means_and_ema() -> None:
    mean, seen = round_means([2, 2, 0], [0.5, 1.0, 0.2], 4)
    assert mean.tolist() == pytest.approx([0.2, 0.0, 0.75, 0.0])
    assert seen.tolist() == [True, False, True, False]
    ema = update_ema(np.array([0.5, 0.9, 0.0, 0.3]), mean, seen, 0.2)
    assert ema.tolist() == pytest.approx([0.44, 0.9, 0.15, 0.3])
    with pytest.raises(ValueError, match="uids must be"):
        round_means([4], [0.5], 4)
    with pytest.raises(ValueError, match="scores must be"):
        round_means([0], [float("nan")], 4)
    with pytest.raises(ValueError, match="alpha"):
        update_ema(ema, mean, seen, 0.0)


@settings(max_examples=100, deadline=None)
@given(unit, st.floats(0.01, 1.0))
def test_ema_from_zero_converges_to_a_constant_score(score: float, alpha: float) -> None:
    ema = np.zeros(1)
    for step in range(1, 30):
        ema = update_ema(ema, np.array([score]), np.array([True]), alpha)
        assert ema[0] == pytest.approx(score * (1 - (1 - alpha) ** step))


def test_proven_liars_are_the_uids_with_a_lie_cause() -> None:
    causes = [
        Cause.OK,
        Cause.TIMEOUT,
        Cause.DIST_MISMATCH,
        Cause.OK,
        Cause.FABRICATED,
        Cause.WRONG_MODEL,
        Cause.COPY,
        Cause.FORMAT_LOGPROB,
    ]
    got = proven_liars([0, 1, 2, 2, 3, 4, 5, 6], causes, 8)
    assert np.flatnonzero(got).tolist() == [2, 3]  # wrong_model (named openly) is no lie
    with pytest.raises(ValueError, match="equal-length"):
        proven_liars([0, 1], [Cause.OK], 4)
    with pytest.raises(ValueError, match="uids must be"):
        proven_liars([9], [Cause.OK], 4)
    assert proven_liars([1], ["dist_mismatch"], 2).tolist() == [False, True]  # stored strings
    with pytest.raises(ValueError, match="unknown cause code 'lied'"):
        proven_liars([1], ["lied"], 2)


@pytest.mark.parametrize(
    ("role", "cause", "counts"),
    [
        (Role.MINER, Cause.OK, True),
        (Role.MINER, Cause.TIMEOUT, True),  # the miner's zero
        (Role.MINER, Cause.FORMAT_SHAPE, True),
        (Role.MINER, Cause.WRONG_MODEL, True),
        (Role.MINER, Cause.DIST_MISMATCH, True),  # counted, and it proves a lie
        (Role.MINER, Cause.VALIDATOR_ERROR, False),  # the validator failed: skipped, not zeroed
        (Role.BASELINE, Cause.OK, False),  # the baseline has no EMA, whatever it scores
        (Role.BASELINE, Cause.DIST_MISMATCH, False),
        (Role.BASELINE, Cause.VALIDATOR_ERROR, False),
    ],
)
def test_which_answers_count_toward_the_ema(role: Role, cause: Cause, counts: bool) -> None:
    assert counts_toward_ema(role, cause) is counts


def test_the_counting_rule_over_every_cause() -> None:
    for cause in Cause:
        assert counts_toward_ema(Role.MINER, cause) == (cause is not Cause.VALIDATOR_ERROR)
        assert not counts_toward_ema(Role.BASELINE, cause)
        assert answer_score(cause, 1.0, 1.0, 1.0, SCORE).use_in_ema == counts_toward_ema(
            Role.MINER, cause
        )


def test_a_round_keeps_only_the_answers_that_count() -> None:
    answers = [
        RoundAnswer(Role.MINER, 1, 0.8, Cause.OK),
        RoundAnswer(Role.MINER, 1, 0.0, Cause.VALIDATOR_ERROR),  # skipped: mean stays 0.8
        RoundAnswer(Role.MINER, 2, 0.0, Cause.VALIDATOR_ERROR),  # only this: not observed
        RoundAnswer(Role.MINER, 3, 0.0, Cause.TIMEOUT),  # observed at 0
        RoundAnswer(Role.MINER, 4, 0.0, Cause.FABRICATED),
        RoundAnswer(Role.BASELINE, None, 0.9, Cause.OK),
        RoundAnswer(Role.BASELINE, None, 0.0, Cause.DIST_MISMATCH),  # not a miner's lie
    ]
    got = score_round(answers, 5)
    assert got.means.tolist() == [0.0, 0.8, 0.0, 0.0, 0.0]
    assert got.observed.tolist() == [False, True, False, True, True]
    assert got.caught.tolist() == [False, False, False, False, True]
    kept = [a for a in answers if counts_toward_ema(a.role, a.cause)]
    means, observed = round_means([a.uid or 0 for a in kept], [a.score for a in kept], 5)
    assert (got.means == means).all() and (got.observed == observed).all()
    empty = score_round([], 3)
    assert not empty.observed.any() and not empty.caught.any()
    with pytest.raises(ValueError, match="uids must be"):
        score_round([RoundAnswer(Role.MINER, 7, 0.5, Cause.OK)], 3)


def test_organic_answers_only_prove_lies() -> None:
    """An organic answer never moves a mean (it has no reference score) but a lie proven on it
    catches its uid exactly as one on a synthetic prompt does; the validator's failure on it
    proves nothing."""
    answers = [
        RoundAnswer(Role.MINER, 1, 0.8, Cause.OK),
        RoundAnswer(Role.ORGANIC, 1, 0.0, Cause.OK),  # not averaged in: mean stays 0.8
        RoundAnswer(Role.ORGANIC, 2, 0.0, Cause.FABRICATED),  # only organic: caught, unobserved
        RoundAnswer(Role.ORGANIC, 3, 0.0, Cause.FORMAT_SHAPE),  # a failure, but no lie
        RoundAnswer(Role.ORGANIC, 4, 0.0, Cause.DIST_MISMATCH),
        RoundAnswer(Role.MINER, 4, 0.9, Cause.OK),
    ]
    got = score_round(answers, 5)
    assert got.means.tolist() == [0.0, 0.8, 0.0, 0.0, 0.9]
    assert got.observed.tolist() == [False, True, False, False, True]
    assert got.caught.tolist() == [False, False, True, False, True]
    for cause in Cause:
        assert not counts_toward_ema(Role.ORGANIC, cause)
        assert counts_toward_lie_check(Role.ORGANIC, cause) == (cause is not Cause.VALIDATOR_ERROR)
        assert counts_toward_lie_check(Role.MINER, cause) == counts_toward_ema(Role.MINER, cause)
        assert not counts_toward_lie_check(Role.BASELINE, cause)
    with pytest.raises(ValueError, match="organic answer with uid None"):
        RoundAnswer(Role.ORGANIC, None, 0.0, Cause.OK)


def test_a_round_answer_names_a_uid_exactly_when_a_miner_gave_it() -> None:
    with pytest.raises(ValueError, match="miner answer with uid None"):
        RoundAnswer(Role.MINER, None, 0.5, Cause.OK)
    with pytest.raises(ValueError, match="baseline answer with uid 3"):
        RoundAnswer(Role.BASELINE, 3, 0.5, Cause.OK)


def test_a_caught_lie_resets_the_ema_and_suspends_the_hotkey() -> None:
    ema, held = np.array([0.8, 0.8]), np.zeros(2, dtype=np.int64)
    seen, caught = np.array([True, True]), np.array([False, True])
    upd = advance_ema(ema, held, np.array([1.0, 1.0]), seen, caught, 0.5, 2)
    assert upd.ema.tolist() == [0.9, 0.0] and upd.suspended.tolist() == [0, 2]
    assert upd.punished.tolist() == [False, True]
    history = []
    for _ in range(3):  # honest answers after the lie: nothing for 2 rounds, then it climbs
        upd = advance_ema(
            upd.ema, upd.suspended, np.array([1.0, 1.0]), seen, np.zeros(2, dtype=bool), 0.5, 2
        )
        history.append((upd.ema[1], int(upd.suspended[1])))
    assert history == [(0.0, 1), (0.0, 0), (0.5, 0)]
    # A penalty of 0 still voids the round and the EMA built so far.
    upd0 = advance_ema(ema, held, np.array([1.0, 1.0]), seen, caught, 0.5, 0)
    assert upd0.ema.tolist() == [0.9, 0.0] and upd0.suspended.tolist() == [0, 0]
    with pytest.raises(ValueError, match="suspended"):
        advance_ema(ema, np.zeros(3, dtype=np.int64), ema, seen, caught, 0.5, 2)
    with pytest.raises(ValueError, match=">= 0"):
        advance_ema(ema, np.array([-1, 0]), ema, seen, caught, 0.5, 2)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(unit, st.booleans()), min_size=1, max_size=40),
    st.floats(0.01, 1.0),
    st.integers(0, 10),
)
def test_lying_never_pays_more_than_its_honest_rounds(
    rounds: list[tuple[float, bool]], alpha: float, penalty: int
) -> None:
    """Whatever a liar scores on uncaught rounds, its EMA never exceeds what an honest miner
    with the same scores on only the rounds after its last catch (and suspension) would have."""
    ema, held = np.zeros(1), np.zeros(1, dtype=np.int64)
    since_catch: list[float] = []
    for score, lie in rounds:
        upd = advance_ema(
            ema, held, np.array([score]), np.array([True]), np.array([lie]), alpha, penalty
        )
        ema, held = upd.ema, upd.suspended
        since_catch = [] if upd.punished[0] else [*since_catch, score]
        assert ema[0] <= max(since_catch, default=0.0) + 1e-12
        if lie:
            assert ema[0] == 0.0 and held[0] == penalty


def test_reset_changed_zeroes_new_hotkeys_and_grows() -> None:
    got = reset_changed(np.array([0.5, 0.7]), ["a", "b"], ["a", "c", "d"])
    assert got.tolist() == [0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="old hotkeys"):
        reset_changed(np.array([0.5]), ["a", "b"], ["a"])


@settings(max_examples=150, deadline=None)
@given(emas, st.sampled_from(["power", "top_n", "wta"]), st.floats(0, 8), st.integers(1, 5))
def test_transforms_return_normalised_weights(
    ema: np.ndarray, transform: str, power: float, top_n: int
) -> None:
    cfg = WeightsConfig(transform=transform, power=power, top_n=top_n)
    res = transform_weights(ema, cfg)
    assert res.weights.shape == ema.shape
    assert (res.weights >= 0).all()
    if (ema > 0).any():
        assert res.weights.sum() == pytest.approx(1.0)
        assert res.winner is not None and res.weights[res.winner] == res.weights.max()
    else:
        assert (res.weights == 0).all() and res.winner is None
    assert (res.weights[ema == 0] == 0).all()
    if transform == "top_n":
        assert (res.weights > 0).sum() <= top_n


@settings(max_examples=100, deadline=None)
@given(emas)
def test_power_transform_preserves_order(ema: np.ndarray) -> None:
    w = transform_weights(ema, WeightsConfig(power=2.0)).weights
    order = np.argsort(ema)
    assert (np.diff(w[order]) >= -1e-12).all()


def test_power_and_eligibility() -> None:
    w = transform_weights([0.5, 1.0, 0.9], WeightsConfig(power=1.0), eligible=[1, 1, 0]).weights
    assert w.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    w = transform_weights([0.1, 0.5], WeightsConfig(min_score=0.2)).weights
    assert w.tolist() == [0.0, 1.0]


def test_wta_dethrone_margin() -> None:
    cfg = WeightsConfig(transform="wta", wta_share=0.8, dethrone_margin=0.05, power=1.0)
    held = transform_weights([0.82, 0.80, 0.1], cfg, prev_winner=1)
    assert held.winner == 1  # 0.82 < 0.80 * 1.05: the incumbent keeps the crown
    assert held.weights[1] == pytest.approx(0.8)
    assert held.weights[0] == pytest.approx(0.2 * 0.82 / 0.92)
    taken = transform_weights([0.85, 0.80, 0.1], cfg, prev_winner=1)
    assert taken.winner == 0
    fresh = transform_weights([0.82, 0.80, 0.1], cfg, prev_winner=None)
    assert fresh.winner == 0
    gone = transform_weights([0.82, 0.80, 0.1], cfg, prev_winner=1, eligible=[1, 0, 1])
    assert gone.winner == 0
    alone = transform_weights([0.0, 0.5, 0.0], cfg)
    assert alone.weights.tolist() == [0.0, 1.0, 0.0]


def test_ties_break_to_the_lower_uid() -> None:
    cfg = WeightsConfig(transform="top_n", top_n=1)
    assert transform_weights([0.5, 0.7, 0.7], cfg).weights.tolist() == [0.0, 1.0, 0.0]


def test_transform_rejects_bad_ema() -> None:
    for bad in ([float("nan")], [-0.1], [[0.1]]):
        with pytest.raises(ValueError, match="ema"):
            transform_weights(bad, WeightsConfig())


@settings(max_examples=100, deadline=None)
@given(emas, unit, st.data())
def test_burn_keeps_the_sum_and_gives_the_owner_its_share(
    ema: np.ndarray, share: float, data: st.DataObject
) -> None:
    owner = data.draw(st.integers(0, ema.size - 1))
    w = transform_weights(ema, WeightsConfig()).weights
    out = apply_burn(w, owner, share)
    assert out.sum() == pytest.approx(1.0)
    if w.sum() == 0:
        assert out[owner] == 1.0
    else:
        assert out[owner] >= share - 1e-12
        assert math.isclose(out[owner], share + (1 - share) * w[owner], abs_tol=1e-12)


def test_burn_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="owner_uid"):
        apply_burn([0.5, 0.5], 2, 0.1)
    with pytest.raises(ValueError, match="share"):
        apply_burn([0.5, 0.5], 0, 1.5)
