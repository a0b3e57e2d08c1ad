"""Cause codes (why an answer earned what it earned), roles (who gave it), and the one rule
that says which answers count toward a miner's EMA.

Every gate in ``scoring`` returns a cause instead of raising, so the validator can zero the
answer, count the failure in a metric labelled by cause and keep the evidence. The string values
of causes and roles are stable: they appear in metrics, in the state database and in signed
evidence records.

:func:`counts_toward_ema` is the single place the counting rule lives: the validator's step,
the replay of its database (``subnet simulate --replay``) and the owner's simulator all ask it,
so they cannot disagree about which answers make a miner's score.
"""

from __future__ import annotations

from enum import StrEnum


class Cause(StrEnum):
    """One code per distinct reason an answer is not scored normally."""

    OK = "ok"  # passed every gate; scored on its merits

    # Transport (set by the validator's miner client, listed here so all codes live in one place).
    TIMEOUT = "timeout"  # no complete answer within the deadline
    HTTP_ERROR = "http_error"  # connection failure or non-2xx status
    BAD_SIGNATURE = "bad_signature"  # response not signed by the miner's hotkey
    FORMAT_SCHEMA = "format_schema"  # body did not parse into the wire schema

    # Format gate (arrays of an answer, checked before any maths).
    FORMAT_SHAPE = "format_shape"  # lengths/ranks inconsistent, or an empty answer
    FORMAT_TOKEN_ID = "format_token_id"  # a token id not an integer in [0, vocab)
    FORMAT_LOGPROB = "format_logprob"  # a logprob NaN, infinite or > 0, or top-k mass > 1
    FORMAT_UNSORTED = "format_unsorted"  # a top-k row not sorted by descending logprob
    FORMAT_K = "format_k"  # top-k width differs from the k asked for
    FORMAT_DUPLICATE = "format_duplicate"  # the same id twice in one top-k row
    FORMAT_INCONSISTENT = "format_inconsistent"  # sampled logprob disagrees with its top-k entry
    TOO_LONG = "too_long"  # more tokens than max_tokens

    # Identity (chain commitments).
    NO_COMMITMENT = "no_commitment"  # the hotkey has no model commitment on chain
    WRONG_MODEL = "wrong_model"  # answer names a model other than the one committed
    COPY = "copy"  # committed digest was first committed by another hotkey

    # The committed model itself (fetched from its source, checked against its digest).
    # Neither proves a lie: the miner's claims were never recomputed. Both zero every answer of
    # the miner, because answers no validator can verify must not earn.
    MODEL_UNAVAILABLE = "model_unavailable"  # not fetched, verified or loaded within the grace
    WRONG_TOKENIZER = "wrong_tokenizer"  # the committed tokenizer is not the teacher's

    # Verification against the committed model (spot checks).
    DIST_MISMATCH = "dist_mismatch"  # claimed distributions differ from the recomputed ones
    FABRICATED = "fabricated"  # tokens implausible as samples of the committed model

    # Termination and content.
    REFUSE_STOP = "refuse_stop"  # kept generating where the model all but certainly stopped
    PREMATURE_STOP = "premature_stop"  # stopped (or was cut off) where the model would not stop
    DEGENERATE = "degenerate"  # repeated n-gram loops

    # Not the miner's fault: the answer is skipped, never zeroed into the EMA.
    VALIDATOR_ERROR = "validator_error"  # the validator could not score (its engine failed)

    @property
    def ok(self) -> bool:
        return self is Cause.OK

    @property
    def proves_lie(self) -> bool:
        """True when the answer is proof the miner lied about its model or its distributions.

        These come from recomputing the miner's signed claims with the model it committed, so
        they are evidence, not a bad day: the miner's whole round is voided, its EMA reset and
        its hotkey suspended (``weights.lie_penalty_steps``), see
        :func:`scoring.aggregate.advance_ema`. ``WRONG_MODEL`` is not one: an answer that
        openly names another model than the committed one is what an honest miner serves for a
        moment while it upgrades, so only that answer is zeroed.
        """
        return self in (Cause.DIST_MISMATCH, Cause.FABRICATED)

    @property
    def counts_against_miner(self) -> bool:
        """False for causes the miner did not produce (skip the answer instead of zeroing)."""
        return self not in (Cause.OK, Cause.VALIDATOR_ERROR)


class Role(StrEnum):
    """Who gave an answer in a validator step."""

    MINER = "miner"  # a uid of the subnet, queried over the network; earns an EMA and weight
    BASELINE = "baseline"  # the validator's own reference student, answered locally; reported only
    # A user's request the gateway routed to a miner and handed to the validator signed; it has
    # no reference answer, so it never enters the mean, but a proven lie on it counts in full.
    ORGANIC = "organic"


def counts_toward_ema(role: Role, cause: Cause) -> bool:
    """Whether an answer enters its uid's round mean, EMA and lie check.

    Only miners have an EMA: the baseline is scored like one so an operator can see what a
    plain student earns, never weighted. A miner's answer counts whatever its cause (a timeout
    or a failed gate is the miner's zero, a proven lie its penalty) except
    ``VALIDATOR_ERROR``: the validator failed to score it, which says nothing about the miner,
    so the answer is skipped rather than zeroed.
    """
    return role is Role.MINER and cause is not Cause.VALIDATOR_ERROR


def counts_toward_lie_check(role: Role, cause: Cause) -> bool:
    """Whether an answer can prove its uid lied this round (if its cause ``proves_lie``).

    Every miner answer that counts toward the EMA, and every organic one: an organic answer has
    no teacher reference to score it against, so it is not averaged in (and a miner is not
    docked for the traffic the gateway chose to send it), but a lie proven on it is the same
    signed proof as on a synthetic prompt. It has to be: a miner that can tell user traffic
    from the validator's prompts would otherwise serve honestly only where it is scored.
    """
    if role is Role.ORGANIC:
        return cause is not Cause.VALIDATOR_ERROR
    return counts_toward_ema(role, cause)
