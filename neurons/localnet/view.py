"""Rendering for the localnet: the per-epoch table, the summary, its JSON and the PNG chart.

Pure functions of :class:`~neurons.localnet.watch.Snapshot` values, so ``--status`` and the
live run print the same tables and the tests can check the JSON without a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurons.localnet.watch import MinerRow, Snapshot

NO_VALUE = "-"


def _f(value: float | None, digits: int = 3) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{c}x{n}" for c, n in causes.items()) or NO_VALUE


def epoch_table(snap: Snapshot, title: str = "") -> Any:
    """A rich table: one row per miner for one epoch window."""
    from rich.table import Table

    table = Table(
        title=title
        or f"epoch {snap.epoch}  (chain epoch {snap.chain_epoch}, block {snap.block}, "
        f"{snap.steps} validator steps, {snap.elapsed_s:.0f} s)",
        title_justify="left",
    )
    for name in (
        "uid",
        "role",
        "answers",
        "score",
        "s_kl",
        "s_ref",
        "s_speed",
        "causes",
        "EMA",
        "weight",
        "incentive",
        "emission",
        "total",
    ):
        table.add_column(
            name,
            justify="left" if name in ("role", "causes") else "right",
            no_wrap=name != "causes",
        )
    for m in snap.miners:
        table.add_row(
            str(m.uid),
            m.role + ("" if m.alive else " (dead)"),
            str(m.answers),
            _f(m.score),
            _f(m.s_kl),
            _f(m.s_ref),
            _f(m.s_speed),
            _causes(m.causes) + (f" (suspended {m.suspended})" if m.suspended else ""),
            _f(m.ema),
            _f(m.weight),
            _f(m.incentive),
            _f(m.emission, 2),
            _f(m.emission_total, 2),
        )
    return table


def summarize(snaps: Sequence[Snapshot]) -> list[dict[str, Any]]:
    """One record per miner over the whole run (the JSON ``miners`` list)."""
    if not snaps:
        return []
    last = snaps[-1]
    out = []
    for m in last.miners:
        rows = [r for s in snaps for r in s.miners if r.uid == m.uid]
        causes: dict[str, int] = {}
        for r in rows:
            for c, n in r.causes.items():
                causes[c] = causes.get(c, 0) + n
        scored = [r for r in rows if r.score is not None]
        answers = sum(r.answers for r in scored)
        out.append(
            {
                "uid": m.uid,
                "role": m.role,
                "emission_total": round(m.emission_total, 6),
                "emission_per_epoch": [round(r.emission, 6) for r in rows],
                "answers": sum(r.answers for r in rows),
                "mean_score": _weighted(scored, answers, "score"),
                "mean_s_kl": _weighted(scored, answers, "s_kl"),
                "mean_s_ref": _weighted(scored, answers, "s_ref"),
                "mean_s_speed": _weighted(scored, answers, "s_speed"),
                "causes": dict(sorted(causes.items(), key=lambda kv: -kv[1])),
                "final_ema": m.ema,
                "final_weight": m.weight,
                "final_incentive": m.incentive,
                "alive": m.alive,
                "model_source": m.model_source
                or next((r.model_source for r in reversed(rows) if r.model_source), ""),
                "spot_checks": spot_check_totals(rows),
            }
        )
    return out


def spot_check_totals(rows: Sequence[MinerRow]) -> dict[str, int]:
    """The drawn spot checks of a miner's windows: ``checked`` (recomputed, or attempted) =
    ``passed`` + ``failed`` + ``unavailable`` (+ the validator's own errors); answers drawn
    that had already failed a gate (``skipped``) are not checks."""
    total: dict[str, int] = {}
    for r in rows:
        for outcome, n in r.spot_checks.items():
            total[outcome] = total.get(outcome, 0) + n
    keys = ("passed", "failed", "unavailable")
    out = {k: total.get(k, 0) for k in keys}
    return {"checked": sum(out.values()) + total.get("error", 0), **out}


def _weighted(rows: list[MinerRow], total: int, attr: str) -> float | None:
    if total <= 0:
        return None
    return round(sum(float(getattr(r, attr)) * r.answers for r in rows) / total, 6)


def summary_table(miners: Sequence[dict[str, Any]], epochs: int) -> Any:
    from rich.table import Table

    table = Table(title=f"localnet summary: {epochs} epochs", title_justify="left")
    for name in (
        "uid",
        "role",
        "emission (α)",
        "share",
        "answers",
        "mean score",
        "s_kl",
        "s_ref",
        "final EMA",
        "final weight",
        "checks ok/failed/n.a.",
        "causes",
    ):
        table.add_column(
            name,
            justify="left" if name in ("role", "causes") else "right",
            no_wrap=name != "causes",
        )
    total = sum(m["emission_total"] for m in miners) or 1.0
    for m in sorted(miners, key=lambda m: -m["emission_total"]):
        table.add_row(
            str(m["uid"]),
            m["role"] + ("" if m["alive"] else " (dead)"),
            f"{m['emission_total']:.2f}",
            f"{m['emission_total'] / total:.1%}",
            str(m["answers"]),
            _f(m["mean_score"]),
            _f(m["mean_s_kl"]),
            _f(m["mean_s_ref"]),
            _f(m["final_ema"]),
            _f(m["final_weight"]),
            "{passed}/{failed}/{unavailable}".format(**m["spot_checks"]),
            _causes(m["causes"]),
        )
    return table


def write_chart(snaps: Sequence[Snapshot], path: Path) -> Path:
    """Cumulative emission per miner over epochs (a pyplot-free matplotlib figure: no display
    and no process-wide backend switch)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.subplots()
    if snaps:
        for m in snaps[-1].miners:
            xs = [s.epoch for s in snaps]
            ys = [next((r.emission_total for r in s.miners if r.uid == m.uid), 0.0) for s in snaps]
            ax.plot(xs, ys, marker="o", label=f"uid {m.uid} {m.role}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cumulative emission (α)")
    ax.set_title("localnet: emission per miner")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
