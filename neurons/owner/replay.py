"""Read a validator's state database for ``subnet simulate --replay DB``.

The schema is the validator's: ``SCHEMA`` in ``neurons/validator/store.py`` is the one place it
is written down (``subnet`` does not import ``neurons``, so the queries below name its columns
themselves; ``tests/unit/test_replay_schema.py`` runs them against a database the
real store created and fails if the two drift). What replay relies on:

* ``steps``: one row per committed step (``step``, ``block``).
* ``answers``: one row per answer; a miner's step score is the mean of its answers' scores in
  that step, as the validator computes it, and a ``cause`` that proves a lie
  (``Cause.proves_lie``) applies the validator's lie penalty. Rows with
  ``cause = 'validator_error'`` are skipped (the validator does not count them) and so are
  rows with a negative ``uid``: the validator's own baseline model (``BASELINE_UID`` in
  ``neurons/validator/judge.py``), not a miner.
* ``weight_sets``: ``weights_json`` is ``{"uid": weight, ...}`` of the normalised weights the
  validator computed after ``step`` (burn to the owner uid included); only ``success = 1``
  rows are replayed, as only those moved the validator's winner.
* ``meta``: ``config`` is the JSON of the config sections the validator ran (replay reads
  ``weights``); ``owner_uid`` is optional and defaults to 0, where the chain puts the subnet
  owner's hotkey (the validator derives the same uid from the metagraph).

The file is opened read-only, so replaying a live validator's database cannot disturb it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scoring.aggregate import proven_liars, round_means
from scoring.config import WeightsConfig
from scoring.sim_validator import replay_weights
from subnet.errors import ConfigError, StateError

F = npt.NDArray[np.float64]

# Every query replay runs, and so every table and column it needs from the validator's store.
Q_META = "SELECT key, value FROM meta"
Q_STEPS = "SELECT step, block FROM steps ORDER BY step"
Q_ANSWERS = "SELECT step, uid, hotkey, score, cause FROM answers WHERE uid >= 0 ORDER BY step, uid"
Q_WEIGHTS = "SELECT block, step, weights_json FROM weight_sets WHERE success = 1 ORDER BY block"
QUERIES = (Q_META, Q_STEPS, Q_ANSWERS, Q_WEIGHTS)


@dataclass(frozen=True)
class Recorded:
    """A validator's recorded run, as arrays over its steps and uids."""

    steps: tuple[int, ...]
    blocks: tuple[int, ...]
    step_scores: F  # [S, N]
    observed: npt.NDArray[np.bool_]  # [S, N]
    caught: npt.NDArray[np.bool_]  # [S, N] caught in a proven lie that step
    hotkeys: list[list[str]]  # per step, per uid ("" unknown)
    weight_steps: tuple[int, ...]  # indices into ``steps`` after which weights were set
    weight_blocks: tuple[int, ...]
    weights: F  # [W, N] recorded weights
    config: dict[str, Any]
    owner_uid: int

    @property
    def n_uids(self) -> int:
        return int(self.step_scores.shape[1])


