"""Simulator outputs: per-epoch CSV/JSON tables, PNG charts, one self-contained HTML report.

The HTML embeds every chart as base64, so the report is one file an owner can mail or attach to
a proposal. A small inline script writes, once the page has loaded, each image's load status
into ``<pre id="img-status">`` (JSON), which is how the browser test checks the charts rendered.
Matplotlib is imported lazily with the Agg backend (no display, nothing at import time).
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoring.sim_scenarios import Scenario
from scoring.simulate import SimResult

TOP_MINERS = 8


@dataclass
class RunReport:
    """One run of a sweep: its label, headline numbers and chart files."""

    label: str
    summary: dict[str, Any]
    charts: dict[str, Path] = field(default_factory=dict)


def summarize(label: str, sc: Scenario, r: SimResult, params: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of a run (also written as ``<label>_summary.json``)."""
    half = r.epochs // 2
    out: dict[str, Any] = {
        "label": label,
        "scenario": sc.name,
        "params": params,
        "epochs": r.epochs,
        "event_epoch": sc.event,
        "gini_mean_2nd_half": float(r.gini[half:].mean()),
        "owner_burn_mean": float(r.owner_share.mean()),
        "exact_check_epochs": list(r.exact_epochs),
        "max_fast_exact_deviation": r.max_deviation,
        "yield_2nd_half": {v: r.mean_yield(v) for v in r.validator_names},
    }
    if sc.challenger and sc.incumbent:
        out["overtake_epochs"] = r.overtake_epoch(sc.challenger, sc.incumbent, sc.event)
    if sc.focus_validator:
        out["focus_validator"] = sc.focus_validator
        out["focus_yield"] = r.mean_yield(sc.focus_validator)
    if sc.focus_miner:
        k = r.miner_names.index(sc.focus_miner)
        out["focus_miner"] = sc.focus_miner
        out["focus_miner_share"] = float(r.miner_share[half:, k].mean())
        out["top_miner_share"] = float(r.miner_share[half:].max(axis=1).mean())
    return out


