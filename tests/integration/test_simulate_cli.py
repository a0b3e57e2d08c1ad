"""``subnet simulate`` end to end: sweeps write tables/charts/report; replay of a validator DB.

The validator DB here is written through the validator's own store API
(``neurons/validator/store/``) with a long synthetic history (15 steps, a re-registered uid,
a miner caught lying once, winner-take-most), its weights produced by the same
scoring.aggregate functions the validator runs. ``test_replay_validator_db.py`` replays a
database the validator node itself wrote.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from neurons.owner.replay import read_validator_db, recorded_weights_config, replay
from neurons.validator.participant import BASELINE, Miner, Participant
from neurons.validator.store import AnswerRow, EmaRow, StepRow, Store
from scoring.aggregate import (
    advance_ema,
    apply_burn,
    proven_liars,
    reset_changed,
    round_means,
    transform_weights,
)
from scoring.causes import Cause
from scoring.config import WeightsConfig
from subnet.cli import main
from subnet.errors import StateError

OWNER, N = 0, 7


def _answer(who: Participant, task: str, score: float, cause: str) -> AnswerRow:
    return AnswerRow(
        who=who,
        task_id=task,
        score=score,
        cause=cause,
        detail="",
        gate=1.0,
        s_kl=score,
        s_ref=score,
        s_speed=1.0,
        kl=None,
        rkl=None,
        tv=None,
        overlap=None,
        correct=None,
        n_tokens=4,
        ttft_s=None,
        total_s=None,
        verified=False,
        verify_dp=None,
        identity=None,
        provenance={},
    )


def _write_validator_db(path: Path, cfg: WeightsConfig, steps: int = 15) -> np.ndarray:
    rng = np.random.default_rng(5)
    quality = np.array([0, 0.2, 0.5, 0.6, 0.8, 0.3, 0.7])
    store = Store(path)
    store.set_meta("config", json.dumps({"weights": dataclasses.asdict(cfg), "scoring": {}}))
    ema, winner = np.zeros(N), None
    held: np.ndarray = np.zeros(N, dtype=np.int64)
    hotkeys = [f"hk{u}" for u in range(N)]
    recorded = []
    for step in range(steps):
        new_hk = list(hotkeys)
        if step == 8:
            new_hk[3] = "hk3-reregistered"
        ema = reset_changed(ema, hotkeys, new_hk)
        held = reset_changed(held, hotkeys, new_hk)
        hotkeys = new_hk
        uids, scores, causes, rows = [], [], [], []
        for u in range(1, N):
            for task in range(2):
                failed = rng.random() < 0.1
                lied = (u, step, task) == (6, 4, 1)  # one spot-checked answer proves a lie
                cause = Cause.DIST_MISMATCH if lied else Cause.TIMEOUT if failed else Cause.OK
                s = 0.0 if cause != "ok" else float(np.clip(quality[u] + rng.normal(0, 0.1), 0, 1))
                rows.append(_answer(Miner(u, hotkeys[u]), f"t{task}", s, cause.value))
                uids.append(u)
                scores.append(s)
                causes.append(cause)
        rows.append(_answer(Miner(2, "hk2"), "tx", 0.0, "validator_error"))
        rows.append(_answer(BASELINE, "t0", 0.9, "ok"))  # the validator's own baseline
        means, seen = round_means(uids, scores, N)
        upd = advance_ema(
            ema,
            held,
            means,
            seen,
            proven_liars(uids, causes, N),
            cfg.ema_alpha,
            cfg.lie_penalty_steps,
        )
        ema, held = upd.ema, upd.suspended
        store.commit_step(
            StepRow(step, 100 + 10 * step, "seed", "digest", N - 1, len(rows), 0.9, 0.1),
            rows,
            [],
            [EmaRow(u, hotkeys[u], float(ema[u]), int(held[u])) for u in range(N)],
        )
        if step % 3 == 2:
            eligible = np.arange(N) != OWNER
            res = transform_weights(ema, cfg, eligible, winner)
            winner = res.winner
            w = apply_burn(res.weights, OWNER, cfg.burn_share)
            recorded.append(w)
            sent = {u: float(x) for u, x in enumerate(w) if x > 0}
            store.record_weight_set(
                block=100 + 10 * step + 5,
                step=step,
                weights=sent,
                success=True,
                attempts=1,
                matches=True,
                error="",
                read_back=sent,
            )
    store.close()
    return np.array(recorded)


CFG = WeightsConfig(
    transform="wta", dethrone_margin=0.1, burn_share=0.2, ema_alpha=0.3, lie_penalty_steps=3
)


def test_replay_reproduces_recorded_weights(tmp_path: Path) -> None:
    db = tmp_path / "validator.sqlite"
    recorded = _write_validator_db(db, CFG)
    rec = read_validator_db(db)
    assert recorded_weights_config(rec) == CFG
    np.testing.assert_allclose(replay(rec, CFG), recorded, atol=1e-12)
    assert rec.caught.sum() == 1 and rec.caught[4, 6]
    # The liar (uid 6, winner before it lied) earns nothing in the weight sets that follow.
    assert recorded[1, 6] == 0.0 and recorded[0, 6] > 0.0
    lenient = replay(rec, dataclasses.replace(CFG, lie_penalty_steps=0))
    assert lenient[2, 6] > recorded[2, 6]  # the suspension, not just the reset, is replayed
    other = replay(rec, dataclasses.replace(CFG, transform="power", burn_share=0.0))
    assert np.abs(other - recorded).max() > 0.1  # another config gives other weights


def test_replay_cli_reports_reproduction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "validator.sqlite"
    _write_validator_db(db, CFG)
    out = tmp_path / "out"
    rc = main(
        [
            "simulate",
            "--replay",
            str(db),
            "--out",
            str(out),
            "--no-progress",
            "--sweep",
            "weights.power=1,4",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "reproduced with the recorded config: max |diff| = 0.00e+00" in text
    assert (out / "report.html").is_file()
    assert (out / "replay_weights.power=4.0_weights.csv").is_file()


def test_replay_bad_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not sqlite at all")
    assert main(["simulate", "--replay", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a validator database" in capsys.readouterr().err
    assert main(["simulate", "--replay", str(tmp_path / "missing.sqlite")]) == 2
    assert "not found" in capsys.readouterr().err


def test_sweep_writes_tables_charts_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    rc = main(
        [
            "simulate",
            "--scenario",
            "newcomer",
            "--epochs",
            "24",
            "--validators",
            "4",
            "--miners",
            "8",
            "--sweep",
            "weights.power=1,4",
            "--out",
            str(out),
            "--exact-checks",
            "2",
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert text.count("overtake=") == 2 and "max dev=" in text
    runs = json.loads((out / "runs.json").read_text())
    assert [r["params"] for r in runs] == [{"weights.power": 1.0}, {"weights.power": 4.0}]
    assert all(r["max_fast_exact_deviation"] < 1e-6 for r in runs)
    with (out / "newcomer_weights.power=1.0_miners.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 25 and "newcomer" in rows[0]
    for name in ("emission", "yield", "gini"):
        png = out / f"newcomer_weights.power=4.0_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sweep.png").is_file()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and 'src="http' not in page


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--sweep", "bonds_penalty=99999"], "bonds_penalty"),
        (["--sweep", "weights.nope=1"], "weights.nope"),
        (["--sweep", "novalue"], "KEY=VALUE"),
        (["--chain", "kappa=abc"], "integer"),
        (["--chain", "yuma3_enabled=maybe"], "true or false"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    rc = main(["simulate", "--out", str(tmp_path), "--epochs", "3", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_replay_names_an_unknown_cause_code(tmp_path: Path) -> None:
    db = tmp_path / "validator.sqlite"
    _write_validator_db(db, CFG, steps=3)
    con = sqlite3.connect(db)
    con.execute("UPDATE answers SET cause = 'lied' WHERE step = 1 AND uid = 2 AND task_id = 't0'")
    con.commit()
    con.close()
    with pytest.raises(StateError, match="step 1: unknown cause code 'lied'"):
        read_validator_db(db)


# -- issue 17: the report explains itself, records its config, never mixes two runs --------

SMALL = ["--epochs", "8", "--validators", "3", "--miners", "4", "--exact-checks", "1"]


def _simulate(out: Path, *extra: str) -> int:
    return main(["simulate", *SMALL, "--no-progress", "--out", str(out), *extra])


def test_report_explains_the_scenario_and_its_metrics_and_records_the_config(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sim"
    assert _simulate(out, "--scenario", "copier", "--set", "weights.ema_alpha=0.3") == 0
    page = (out / "report.html").read_text()
    assert "copies the others" in page  # what the scenario is
    assert "dividend share / stake share" in page  # what focus_yield means
    assert "Configuration" in page and "weights.ema_alpha" in page
    assert '<pre id="img-status" hidden>' in page  # the browser test's probe stays invisible
    [summary] = json.loads((out / "runs.json").read_text())
    assert summary["config"]["weights"]["ema_alpha"] == 0.3
    assert summary["config"]["scenario"] == "copier" and summary["config"]["epochs"] == 8


def test_a_reused_out_folder_holds_only_the_last_run(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert _simulate(out, "--scenario", "baseline", "--sweep", "weights.power=1,2") == 0
    (out / "notes.txt").write_text("mine")  # not the simulator's: left alone
    assert _simulate(out, "--scenario", "newcomer") == 0
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n.startswith("baseline") or n == "sweep.png"], left
    assert "notes.txt" in left and "newcomer_summary.json" in left


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_out_at_a_file_or_unwritable_path_is_one_line(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("x")
    out = target if where == "file" else target / "sub"
    assert _simulate(out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "Traceback" not in err, err
