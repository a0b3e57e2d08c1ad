"""The validator's state in one SQLite file: steps, per-answer records, EMA, evidence, weights.

This package owns the file's schema and every query against it: ``schema`` (the tables and
their migrations), ``records`` (the typed rows), ``writer`` (:class:`Store`, the validator's
only connection) and ``reader`` (:class:`StoreReader`). The validator writes through
:class:`Store`; everything else that looks at a validator's state (the owner's
``subnet simulate --replay``, the localnet's watcher) reads through :class:`StoreReader`, so a
change of schema is made in this one package (``tests/unit/test_store_reader.py`` runs every read
against the schema the store creates and fails if the two drift).

Crash safety comes from one rule: everything a step produces (its answers, evidence, the new
EMA and the step row itself) is written in **one** transaction by :meth:`Store.commit_step`, so
a ``kill -9`` at any point leaves either the whole step or none of it; the step in flight is
redone from scratch after a restart (it is seeded from its block, so it asks the same prompts).
Committing a step whose number or block is already stored is refused (``StateError``), which
makes a restart that races an old process harmless instead of a duplicate.

A database written by an older version is brought up to date in place when the validator
opens it (:meth:`Store._migrate`); :class:`StoreReader` reads such a file as it is, without
touching it.
"""

from neurons.validator.store.reader import StoreReader
from neurons.validator.store.records import (
    AnswerRow,
    EmaPoint,
    EmaRow,
    EvidenceRetention,
    EvidenceRow,
    ModelWatch,
    PromptRow,
    SpotCheckRow,
    SpotSecret,
    StepRow,
    StoredAnswer,
    StoredWeightSet,
)
from neurons.validator.store.schema import SCHEMA, STEP_DONE
from neurons.validator.store.writer import Store

__all__ = [
    "SCHEMA",
    "STEP_DONE",
    "AnswerRow",
    "EmaPoint",
    "EmaRow",
    "EvidenceRetention",
    "EvidenceRow",
    "ModelWatch",
    "PromptRow",
    "SpotCheckRow",
    "SpotSecret",
    "StepRow",
    "Store",
    "StoreReader",
    "StoredAnswer",
    "StoredWeightSet",
]
