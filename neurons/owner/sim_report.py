"""Simulator outputs: per-epoch CSV/JSON tables, PNG charts, one self-contained HTML report.

The HTML embeds every chart as base64, so the report is one file an owner can mail or attach to
a proposal. A small inline script writes, once the page has loaded, each image's load status
into a hidden ``<pre id="img-status">`` (JSON) and the page's scroll width into a hidden
``<pre id="layout">``, which is how the browser test checks the charts rendered and fit.
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
MAX_VALIDATOR_LINES = 6  # above this the yield chart draws a band for the others

SCENARIO_HELP = {
    "baseline": "An honest subnet: validators with stakes 100, 50, 33, ... and miners of spread "
    "quality. At a quarter of the run the runner-up miner ships a better model; read how many "
    "epochs it takes to overtake the leader.",
    "newcomer": "A better miner registers at a quarter of the run; read how many epochs it takes "
    "to overtake the incumbent leader.",
    "copier": "A validator with 10% of the stake copies the others' weights from an earlier "
    "epoch instead of scoring miners; read its yield (below 1: it is paid less than its stake).",
    "cabal": "The three smallest validators move half their weight to a weak miner of theirs; "
    "read that miner's emission share and the cabal's yield.",
    "cheater": "A miner fakes top answers and is caught with the spot-check probability; read its "
    "emission share against the top miner's.",
    "offline": "The largest validator stops setting weights at a quarter of the run; read its "
    "yield after the activity cutoff.",
    "replay": "A validator's recorded scores, re-run under other weight settings.",
}

METRIC_HELP = {
    "scenario": "the built-in scenario run",
    "epochs": "Yuma epochs simulated",
    "event_epoch": "epoch of the scenario's event (0: none)",
    "seconds": "wall time of the run",
    "gini_mean_2nd_half": "inequality of miner emission over the second half (0 equal, 1 one "
    "miner takes all)",
    "owner_burn_mean": "mean share of emission burned to the owner uid (weights.burn_share)",
    "max_fast_exact_deviation": "largest difference between the fast and the exact Yuma engine "
    "on the checked epochs (should be ~1e-9)",
    "overtake_epochs": "epochs after the event until the challenger's emission passes the "
    "incumbent's (lower: the subnet rewards improvement faster)",
    "focus_validator": "the validator the scenario is about",
    "focus_yield": "that validator's dividend share / stake share over the second half (1.0: "
    "paid exactly for its stake; below 1: Yuma gives part of its dividends to the others)",
    "focus_miner": "the miner the scenario is about",
    "focus_miner_share": "that miner's mean share of miner emission over the second half",
    "top_miner_share": "the best miner's mean share over the second half",
}


@dataclass
class RunReport:
    """One run of a sweep: its label, headline numbers and chart files."""

    label: str
    summary: dict[str, Any]
    charts: dict[str, Path] = field(default_factory=dict)


def prepare_out(out: Path) -> Path:
    """The output folder, ready: created, writable, and cleared of a previous run's outputs
    (only files this report writes: a reused folder never mixes two runs). One-line
    ConfigError otherwise."""
    from subnet.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    for pattern in OUTPUT_PATTERNS:
        for old in out.glob(pattern):
            if old.is_file():
                old.unlink()
    return out


OUTPUT_PATTERNS = (
    "*_miners.csv",
    "*_validators.csv",
    "*_summary.json",
    "*_emission.png",
    "*_yield.png",
    "*_gini.png",
    "*_weights.csv",
    "sweep.png",
    "report.html",
    "runs.json",
)


def config_record(cfg: Any, **extra: Any) -> dict[str, Any]:
    """A run's whole configuration as JSON-able data (the summary's ``config``)."""
    import dataclasses

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    return {**extra, **plain(cfg)}


def summarize(
    label: str,
    sc: Scenario,
    r: SimResult,
    params: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Headline numbers of a run (also written as ``<label>_summary.json``); ``params`` is the
    swept value, ``config`` everything the run used."""
    half = r.epochs // 2
    out: dict[str, Any] = {
        "label": label,
        "scenario": sc.name,
        "params": params,
        "config": config or {},
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
    ax.plot(t, r.owner_share, "k:", lw=1.5, label="owner uid (burned)")
    if sc.event:
        ax.axvline(sc.event, color="grey", ls="--", lw=1)
    ax.set(xlabel="epoch", ylabel="share of miner emission", title=f"{label}: miner emission")
    ax.legend(fontsize=7, ncol=2)
    files["emission"] = _save(fig, out / f"{label}_emission.png")

    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    y = r.validator_yield()
    names = list(r.validator_names)
    if len(names) <= MAX_VALIDATOR_LINES:
        for i, name in enumerate(names):
            ax.plot(t, y[:, i], lw=2.5 if name == sc.focus_validator else 1, label=name)
    else:  # a readable chart: the others as a median line and a min-max band
        others = [i for i, n in enumerate(names) if n != sc.focus_validator]
        band = y[:, others]
        ax.fill_between(
            t,
            np.nanmin(band, axis=1),
            np.nanmax(band, axis=1),
            color="tab:blue",
            alpha=0.2,
            label=f"{len(others)} validators: min-max",
        )
        ax.plot(t, np.nanmedian(band, axis=1), color="tab:blue", lw=1, label="their median")
        if sc.focus_validator in names:
            k = names.index(sc.focus_validator)
            ax.plot(t, y[:, k], color="tab:red", lw=2.5, label=sc.focus_validator)
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


def _img(path: Path, alt: str, cls: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:sans-serif;margin:1em;max-width:1360px}
table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top;text-align:left}
table.charts{width:100%;table-layout:fixed}
table.charts img{width:100%;height:auto}
img.sweep{max-width:100%}
.help{color:#555;font-size:12px;font-weight:normal}
"""

_STATUS_JS = """
window.addEventListener('load', function () {
  var s = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, ok: im.complete && im.naturalWidth > 0, width: im.naturalWidth};
  });
  document.getElementById('img-status').textContent = JSON.stringify(s);
  document.getElementById('layout').textContent = JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
});
"""


def write_html(out: Path, title: str, runs: Sequence[RunReport], sweep: Path | None) -> Path:
    """The self-contained report: what the scenario is, headline numbers with what each means,
    the configuration, the sweep chart, charts side by side (scaled to the window)."""
    keys = sorted(
        {k for run in runs for k, v in run.summary.items() if not isinstance(v, dict | list)}
        - {"label"}
    )
    head = "".join(f"<th>{html.escape(run.label)}</th>" for run in runs)
    rows = []
    for k in keys:
        cells = "".join(f"<td>{_fmt(run.summary.get(k))}</td>" for run in runs)
        what = METRIC_HELP.get(k, "")
        rows.append(
            f'<tr><th>{html.escape(k)}<br><span class="help">{html.escape(what)}</span></th>'
            f"{cells}</tr>"
        )
    charts = []
    for name in ("emission", "yield", "gini"):
        cells = "".join(
            f"<td>{_img(run.charts[name], f'{run.label} {name}')}</td>"
            for run in runs
            if name in run.charts
        )
        charts.append(f"<tr>{cells}</tr>")
    sweep_html = f"<h2>Sweep</h2>{_img(sweep, 'sweep', 'sweep')}" if sweep else ""
    scenarios = sorted({str(run.summary.get("scenario", "")) for run in runs})
    about = "".join(
        f"<p><b>{html.escape(sc)}</b>: {html.escape(SCENARIO_HELP.get(sc, ''))}</p>"
        for sc in scenarios
    )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Scenario</h2>{about}
<h2>Results</h2>
<table><tr><th></th>{head}</tr>{"".join(rows)}</table>{sweep_html}
<h2>Charts</h2><table class="charts"><tr>{head}</tr>{"".join(charts)}</table>
{_config_html(runs)}
<pre id="img-status" hidden>pending</pre><pre id="layout" hidden>pending</pre>
<script>{_STATUS_JS}</script></body></html>
"""
    path = out / "report.html"
    path.write_text(doc)
    return path


def _config_html(runs: Sequence[RunReport]) -> str:
    """The configuration the runs used: shared values once, the swept value per run."""
    flat = [_flatten(run.summary.get("config", {})) for run in runs]
    if not any(flat):
        return ""
    keys = sorted(set().union(*flat))
    same = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) == 1]
    differ = [k for k in keys if k not in same]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(flat[0].get(k))}</td></tr>" for k in same
    )
    per_run = ""
    if differ:
        head = "".join(f"<th>{html.escape(run.label)}</th>" for run in runs)
        body = "".join(
            f"<tr><th>{html.escape(k)}</th>"
            + "".join(f"<td>{_fmt(f.get(k))}</td>" for f in flat)
            + "</tr>"
            for k in differ
        )
        per_run = f"<h3>Per run</h3><table><tr><th></th>{head}</tr>{body}</table>"
    return (
        "<h2>Configuration</h2><details><summary>every value the runs shared "
        f"({len(same)})</summary><table>{rows}</table></details>{per_run}"
    )


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


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
