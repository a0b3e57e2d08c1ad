"""Read a validator's state database for ``subnet simulate --replay DB``.

The database is read through the validator store's own reader
(:class:`neurons.validator.store.StoreReader`, opened read-only, so replaying a live
validator's database cannot disturb it); the schema and its queries live there. What replay
takes from it:

* the committed steps, in order;
* every answer: a miner's step score is the mean of the scores of its answers that count, as
  the validator computes it, and a cause that proves a lie (``Cause.proves_lie``) applies the
  validator's lie penalty. Which answers count (not the validator's own baseline student's,
  not those the validator failed to score) is the validator's rule,
  :func:`scoring.aggregate.score_round` over :func:`scoring.causes.counts_toward_ema`;
* the successful weight sets: the normalised weights the validator computed after a step (burn
  to the owner uid included); only those are replayed, as only those moved its winner;
* ``meta``: ``config`` is the JSON of the config sections the validator ran (replay reads
  ``weights``); ``owner_uid`` is optional and defaults to 0, where the chain puts the subnet
  owner's hotkey (the validator derives the same uid from the metagraph).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from neurons.validator.participant import Miner
from neurons.validator.store import StepRow, StoredAnswer, StoredWeightSet, StoreReader
from scoring.aggregate import RoundAnswer, score_round
from scoring.config import WeightsConfig
from scoring.sim_validator import replay_weights
from subnet.errors import ConfigError, StateError

F = npt.NDArray[np.float64]


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
    with StoreReader(p) as db:
        meta = db.meta()
        try:
            config = json.loads(meta["config"])
            owner = int(meta.get("owner_uid", 0))
        except (KeyError, ValueError) as e:
            raise StateError(f"{p}: meta.config missing or not JSON ({e})") from e
        steps = db.steps()
        if not steps:
            raise StateError(f"{p}: no recorded steps")
        answers = db.answers()
        sets = db.weight_sets(successful_only=True)
    return _recorded(p, config, owner, steps, answers, sets)


def _recorded(
    p: Path,
    config: dict[str, Any],
    owner: int,
    steps: list[StepRow],
    answers: list[StoredAnswer],
    sets: list[StoredWeightSet],
) -> Recorded:
    uids = [a.who.uid for a in answers if isinstance(a.who, Miner)]
    n = 1 + max([owner, *uids, *(u for w in sets for u in w.weights)])
    index = {s.step: k for k, s in enumerate(steps)}
    per_step: list[list[RoundAnswer]] = [[] for _ in steps]
    hotkeys = [[""] * n for _ in steps]
    for a in answers:
        if a.step not in index:
            raise StateError(f"{p}: answer for unknown step {a.step}")
        per_step[index[a.step]].append(RoundAnswer(a.who.role, a.who.uid, a.score, a.cause))
        if isinstance(a.who, Miner):
            hotkeys[index[a.step]][a.who.uid] = a.who.hotkey
    for k in range(1, len(steps)):  # a uid not queried this step keeps its last known hotkey
        for u in range(n):
            if not hotkeys[k][u]:
                hotkeys[k][u] = hotkeys[k - 1][u]
    scores, observed = np.zeros((len(steps), n)), np.zeros((len(steps), n), dtype=bool)
    caught = np.zeros((len(steps), n), dtype=bool)
    for k, round_answers in enumerate(per_step):
        try:
            r = score_round(round_answers, n)
        except ValueError as e:
            raise StateError(f"{p}: step {steps[k].step}: {e}") from e
        scores[k], observed[k], caught[k] = r.means, r.observed, r.caught
    w_steps, w_blocks, w_mat = [], [], np.zeros((len(sets), n))
    for i, ws in enumerate(sets):
        if ws.step not in index:
            raise StateError(f"{p}: weight set at block {ws.block} names unknown step {ws.step}")
        w_steps.append(index[ws.step])
        w_blocks.append(ws.block)
        for u, w in ws.weights.items():
            w_mat[i, u] = w
    return Recorded(
        steps=tuple(s.step for s in steps),
        blocks=tuple(s.block for s in steps),
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
    out = rep.prepare_out(Path(args.out))
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
