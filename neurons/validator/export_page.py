"""The score export's HTML page: one self-contained file (no external script, font or style).

It fetches ``scores`` and ``scores/steps`` relative to where it was served (so it works behind a
reverse proxy under any prefix) and renders the
per-miner table, the EMA of every listed miner over the recent steps (inline SVG) and the
spot-check secrets' commitments (and the secrets, once revealed). Every value
is written with ``textContent`` (hotkeys come from the chain). When it is done it writes what it
drew into ``<pre id="render-status">`` (rows, lines, points, error) so a headless browser can
check the page without a screenshot diff.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Validator scores</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1a1a1a; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 24px 0 8px; }
  #meta, .note { color: #555; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
  th { background: #f0f0f0; }
  td.text { text-align: left; font-family: monospace; }
  tr.suspended td { background: #fde8e8; }
  #legend span { display: inline-block; margin-right: 14px; }
  #legend i { display: inline-block; width: 14px; height: 4px; margin-right: 4px;
              vertical-align: middle; }
  svg text { font-size: 11px; fill: #555; }
  #render-status { color: #999; font-size: 11px; }
</style>
</head>
<body>
<h1>Validator scores</h1>
<p id="meta">loading ...</p>
<h2>Miners</h2>
<p class="note">Score components, causes, spot checks and organic verdicts are those of the last
step; EMA, weight and suspension are current. Every step's numbers are in the CSV files below.</p>
<table id="miners">
  <thead><tr>
    <th>uid</th><th>hotkey</th><th>EMA</th><th>weight</th><th>answers</th><th>score</th>
    <th>s_kl</th><th>s_ref</th><th>s_speed</th><th>causes</th><th>spot checks</th>
    <th>organic</th><th>suspended</th>
  </tr></thead>
  <tbody></tbody>
</table>
<h2>EMA over time</h2>
<svg id="ema-chart" width="900" height="320" role="img" aria-label="EMA per miner"></svg>
<div id="legend"></div>
<h2>Spot-check secrets</h2>
<p class="note">Which answers are spot-checked is drawn with a secret of the validator's, one per
epoch. Its commitment (sha256) is published before any draw uses it; the secret is revealed once
its epoch is over, so anyone can recompute every draw.</p>
<table id="secrets">
  <thead><tr>
    <th>epoch</th><th>commitment</th><th>published at block</th><th>secret</th>
    <th>revealed at block</th>
  </tr></thead>
  <tbody></tbody>
</table>
<h2>Per-step CSV</h2>
<ul id="csv"></ul>
<pre id="render-status"></pre>
<script>
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SVG = "http://www.w3.org/2000/svg";
const fmt = (x, d = 3) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
const status = (obj) => {
  document.getElementById("render-status").textContent = JSON.stringify(obj);
};

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function table(doc) {
  const body = document.querySelector("#miners tbody");
  for (const m of doc.miners) {
    const tr = document.createElement("tr");
    if (m.suspended > 0) tr.className = "suspended";
    const causes = Object.entries(m.causes || {}).map(([c, n]) => c + " x" + n).join(", ");
    const sc = m.spot_checks || {};
    const org = m.organic || {};
    cell(tr, String(m.uid));
    cell(tr, m.hotkey.slice(0, 10) + "...", "text");
    cell(tr, fmt(m.ema));
    cell(tr, fmt(m.weight));
    cell(tr, String(m.answers || 0));
    cell(tr, fmt(m.score));
    cell(tr, fmt(m.s_kl));
    cell(tr, fmt(m.s_ref));
    cell(tr, fmt(m.s_speed));
    cell(tr, causes || "-", "text");
    cell(tr, (sc.checked || 0) + " checked, " + (sc.failed || 0) + " failed");
    cell(tr, (org.answers || 0) + " (" + (org.failed || 0) + " failed)");
    cell(tr, String(m.suspended));
    body.appendChild(tr);
  }
  return body.rows.length;
}

function secrets(doc) {
  const body = document.querySelector("#secrets tbody");
  for (const s of doc.spot_check_secrets || []) {
    const tr = document.createElement("tr");
    cell(tr, String(s.epoch));
    cell(tr, s.commitment, "text");
    cell(tr, String(s.published_block));
    cell(tr, s.secret === null ? "sealed until its epoch ends" : s.secret, "text");
    cell(tr, s.revealed_block === null ? "-" : String(s.revealed_block));
    body.appendChild(tr);
  }
  return body.rows.length;
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function chart(doc) {
  const svg = document.getElementById("ema-chart");
  const W = 900, H = 320, L = 48, R = 16, T = 12, B = 32;
  const steps = doc.history.steps;
  const x = (i) => L + (steps.length < 2 ? 0 : i * (W - L - R) / (steps.length - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  svg.appendChild(el("line", {x1: L, y1: y(0), x2: W - R, y2: y(0), stroke: "#999"}));
  svg.appendChild(el("line", {x1: L, y1: y(0), x2: L, y2: y(1), stroke: "#999"}));
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svg.appendChild(el("text", {x: 8, y: y(v) + 4}, v.toFixed(2)));
    svg.appendChild(el("line", {x1: L, y1: y(v), x2: W - R, y2: y(v), stroke: "#eee"}));
  }
  if (steps.length) {
    svg.appendChild(el("text", {x: L, y: H - 8}, "step " + steps[0]));
    svg.appendChild(el("text", {x: W - R - 70, y: H - 8}, "step " + steps[steps.length - 1]));
  }
  const legend = document.getElementById("legend");
  let lines = 0, points = 0;
  doc.miners.forEach((m, n) => {
    const series = doc.history.ema[String(m.uid)] || [];
    let d = "", pen = false;
    series.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? " L " : " M ") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
      points += 1;
    });
    if (!d) return;
    const color = COLORS[n % COLORS.length];
    svg.appendChild(el("path", {d: d.trim(), fill: "none", stroke: color,
                                "stroke-width": 2, class: "ema-line"}));
    lines += 1;
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    item.appendChild(swatch);
    item.appendChild(document.createTextNode("uid " + m.uid));
    legend.appendChild(item);
  });
  return {lines, points};
}

async function main() {
  try {
    const doc = await (await fetch("scores")).json();
    const s = doc.step;
    const w = doc.weights;
    document.getElementById("meta").textContent =
      "validator " + (doc.validator.hotkey || "?") + " on netuid " + doc.validator.netuid +
      (s ? ", step " + s.step + " at block " + s.block : ", no step yet") +
      (w ? "; weights last set at block " + w.block + " (step " + w.step + ")" : "");
    const rows = table(doc);
    const drawn = chart(doc);
    const sealed = secrets(doc);
    const list = document.getElementById("csv");
    const csv = await (await fetch("scores/steps")).json();
    for (const item of csv.steps.slice(-20)) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "scores/steps/" + item.step + ".csv";
      a.textContent = "step " + item.step;
      li.appendChild(a);
      list.appendChild(li);
    }
    status({rows, lines: drawn.lines, points: drawn.points, secrets: sealed,
            steps: doc.history.steps.length, csv: csv.steps.length, error: null});
  } catch (e) {
    status({rows: 0, lines: 0, points: 0, error: String(e)});
  }
}
main();
</script>
</body>
</html>
"""
