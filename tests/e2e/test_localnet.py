"""``subnet localnet`` end to end: real devnet, a real validator and real miner processes.

Shorter than the demo (hf engines, a short tempo, few epochs) but the same code path: models
fetched from the miners, spot checks drawn from the validator's secret at the default
fraction, a gateway beside the validator, the summary JSON must show the demo's ordering with
every adversary at 0, a miner killed mid-run must be reported while the validator keeps scoring
the others, and no process may outlive the run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Short epochs, but the demo's answers per step and EMA warm-up: the distilled student's lead over
# the undistilled one is ~0.06-0.13 in mean answer score with a per-answer spread of ~0.15-0.18,
# so the ordering needs the answers of several steps before emission is counted, and enough
# epochs (8 x 5 s here) that one run's draw of prompts does not decide it (measured: see the
# warm-up in neurons/localnet/plan.py and docs/benchmarks.md).
SHORT = [
    "--engine",
    "hf",
    "--tempo",
    "10",
    "--block-time",
    "0.5",
    "--step-blocks",
    "2",
    "--tasks-per-step",
    "4",
    "--fresh",
]


def _cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "subnet.cli",
        "localnet",
        "--dir",
        str(tmp_path / "ln"),
        "--json",
        str(tmp_path / "summary.json"),
        *SHORT,
        *extra,
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}


def _pids(state: dict[str, Any]) -> list[int]:
    pids = [int(state["validator"]["pid"])] if state.get("validator") else []
    pids += [int(state["gateway"]["pid"])] if (state.get("gateway") or {}).get("pid") else []
    return pids + [int(m["pid"]) for m in state.get("miners", [])]


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # each child leads its own process group
    except ProcessLookupError:
        return True
    return False


def _state(tmp_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((tmp_path / "ln" / "localnet.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


# The issue-14 run: every committed model is fetched from its miner, checks are drawn from the
# validator's secret at the default fraction, and the selective adversary fabricates exactly on
# the answers the old public rule says are unchecked.
ROLES_14 = (
    "distilled",
    "undistilled",
    "adversary-selective",
    "adversary-fabricated",
    "adversary-wrong-model",
)
HONEST = ("distilled", "undistilled")


def _fabricated_share(log: Path) -> tuple[int, int]:
    """(fabricated, answered) from the selective adversary's own last report in its log."""
    found = re.findall(r"selective: fabricated (\d+) of (\d+) answers", log.read_text())
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def test_short_localnet_fetches_models_checks_by_secret_and_pays_no_adversary(tmp_path):
    run = subprocess.run(
        _cmd(tmp_path, "--epochs", "8", "--miners", ",".join(ROLES_14)),
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    by_role = {m["role"]: m for m in summary["miners"]}
    assert set(by_role) == set(ROLES_14)
    total = sum(m["emission_total"] for m in summary["miners"])
    assert total > 0
    for role in ROLES_14:
        m = by_role[role]
        # Every model was fetched from the miner that committed it (no local model roots).
        assert m["model_source"] == "miner", m
        checks = m["spot_checks"]
        assert set(checks) == {"checked", "passed", "failed", "unavailable"}, checks
        assert checks["checked"] == checks["passed"] + checks["failed"] + checks["unavailable"]
    for role in HONEST:
        checks = by_role[role]["spot_checks"]
        # Verified from the first step on (fetched before it), drawn at the default fraction:
        # some answers checked, not all, every check passed, none unavailable.
        assert checks["unavailable"] == 0 and checks["failed"] == 0, checks
        assert 0 < checks["checked"] < by_role[role]["answers"], (checks, by_role[role])
    for role in ROLES_14:
        if role.startswith("adversary-"):
            # Caught before emission was counted, then suspended again at every catch: 0.
            assert by_role[role]["emission_total"] == 0, by_role[role]
            assert by_role[role]["causes"], f"{role} shows no cause code"
    assert summary["checks"]["adversaries earn nothing"] is True
    # The selective adversary really cheated: it fabricated on the answers the old public rule
    # called unchecked (about half), which the secret draw does not spare.
    logs = tmp_path / "ln" / "logs"
    selective = next(logs.glob("*-adversary-selective.log"))
    fabricated, answered = _fabricated_share(selective)
    assert answered > 0 and 0.25 < fabricated / answered < 0.75, (fabricated, answered)
    assert len(summary["epochs"]) == 8
    assert set(summary["phases"]) >= {"setup", "tiny world", "engine starts", "epochs", "total"}
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "localnet summary" in run.stdout and "adversaries earn nothing" in run.stdout
    state = _state(tmp_path)
    assert state["phase"] == "ended" and state["exit_code"] == 0
    assert all(_gone(pid) for pid in _pids(state))
    names = {p.name for p in logs.iterdir()}
    assert {"validator.log", "gateway.log"} <= names and len(names) == len(ROLES_14) + 2
    # The localnet's own organic requests were answered through the gateway by honest miners,
    # and the validator judged each of them.
    gateway = summary["gateway"]
    assert gateway["url"].startswith("http://127.0.0.1:") and gateway["api_key"].startswith("sk-")
    assert summary["checks"]["organic requests answered"] is True
    honest = {by_role[r]["uid"] for r in HONEST}
    for o in gateway["organic"]:
        assert o["status"] == 200 and o["text"].strip() and set(o["miners"]) <= honest, o
        assert o["verdict"] not in (None, "pending"), o
    status = subprocess.run(
        [sys.executable, "-m", "subnet.cli", "localnet", "--status", "--dir", str(tmp_path / "ln")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 3 and "not running" in status.stdout
    distilled, undistilled = (by_role[r]["emission_total"] for r in HONEST)
    assert summary["checks"]["distilled earns more than undistilled"] == (distilled > undistilled)
    assert distilled > undistilled, summary["miners"]


def test_a_killed_miner_is_reported_and_the_validator_keeps_scoring_the_rest(tmp_path):
    proc = subprocess.Popen(
        _cmd(tmp_path, "--epochs", "4"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = _state(tmp_path)
            if state.get("epochs"):
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.5)
        assert state.get("epochs"), "no epoch within the deadline"
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "subnet.cli",
                "localnet",
                "--status",
                "--dir",
                str(tmp_path / "ln"),
            ],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and "running" in status.stdout, status.stdout
        victim = next(m for m in state["miners"] if m["role"] == "undistilled")
        os.kill(int(victim["pid"]), signal.SIGKILL)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0, out[-4000:]
    name = f"{victim['name']}-undistilled"
    assert f"{name} (pid {victim['pid']}) killed by signal SIGKILL" in out
    assert "the run goes on without it" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [d["name"] for d in summary["deaths"]] == [name]
    assert summary["deaths"][0]["reason"] == "killed by signal SIGKILL"
    after = [e for e in summary["epochs"] if e["epoch"] > len(state["epochs"]) + 1]
    assert after, "no epoch after the kill"
    for epoch in after:
        rows = {m["role"]: m for m in epoch["miners"]}
        assert not rows["undistilled"]["alive"]
        assert rows["distilled"]["answers"] > 0 and rows["teacher"]["answers"] > 0
        assert rows["undistilled"]["score"] in (None, 0.0)
        if rows["undistilled"]["answers"]:
            assert set(rows["undistilled"]["causes"]) == {"http_error"}
    assert all(_gone(pid) for pid in _pids(_state(tmp_path)))


def _chat_through_the_gateway(tmp_path: Path) -> None:
    """What a user does: read the URL and key from ``--status --json``, point ``openai`` at it."""
    import openai

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "subnet.cli",
            "localnet",
            "--status",
            "--dir",
            str(tmp_path / "ln"),
            "--json",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    state = json.loads(status.stdout)
    assert state["running"] is True
    gateway = state["gateway"]
    client = openai.OpenAI(
        base_url=gateway["url"] + "/v1", api_key=gateway["api_key"], max_retries=0, timeout=60
    )
    [model] = [m.id for m in client.models.list().data]
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "add 20 22 ="}], max_tokens=6
    )
    assert answer.choices[0].message.content and answer.usage is not None
    assert answer.usage.completion_tokens > 0
    served = (answer.model_extra or {})["subnet"]["miners"]
    roles = {m["uid"]: m["role"] for m in state["miners"]}
    assert served and all(not roles[u].startswith("adversary-") for u in served), served


def _start_and_wait_for_epochs(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        _cmd(tmp_path, "--epochs", "50"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = _state(tmp_path)
        if state.get("phase") == "epochs":
            return proc, state
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited early")
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the localnet never reached its epochs")


@pytest.mark.parametrize("how", ["sigint", "validator-dies"])
def test_ctrl_c_or_a_dead_validator_stops_every_process(tmp_path, how):
    proc, state = _start_and_wait_for_epochs(tmp_path)
    try:
        if how == "sigint":
            _chat_through_the_gateway(tmp_path)  # while it runs, as a user would
            os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
        else:
            os.kill(int(state["validator"]["pid"]), signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    if how == "sigint":
        assert proc.returncode == 130, out[-3000:]
    else:
        assert proc.returncode == 1, out[-3000:]
        assert (
            f"validator (pid {state['validator']['pid']}) killed by signal SIGKILL: "
            "the run ends" in out
        )
    assert "stopping every process" in out
    final = _state(tmp_path)
    assert final["phase"] == "ended" and final["exit_code"] == proc.returncode
    assert _pids(final) and all(_gone(pid) for pid in _pids(final))
