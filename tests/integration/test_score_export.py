"""The validator's public score export: ``/scores`` JSON, per-step CSV files and the HTML page,
served by the real export app on loopback from a state file the real store wrote; the page
rendered in headless Chromium (its table and its EMA chart, and a screenshot).
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from neurons.validator.draw import secret_commitment
from neurons.validator.export import build_export_app, csv_steps, write_step_csv
from neurons.validator.participant import Miner, OrganicMiner, Participant
from neurons.validator.store import AnswerRow, EmaRow, StepRow, Store
from tests.integration.test_sim_report_browser import CHROMIUM, _chromium

# uid -> hotkey; uid 0 is the validator itself (never shown: nobody answered for it)
HOTKEYS = {0: "5Validator", 1: "5Honest", 2: "5Runner", 3: "5Liar"}
STEPS = 6
# Draw secrets of epochs 0 and 1, published at block 100; epoch 0's is revealed at block 104.
SECRETS = {0: bytes(range(32)), 1: bytes(range(32, 64))}


def _row(
    who: Participant, score: float, cause: str = "ok", *, task: str, verified: bool
) -> AnswerRow:
    return AnswerRow(
        who=who,
        task_id=task,
        score=score,
        cause=cause,
        detail="",
        gate=1.0 if cause == "ok" else 0.0,
        s_kl=score,
        s_ref=score,
        s_speed=1.0,
        kl=0.1,
        rkl=0.1,
        tv=0.1,
        overlap=1.0,
        correct=None,
        n_tokens=4,
        ttft_s=0.01,
        total_s=0.02,
        verified=verified,
        verify_dp=0.0,
        identity=None,
        provenance={},
    )


def _state(path: Path) -> None:
    """Six steps: uid 1 climbs to the lead, uid 2 trails, uid 3 is caught lying at step 4 on an
    organic answer; weights set after steps 3 and 6."""
    store = Store(path)
    ema = {1: 0.0, 2: 0.0, 3: 0.0}
    held = 0
    try:
        store.publish_spot_secrets(
            [(e, k.hex(), secret_commitment(k)) for e, k in SECRETS.items()], block=100
        )
        store.reveal_spot_secrets(before_epoch=1, block=104)
        for step in range(1, STEPS + 1):
            answers = [
                _row(Miner(1, HOTKEYS[1]), 0.9, task=f"t{step}", verified=True),
                _row(Miner(2, HOTKEYS[2]), 0.5, task=f"t{step}", verified=False),
                _row(Miner(3, HOTKEYS[3]), 0.7, task=f"t{step}", verified=False),
            ]
            if step == 4:
                answers.append(
                    _row(
                        OrganicMiner(3, HOTKEYS[3]),
                        0.0,
                        "dist_mismatch",
                        task="organic:1:x",
                        verified=True,
                    )
                )
                held = 20
            for uid, score in ((1, 0.9), (2, 0.5), (3, 0.7)):
                ema[uid] = 0.5 * score + 0.5 * ema[uid]
            if held:
                ema[3] = 0.0
            rows = [EmaRow(0, HOTKEYS[0], 0.0)] + [
                EmaRow(u, HOTKEYS[u], e, held if u == 3 else 0) for u, e in ema.items()
            ]
            store.commit_step(
                StepRow(step, 100 + step, f"seed{step}", "d", 3, len(answers), None, 0.1),
                answers,
                [],
                rows,
            )
            if step in (3, 6):
                total = ema[1] + ema[2] + ema[3]
                store.record_weight_set(
                    block=100 + step,
                    step=step,
                    weights={u: ema[u] / total for u in (1, 2, 3) if ema[u] > 0},
                    success=True,
                    attempts=1,
                    matches=True,
                    error="",
                    read_back={},
                )
            held = max(held - 1, 0) if step > 4 else held
    finally:
        store.close()


@pytest.fixture
async def export(tmp_path):
    db = tmp_path / "vs" / "validator.sqlite"
    _state(db)
    for step in range(1, STEPS + 1):
        write_step_csv(db, tmp_path / "vs" / "scores", step)
    runner = web.AppRunner(
        build_export_app(db, tmp_path / "vs" / "scores", hotkey=HOTKEYS[0], netuid=7)
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_scores_json_and_csv(export, tmp_path):
    async with aiohttp.ClientSession() as s:
        async with s.get(export + "/scores") as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
            doc = await r.json()
        async with s.get(export + "/scores/steps") as r:
            steps = await r.json()
        async with s.get(export + "/scores/steps/4.csv") as r:
            assert r.status == 200 and r.content_type == "text/csv"
            text = await r.text()
        async with s.get(export + "/scores/steps/99.csv") as r:
            assert r.status == 404 and "no CSV for step 99" in (await r.json())["error"]["message"]
    assert doc["validator"] == {"hotkey": HOTKEYS[0], "netuid": 7}
    assert doc["step"]["step"] == STEPS and doc["step"]["block"] == 100 + STEPS
    assert doc["weights"]["block"] == 106 and doc["weights"]["step"] == 6
    by_uid = {m["uid"]: m for m in doc["miners"]}
    assert set(by_uid) == {1, 2, 3}  # the validator's own uid is not a miner
    assert by_uid[1]["ema"] > by_uid[2]["ema"] > 0 and by_uid[3]["ema"] == 0.0
    assert by_uid[1]["score"] == 0.9 and by_uid[1]["spot_checks"] == {"checked": 1, "failed": 0}
    assert by_uid[3]["suspended"] > 0 and by_uid[3]["weight"] is None
    assert doc["history"]["steps"] == list(range(1, STEPS + 1))
    assert set(doc["history"]["ema"]) == {"1", "2", "3"}
    assert doc["history"]["ema"]["1"][0] == 0.45
    # Both commitments are public; only the ended epoch's secret is, and it opens its commitment.
    assert doc["spot_check_secrets"] == [
        {
            "epoch": 0,
            "commitment": secret_commitment(SECRETS[0]),
            "published_block": 100,
            "secret": SECRETS[0].hex(),
            "revealed_block": 104,
        },
        {
            "epoch": 1,
            "commitment": secret_commitment(SECRETS[1]),
            "published_block": 100,
            "secret": None,
            "revealed_block": None,
        },
    ]
    assert SECRETS[1].hex() not in json.dumps(doc)
    assert [s["step"] for s in steps["steps"]] == list(range(1, STEPS + 1))
    assert csv_steps(tmp_path / "vs" / "scores") == list(range(1, STEPS + 1))
    rows = {int(r["uid"]): r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {1, 2, 3}
    assert rows[3]["causes"] == "dist_mismatch:1" and rows[3]["organic_failed"] == "1"
    assert rows[3]["spot_checked"] == "1" and rows[3]["spot_failed"] == "1"
    assert rows[3]["ema"] == "0.0" and int(rows[3]["suspended"]) > 0
    assert rows[1]["weights_block"] == "103"  # the weights last set by step 4: after step 3
    assert float(rows[1]["weight"]) > float(rows[2]["weight"])


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian 'chromium')")
async def test_score_page_renders_in_chromium(export, tmp_path):
    proc = await asyncio.to_thread(_chromium, tmp_path, "--dump-dom", export + "/")
    m = re.search(r'<pre id="render-status">([^<]*)</pre>', proc.stdout)
    assert m, f"no status element (rc={proc.returncode}): {proc.stderr[-500:]}"
    status = json.loads(html.unescape(m.group(1)))
    assert status == {
        "rows": 3,
        "lines": 3,  # uid 3's line runs at 0 after its lie, still drawn
        "points": 3 * STEPS,
        "secrets": 2,
        "steps": STEPS,
        "csv": STEPS,
        "error": None,
    }
    miners = proc.stdout.split('<table id="miners">')[1].split("</table>")[0]
    rows = re.findall(r"<tr( class=\"suspended\")?><td>(\d+)</td>", miners)
    assert [(bool(s), int(u)) for s, u in rows] == [(False, 1), (False, 2), (True, 3)]
    assert "weights last set at block 106 (step 6)" in proc.stdout
    assert "<td>1 checked, 0 failed</td>" in proc.stdout  # uid 1's spot check, last step
    assert SECRETS[0].hex() in proc.stdout and "sealed until its epoch ends" in proc.stdout

    import matplotlib.image as mpimg

    shot = tmp_path / "scores.png"
    proc = await asyncio.to_thread(
        _chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,1000", export + "/"
    )
    assert shot.is_file(), proc.stderr[-500:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 900 and pixels.shape[1] >= 1100
    # The chart's lines are drawn in the palette's first colours (blue, red, green).
    rgb = (pixels[:, :, :3] * 255).round().astype(int).reshape(-1, 3)
    for colour in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)):
        assert ((abs(rgb - colour) <= 8).all(axis=1)).sum() > 200, colour