def read_validator_db(path: str | Path) -> Recorded:
    """Load a validator DB; raises :class:`StateError` naming what is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise StateError(f"validator database not found: {p}")
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StateError(f"{p}: cannot open as SQLite: {e}") from e
    try:
        return _read(con, p)
    except sqlite3.DatabaseError as e:
        raise StateError(f"{p}: not a validator database ({e})") from e
    finally:
        con.close()


def _read(con: sqlite3.Connection, p: Path) -> Recorded:
    meta = dict(con.execute(Q_META).fetchall())
    try:
        config = json.loads(meta["config"])
        owner = int(meta.get("owner_uid", 0))
    except (KeyError, ValueError) as e:
        raise StateError(f"{p}: meta.config missing or not JSON ({e})") from e
    steps = con.execute(Q_STEPS).fetchall()
    if not steps:
        raise StateError(f"{p}: no recorded steps")
    answers = con.execute(Q_ANSWERS).fetchall()
    sets = con.execute(Q_WEIGHTS).fetchall()
    uids = [a[1] for a in answers]
    wts = [_weights_json(p, w) for _, _, w in sets]
    n = 1 + max([owner, *uids, *(u for w in wts for u in w)])
    index = {s: k for k, (s, _) in enumerate(steps)}
    per_step: list[list[tuple[int, float, str]]] = [[] for _ in steps]
    hotkeys = [[""] * n for _ in steps]
    for step, uid, hotkey, score, cause in answers:
        if step not in index:
            raise StateError(f"{p}: answer for unknown step {step}")
        if cause == "validator_error":
            continue
        per_step[index[step]].append((int(uid), float(score or 0.0), str(cause)))
        hotkeys[index[step]][uid] = hotkey or ""
    for k in range(1, len(steps)):  # a uid not queried this step keeps its last known hotkey
        for u in range(n):
            if not hotkeys[k][u]:
                hotkeys[k][u] = hotkeys[k - 1][u]
    scores, observed = np.zeros((len(steps), n)), np.zeros((len(steps), n), dtype=bool)
    caught = np.zeros((len(steps), n), dtype=bool)
    for k, rows in enumerate(per_step):
        if rows:
            uids_k = [u for u, _, _ in rows]
            try:
                scores[k], observed[k] = round_means(uids_k, [s for _, s, _ in rows], n)
                caught[k] = proven_liars(uids_k, [c for _, _, c in rows], n)
            except ValueError as e:
                raise StateError(f"{p}: step {steps[k][0]}: {e}") from e
    w_steps, w_blocks, w_mat = [], [], np.zeros((len(sets), n))
    for i, (block, step, _) in enumerate(sets):
        if step not in index:
            raise StateError(f"{p}: weight set at block {block} names unknown step {step}")
        w_steps.append(index[step])
        w_blocks.append(int(block))
        for u, w in wts[i].items():
            w_mat[i, u] = w
    return Recorded(
        steps=tuple(int(s) for s, _ in steps),
        blocks=tuple(int(b or 0) for _, b in steps),
        step_scores=scores,
        observed=observed,
        caught=caught,
        hotkeys=hotkeys,
        weight_steps=tuple(w_steps),
        weight_blocks=tuple(w_blocks),
        weights=w_mat,
        config=config,
        owner_uid=owner,
    )


def _weights_json(p: Path, text: str) -> dict[int, float]:
    try:
        raw = json.loads(text)
        out = {int(k): float(v) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise StateError(f"{p}: weights_json is not a {{uid: weight}} object: {text[:80]!r}") from e
    if any(u < 0 for u in out):
        raise StateError(f"{p}: negative uid in weights_json")
    return out


def recorded_weights_config(rec: Recorded) -> WeightsConfig:
    """The weights config the validator ran, from ``meta.config``."""
    section = rec.config.get("weights", {})
    if not isinstance(section, dict):
        raise StateError("meta.config.weights must be an object")
    try:
        return WeightsConfig(**section)
    except (TypeError, ValueError) as e:
        raise StateError(f"meta.config.weights is not a valid weights config: {e}") from e


def replay(rec: Recorded, cfg: WeightsConfig) -> F:
    """Weights ``[W, N]`` the recorded scores give under ``cfg`` at each recorded weight set."""
    return replay_weights(
        rec.step_scores,
        rec.observed,
        rec.caught,
        rec.hotkeys,
        list(rec.weight_steps),
        rec.owner_uid,
        cfg,
    )


def run_replay(args: argparse.Namespace) -> int:
    """``subnet simulate --replay DB``: reproduce the recorded weights, then replay the same
    scores under the loaded config (and each ``--sweep weights.KEY`` value)."""
    from neurons.owner import sim_report as rep
    from neurons.owner.sweep import sweep_values

    rec = read_validator_db(args.replay)
    if not rec.weight_steps:
        raise StateError(f"{args.replay}: no successful weight sets to replay")
    reproduced = float(np.abs(replay(rec, recorded_weights_config(rec)) - rec.weights).max())
    key, values = sweep_values(args)
    if key is not None and not key.startswith("weights."):
        raise ConfigError("--replay sweeps weights.* keys only (the chain is not replayed)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [_replay_run(out, "recorded", rec, rec.weights, reproduced, {})]
    for value in values:
        cfg = args.config.weights
        if key is not None:
            cfg = dataclasses.replace(cfg, **{key.split(".", 1)[1]: value})
        label = "replay" if key is None else f"replay_{key}={value}"
        runs.append(
            _replay_run(out, label, rec, replay(rec, cfg), reproduced, {key: value} if key else {})
        )
    for r in runs:
        print(
            f"{r.label}: gini={r.summary['gini_mean']:.3f} "
            f"top share={r.summary['top_share_mean']:.3f}"
        )
    print(f"recorded weights reproduced with the recorded config: max |diff| = {reproduced:.2e}")
    report = rep.write_html(out, f"subnet simulate --replay {Path(args.replay).name}", runs, None)
    print(f"report: {report}")
    return 0


def _replay_run(
    out: Path, label: str, rec: Recorded, w: F, reproduced: float, params: dict[str, Any]
) -> Any:
    from neurons.owner import sim_report as rep
    from scoring.simulate import gini

    miners = [u for u in range(rec.n_uids) if u != rec.owner_uid and w[:, u].any()]
    summary = {
        "label": label,
        "params": params,
        "weight_sets": len(rec.weight_steps),
        "gini_mean": float(np.mean([gini(row[miners]) for row in w])) if miners else 0.0,
        "top_share_mean": float(w[:, miners].max(axis=1).mean()) if miners else 0.0,
        "owner_burn_mean": float(w[:, rec.owner_uid].mean()),
        "recorded_reproduction_max_diff": reproduced,
    }
    with (out / f"{label}_weights.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["block", "step", *(f"uid{u}" for u in range(rec.n_uids))])
        for i, k in enumerate(rec.weight_steps):
            writer.writerow([rec.weight_blocks[i], rec.steps[k], *(f"{x:.6g}" for x in w[i])])
    (out / f"{label}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    fig = rep.figure(figsize=(7, 4))
    ax = fig.subplots()
    top = sorted(miners, key=lambda u: -float(w[-1, u]))[: rep.TOP_MINERS]
    for u in top:
        ax.plot(rec.weight_blocks, w[:, u], label=f"uid {u}")
    ax.set(xlabel="block", ylabel="weight", title=f"{label}: weights per miner")
    ax.legend(fontsize=7, ncol=2)
    return rep.RunReport(label, summary, {"emission": rep._save(fig, out / f"{label}_weights.png")})