def write_tables(out: Path, label: str, r: SimResult, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{label}_miners.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "gini", "owner_burn", *r.miner_names])
        for t in range(r.epochs):
            w.writerow(
                [
                    t,
                    f"{r.gini[t]:.6g}",
                    f"{r.owner_share[t]:.6g}",
                    *(f"{x:.6g}" for x in r.miner_share[t]),
                ]
            )
    yields = r.validator_yield()
    with (out / f"{label}_validators.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "epoch",
                *(f"{v}_dividend_share" for v in r.validator_names),
                *(f"{v}_yield" for v in r.validator_names),
            ]
        )
        for t in range(r.epochs):
            w.writerow(
                [t, *(f"{x:.6g}" for x in r.dividend_share[t]), *(f"{x:.6g}" for x in yields[t])]
            )
    (out / f"{label}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def figure(*, figsize: tuple[float, float], **kwargs: Any) -> Any:
    """A figure drawn without pyplot: no process-wide backend switch and no global registry
    of open figures to leak (saving renders with Agg)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def write_charts(out: Path, label: str, sc: Scenario, r: SimResult) -> dict[str, Path]:
    """Emission share per miner, validator yield, Gini; returns chart name -> file."""
    t = np.arange(r.epochs)
    files: dict[str, Path] = {}

    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    order = np.argsort(-r.miner_share[-max(1, r.epochs // 10) :].mean(axis=0))
    show = [int(k) for k in order[:TOP_MINERS]]
    for name in (sc.challenger, sc.incumbent, sc.focus_miner):
        if name and r.miner_names.index(name) not in show:
            show.append(r.miner_names.index(name))
    for k in show:
        ax.plot(
            t,
            r.miner_share[:, k],
            label=r.miner_names[k],
            lw=2 if r.miner_names[k] in (sc.challenger, sc.focus_miner) else 1,
        )
    if r.owner_share.max() > 0:
        ax.plot(t, r.owner_share, "k:", label="owner (burn)")
    if sc.event:
        ax.axvline(sc.event, color="grey", ls="--", lw=1)
    ax.set(xlabel="epoch", ylabel="share of miner emission", title=f"{label}: miner emission")
    ax.legend(fontsize=7, ncol=2)
    files["emission"] = _save(fig, out / f"{label}_emission.png")

    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    y = r.validator_yield()
    for i, name in enumerate(r.validator_names):
        focus = name == sc.focus_validator
        ax.plot(t, y[:, i], lw=2.5 if focus else 0.8, label=name if focus or i < 6 else None)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(
        xlabel="epoch",
        ylabel="dividend share / stake share",
        title=f"{label}: validator dividend yield",
    )
    ax.legend(fontsize=7, ncol=2)
    files["yield"] = _save(fig, out / f"{label}_yield.png")

    fig = figure(figsize=(7, 3))
    ax = fig.subplots()
    ax.plot(t, r.gini)
    ax.set(xlabel="epoch", ylabel="Gini", ylim=(0, 1), title=f"{label}: Gini of miner emission")
    files["gini"] = _save(fig, out / f"{label}_gini.png")
    return files


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


SWEEP_METRICS = ("focus_yield", "overtake_epochs", "focus_miner_share", "gini_mean_2nd_half")


def write_sweep_chart(out: Path, key: str, runs: Sequence[RunReport]) -> Path | None:
    """One bar chart per headline metric across the sweep's values."""
    metrics = [m for m in SWEEP_METRICS if all(run.summary.get(m) is not None for run in runs)]
    if len(runs) < 2 or not metrics:
        return None
    fig = figure(figsize=(3.5 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    labels = [str(run.summary["params"].get(key, run.label)) for run in runs]
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.bar(labels, [float(run.summary[m]) for run in runs])
        ax.set(title=m, xlabel=key)
    return _save(fig, out / "sweep.png")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_STATUS_JS = """
window.addEventListener('load', function () {
  var s = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, ok: im.complete && im.naturalWidth > 0, width: im.naturalWidth};
  });
  document.getElementById('img-status').textContent = JSON.stringify(s);
});
"""


def write_html(out: Path, title: str, runs: Sequence[RunReport], sweep: Path | None) -> Path:
    """The self-contained report: headline table, sweep chart, charts side by side."""
    keys = sorted(
        {k for run in runs for k, v in run.summary.items() if not isinstance(v, dict | list)}
        - {"label"}
    )
    head = "".join(f"<th>{html.escape(run.label)}</th>" for run in runs)
    rows = []
    for k in keys:
        cells = "".join(f"<td>{_fmt(run.summary.get(k))}</td>" for run in runs)
        rows.append(f"<tr><th>{html.escape(k)}</th>{cells}</tr>")
    charts = []
    for name in ("emission", "yield", "gini"):
        cells = "".join(
            f"<td>{_img(run.charts[name], f'{run.label} {name}')}</td>"
            for run in runs
            if name in run.charts
        )
        charts.append(f"<tr>{cells}</tr>")
    sweep_html = f"<h2>Sweep</h2>{_img(sweep, 'sweep')}" if sweep else ""
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}}
img{{max-width:560px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table><tr><th></th>{head}</tr>{"".join(rows)}</table>{sweep_html}
<h2>Charts</h2><table><tr>{head}</tr>{"".join(charts)}</table>
<pre id="img-status">pending</pre>
<script>{_STATUS_JS}</script></body></html>
"""
    path = out / "report.html"
    path.write_text(doc)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape("—" if v is None else str(v))


@contextmanager
def progress(total: int, description: str, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar over ``total`` epochs; yields ``advance()`` (a no-op if disabled)."""
    if not enabled:
        yield lambda _epoch=0: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda _epoch=0: bar.advance(task)
