"""Bounded evidence: what of a step's failed answers is kept, so hostile miners cannot fill the
validator's disk.

Within a step, each miner's evidence is capped at ``step_bytes``: proven lies first (they are
what a hotkey can be held to), then the other failures, smallest first; the first proven lie is
kept even when it alone is larger than the cap (a truncated signed stream proves nothing, and a
stream is bounded by ``validator.max_response_bytes`` anyway). Across steps the store keeps
ordinary evidence ``evidence_keep_steps`` steps, proven lies ``evidence_keep_lie_steps``, and
never more than ``evidence_max_bytes`` in all (``Store.prune_evidence``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from neurons.validator.store import EvidenceRow


def row_bytes(e: EvidenceRow) -> int:
    """What a row costs (the store's own measure: the lengths of its text columns)."""
    return len(e.request_body) + len(e.response_b64) + len(e.signature) + len(e.detail[:500])


def bound_evidence(
    rows: Sequence[EvidenceRow], step_bytes: int, lie_causes: Iterable[str]
) -> list[EvidenceRow]:
    """The rows kept of one step, in their original order (see the module docstring)."""
    lies = set(lie_causes)
    per: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(rows):
        per[e.uid].append(i)
    keep: set[int] = set()
    for idx in per.values():
        order = sorted(idx, key=lambda i: (rows[i].cause not in lies, row_bytes(rows[i]), i))
        used = 0
        for n, i in enumerate(order):
            size = row_bytes(rows[i])
            if used + size <= step_bytes or (n == 0 and rows[i].cause in lies):
                keep.add(i)
                used += size
    return [e for i, e in enumerate(rows) if i in keep]
