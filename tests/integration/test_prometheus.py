"""A real Prometheus server scrapes a running miner and validator; the dashboards name only
series the code exports.

Prometheus is the Debian package ``prometheus`` (``scripts/setup.sh`` installs it when it runs
as root, as it does Chromium); where it is missing the scrape test skips and says so. It runs on
loopback with a temporary config and data folder, scraping every second the miner's and the
validator's own metrics endpoints (``subnet.metrics.serve_metrics``, the code both nodes run)
while the validator's node loop (``Validator.run``) steps against real miners; one series of
each is then read back through Prometheus's HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from neurons.validator.main import Validator
from neurons.validator.metrics import ValidatorMetrics
from subnet.chain.network import open_chain
from subnet.config import load_config
from subnet.metrics import MinerMetrics, NodeMetrics, serve_metrics
from tests.integration._validator_kit import NETUID, make_subnet, running_miners

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
DASHBOARDS = sorted((REPO / "docker" / "grafana" / "dashboards").glob("*.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exported_names(metrics: NodeMetrics) -> set[str]:
    """Every series name a node's registry exposes (counter and histogram suffixes included)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
    return names


# -- dashboards (no server needed) ----------------------------------------------------------


def test_dashboards_are_valid_json_and_name_only_exported_metrics() -> None:
    exported = exported_names(MinerMetrics()) | exported_names(ValidatorMetrics())
    assert {p.name for p in DASHBOARDS} == {"miner.json", "validator.json"}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert exprs, path
        used = {name for e in exprs for name in re.findall(r"\b((?:miner|validator)_[a-z_]+)\b", e)}
        prefix = path.stem + "_"
        assert used and all(n.startswith(prefix) for n in used), (path, used)
        assert used <= exported, (path.name, sorted(used - exported))


def test_prometheus_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package 'prometheus') not installed")
    out = subprocess.run(
        [promtool, "check", "config", str(REPO / "docker" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# -- a real Prometheus scraping real nodes --------------------------------------------------


async def _query(s: aiohttp.ClientSession, base: str, expr: str) -> list[dict]:
    async with s.get(f"{base}/api/v1/query", params={"query": expr}) as r:
        body = await r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Prometheus not installed (Debian package 'prometheus'; scripts/setup.sh installs "
    "it when run as root, CI included)",
)
async def test_prometheus_scrapes_a_running_miner_and_validator(tmp_path: Path, tiny) -> None:
    assert PROMETHEUS is not None
    sub = make_subnet(tiny, tmp_path, clock="wall", block_time=0.3, tempo=50)
    miner_port, vali_port, prom_port = free_port(), free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        f"  - job_name: miner\n    static_configs:\n      - targets: ['127.0.0.1:{miner_port}']\n"
        f"  - job_name: validator\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{vali_port}']\n"
    )
    prom = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    base = f"http://127.0.0.1:{prom_port}"
    cfg = load_config(
        None,
        env={},
        overrides={
            "chain.network": sub.network,
            "chain.netuid": NETUID,
            "validator.teacher": str(sub.zoo["teacher"]),
            "validator.engine": "hf",
            "validator.state_dir": str(tmp_path / "vs"),
            "validator.tasks_per_step": 2,
            "validator.max_tokens": 6,
            "validator.model_roots": str(tmp_path / "models"),
            "validator.metrics_port": vali_port,
            "validator.weights_interval": 1,
        },
    )
    try:
        async with (
            running_miners(sub, tmp_path, names=("teacher",)) as running,
            serve_metrics(running.metrics["teacher"], "127.0.0.1", miner_port, keys="test"),
            open_chain(sub.network) as chain,
            aiohttp.ClientSession() as s,
        ):
            node = Validator(cfg, chain, sub.wallets["vali"])
            run = asyncio.create_task(node.run(max_steps=10_000))
            try:
                async with asyncio.timeout(300):  # bounds a hang only
                    while True:
                        assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
                        await asyncio.sleep(1.0)
                        if run.done():
                            run.result()  # raises what failed
                        try:
                            steps = await _query(s, base, "validator_steps_total")
                            served = await _query(
                                s, base, 'miner_requests_total{cause="ok",status="200"}'
                            )
                        except aiohttp.ClientError:
                            continue  # Prometheus still starting
                        if steps and served and float(steps[0]["value"][1]) >= 2:
                            break
            finally:
                node.stop.set()
                await run
            up = await _query(s, base, "up")
            assert {r["metric"]["job"]: r["value"][1] for r in up} == {
                "miner": "1",
                "validator": "1",
            }
            assert steps[0]["metric"]["job"] == "validator"
            assert served[0]["metric"]["job"] == "miner"
            assert float(served[0]["value"][1]) >= 2  # the validator's queries, as counted
    finally:
        prom.terminate()
        prom.wait(timeout=30)
