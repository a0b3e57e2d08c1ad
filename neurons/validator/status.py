"""`subnet validator status`: what a validator's state dir says, read through ``StoreReader``.

The last steps (block, answers, failures by cause, seconds), each miner's EMA, suspension and
the causes of its recent answers, and the last weight set (block, result, top weights). Reads
only (the live validator is never blocked: its file is in WAL mode and the reader opens it
read-only).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from neurons.validator.participant import Miner
from neurons.validator.store import StoreReader
from subnet.errors import StateError

DB_NAME = "validator.sqlite"


def read_status(state_dir: str | Path, *, last: int = 5) -> dict[str, Any]:
    """The status as plain data (also what ``--json`` prints)."""
    path = Path(state_dir).expanduser() / DB_NAME
    if not path.is_file():
        raise StateError(f"no validator state in {path.parent} (no {DB_NAME}); pass --state-dir")
    with StoreReader(path) as r:
        steps = r.steps()[-last:]
        first = steps[0].step - 1 if steps else None
        answers = r.answers(after_step=first) if steps else []
        ema = r.ema()
        weights = r.last_weight_set()
        taken = r.last_weight_set(successful_only=True)
    per_step: dict[int, Counter[str]] = defaultdict(Counter)
    per_miner: dict[int, Counter[str]] = defaultdict(Counter)
    for a in answers:
        per_step[a.step][a.cause.value] += 1
        if isinstance(a.who, Miner):
            per_miner[a.who.uid][a.cause.value] += 1
    return {
        "state": str(path),
        "steps": [
            {
                "step": s.step,
                "block": s.block,
                "miners": s.n_miners,
                "answers": s.n_answers,
                "causes": dict(per_step[s.step]),
                "baseline": s.baseline_score,
                "seconds": round(s.latency_s, 3),
            }
            for s in steps
        ],
        "miners": [
            {
                "uid": e.uid,
                "hotkey": e.hotkey,
                "ema": round(e.ema, 6),
                "suspended": e.suspended,
                "causes": dict(per_miner.get(e.uid, {})),
            }
            for e in sorted(ema, key=lambda e: (-e.ema, e.uid))
        ],
        "last_weight_set": _weights(weights),
        "last_successful_weight_set": _weights(taken),
    }


def _weights(w: Any) -> dict[str, Any] | None:
    if w is None:
        return None
    return {
        "block": w.block,
        "step": w.step,
        "success": w.success,
        "error": w.error,
        "weights": {str(u): round(v, 6) for u, v in sorted(w.weights.items())},
    }


def render_status(status: dict[str, Any], *, top: int = 20) -> str:
    """The status as text for a terminal."""
    out = [f"validator state: {status['state']}"]
    steps = status["steps"]
    if not steps:
        out.append("no step committed yet")
    else:
        out.append(f"last {len(steps)} steps:")
        for s in steps:
            causes = ", ".join(f"{c} {n}" for c, n in sorted(s["causes"].items())) or "-"
            base = "" if s["baseline"] is None else f", baseline {s['baseline']:.3f}"
            out.append(
                f"  step {s['step']:>6} block {s['block']:>8}: {s['answers']} answers "
                f"from {s['miners']} miners ({causes}){base}, {s['seconds']:.1f} s"
            )
    miners = [m for m in status["miners"] if m["ema"] > 0 or m["causes"] or m["suspended"]]
    out.append(f"miners ({len(miners)} with an EMA or recent answers, best first):")
    out.append(f"  {'uid':>5} {'EMA':>8} {'suspended':>9}  causes in these steps")
    for m in miners[:top]:
        causes = ", ".join(f"{c} {n}" for c, n in sorted(m["causes"].items())) or "-"
        out.append(f"  {m['uid']:>5} {m['ema']:>8.4f} {m['suspended']:>9}  {causes}")
    if len(miners) > top:
        out.append(f"  ... {len(miners) - top} more (--json lists all)")
    w = status["last_weight_set"]
    if w is None:
        out.append("weights: never set")
    else:
        result = "ok" if w["success"] else f"FAILED: {w['error']}"
        best = sorted(w["weights"].items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"uid {u} {v:.3f}" for u, v in best) or "none"
        out.append(f"last weight set: block {w['block']} (step {w['step']}): {result}; {shown}")
        ok = status["last_successful_weight_set"]
        if not w["success"]:
            out.append(
                "last successful weight set: "
                + ("never" if ok is None else f"block {ok['block']} (step {ok['step']})")
            )
    return "\n".join(out)
